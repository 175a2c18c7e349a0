//! The authority's state: what it holds in memory, how it is loaded from
//! the store, kept in step with a shared store, and changed.

use super::*;

pub(super) struct State {
    pub(super) bundle: Arc<Bundle>,
    pub(super) signer: Arc<WritKey>,
    /// Writ keys that verify: the active one and those retired from signing
    /// whose writs may still be live.
    pub(super) ring: KeyRing,
    pub(super) key_records: Vec<KeyRecord>,
    pub(super) policy_keys: KeyRing,
    /// SHA-256 of token -> principal.
    pub(super) principals: HashMap<[u8; 32], Principal>,
    pub(super) revoked: Revoked,
    /// External identity issuers whose tokens authenticate callers.
    pub(super) issuers: Arc<Vec<writ_identity::issuer::IssuerSpec>>,
}

impl Authority {
    /// `Some(denial)` while this node cannot vouch for its state: on a
    /// shared store, when it has not confirmed within
    /// [`AuthorityConfig::freshness_ms`] that it holds the current bundle and
    /// revocations. A node of its own store is always fresh.
    pub fn stale(&self) -> Option<Denial> {
        if !self.store.shared() {
            return None;
        }
        let age = self
            .clock
            .now_unix_ms()
            .saturating_sub(self.fresh_ms.load(Ordering::Relaxed));
        (age > self.config.freshness_ms).then(|| {
            unavailable(format!(
                "this node has not confirmed the current policy and revocations for {age} ms (bound {} ms); the shared store may be unreachable",
                self.config.freshness_ms
            ))
        })
    }

    /// The store's state sequence this node holds.
    pub fn state_seq(&self) -> u64 {
        self.state_seq.load(Ordering::Relaxed)
    }

    /// Catch up with the shared store (blocking: call from a blocking
    /// thread). Reloads the state when another node changed it, announces
    /// revocations and activations made elsewhere on the event stream (so
    /// gateways attached to this node hear of them), and marks the node
    /// fresh. An error leaves the node to go stale.
    pub fn sync(&self) -> Result<(), StateError> {
        let checked_at = self.clock.now_unix_ms();
        let seq = state_seq_of(self.store.as_ref())?;
        let log_size = self.store.log_size()?;
        self.log_size.fetch_max(log_size, Ordering::Relaxed);
        if seq != self.state_seq.load(Ordering::Relaxed) {
            let generation = self.local_changes.load(Ordering::Acquire);
            let old = self.state();
            let fresh = load_state(
                self.store.as_ref(),
                checked_at,
                old.signer.clone(),
                Some(&old.bundle),
            )?;
            let news = News::between(&old, &fresh);
            if !self.swap_state_unless_changed(generation, |cur| fresh.keeping_revocations(cur)) {
                // This node put a change of its own into effect while the
                // store was read, which the read may not hold: read again.
                return Ok(());
            }
            self.state_seq.store(seq, Ordering::Relaxed);
            // Current from here on; what follows only announces the change.
            self.fresh_ms.fetch_max(checked_at, Ordering::Relaxed);
            self.announce(news, checked_at, log_size)?;
        }
        self.fresh_ms.fetch_max(checked_at, Ordering::Relaxed);
        Ok(())
    }

