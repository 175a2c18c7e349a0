//! Writ signing keys: rotation (this node's) and retirement (another
//! node's, compromised or gone).

use super::*;

impl Authority {
    /// Make `next` the signing key. The old key stops signing at once but
    /// keeps verifying until every writ it signed has expired. Admin only;
    /// the caller has already stored `next`'s private key.
    pub async fn rotate_key(&self, who: &Principal, next: WritKey) -> Result<u64, CallError> {
        self.require_admin_now(who)?;
        let state = self.state();
        let now_ms = self.clock.now_unix_ms();
        let until = now_ms + (WRIT_LIFETIME_SECS_MAX + self.config.skew_secs) * 1000;
        let old = writ_key_record(&state.signer, KeyStatus::VerifyOnly, now_ms, Some(until))
            .map_err(CallError::Unavailable)?;
        let new = writ_key_record(&next, KeyStatus::Active, now_ms, None)
            .map_err(CallError::Unavailable)?;
        let leaf = |kid: &str, status: KeyStatus| {
            Entry::KeyChange {
                time_ms: now_ms,
                by: who.uid.clone(),
                kid: kid.into(),
                role: KeyRole::Writ.as_str().into(),
                status: status.as_str().into(),
            }
            .to_leaf()
            .map(|leaf| Op::Append { leaf })
            .map_err(CallError::from)
        };
        let ops = vec![
            Op::PutKey(new),
            leaf(next.kid(), KeyStatus::Active)?,
            Op::PutKey(old),
            leaf(state.signer.kid(), KeyStatus::VerifyOnly)?,
        ];
        let indices = self.store.submit(Tx::new(ops)).await?;
        self.note_indices(&indices);
        let fresh = load_state(
            self.store.as_ref(),
            now_ms,
            Arc::new(next),
            Some(&state.bundle),
        )
        .map_err(|e| CallError::Unavailable(e.to_string()))?;
        // Only the keys: a revocation, activation or principal that changed
        // the state since the store was read stays as it is.
        self.swap_state(|cur| State {
            signer: fresh.signer,
            ring: fresh.ring,
            key_records: fresh.key_records,
            policy_keys: fresh.policy_keys,
            ..cur.clone_shallow()
        });
        Ok(indices.first().copied().unwrap_or_default())
    }

    /// Retire writ key `kid` for good: it stops verifying at once, here and
    /// (within the freshness bound) on every node, and the writs it signed
    /// with it. For another node's key (compromised, or the node gone for
    /// good): that node can then sign nothing, goes stale and denies until
    /// it joins again with a new key. This node's own signing key is
    /// rotated instead (`rotate_key`). Admin only; logged as a
    /// `key_change` to `retired`.
    pub async fn retire_key(&self, who: &Principal, kid: &str) -> Result<u64, CallError> {
        self.require_admin_now(who)?;
        let state = self.state();
        if kid == state.signer.kid() {
            return Err(CallError::Conflict(format!(
                "{kid} is this node's signing key: rotate it (`writ key rotate`) instead"
            )));
        }
        let Some(rec) = state
            .key_records
            .iter()
            .find(|k| k.kid == kid && k.role == KeyRole::Writ)
            .cloned()
        else {
            return Err(CallError::NotFound(format!("no writ key {kid}")));
        };
        if rec.status == KeyStatus::Retired {
            return Err(CallError::Conflict(format!(
                "writ key {kid} is already retired"
            )));
        }
        let now_ms = self.clock.now_unix_ms();
        let leaf = Entry::KeyChange {
            time_ms: now_ms,
            by: who.uid.clone(),
            kid: kid.into(),
            role: KeyRole::Writ.as_str().into(),
            status: KeyStatus::Retired.as_str().into(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let retired = KeyRecord {
            status: KeyStatus::Retired,
            verify_until_ms: None,
            ..rec
        };
        let tx = Tx::new(vec![Op::PutKey(retired), Op::Append { leaf }]);
        // Withheld at once: the key verifies nothing more from the moment
        // its retirement is queued.
        let indices = self
            .change_state(
                |cur| {
                    let mut ring = KeyRing::new();
                    let mut records = cur.key_records.clone();
                    for r in records.iter_mut().filter(|r| r.kid == kid) {
                        r.status = KeyStatus::Retired;
                        r.verify_until_ms = None;
                    }
                    for r in records.iter().filter(|r| r.role == KeyRole::Writ) {
                        let live = verifies_at(r, now_ms);
                        if let (true, Ok(jwk)) = (live, serde_json::from_str::<Jwk>(&r.public_jwk))
                        {
                            if let Ok(vk) = jwk.verifying_key() {
                                ring.insert(vk);
                            }
                        }
                    }
                    State {
                        ring,
                        key_records: records,
                        ..cur.clone_shallow()
                    }
                },
                tx,
            )
            .await?;
        self.note_indices(&indices);
        Ok(indices.first().copied().unwrap_or_default())
    }
}
