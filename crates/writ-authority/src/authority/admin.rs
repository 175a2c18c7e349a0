//! Administration: revocation and policy activation.

use super::*;

impl Authority {
    /// Revoke a writ (and so its whole subtree), or a principal. Admin only.
    ///
    /// Only the target is marked: a descendant is revoked through its
    /// ancestor (verification, starts, renewals and credentials walk a
    /// writ's ancestors), so a revocation takes one row and one log entry
    /// whatever the size of the subtree, and nothing a caller does to the
    /// subtree can stand in its way. Runners hear of it on their revocation
    /// stream, which tells each one whose writ, ancestor or principal it
    /// names. The last administrator that can act cannot be revoked.
    pub async fn revoke(
        &self,
        who: &Principal,
        req: &RevokeRequest,
    ) -> Result<RevokeResponse, CallError> {
        let _serial = self.lifecycle.lock().await;
        self.require_admin_now(who)?;
        let now_ms = self.clock.now_unix_ms();
        let reason = req
            .reason
            .clone()
            .unwrap_or_else(|| "revoked by an administrator".into());
        let (target, kind) = match (&req.jti, &req.principal) {
            (Some(jti), None) => {
                if self.store.writ(jti)?.is_none() {
                    return Err(CallError::NotFound(format!("no writ {jti} was issued")));
                }
                (jti.clone(), RevocationKind::Writ)
            }
            (None, Some(p)) => {
                cedar_uid_check(p).map_err(CallError::BadRequest)?;
                self.keep_an_admin(&self.state(), p)?;
                (p.clone(), RevocationKind::Principal)
            }
            _ => {
                return Err(CallError::BadRequest(
                    "give exactly one of `jti` and `principal`".into(),
                ))
            }
        };

        let leaf = Entry::Revocation {
            time_ms: now_ms,
            by: who.uid.clone(),
            target: target.clone(),
            kind,
            reason: reason.clone(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let ops = vec![
            Op::Revoke(RevocationRecord {
                target: target.clone(),
                kind: kind.as_str().into(),
                time_ms: now_ms,
                by: who.uid.clone(),
                reason: reason.clone(),
            }),
            Op::Append { leaf },
        ];
        let mut add = Revoked::default();
        match kind {
            RevocationKind::Writ => add.writs.insert(target.clone()),
            RevocationKind::Principal => add.principals.insert(target.clone()),
        };
        let indices = self.revoke_state(&add, Tx::new(ops)).await?;
        self.note_indices(&indices);
        let log_index = indices.first().copied().unwrap_or_default();
        let _ = self.events.send(Event::Revocation {
            time_ms: now_ms,
            target: target.clone(),
            kind,
            jtis: match kind {
                RevocationKind::Writ => vec![target.clone()],
                RevocationKind::Principal => Vec::new(),
            },
            reason,
            log_index: Some(log_index),
        });
        Ok(RevokeResponse {
            revoked: vec![target],
            log_index,
        })
    }
    /// Check, store and activate a signed bundle. A bundle that fails is
    /// refused with Cedar's diagnostics and the active one stays. Admin only.
    pub async fn activate(&self, who: &Principal, signed: SignedBundle) -> Result<u64, CallError> {
        self.require_admin_now(who)?;
        let state = self.state();
        signed.check(&state.policy_keys).map_err(|e| match e {
            // The bundle is not what its hash and signature say: evidence
            // that failed its own verification, not a malformed request.
            BundleError::Signature(_) => {
                CallError::Denied(Denial::new(ReasonCode::IntegrityFailure, e.to_string()))
            }
            other => CallError::BadRequest(other.to_string()),
        })?;
        let bundle = Bundle::compile(signed.source.clone())
            .map_err(|e| CallError::BadRequest(e.to_string()))?;
        let now_ms = self.clock.now_unix_ms();
        let leaf = Entry::PolicyActivation {
            time_ms: now_ms,
            by: who.uid.clone(),
            hash: signed.hash.clone(),
            kid: signed.kid.clone(),
        }
        .to_leaf()
        .map_err(CallError::from)?;
        let ops = vec![
            Op::PutBundle {
                hash: signed.hash.clone(),
                signed_json: serde_json::to_string(&signed)
                    .map_err(|e| CallError::Unavailable(e.to_string()))?,
            },
            Op::Activate {
                hash: signed.hash.clone(),
                time_ms: now_ms,
                by: who.uid.clone(),
            },
            Op::Append { leaf },
        ];
        let indices = self.store.submit(Tx::new(ops)).await?;
        self.note_indices(&indices);
        let log_index = indices.first().copied().unwrap_or_default();
        let bundle = Arc::new(bundle);
        self.swap_state(|s| s.with_bundle(bundle));
        let _ = self.events.send(Event::PolicyActivated {
            time_ms: now_ms,
            hash: signed.hash,
            log_index,
        });
        Ok(log_index)
    }

    /// [`require_admin`], and `who` is not revoked or disabled in the state
    /// current now (it may have been since it authenticated).
    pub(super) fn require_admin_now(&self, who: &Principal) -> Result<(), CallError> {
        require_admin(who)?;
        match self.state().revoked.principal_barred(&who.uid) {
            Some(why) => Err(CallError::Denied(Denial::new(
                ReasonCode::Unauthenticated,
                why,
            ))),
            None => Ok(()),
        }
    }
}

pub(super) fn require_admin(who: &Principal) -> Result<(), CallError> {
    match (&who.execution, who.admin) {
        (None, true) => Ok(()),
        (Some(e), _) => Err(CallError::Forbidden(format!(
            "the credential of execution {e} (of {}) has no administrative power",
            who.uid
        ))),
        (None, false) => Err(CallError::Forbidden(format!(
            "{} is not an administrator",
            who.uid
        ))),
    }
}