    /// Tell subscribers what another node changed: each revocation names
    /// its target only (a subscriber's stream tells it when the target is
    /// its own writ, an ancestor of it, or a principal on its chain).
    fn announce(&self, news: News, checked_at: u64, log_size: u64) -> Result<(), StateError> {
        if !news.writs.is_empty() || !news.principals.is_empty() || !news.disabled.is_empty() {
            let reasons: HashMap<String, String> = self
                .store
                .revocations()?
                .into_iter()
                .map(|r| (r.target, r.reason))
                .collect();
            let reason_of = |t: &str| {
                reasons
                    .get(t)
                    .cloned()
                    .unwrap_or_else(|| "revoked on another node".into())
            };
            let revoked = |target: &String, kind, reason| Event::Revocation {
                time_ms: checked_at,
                target: target.clone(),
                kind,
                reason,
                jtis: match kind {
                    RevocationKind::Writ => vec![target.clone()],
                    RevocationKind::Principal => Vec::new(),
                },
                log_index: None,
            };
            for t in &news.writs {
                let _ = self
                    .events
                    .send(revoked(t, RevocationKind::Writ, reason_of(t)));
            }
            for t in &news.principals {
                let _ = self
                    .events
                    .send(revoked(t, RevocationKind::Principal, reason_of(t)));
            }
            for p in &news.disabled {
                let why = format!("principal {p} was disabled on another node");
                let _ = self.events.send(revoked(p, RevocationKind::Principal, why));
            }
        }
        if let Some(hash) = news.activated {
            let _ = self.events.send(Event::PolicyActivated {
                time_ms: checked_at,
                hash,
                log_index: log_size.saturating_sub(1),
            });
        }
        Ok(())
    }

    /// Follow a shared store for as long as the task runs: sync on every
    /// change notification, and at least four times per freshness bound.
    /// Returns at once for a store of one node.
    pub async fn follow(self: Arc<Self>) {
        if !self.store.shared() {
            return;
        }
        let mut changes = self.store.mesh().and_then(|m| m.changes());
        let period = std::time::Duration::from_millis((self.config.freshness_ms / 4).max(10));
        let mut failing = false;
        loop {
            let a = self.clone();
            match tokio::task::spawn_blocking(move || a.sync()).await {
                Ok(Ok(())) => {
                    if failing {
                        tracing::info!("shared store reachable again; this node is fresh");
                    }
                    failing = false;
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot follow the shared store; this node denies once stale");
                    }
                    failing = true;
                }
                Err(_) => return,
            }
            match &mut changes {
                Some(rx) => {
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { changes = None },
                        _ = tokio::time::sleep(period) => {}
                    }
                }
                None => tokio::time::sleep(period).await,
            }
        }
    }

    /// The state lock, read. A writer that panicked left a whole state
    /// behind (states are swapped, never edited in place), so a poisoned
    /// lock is used as it is.
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, Arc<State>> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The state lock, written; poisoned as for [`Authority::read_state`].
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, Arc<State>> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn state(&self) -> Arc<State> {
        self.read_state().clone()
    }

    pub(super) fn swap_state(&self, f: impl FnOnce(&State) -> State) {
        let mut guard = self.write_state();
        let next = f(&guard);
        *guard = Arc::new(next);
        self.local_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// [`Authority::swap_state`], unless this node put a change into effect
    /// since `generation` was read (`false` then, and nothing changes).
    pub(super) fn swap_state_unless_changed(
        &self,
        generation: u64,
        f: impl FnOnce(&State) -> State,
    ) -> bool {
        let mut guard = self.write_state();
        if self.local_changes.load(Ordering::Acquire) != generation
            || self.withholding.load(Ordering::Acquire) != 0
        {
            return false;
        }
        let next = f(&guard);
        *guard = Arc::new(next);
        true
    }

    /// Put `f`'s state into effect and queue `tx`, as one step (under the
    /// state's write lock): every decision queued after `tx` was made
    /// against the new state. The change takes effect before the commit
    /// returns; if the commit fails it stays in effect on this node until a
    /// restart, so use it only for changes that withhold (revoke, disable,
    /// retire a token): they fail closed.
    pub(super) async fn change_state(
        &self,
        f: impl FnOnce(&State) -> State,
        tx: Tx,
    ) -> writ_store::TxResult {
        let pending = Withholding::new(&self.withholding);
        let ticket = {
            let mut guard = self.write_state();
            let next = f(&guard);
            let ticket = self.store.submit(tx);
            *guard = Arc::new(next);
            self.local_changes.fetch_add(1, Ordering::AcqRel);
            ticket
        };
        let r = ticket.await;
        drop(pending);
        r
    }

    /// Queue `tx` for the log if `seen` is still the current state; `None`
    /// when the state changed since the caller read it (the caller then
    /// decides again against the new one). With [`Authority::revoke_state`]
    /// this keeps the log in the order of the states its entries were
    /// decided against: nothing decided before a revocation is queued after
    /// it, and the store's writer commits in queue order.
    pub(super) fn submit_if_current(
        &self,
        seen: &Arc<State>,
        tx: Tx,
    ) -> Option<writ_store::Ticket> {
        let guard = self.read_state();
        Arc::ptr_eq(&guard, seen).then(|| self.store.submit(tx))
    }

    /// Put `revoked` into effect and queue the transaction that logs it, as
    /// one step: every decision queued after the revocation's entry was
    /// made knowing it. The revocation takes effect before its commit
    /// returns; if the commit fails it stays in effect on this node until a
    /// restart (fail closed: the administrator is told and revokes again).
    pub(super) async fn revoke_state(&self, add: &Revoked, tx: Tx) -> writ_store::TxResult {
        self.change_state(
            |cur| {
                let mut revoked = cur.revoked.clone();
                revoked.writs.extend(add.writs.iter().cloned());
                revoked.principals.extend(add.principals.iter().cloned());
                cur.with_revoked(revoked)
            },
            tx,
        )
        .await
    }
}

/// What a state read from the store holds that the one before it did not
/// (sorted, so announcements come in a stable order).
pub(super) struct News {
    writs: Vec<String>,
    principals: Vec<String>,
    disabled: Vec<String>,
    activated: Option<String>,
}

impl News {
    fn between(old: &State, fresh: &State) -> News {
        let added = |f: fn(&Revoked) -> &std::collections::HashSet<String>| -> Vec<String> {
            let mut v: Vec<String> = f(&fresh.revoked)
                .difference(f(&old.revoked))
                .cloned()
                .collect();
            v.sort();
            v
        };
        News {
            writs: added(|r| &r.writs),
            principals: added(|r| &r.principals),
            disabled: added(|r| &r.disabled),
            activated: (fresh.bundle.hash() != old.bundle.hash())
                .then(|| fresh.bundle.hash().to_owned()),
        }
    }
}

/// A withholding change in flight (see `Authority::withholding`), counted
/// until dropped: also when the caller's future is dropped mid-commit.
pub(super) struct Withholding(Arc<AtomicU64>);

impl Withholding {
    pub(super) fn new(count: &Arc<AtomicU64>) -> Withholding {
        count.fetch_add(1, Ordering::AcqRel);
        Withholding(count.clone())
    }
}

impl Drop for Withholding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl State {
    /// `self`, read from the store, with every revocation `cur` holds too:
    /// one queued but not yet committed when the store was read is not in
    /// it, and a revocation is never taken back.
    /// (Disabled principals are not kept: enabling one is a change too.)
    pub(super) fn keeping_revocations(mut self, cur: &State) -> State {
        self.revoked.writs.extend(cur.revoked.writs.iter().cloned());
        self.revoked
            .principals
            .extend(cur.revoked.principals.iter().cloned());
        self
    }
    pub(super) fn with_revoked(&self, revoked: Revoked) -> State {
        State {
            revoked,
            ..self.clone_shallow()
        }
    }
    pub(super) fn with_principals(&self, principals: HashMap<[u8; 32], Principal>) -> State {
        State {
            principals,
            ..self.clone_shallow()
        }
    }
    pub(super) fn with_bundle(&self, bundle: Arc<Bundle>) -> State {
        State {
            bundle,
            ..self.clone_shallow()
        }
    }
    pub(super) fn clone_shallow(&self) -> State {
        State {
            bundle: self.bundle.clone(),
            signer: self.signer.clone(),
            ring: self.ring.clone(),
            key_records: self.key_records.clone(),
            policy_keys: self.policy_keys.clone(),
            principals: self.principals.clone(),
            revoked: self.revoked.clone(),
            issuers: self.issuers.clone(),
        }
    }
}

/// Does key `k` verify at `now_ms`: active, or retired from signing but
/// still verifying the writs it signed?
pub(super) fn verifies_at(k: &KeyRecord, now_ms: u64) -> bool {
    match k.status {
        KeyStatus::Active => true,
        KeyStatus::VerifyOnly => k.verify_until_ms.is_some_and(|u| now_ms < u),
        KeyStatus::Retired => false,
    }
}

/// The store's state sequence: moved on by every change another node makes
/// on a shared store; always 0 on a store of one node.
pub(super) fn state_seq_of(store: &dyn Store) -> Result<u64, writ_store::StoreError> {
    match store.mesh() {
        Some(m) => m.state_seq(),
        None => Ok(0),
    }
}

/// Read the authority's state from the store. `current`, when it is still
/// the active bundle, is kept rather than fetched and compiled again.
pub(super) fn load_state(
    store: &dyn Store,
    now_ms: u64,
    signer: Arc<WritKey>,
    current: Option<&Arc<Bundle>>,
) -> Result<State, StateError> {
    let activations = store.activations()?;
    let active = activations
        .last()
        .ok_or("no policy bundle is active; run `writ init` first")?;
    let bundle = match current {
        Some(b) if b.hash() == active.hash => b.clone(),
        _ => Arc::new(load_bundle(store, &active.hash)?),
    };
    load_rest(store, now_ms, signer, bundle)
}

/// The stored bundle `hash`, its hash checked, compiled.
pub(super) fn load_bundle(store: &dyn Store, hash: &str) -> Result<Bundle, StateError> {
    let json = store
        .bundle(hash)?
        .ok_or_else(|| format!("active bundle {hash} is missing from the store"))?;
    let signed: SignedBundle =
        serde_json::from_str(&json).map_err(|e| format!("stored bundle {hash}: {e}"))?;
    if signed.source.hash().map_err(|e| e.to_string())? != hash {
        return Err(StateError::Invalid(format!(
            "integrity: stored bundle {hash} does not hash to its name"
        )));
    }
    Ok(Bundle::compile(signed.source).map_err(|e| format!("stored bundle {hash}: {e}"))?)
}

/// Keys, principals and revocations from the store, around `bundle`.
pub(super) fn load_rest(
    store: &dyn Store,
    now_ms: u64,
    signer: Arc<WritKey>,
    bundle: Arc<Bundle>,
) -> Result<State, StateError> {
    let key_records = store.keys()?;
    let mut ring = KeyRing::new();
    let mut policy_keys = KeyRing::new();
    let mut signer_known = false;
    for k in &key_records {
        let jwk: Jwk = serde_json::from_str(&k.public_jwk)
            .map_err(|e| format!("stored key {}: {e}", k.kid))?;
        let vk = jwk.verifying_key()?;
        match (k.role, verifies_at(k, now_ms)) {
            (KeyRole::Writ, true) => {
                signer_known |= k.kid == signer.kid() && k.status == KeyStatus::Active;
                ring.insert(vk);
            }
            (KeyRole::Policy, true) => policy_keys.insert(vk),
            _ => {}
        }
    }
    if !signer_known {
        return Err(StateError::Invalid(format!(
            "signing key {} is not an active writ key of this store",
            signer.kid()
        )));
    }
    let principals = store
        .principals()?
        .into_iter()
        .collect::<Vec<PrincipalRecord>>();
    let mut revoked = Revoked {
        disabled: principals
            .iter()
            .filter(|p| p.disabled)
            .map(|p| p.uid.clone())
            .collect(),
        ..Revoked::default()
    };
    let principals = principals
        .into_iter()
        .map(|p| {
            let mut who = Principal::new(p.uid, p.admin);
            who.auditor = p.auditor;
            (p.token_hash, who)
        })
        .collect();
    for r in store.revocations()? {
        if r.kind == "principal" {
            revoked.principals.insert(r.target);
        } else {
            revoked.writs.insert(r.target);
        }
    }
    let issuers = identity::load_issuers(store)?;
    Ok(State {
        bundle,
        signer,
        ring,
        key_records,
        policy_keys,
        principals,
        revoked,
        issuers: Arc::new(issuers),
    })
}
