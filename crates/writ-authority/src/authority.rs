use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use writ_artifact::pop::PopUse;
use writ_artifact::{
    canonical, Claims, Clock, Confirmation, Denial, Entropy, EnvironmentBinding, HolderCheck, Jwk,
    Jwks, KeyRing, Lineage, LogPointer, ReasonCode, Scope, VerifiedWrit, VerifyOptions, WritBody,
    WritKey, WRIT_LIFETIME_SECS_DEFAULT, WRIT_LIFETIME_SECS_MAX,
};
use writ_log::{DecisionEntry, Entry, Outcome, RevocationKind};
use writ_policy::{Bundle, BundleError, DecisionInput, SignedBundle};
use writ_store::{KeyRecord, Op, PrincipalRecord, RevocationRecord, Store, Tx, WritRecord};

use crate::api::*;
use crate::status::{Oracle, Revoked, LINEAGE_DEPTH_MAX};
use writ_api::*;

mod erase;
mod holder;
mod identity;
mod keys;
mod principals;

/// Default bound on a mesh node's staleness ([`AuthorityConfig::freshness_ms`]).
pub const FRESHNESS_MS_DEFAULT: u64 = 1000;

/// Settings of one authority.
#[derive(Debug, Clone)]
pub struct AuthorityConfig {
    /// `iss` of every writ.
    pub issuer: String,
    /// The log's origin line (C2SP checkpoint origin); also in every writ.
    pub log_origin: String,
    /// Clock skew tolerated when verifying.
    pub skew_secs: u64,
    /// Deepest lineage allowed (root = 0).
    pub lineage_depth_max: u32,
    /// Bundle hashes accepted besides the active one (e.g. during a roll-out).
    pub extra_accepted_policies: BTreeSet<String>,
    /// On a shared store: how long this node may go without confirming it
    /// holds the current bundle, keys and revocations before it denies
    /// everything with `authority_unavailable` (and `/readyz` says not ready).
    pub freshness_ms: u64,
}

impl Default for AuthorityConfig {
    fn default() -> Self {
        AuthorityConfig {
            issuer: "writ".into(),
            log_origin: "writ.local/log".into(),
            skew_secs: 5,
            lineage_depth_max: 8,
            extra_accepted_policies: BTreeSet::new(),
            freshness_ms: FRESHNESS_MS_DEFAULT,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub uid: String,
    pub admin: bool,
    /// May read the log's content and the console's views of it.
    pub auditor: bool,
    /// Set when the caller authenticated with an execution's credential
    /// (the program a runner started): the jti of that execution. Such a
    /// caller is never an administrator, asks only for children of that
    /// execution, and starts, renews and finishes only those children.
    pub execution: Option<String>,
    /// How it authenticated, and what that proved (`context.identity`).
    pub identity: writ_identity::Identity,
}

impl Principal {
    /// A caller authenticated by its own token.
    pub fn new(uid: impl Into<String>, admin: bool) -> Principal {
        Principal {
            uid: uid.into(),
            admin,
            auditor: false,
            execution: None,
            identity: writ_identity::Identity::of(writ_identity::Method::Token),
        }
    }
}

/// Something others may want to know at once (console, revocation stream).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Decision {
        time_ms: u64,
        principal: String,
        action: String,
        resource: String,
        decision: String,
        reason: Option<ReasonCode>,
        message: String,
        log_index: Option<u64>,
        jti: Option<String>,
    },
    Revocation {
        time_ms: u64,
        target: String,
        kind: String,
        /// Every writ revoked by it (the target and its descendants).
        jtis: Vec<String>,
        /// Why, as the administrator said (or what on the chain is revoked).
        reason: String,
        /// The revocation's entry; absent when the event reports a revocation
        /// found already in force (`revoked_status`).
        log_index: Option<u64>,
    },
    PolicyActivated {
        time_ms: u64,
        hash: String,
        log_index: u64,
    },
}

/// What `writ init` gets back.
#[derive(Debug)]
pub struct BootstrapOutput {
    pub admin_token: String,
    pub policy_hash: String,
}

struct State {
    bundle: Arc<Bundle>,
    signer: Arc<WritKey>,
    /// Writ keys that verify: the active one and those retired from signing
    /// whose writs may still be live.
    ring: KeyRing,
    key_records: Vec<KeyRecord>,
    policy_keys: KeyRing,
    /// SHA-256 of token -> principal.
    principals: HashMap<[u8; 32], Principal>,
    revoked: Revoked,
    /// External identity issuers whose tokens authenticate callers.
    issuers: Arc<Vec<writ_identity::issuer::IssuerSpec>>,
}

/// The authority. Cheap to share behind an `Arc`.
pub struct Authority {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    config: AuthorityConfig,
    state: RwLock<Arc<State>>,
    events: tokio::sync::broadcast::Sender<Event>,
    log_size: AtomicU64,
    /// When this node last confirmed its state is the store's (unix ms).
    fresh_ms: AtomicU64,
    /// The store's state sequence this node's state was loaded at.
    state_seq: AtomicU64,
    /// Moved on (under the state's write lock) by every change this node
    /// puts into effect before its commit returns; a state read from the
    /// store meanwhile may not hold it yet and is not installed
    /// (`Authority::sync` reads again).
    local_changes: AtomicU64,
    /// Changes put into effect before their commit (revocations,
    /// disablings, retired tokens) whose commit has not returned yet: a
    /// state read from the store meanwhile may lack them, and is not
    /// installed while any is pending.
    withholding: Arc<AtomicU64>,
    /// Serializes the principal lifecycle (add, rotate, disable, enable,
    /// revoke): each reads the principals, checks (the last administrator
    /// stays), and changes them; two at once could both pass the check.
    lifecycle: tokio::sync::Mutex<()>,
    /// Checks external issuers' tokens, keeping their fetched keys.
    verifier: writ_identity::issuer::Verifier,
    /// Proofs of starts, renewals and finishes spent in their window (each
    /// is good once).
    proofs: holder::ProofLedger,
}

/// Events buffered for slow subscribers before they lag.
const EVENTS_BUFFERED_MAX: usize = 4096;
/// Bytes of a bearer token accepted.
const TOKEN_BYTES_MAX: usize = 256;
/// Bytes of environment, scope and names one writ may carry, so that every
/// writ issued stays under `WRIT_BYTES_MAX` once encoded.
pub const WRIT_CARRIED_BYTES_MAX: usize = 8 * 1024;
/// How many times in a row one call decides again because the state
/// (revocations, bundle, keys, principals) changed under it before it could
/// be queued for the log; past this it fails closed.
const STATE_CHANGES_MAX: usize = 16;

/// Why one attempt at a decision did not finish.
enum Attempt {
    /// Input that is not a well-formed question.
    Bad(BadRequest),
    /// The state changed before the entry could be queued: decide again.
    StateChanged,
}

impl From<BadRequest> for Attempt {
    fn from(e: BadRequest) -> Attempt {
        Attempt::Bad(e)
    }
}

/// Run `attempt` until it is queued against a current state (`Some`), at
/// most [`STATE_CHANGES_MAX`] times; then fail closed.
async fn until_queued<T, F, Fut>(attempt: F) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, CallError>>,
{
    for _ in 0..STATE_CHANGES_MAX {
        if let Some(r) = attempt().await? {
            return Ok(r);
        }
    }
    Err(CallError::Denied(state_kept_changing()))
}

fn state_kept_changing() -> Denial {
    unavailable(format!(
        "the authority's state changed under this call {STATE_CHANGES_MAX} times in a row"
    ))
}

fn unavailable(msg: impl std::fmt::Display) -> Denial {
    Denial::new(ReasonCode::AuthorityUnavailable, msg.to_string())
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn writ_key_record(
    key: &WritKey,
    status: &str,
    now_ms: u64,
    until: Option<u64>,
) -> Result<KeyRecord, String> {
    Ok(KeyRecord {
        kid: key.kid().into(),
        role: "writ".into(),
        public_jwk: serde_json::to_string(&key.jwk()).map_err(|e| e.to_string())?,
        status: status.into(),
        created_ms: now_ms,
        verify_until_ms: until,
    })
}

impl Authority {
    /// First start of a fresh store: record the keys, install and activate
    /// `bundle`, register `admin_uid` as an administrator. Returns the admin
    /// token, shown once.
    pub async fn bootstrap(
        store: Arc<dyn Store>,
        clock: &dyn Clock,
        entropy: &dyn Entropy,
        writ_key: &WritKey,
        policy_key: &WritKey,
        bundle: SignedBundle,
        admin_uid: &str,
    ) -> Result<BootstrapOutput, CallError> {
        if store.log_size()? != 0 {
            return Err(CallError::Conflict(
                "the store is already initialized".into(),
            ));
        }
        Bundle::compile(bundle.source.clone()).map_err(|e| CallError::BadRequest(e.to_string()))?;
        let now = clock.now_unix_ms();
        let token = new_token(entropy).map_err(|e| CallError::Unavailable(e.to_string()))?;
        let policy_record = KeyRecord {
            kid: policy_key.kid().into(),
            role: "policy".into(),
            public_jwk: serde_json::to_string(&policy_key.jwk())
                .map_err(|e| CallError::Unavailable(e.to_string()))?,
            status: "active".into(),
            created_ms: now,
            verify_until_ms: None,
        };
        let by = "writ init".to_string();
        let leaf = |e: Entry| {
            e.to_leaf()
                .map(|leaf| Op::Append { leaf })
                .map_err(CallError::Unavailable)
        };
        let ops = vec![
            Op::PutKey(
                writ_key_record(writ_key, "active", now, None).map_err(CallError::Unavailable)?,
            ),
            leaf(Entry::KeyChange {
                time_ms: now,
                by: by.clone(),
                kid: writ_key.kid().into(),
                role: "writ".into(),
                status: "active".into(),
            })?,
            Op::PutKey(policy_record),
            leaf(Entry::KeyChange {
                time_ms: now,
                by: by.clone(),
                kid: policy_key.kid().into(),
                role: "policy".into(),
                status: "active".into(),
            })?,
            Op::PutBundle {
                hash: bundle.hash.clone(),
                signed_json: serde_json::to_string(&bundle)
                    .map_err(|e| CallError::Unavailable(e.to_string()))?,
            },
            Op::Activate {
                hash: bundle.hash.clone(),
                time_ms: now,
                by: by.clone(),
            },
            leaf(Entry::PolicyActivation {
                time_ms: now,
                by: by.clone(),
                hash: bundle.hash.clone(),
                kid: bundle.kid.clone(),
            })?,
            Op::PutPrincipal(PrincipalRecord {
                uid: admin_uid.into(),
                token_hash: token_hash(&token),
                admin: true,
                auditor: false,
                created_ms: now,
                disabled: false,
            }),
            leaf(Entry::PrincipalAdded {
                time_ms: now,
                by,
                uid: admin_uid.into(),
                admin: true,
                auditor: false,
            })?,
        ];
        store.submit(Tx::new(ops)).await?;
        Ok(BootstrapOutput {
            admin_token: token,
            policy_hash: bundle.hash,
        })
    }

    /// Open an initialized store. `keys` are the writ private keys at hand;
    /// the store says which one is active (so a key saved for a rotation that
    /// never committed is simply not chosen).
    pub fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        keys: Vec<WritKey>,
        config: AuthorityConfig,
    ) -> Result<Authority, String> {
        let records = store.keys().map_err(|e| e.to_string())?;
        let active: Vec<&str> = records
            .iter()
            .filter(|k| k.role == "writ" && k.status == "active")
            .map(|k| k.kid.as_str())
            .collect();
        let signer = keys
            .into_iter()
            .find(|k| active.contains(&k.kid()))
            .ok_or_else(|| {
                format!(
                    "none of the writ keys at hand is the store's active signing key {active:?}"
                )
            })?;
        let seq = store.state_seq().map_err(|e| e.to_string())?;
        let state = load_state(store.as_ref(), clock.now_unix_ms(), Arc::new(signer), None)?;
        let log_size = store.log_size().map_err(|e| e.to_string())?;
        let now_ms = clock.now_unix_ms();
        let (events, _) = tokio::sync::broadcast::channel(EVENTS_BUFFERED_MAX);
        Ok(Authority {
            store,
            clock,
            entropy,
            config,
            state: RwLock::new(Arc::new(state)),
            events,
            log_size: AtomicU64::new(log_size),
            fresh_ms: AtomicU64::new(now_ms),
            state_seq: AtomicU64::new(seq),
            local_changes: AtomicU64::new(0),
            withholding: Arc::new(AtomicU64::new(0)),
            lifecycle: tokio::sync::Mutex::new(()),
            verifier: writ_identity::issuer::Verifier::new(),
            proofs: holder::ProofLedger::default(),
        })
    }

    /// Join a shared store that another node initialized: record `key` (this
    /// node's own writ key, whose private half never leaves the node) as an
    /// active writ key, with its `key_change` entry. Other nodes verify its
    /// writs once they follow the change.
    pub async fn join(store: &dyn Store, clock: &dyn Clock, key: &WritKey) -> Result<u64, String> {
        if store.activations().map_err(|e| e.to_string())?.is_empty() {
            return Err(
                "the store is not initialized; run `writ init --store URL` once first".into(),
            );
        }
        let now_ms = clock.now_unix_ms();
        let record = writ_key_record(key, "active", now_ms, None)?;
        let leaf = Entry::KeyChange {
            time_ms: now_ms,
            by: "writ".into(),
            kid: key.kid().to_owned(),
            role: "writ".into(),
            status: "active".into(),
        }
        .to_leaf()?;
        let indices = store
            .submit(Tx::new(vec![Op::PutKey(record), Op::Append { leaf }]))
            .await
            .map_err(|e| e.to_string())?;
        Ok(indices.first().copied().unwrap_or_default())
    }

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
    pub fn sync(&self) -> Result<(), String> {
        let checked_at = self.clock.now_unix_ms();
        let seq = self.store.state_seq().map_err(|e| e.to_string())?;
        let log_size = self.store.log_size().map_err(|e| e.to_string())?;
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
            let added = |f: fn(&Revoked) -> &std::collections::HashSet<String>| -> Vec<String> {
                let mut v: Vec<String> = f(&fresh.revoked)
                    .difference(f(&old.revoked))
                    .cloned()
                    .collect();
                v.sort();
                v
            };
            let new_writs = added(|r| &r.writs);
            let new_principals = added(|r| &r.principals);
            let new_disabled = added(|r| &r.disabled);
            let activated =
                (fresh.bundle.hash() != old.bundle.hash()).then(|| fresh.bundle.hash().to_owned());
            if !self.swap_state_unless_changed(generation, |cur| fresh.keeping_revocations(cur)) {
                // This node put a change of its own into effect while the
                // store was read, which the read may not hold: read again.
                return Ok(());
            }
            self.state_seq.store(seq, Ordering::Relaxed);
            // Current from here on; what follows only announces the change.
            self.fresh_ms.fetch_max(checked_at, Ordering::Relaxed);
            if !new_writs.is_empty() || !new_principals.is_empty() || !new_disabled.is_empty() {
                let reasons: HashMap<String, String> = self
                    .store
                    .revocations()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|r| (r.target, r.reason))
                    .collect();
                let reason_of = |t: &str| {
                    reasons
                        .get(t)
                        .cloned()
                        .unwrap_or_else(|| "revoked on another node".into())
                };
                // Each names its target only: a subscriber's stream tells it
                // when the target is its own writ, an ancestor of it, or a
                // principal on its chain.
                for (targets, kind) in [(&new_writs, "writ"), (&new_principals, "principal")] {
                    for t in targets {
                        let _ = self.events.send(Event::Revocation {
                            time_ms: checked_at,
                            target: t.clone(),
                            kind: kind.into(),
                            reason: reason_of(t),
                            jtis: if kind == "writ" {
                                vec![t.clone()]
                            } else {
                                Vec::new()
                            },
                            log_index: None,
                        });
                    }
                }
                for p in &new_disabled {
                    let _ = self.events.send(Event::Revocation {
                        time_ms: checked_at,
                        target: p.clone(),
                        kind: "principal".into(),
                        reason: format!("principal {p} was disabled on another node"),
                        jtis: Vec::new(),
                        log_index: None,
                    });
                }
            }
            if let Some(hash) = activated {
                let _ = self.events.send(Event::PolicyActivated {
                    time_ms: checked_at,
                    hash,
                    log_index: log_size.saturating_sub(1),
                });
            }
        }
        self.fresh_ms.fetch_max(checked_at, Ordering::Relaxed);
        Ok(())
    }

    /// Follow a shared store for as long as the task runs: sync on every
    /// change notification, and at least four times per freshness bound.
    /// Returns at once for a store of one node.
    pub async fn follow(self: Arc<Self>) {
        if !self.store.shared() {
            return;
        }
        let mut changes = self.store.changes();
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

    fn state(&self) -> Arc<State> {
        match self.state.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn swap_state(&self, f: impl FnOnce(&State) -> State) {
        let mut guard = match self.state.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = f(&guard);
        *guard = Arc::new(next);
        self.local_changes.fetch_add(1, Ordering::AcqRel);
    }

    /// [`Authority::swap_state`], unless this node put a change into effect
    /// since `generation` was read (`false` then, and nothing changes).
    fn swap_state_unless_changed(&self, generation: u64, f: impl FnOnce(&State) -> State) -> bool {
        let mut guard = match self.state.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
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
    async fn change_state(&self, f: impl FnOnce(&State) -> State, tx: Tx) -> writ_store::TxResult {
        let pending = Withholding::new(&self.withholding);
        let ticket = {
            let mut guard = match self.state.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
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
    fn submit_if_current(&self, seen: &Arc<State>, tx: Tx) -> Option<writ_store::Ticket> {
        let guard = match self.state.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::ptr_eq(&guard, seen).then(|| self.store.submit(tx))
    }

    /// Put `revoked` into effect and queue the transaction that logs it, as
    /// one step: every decision queued after the revocation's entry was
    /// made knowing it. The revocation takes effect before its commit
    /// returns; if the commit fails it stays in effect on this node until a
    /// restart (fail closed: the administrator is told and revokes again).
    async fn revoke_state(&self, add: &Revoked, tx: Tx) -> writ_store::TxResult {
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

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }
    /// Entries in the log, as of the last commit this authority saw.
    pub fn log_size(&self) -> u64 {
        self.log_size.load(Ordering::Relaxed)
    }
    pub fn active_policy(&self) -> String {
        self.state().bundle.hash().to_owned()
    }
    pub fn active_bundle(&self) -> Arc<Bundle> {
        self.state().bundle.clone()
    }
    pub fn signer_kid(&self) -> String {
        self.state().signer.kid().to_owned()
    }
    /// The JWKS served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        self.state().ring.to_jwks()
    }
    pub fn key_records(&self) -> Vec<KeyRecord> {
        self.state().key_records.clone()
    }
    /// How many writs and principals are revoked (the revocation high-water
    /// mark a node reports).
    pub fn revocation_count(&self) -> u64 {
        let s = self.state();
        (s.revoked.writs.len() + s.revoked.principals.len()) as u64
    }

    pub fn revoked_targets(&self) -> (Vec<String>, Vec<String>) {
        let s = self.state();
        let mut w: Vec<String> = s.revoked.writs.iter().cloned().collect();
        let mut p: Vec<String> = s.revoked.principals.iter().cloned().collect();
        w.sort();
        p.sort();
        (w, p)
    }

    fn note_indices(&self, indices: &[u64]) {
        if let Some(max) = indices.iter().max() {
            self.log_size.fetch_max(max + 1, Ordering::Relaxed);
        }
    }

    /// Decide, log, then sign. Returns `Err` only for input that is not a
    /// well-formed question (nothing is logged then).
    pub async fn authorize(
        &self,
        who: &Principal,
        mut req: AuthorizeRequest,
    ) -> Result<AuthorizeResponse, BadRequest> {
        validate_authorize_request(&req)?;
        // A program's request is a child of the execution whose credential
        // it holds, whether or not it says so.
        if let (Some(e), None) = (&who.execution, &req.parent) {
            req.parent = Some(e.clone());
        }
        for _ in 0..STATE_CHANGES_MAX {
            if let Some(d) = self.stale() {
                return Ok(deny_unlogged(d));
            }
            match self.authorize_once(who, &req).await {
                Ok(r) => return Ok(r),
                Err(Attempt::Bad(e)) => return Err(e),
                Err(Attempt::StateChanged) => continue,
            }
        }
        Ok(deny_unlogged(state_kept_changing()))
    }

    /// One decision against the state current now; `StateChanged` if the
    /// state changed before the allow could be queued for the log.
    async fn authorize_once(
        &self,
        who: &Principal,
        req: &AuthorizeRequest,
    ) -> Result<AuthorizeResponse, Attempt> {
        let state = self.state();
        let now_ms = self.clock.now_unix_ms();
        let now = now_ms / 1000;
        let requested_lifetime = req.lifetime_secs;
        let mut lifetime = requested_lifetime.unwrap_or(WRIT_LIFETIME_SECS_DEFAULT);
        let request_digest = canonical::digest_value(&req.request).map_err(BadRequest)?;
        let environment = EnvironmentBinding::bind(req.environment.clone()).map_err(BadRequest)?;
        let holder = req
            .cnf
            .as_ref()
            .map(|c| c.jwk.thumbprint())
            .transpose()
            .map_err(|e| BadRequest(format!("field `cnf.jwk`: {e}")))?;

        // The partial entry; every path below completes and logs it.
        let mut entry = DecisionEntry {
            time_ms: now_ms,
            principal: who.uid.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            context: Value::Null,
            request: request_digest.clone(),
            environment: environment.digest.clone(),
            audience: req.audience.clone(),
            scope: req.scope.clone(),
            policy: state.bundle.hash().to_owned(),
            decision: Outcome::Deny,
            delegates: req.delegates.clone(),
            reason: None,
            message: String::new(),
            jti: None,
            parent: req.parent.clone(),
            exp: None,
            content: None,
        };

        // Lineage: a child must hang from a live, unrevoked, running parent and
        // ask for no more than it holds.
        let lineage = match self.check_parent(
            &state,
            who,
            req,
            now,
            &mut lifetime,
            requested_lifetime.is_some(),
        ) {
            Ok(l) => l,
            Err(d) => return Ok(self.deny(entry, d).await),
        };
        let (depth, root_principal, parent_action) = match &lineage {
            Some((rec, _)) => (
                rec.depth + 1,
                rec.root_principal.clone(),
                rec.action.clone(),
            ),
            None => (0, who.uid.clone(), String::new()),
        };
        let mut context = req.context.clone();
        context.insert("request".into(), req.request.clone());
        context.insert("environment".into(), Value::Object(req.environment.clone()));
        context.insert(
            "scope".into(),
            json!({"read": req.scope.read, "write": req.scope.write, "net": req.scope.net}),
        );
        context.insert("audience".into(), Value::String(req.audience.clone()));
        context.insert(
            "lineage".into(),
            json!({"depth": depth, "root_principal": root_principal, "parent_action": parent_action}),
        );
        // Only when there are some: a schema written before delegation
        // existed still validates every other request.
        if !req.delegates.is_empty() {
            context.insert("delegates".into(), json!(req.delegates));
        }
        if let Some(identity) =
            state
                .bundle
                .fit_to_context(&req.action, "identity", who.identity.to_context())
        {
            context.insert("identity".into(), identity);
        }
        entry.context = Value::Object(context);

        if let Some(why) = state.revoked.principal_barred(&who.uid) {
            return Ok(self
                .deny(entry, Denial::new(ReasonCode::Revoked, why))
                .await);
        }
        let decision = match state.bundle.decide(DecisionInput {
            principal: &who.uid,
            action: &req.action,
            resource: &req.resource,
            context: &entry.context,
        }) {
            Ok(d) => d,
            Err(e) => {
                return Ok(self
                    .deny(entry, Denial::new(ReasonCode::PolicyDenied, e.0))
                    .await)
            }
        };
        if !decision.allow {
            return Ok(self
                .deny(
                    entry,
                    Denial::new(ReasonCode::PolicyDenied, decision.message()),
                )
                .await);
        }
        if let Some(d) = enforcement_shortfall(&decision, entry.context.get("environment")) {
            return Ok(self.deny(entry, d).await);
        }

        let jti = match new_jti(self.entropy.as_ref(), now_ms) {
            Ok(j) => j,
            Err(e) => return Ok(self.deny(entry, unavailable(e)).await),
        };
        let (parent, root) = match &lineage {
            Some((rec, _)) => (Some(rec.jti.clone()), rec.root.clone()),
            None => (None, jti.clone()),
        };
        let exp = now + lifetime;
        entry.decision = Outcome::Allow;
        entry.message = decision.message();
        entry.jti = Some(jti.clone());
        entry.exp = Some(exp);
        let scope_json =
            serde_json::to_string(&req.scope).map_err(|e| BadRequest(e.to_string()))?;
        let record = WritRecord {
            jti: jti.clone(),
            principal: who.uid.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            audience: req.audience.clone(),
            parent: parent.clone(),
            root: root.clone(),
            depth,
            scope: scope_json,
            policy: state.bundle.hash().to_owned(),
            iat: now,
            exp,
            log_index: 0, // filled in by the store from this transaction's append
            via: who.execution.clone(),
            holder: holder.clone(),
        };
        let event_base = (
            entry.principal.clone(),
            entry.action.clone(),
            entry.resource.clone(),
            entry.message.clone(),
        );
        // The leaf commits to what was asked; the values go beside it.
        let content = match self.seal(&mut entry) {
            Ok(c) => c,
            Err(d) => return Ok(deny_unlogged(d)),
        };
        // A leaf that cannot be encoded (too large) is refused before anything
        // is logged; the request never was a question the log can hold.
        let leaf = Entry::Decision(Box::new(entry))
            .to_leaf()
            .map_err(BadRequest)?;
        let mut ops = vec![
            Op::Append { leaf },
            Op::PutContent {
                salt: content.salt,
                content: content.bytes,
            },
            Op::RecordWrit(record),
        ];
        ops.extend(req.delegates.iter().map(|d| Op::Delegate {
            jti: jti.clone(),
            principal: d.clone(),
        }));
        let mut credential = None;
        if req.start {
            // Spent on issue: the start entry follows the decision in the
            // same transaction, so both are durable or neither is.
            let start = Entry::ExecutionStart {
                time_ms: now_ms,
                jti: jti.clone(),
                principal: who.uid.clone(),
            }
            .to_leaf()
            .map_err(BadRequest)?;
            let credential_hash = if req.credential {
                match principals::new_credential(self.entropy.as_ref(), &jti) {
                    Ok((c, h)) => {
                        credential = Some(c);
                        Some(h)
                    }
                    Err(e) => return Ok(deny_unlogged(unavailable(e))),
                }
            } else {
                None
            };
            ops.extend([
                Op::Spend {
                    jti: jti.clone(),
                    time_ms: now_ms,
                    credential_hash,
                },
                Op::Lease {
                    jti: jti.clone(),
                    lease_exp: exp,
                },
                Op::Append { leaf: start },
            ]);
        }
        // INVARIANT: the writ is signed only after this commit returned Ok.
        let Some(ticket) = self.submit_if_current(&state, Tx::new(ops)) else {
            return Err(Attempt::StateChanged);
        };
        let log_index = match ticket.await {
            Ok(indices) => {
                self.note_indices(&indices);
                match indices.first() {
                    Some(i) => *i,
                    None => return Ok(deny_unlogged(unavailable("store returned no log index"))),
                }
            }
            Err(e) => return Ok(deny_unlogged(unavailable(e))),
        };
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: who.uid.clone(),
            aud: req.audience.clone(),
            cnf: holder.map(|jkt| Confirmation { jkt }),
            iat: now,
            nbf: now,
            exp,
            jti: jti.clone(),
            writ: WritBody {
                action: req.action.clone(),
                resource: req.resource.clone(),
                request: request_digest,
                environment,
                scope: req.scope.clone(),
                policy: state.bundle.hash().to_owned(),
                lineage: Lineage {
                    parent,
                    root,
                    depth,
                },
                log: LogPointer {
                    origin: self.config.log_origin.clone(),
                    index: log_index,
                },
            },
        };
        let writ = match writ_artifact::sign(&state.signer, &claims) {
            Ok(w) => w,
            // The decision is logged as allow but no writ leaves: nothing can run.
            Err(e) => return Ok(deny_unlogged(unavailable(e))),
        };
        let _ = self.events.send(Event::Decision {
            time_ms: now_ms,
            principal: event_base.0,
            action: event_base.1,
            resource: event_base.2,
            decision: "allow".into(),
            reason: None,
            message: event_base.3,
            log_index: Some(log_index),
            jti: Some(jti.clone()),
        });
        Ok(AuthorizeResponse::Allow {
            writ,
            log_index,
            jti,
            exp,
            credential,
        })
    }

    fn check_parent(
        &self,
        state: &State,
        who: &Principal,
        req: &AuthorizeRequest,
        now: u64,
        lifetime: &mut u64,
        lifetime_explicit: bool,
    ) -> Result<Option<(ParentInfo, ())>, Denial> {
        let broken = |m: String| Denial::new(ReasonCode::LineageBroken, m);
        // A program's credential asks only for children of its execution.
        if let Some(e) = &who.execution {
            if req.parent.as_deref() != Some(e.as_str()) {
                return Err(broken(format!(
                    "a request authenticated by the credential of execution {e} must be its child, not {}",
                    req.parent
                        .as_deref()
                        .map_or("a root".to_owned(), |p| format!("a child of {p}"))
                )));
            }
        }
        let Some(parent) = &req.parent else {
            return Ok(None);
        };
        let rec = self
            .store
            .writ(parent)
            .map_err(unavailable)?
            .ok_or_else(|| broken(format!("parent writ {parent} is unknown to this authority")))?;
        // Only the parent's own principal, or one it delegated the writ to
        // when it was issued, may hang children on it: jtis are public.
        if rec.principal != who.uid
            && !self
                .store
                .delegated(parent, &who.uid)
                .map_err(unavailable)?
        {
            return Err(broken(format!(
                "parent writ {parent} belongs to {}, not {}; a writ takes children of another principal only if it was delegated to them when issued (`delegates`)",
                rec.principal, who.uid
            )));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle.revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())? {
            return Err(broken(format!("parent is revoked: {why}")));
        }
        // A running parent lives as long as its lease (its writ's `exp`, moved
        // on by each renewal).
        let lease_exp = match self.store.execution(parent).map_err(unavailable)? {
            Some(e) if e.finished_ms.is_none() => e.lease_exp.unwrap_or(rec.exp),
            Some(_) => return Err(broken(format!("parent execution {parent} has finished"))),
            None => return Err(broken(format!("parent writ {parent} was never started"))),
        };
        if now >= lease_exp {
            return Err(broken(format!(
                "the lease of parent {parent} expired at {lease_exp}"
            )));
        }
        let depth = rec.depth + 1;
        if depth > self.config.lineage_depth_max.min(LINEAGE_DEPTH_MAX) {
            return Err(Denial::new(
                ReasonCode::ScopeEscalation,
                format!(
                    "depth {depth} exceeds the maximum lineage depth {}",
                    self.config.lineage_depth_max
                ),
            ));
        }
        let parent_scope: Scope = serde_json::from_str(&rec.scope)
            .map_err(|e| unavailable(format!("stored scope: {e}")))?;
        if !req.scope.is_within(&parent_scope) {
            return Err(Denial::new(
                ReasonCode::ScopeEscalation,
                format!(
                    "child scope {} is not inside parent scope {}",
                    serde_json::to_string(&req.scope).unwrap_or_default(),
                    rec.scope
                ),
            ));
        }
        let remaining = lease_exp - now;
        if *lifetime > remaining {
            if lifetime_explicit {
                return Err(Denial::new(
                    ReasonCode::ScopeEscalation,
                    format!("child asks for {lifetime} s but its parent has {remaining} s left"),
                ));
            }
            *lifetime = remaining;
        }
        let root_principal = match &rec.parent {
            None => rec.principal.clone(),
            Some(_) => self
                .store
                .writ(&rec.root)
                .map_err(unavailable)?
                .map(|r| r.principal)
                .ok_or_else(|| {
                    broken(format!(
                        "root writ {} of parent {parent} is unknown",
                        rec.root
                    ))
                })?,
        };
        Ok(Some((
            ParentInfo {
                jti: rec.jti,
                root: rec.root,
                depth: rec.depth,
                action: rec.action,
                root_principal,
            },
            (),
        )))
    }

    /// Seal a decision entry with a fresh salt (its leaf will carry the
    /// commitment); the content to keep beside it.
    fn seal(&self, entry: &mut DecisionEntry) -> Result<writ_log::content::Content, Denial> {
        let mut salt = [0u8; writ_log::content::SALT_BYTES];
        self.entropy.fill(&mut salt).map_err(unavailable)?;
        entry.seal(salt).map_err(unavailable)
    }

    /// Log a denial and answer it. If even the denial cannot be logged, the
    /// answer is `authority_unavailable`.
    async fn deny(&self, mut entry: DecisionEntry, d: Denial) -> AuthorizeResponse {
        entry.decision = Outcome::Deny;
        entry.reason = Some(d.reason);
        entry.message = d.message.clone();
        if entry.context.is_null() {
            entry.context = Value::Object(Map::new());
        }
        let ev = (
            entry.time_ms,
            entry.principal.clone(),
            entry.action.clone(),
            entry.resource.clone(),
        );
        let content = match self.seal(&mut entry) {
            Ok(c) => c,
            Err(d) => return deny_unlogged(d),
        };
        let leaf = match Entry::Decision(Box::new(entry)).to_leaf() {
            Ok(l) => l,
            Err(e) => return deny_unlogged(unavailable(e)),
        };
        let ops = vec![
            Op::Append { leaf },
            Op::PutContent {
                salt: content.salt,
                content: content.bytes,
            },
        ];
        match self.store.submit(Tx::new(ops)).await {
            Ok(indices) => {
                self.note_indices(&indices);
                let log_index = indices.first().copied();
                let _ = self.events.send(Event::Decision {
                    time_ms: ev.0,
                    principal: ev.1,
                    action: ev.2,
                    resource: ev.3,
                    decision: "deny".into(),
                    reason: Some(d.reason),
                    message: d.message.clone(),
                    log_index,
                    jti: None,
                });
                AuthorizeResponse::Deny {
                    reason: d.reason,
                    message: d.message,
                    log_index,
                }
            }
            Err(e) => deny_unlogged(unavailable(format!(
                "{e} (while logging a {} denial)",
                d.reason
            ))),
        }
    }

    /// Online verification (`POST /v1/verify`): signature, window, audience,
    /// accepted policy, request, environment, revocation and spent nonce.
    pub fn verify(&self, req: &VerifyRequest) -> Result<VerifiedWrit, Denial> {
        if let Some(d) = self.stale() {
            return Err(d);
        }
        let state = self.state();
        let mut opts = self.verify_options(
            &state,
            req.request.as_ref(),
            req.environment.as_ref(),
            req.audience.clone(),
            true,
        )?;
        // A verification changes nothing: its proof is checked, not spent
        // (docs/spec/holder.md), so that no unauthenticated caller can
        // fill the ledger that starts, renewals and finishes spend in.
        opts.holder = holder_check(req.pop.as_deref(), PopUse::Verify);
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        writ_artifact::verify(&req.writ, &state.ring, &opts, &oracle)
    }

    fn verify_options(
        &self,
        state: &State,
        request: Option<&Value>,
        environment: Option<&Map<String, Value>>,
        audience: Option<String>,
        check_spent: bool,
    ) -> Result<VerifyOptions, Denial> {
        let mut accepted = self.config.extra_accepted_policies.clone();
        accepted.insert(state.bundle.hash().to_owned());
        let malformed = |e: String| Denial::new(ReasonCode::MalformedArtifact, e);
        Ok(VerifyOptions {
            now_unix_secs: self.clock.now_unix_secs(),
            skew_secs: self.config.skew_secs,
            audience,
            request_digest: request
                .map(canonical::digest_json)
                .transpose()
                .map_err(malformed)?,
            environment_digest: environment
                .map(canonical::digest_json)
                .transpose()
                .map_err(malformed)?,
            accepted_policies: Some(accepted),
            check_spent,
            holder: HolderCheck::None,
        })
    }

    /// Spend the nonce: the first start of a writ wins, every later one is
    /// `replayed`. The caller must be the writ's principal or an admin.
    pub async fn start(
        &self,
        who: &Principal,
        jti: &str,
        req: &StartRequest,
    ) -> Result<ExecutionResponse, CallError> {
        let spent = self.holder_first(who, jti, req.pop.as_deref(), PopUse::Start)?;
        until_queued(|| self.start_once(who, jti, req, spent.as_deref())).await
    }

    /// One attempt; `None` if the state changed before the start was queued.
    async fn start_once(
        &self,
        who: &Principal,
        jti: &str,
        req: &StartRequest,
        spent: Option<&str>,
    ) -> Result<Option<ExecutionResponse>, CallError> {
        if let Some(d) = self.stale() {
            return Err(CallError::Unavailable(d.message));
        }
        let state = self.state();
        let rec = self.store.writ(jti)?.ok_or_else(|| {
            CallError::Denied(Denial::new(
                ReasonCode::MissingArtifact,
                format!("no writ {jti} was issued"),
            ))
        })?;
        may_act_on(who, &rec)?;
        if req.credential && rec.principal != who.uid {
            // A credential speaks as the writ's principal: only that
            // principal may take one (an administrator would otherwise act
            // as anyone).
            return Err(CallError::Forbidden(format!(
                "only {} may take a credential for the run of writ {jti}",
                rec.principal
            )));
        }
        if let Some(why) = state.revoked.principal_barred(&who.uid) {
            return Err(CallError::Denied(Denial::new(ReasonCode::Revoked, why)));
        }
        if let Some(token) = &req.writ {
            // Full re-check of what is about to run, when the gateway sends
            // it (the holder's proof among it).
            let mut opts = self
                .verify_options(
                    &state,
                    req.request.as_ref(),
                    req.environment.as_ref(),
                    req.audience.clone(),
                    false,
                )
                .map_err(CallError::Denied)?;
            opts.holder = holder_check(req.pop.as_deref(), PopUse::Start);
            let oracle = holder::WithProofs {
                oracle: Oracle {
                    store: self.store.as_ref(),
                    revoked: &state.revoked,
                },
                spent,
            };
            let v = writ_artifact::verify(token, &state.ring, &opts, &oracle)
                .map_err(CallError::Denied)?;
            if v.jti() != jti {
                return Err(CallError::Denied(Denial::new(
                    ReasonCode::RequestMismatch,
                    "the writ is for another jti",
                )));
            }
        }
        let now_ms = self.clock.now_unix_ms();
        if now_ms / 1000 >= rec.exp + self.config.skew_secs {
            return Err(CallError::Denied(Denial::new(
                ReasonCode::Expired,
                format!("writ {jti} expired at {}", rec.exp),
            )));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle
            .revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())
            .map_err(CallError::Denied)?
        {
            return Err(CallError::Denied(Denial::new(ReasonCode::Revoked, why)));
        }
        let leaf = Entry::ExecutionStart {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal.clone(),
        }
        .to_leaf()
        .map_err(CallError::Unavailable)?;
        let (credential, credential_hash) = if req.credential {
            let (c, h) = principals::new_credential(self.entropy.as_ref(), jti)
                .map_err(|e| CallError::Unavailable(e.to_string()))?;
            (Some(c), Some(h))
        } else {
            (None, None)
        };
        let tx = Tx::new(vec![
            Op::Spend {
                jti: jti.into(),
                time_ms: now_ms,
                credential_hash,
            },
            Op::Lease {
                jti: jti.into(),
                lease_exp: rec.exp,
            },
            Op::Append { leaf },
        ]);
        let Some(ticket) = self.submit_if_current(&state, tx) else {
            return Ok(None);
        };
        match ticket.await {
            Ok(indices) => {
                self.note_indices(&indices);
                Ok(Some(ExecutionResponse {
                    jti: jti.into(),
                    log_index: indices.first().copied().unwrap_or_default(),
                    revoked: None,
                    credential,
                }))
            }
            Err(writ_store::StoreError::Conflict(m)) => {
                Err(CallError::Denied(Denial::new(ReasonCode::Replayed, m)))
            }
            Err(e) => Err(CallError::Denied(unavailable(e))),
        }
    }

    /// Extend the lease of a running execution (`POST /v1/executions/{jti}/renew`).
    ///
    /// A renewal is a new decision: the lease must not have lapsed, neither the
    /// writ nor an ancestor nor a principal on the chain may be revoked, the
    /// parent must still be running (the new lease ends no later than the
    /// parent's), and the active bundle must still allow the original request
    /// (re-evaluated from the decision entry in the log). Granted or denied, the
    /// renewal is logged; a denial is `Err(Denied)` and the runner must stop
    /// the execution.
    pub async fn renew(
        &self,
        who: &Principal,
        jti: &str,
        req: &RenewRequest,
    ) -> Result<RenewResponse, CallError> {
        self.holder_first(who, jti, req.pop.as_deref(), PopUse::Renew)?;
        until_queued(|| self.renew_once(who, jti, req)).await
    }

    /// One attempt; `None` if the state changed before the renewal was queued.
    async fn renew_once(
        &self,
        who: &Principal,
        jti: &str,
        req: &RenewRequest,
    ) -> Result<Option<RenewResponse>, CallError> {
        let state = self.state();
        let rec = self
            .store
            .writ(jti)?
            .ok_or_else(|| CallError::NotFound(format!("no writ {jti} was issued")))?;
        may_act_on(who, &rec)?;
        if let Some(n) = req.lifetime_secs {
            if n == 0 || n > WRIT_LIFETIME_SECS_MAX {
                return Err(CallError::BadRequest(format!(
                    "field `lifetime_secs` is {n}; it must be 1 to {WRIT_LIFETIME_SECS_MAX}"
                )));
            }
        }
        let lease_exp = match self.store.execution(jti)? {
            None => {
                return Err(CallError::Conflict(format!(
                    "execution {jti} was never started"
                )))
            }
            Some(e) if e.finished_ms.is_some() => {
                return Err(CallError::Conflict(format!("execution {jti} has finished")))
            }
            Some(e) => e.lease_exp.unwrap_or(rec.exp),
        };
        let now_ms = self.clock.now_unix_ms();
        let lifetime = req
            .lifetime_secs
            .unwrap_or_else(|| rec.exp.saturating_sub(rec.iat).max(1));
        let decided = match self.stale() {
            Some(d) => Err(d),
            None => self.renewal_decision(&state, &rec, lease_exp, now_ms / 1000, lifetime),
        };
        let policy = state.bundle.hash().to_owned();
        let (decision, reason, message, new_lease) = match &decided {
            Ok((lease, msg)) => (Outcome::Allow, None, msg.clone(), Some(*lease)),
            // Cedar's error quotes the values of the (sealed) question: the
            // log says only that it could not be evaluated; the caller is
            // told why, and an auditor can replay the question.
            Err(d) if d.message.starts_with(CANNOT_EVALUATE) => (
                Outcome::Deny,
                Some(d.reason),
                CANNOT_EVALUATE.to_owned(),
                None,
            ),
            Err(d) => (Outcome::Deny, Some(d.reason), d.message.clone(), None),
        };
        let leaf = Entry::ExecutionRenew {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal.clone(),
            policy: policy.clone(),
            decision,
            reason,
            message,
            lease_exp: new_lease,
        }
        .to_leaf()
        .map_err(CallError::Unavailable)?;
        let mut ops = vec![Op::Append { leaf }];
        if let Some(lease_exp) = new_lease {
            ops.push(Op::Lease {
                jti: jti.into(),
                lease_exp,
            });
        }
        let Some(ticket) = self.submit_if_current(&state, Tx::new(ops)) else {
            return Ok(None);
        };
        let indices = match ticket.await {
            Ok(i) => i,
            Err(writ_store::StoreError::Conflict(m)) => return Err(CallError::Conflict(m)),
            Err(e) => return Err(CallError::Denied(unavailable(e))),
        };
        self.note_indices(&indices);
        let log_index = indices.first().copied().unwrap_or_default();
        match decided {
            Ok((lease_exp, _)) => Ok(Some(RenewResponse {
                jti: jti.into(),
                lease_exp,
                policy,
                log_index,
            })),
            Err(d) => Err(CallError::Denied(Denial::new(
                d.reason,
                format!("{} (renewal denied, log index {log_index})", d.message),
            ))),
        }
    }

    /// The new lease end and the policy's message, or why not.
    fn renewal_decision(
        &self,
        state: &State,
        rec: &WritRecord,
        lease_exp: u64,
        now: u64,
        lifetime: u64,
    ) -> Result<(u64, String), Denial> {
        let jti = &rec.jti;
        if now >= lease_exp + self.config.skew_secs {
            return Err(Denial::new(
                ReasonCode::Expired,
                format!("the lease of {jti} ended at {lease_exp}; renew before it does"),
            ));
        }
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        if let Some(why) = oracle.revoked_chain(jti, &rec.principal, rec.parent.as_deref())? {
            return Err(Denial::new(ReasonCode::Revoked, why));
        }
        let mut until = now + lifetime;
        if let Some(parent) = &rec.parent {
            let broken = |m: String| Denial::new(ReasonCode::LineageBroken, m);
            let prec = self
                .store
                .writ(parent)
                .map_err(unavailable)?
                .ok_or_else(|| broken(format!("parent writ {parent} is unknown")))?;
            let parent_lease = match self.store.execution(parent).map_err(unavailable)? {
                Some(e) if e.finished_ms.is_none() => e.lease_exp.unwrap_or(prec.exp),
                Some(_) => return Err(broken(format!("parent execution {parent} has finished"))),
                None => return Err(broken(format!("parent writ {parent} was never started"))),
            };
            if now >= parent_lease {
                return Err(broken(format!(
                    "the lease of parent {parent} ended at {parent_lease}"
                )));
            }
            until = until.min(parent_lease);
        }
        // The original question, exactly as the policy saw it, put to the
        // bundle active now.
        let leaf = self
            .store
            .entries(rec.log_index, rec.log_index + 1)
            .map_err(unavailable)?
            .pop()
            .ok_or_else(|| unavailable(format!("log entry {} is missing", rec.log_index)))?;
        let mut entry = match Entry::from_leaf(&leaf.leaf) {
            Ok(Entry::Decision(d)) if d.jti.as_deref() == Some(jti.as_str()) => d,
            _ => {
                return Err(Denial::new(
                    ReasonCode::IntegrityFailure,
                    format!(
                        "log entry {} is not the decision that issued {jti} (or its content was erased)",
                        rec.log_index
                    ),
                ))
            }
        };
        if !entry.is_open() {
            // A sealed decision: the question is kept beside the log.
            let stored = self
                .store
                .contents(rec.log_index, rec.log_index + 1)
                .map_err(unavailable)?
                .pop()
                .ok_or_else(|| {
                    Denial::new(
                        ReasonCode::IntegrityFailure,
                        format!(
                            "the content of decision entry {} was erased: the decision cannot be made again",
                            rec.log_index
                        ),
                    )
                })?;
            entry
                .open(&writ_log::content::Content {
                    salt: stored.salt,
                    bytes: stored.content,
                })
                .map_err(|e| {
                    Denial::new(
                        ReasonCode::IntegrityFailure,
                        format!("decision entry {}: {e}", rec.log_index),
                    )
                })?;
        }
        let decision = state
            .bundle
            .decide(DecisionInput {
                principal: &entry.principal,
                action: &entry.action,
                resource: &entry.resource,
                context: &entry.context,
            })
            .map_err(|e| {
                Denial::new(
                    ReasonCode::PolicyDenied,
                    format!("{CANNOT_EVALUATE}: {}", e.0),
                )
            })?;
        if !decision.allow {
            return Err(Denial::new(ReasonCode::PolicyDenied, decision.message()));
        }
        if let Some(d) = enforcement_shortfall(&decision, entry.context.get("environment")) {
            return Err(d);
        }
        Ok((until, decision.message()))
    }

    /// Record how an execution ended.
    pub async fn finish(
        &self,
        who: &Principal,
        jti: &str,
        req: &FinishRequest,
    ) -> Result<ExecutionResponse, CallError> {
        self.holder_first(who, jti, req.pop.as_deref(), PopUse::Finish)?;
        until_queued(|| self.finish_once(who, jti, req)).await
    }

    /// One attempt; `None` if the state changed before the finish was queued.
    async fn finish_once(
        &self,
        who: &Principal,
        jti: &str,
        req: &FinishRequest,
    ) -> Result<Option<ExecutionResponse>, CallError> {
        let rec = self
            .store
            .writ(jti)?
            .ok_or_else(|| CallError::NotFound(format!("no writ {jti} was issued")))?;
        may_act_on(who, &rec)?;
        for (field, d) in [
            ("stdout_digest", &req.stdout_digest),
            ("stderr_digest", &req.stderr_digest),
        ] {
            if let Some(d) = d.as_deref().filter(|d| !canonical::is_digest(d)) {
                return Err(CallError::BadRequest(format!(
                    "field `{field}`: {d:?} is not a digest (`sha256:` and 64 lowercase hex digits)"
                )));
            }
        }
        if let Some(e) = &req.enforcement {
            if !matches!(e.as_str(), "full" | "partial" | "none") {
                return Err(CallError::BadRequest(format!(
                    "enforcement {e:?} is not one of full, partial, none"
                )));
            }
        }
        // A run can end on its own just after its writ was revoked, before
        // its enforcement point acted on the revocation (a script whose
        // nested runner heard it first): the log says what the authority
        // knew when the run ended.
        let state = self.state();
        let revoked = {
            Oracle {
                store: self.store.as_ref(),
                revoked: &state.revoked,
            }
            .revoked_chain(jti, &rec.principal, rec.parent.as_deref())
            // The finish is recorded regardless: it is what happened.
            .unwrap_or_else(|d| {
                tracing::warn!(jti, error = %d.message, "revocation status unknown at finish");
                None
            })
        };
        let terminated = match (&req.terminated, &revoked) {
            // The enforcement point saw only a signal: an ancestor's runner
            // ending its revoked subtree signals every descendant at once,
            // and this run's program may die of it before its own runner
            // hears of the revocation. The log names both.
            (Some(t), Some(why)) if !t.starts_with("revoked") => {
                Some(format!("revoked: {why} (the run ended: {t})"))
            }
            (Some(t), _) => Some(t.clone()),
            (None, Some(why)) => Some(format!(
                "revoked: {why} (the program ended before it was stopped)"
            )),
            (None, None) => None,
        };
        let now_ms = self.clock.now_unix_ms();
        let outcome = terminated.clone().unwrap_or_else(|| "exited".into());
        let leaf = Entry::ExecutionFinish {
            time_ms: now_ms,
            jti: jti.into(),
            principal: rec.principal,
            exit_status: req.exit_status,
            duration_ms: req.duration_ms,
            stdout_digest: req.stdout_digest.clone(),
            stderr_digest: req.stderr_digest.clone(),
            terminated,
            enforcement: req.enforcement.clone(),
        }
        .to_leaf()
        .map_err(CallError::Unavailable)?;
        let ops = vec![
            Op::Finish {
                jti: jti.into(),
                time_ms: now_ms,
                exit_status: req.exit_status,
                outcome,
            },
            Op::Append { leaf },
        ];
        let Some(ticket) = self.submit_if_current(&state, Tx::new(ops)) else {
            return Ok(None);
        };
        let indices = ticket.await?;
        self.note_indices(&indices);
        Ok(Some(ExecutionResponse {
            jti: jti.into(),
            log_index: indices.first().copied().unwrap_or_default(),
            revoked,
            credential: None,
        }))
    }

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
        let kind_str = match kind {
            RevocationKind::Writ => "writ",
            RevocationKind::Principal => "principal",
        };
        let leaf = Entry::Revocation {
            time_ms: now_ms,
            by: who.uid.clone(),
            target: target.clone(),
            kind,
            reason: reason.clone(),
        }
        .to_leaf()
        .map_err(CallError::Unavailable)?;
        let ops = vec![
            Op::Revoke(RevocationRecord {
                target: target.clone(),
                kind: kind_str.into(),
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
            kind: kind_str.into(),
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

    /// The writ `jti`, its ancestors and the principals of all of them:
    /// what a revocation must name to reach it. `None` if no such writ was
    /// issued; an error if the chain cannot be read.
    pub fn chain_of(&self, jti: &str) -> Result<Option<Chain>, CallError> {
        let Some(rec) = self.store.writ(jti)? else {
            return Ok(None);
        };
        let mut jtis = vec![rec.jti];
        let mut principals = vec![rec.principal];
        let mut next = rec.parent;
        while let Some(p) = next {
            if jtis.len() > LINEAGE_DEPTH_MAX as usize {
                break;
            }
            let Some(r) = self.store.writ(&p)? else {
                break;
            };
            jtis.push(r.jti);
            if !principals.contains(&r.principal) {
                principals.push(r.principal);
            }
            next = r.parent;
        }
        Ok(Some((jtis, principals)))
    }

    /// A revocation event for `jti` if it, an ancestor, or a principal on its
    /// chain is revoked now; `None` if not (or if that cannot be told: the
    /// subscriber renews its lease anyway, and renewal fails closed).
    pub fn revoked_status(&self, jti: &str) -> Option<Event> {
        let state = self.state();
        let rec = self.store.writ(jti).ok()??;
        let oracle = Oracle {
            store: self.store.as_ref(),
            revoked: &state.revoked,
        };
        let why = oracle
            .revoked_chain(&rec.jti, &rec.principal, rec.parent.as_deref())
            .ok()??;
        Some(Event::Revocation {
            time_ms: self.clock.now_unix_ms(),
            target: rec.jti.clone(),
            kind: "writ".into(),
            jtis: vec![rec.jti],
            reason: why,
            log_index: None,
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
        .map_err(CallError::Unavailable)?;
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
    fn require_admin_now(&self, who: &Principal) -> Result<(), CallError> {
        require_admin(who)?;
        match self.state().revoked.principal_barred(&who.uid) {
            Some(why) => Err(CallError::Denied(Denial::new(
                ReasonCode::Unauthenticated,
                why,
            ))),
            None => Ok(()),
        }
    }

    /// Ancestry and descendants of a writ.
    pub fn lineage(&self, jti: &str) -> Result<LineageResponse, CallError> {
        let rec = self
            .store
            .writ(jti)?
            .ok_or_else(|| CallError::NotFound(format!("no writ {jti} was issued")))?;
        let state = self.state();
        let mut ancestors = Vec::new();
        // Revoked through an ancestor (the writ or its principal), as the
        // authority decides (`Oracle::revoked_chain`).
        let mut inherited = false;
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            if ancestors.len() > LINEAGE_DEPTH_MAX as usize {
                break;
            }
            ancestors.push(p.clone());
            let parent = self.store.writ(&p)?;
            inherited |= state.revoked.writs.contains(&p)
                || parent
                    .as_ref()
                    .is_some_and(|r| state.revoked.principal_barred(&r.principal).is_some());
            next = parent.and_then(|r| r.parent);
        }
        ancestors.reverse();
        let mut budget = Budget {
            left: LINEAGE_NODES_MAX,
            cut: false,
        };
        let tree = self.lineage_node(&state, rec, 0, inherited, &mut budget)?;
        Ok(LineageResponse {
            ancestors,
            tree,
            truncated: budget.cut,
        })
    }

    /// One node and, while `budget` lasts, its subtree (depth first).
    fn lineage_node(
        &self,
        state: &State,
        rec: WritRecord,
        level: u32,
        inherited: bool,
        budget: &mut Budget,
    ) -> Result<LineageNode, CallError> {
        budget.left = budget.left.saturating_sub(1);
        let now = self.clock.now_unix_secs();
        let exec = self.store.execution(&rec.jti)?;
        let revoked = inherited
            || state.revoked.writs.contains(&rec.jti)
            || state.revoked.principal_barred(&rec.principal).is_some();
        let status = if revoked {
            "revoked".to_string()
        } else {
            match exec {
                Some(e) if e.finished_ms.is_none() => "running".into(),
                Some(e) => e.outcome.unwrap_or_else(|| "finished".into()),
                None if now >= rec.exp => "expired".into(),
                None => "issued".into(),
            }
        };
        let mut children = Vec::new();
        if level < LINEAGE_DEPTH_MAX {
            for c in self.store.children(&rec.jti)? {
                if budget.left == 0 {
                    budget.cut = true;
                    break;
                }
                children.push(self.lineage_node(state, c, level + 1, revoked, budget)?);
            }
        }
        Ok(LineageNode {
            jti: rec.jti,
            principal: rec.principal,
            action: rec.action,
            resource: rec.resource,
            depth: rec.depth,
            status,
            log_index: rec.log_index,
            children,
        })
    }
}

/// A renewal the bundle could not evaluate (its error follows in what the
/// caller is told, not in the log).
const CANNOT_EVALUATE: &str = "the active bundle cannot evaluate the original request";

/// Lineage nodes still to give, and whether some were left out.
struct Budget {
    left: usize,
    cut: bool,
}

/// A writ's chain: its jti and its ancestors' (nearest first), and the
/// principals of all of them.
pub type Chain = (Vec<String>, Vec<String>);

/// A withholding change in flight (see `Authority::withholding`), counted
/// until dropped: also when the caller's future is dropped mid-commit.
struct Withholding(Arc<AtomicU64>);

impl Withholding {
    fn new(count: &Arc<AtomicU64>) -> Withholding {
        count.fetch_add(1, Ordering::AcqRel);
        Withholding(count.clone())
    }
}

impl Drop for Withholding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct ParentInfo {
    jti: String,
    root: String,
    depth: u32,
    action: String,
    root_principal: String,
}

impl State {
    /// `self`, read from the store, with every revocation `cur` holds too:
    /// one queued but not yet committed when the store was read is not in
    /// it, and a revocation is never taken back.
    /// (Disabled principals are not kept: enabling one is a change too.)
    fn keeping_revocations(mut self, cur: &State) -> State {
        self.revoked.writs.extend(cur.revoked.writs.iter().cloned());
        self.revoked
            .principals
            .extend(cur.revoked.principals.iter().cloned());
        self
    }
    fn with_revoked(&self, revoked: Revoked) -> State {
        State {
            revoked,
            ..self.clone_shallow()
        }
    }
    fn with_principals(&self, principals: HashMap<[u8; 32], Principal>) -> State {
        State {
            principals,
            ..self.clone_shallow()
        }
    }
    fn with_bundle(&self, bundle: Arc<Bundle>) -> State {
        State {
            bundle,
            ..self.clone_shallow()
        }
    }
    fn clone_shallow(&self) -> State {
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

/// Read the authority's state from the store. `current`, when it is still
/// the active bundle, is kept rather than fetched and compiled again.
fn load_state(
    store: &dyn Store,
    now_ms: u64,
    signer: Arc<WritKey>,
    current: Option<&Arc<Bundle>>,
) -> Result<State, String> {
    let activations = store.activations().map_err(|e| e.to_string())?;
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
fn load_bundle(store: &dyn Store, hash: &str) -> Result<Bundle, String> {
    let json = store
        .bundle(hash)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("active bundle {hash} is missing from the store"))?;
    let signed: SignedBundle =
        serde_json::from_str(&json).map_err(|e| format!("stored bundle {hash}: {e}"))?;
    if signed.source.hash().map_err(|e| e.to_string())? != hash {
        return Err(format!(
            "integrity: stored bundle {hash} does not hash to its name"
        ));
    }
    Bundle::compile(signed.source).map_err(|e| format!("stored bundle {hash}: {e}"))
}

/// Keys, principals and revocations from the store, around `bundle`.
fn load_rest(
    store: &dyn Store,
    now_ms: u64,
    signer: Arc<WritKey>,
    bundle: Arc<Bundle>,
) -> Result<State, String> {
    let key_records = store.keys().map_err(|e| e.to_string())?;
    let mut ring = KeyRing::new();
    let mut policy_keys = KeyRing::new();
    let mut signer_known = false;
    for k in &key_records {
        let jwk: Jwk = serde_json::from_str(&k.public_jwk)
            .map_err(|e| format!("stored key {}: {e}", k.kid))?;
        let vk = jwk.verifying_key()?;
        let live = match k.status.as_str() {
            "active" => true,
            "verify_only" => k.verify_until_ms.is_some_and(|u| now_ms < u),
            _ => false,
        };
        match (k.role.as_str(), live) {
            ("writ", true) => {
                signer_known |= k.kid == signer.kid() && k.status == "active";
                ring.insert(vk);
            }
            ("policy", true) => policy_keys.insert(vk),
            _ => {}
        }
    }
    if !signer_known {
        return Err(format!(
            "signing key {} is not an active writ key of this store",
            signer.kid()
        ));
    }
    let principals = store
        .principals()
        .map_err(|e| e.to_string())?
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
    for r in store.revocations().map_err(|e| e.to_string())? {
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

/// `integrity_failure` if a permitting policy demands (`@enforcement`) more
/// kernel enforcement than the enforcement point reports in its environment
/// facts (`enforcement`: `full`, `partial` or `none`; absent counts as none).
fn enforcement_shortfall(
    decision: &writ_policy::Decision,
    environment: Option<&Value>,
) -> Option<Denial> {
    let (demanded, policy) = decision.enforcement.as_ref()?;
    let reported = environment
        .and_then(|e| e.get("enforcement"))
        .and_then(Value::as_str)
        .unwrap_or("none");
    let rank = |l: &str| writ_policy::enforcement_rank(l).unwrap_or(0);
    // The runner's word is quoted only when it is a level: the message is
    // logged, and a caller's string is not the log's to publish.
    let reported = if writ_policy::enforcement_rank(reported).is_some() {
        reported
    } else {
        "an unknown level"
    };
    (rank(reported) < rank(demanded)).then(|| {
        Denial::new(
            ReasonCode::IntegrityFailure,
            format!(
                "policy {policy} demands {demanded} enforcement but the enforcement point reports {reported}"
            ),
        )
    })
}

fn deny_unlogged(d: Denial) -> AuthorizeResponse {
    AuthorizeResponse::Deny {
        reason: d.reason,
        message: d.message,
        log_index: None,
    }
}

/// What a route's caller brought to prove it holds a holder-bound writ.
fn holder_check(pop: Option<&str>, purpose: PopUse) -> HolderCheck {
    match pop {
        Some(p) => HolderCheck::Proof {
            proof: p.to_owned(),
            purpose,
        },
        None => HolderCheck::None,
    }
}

/// May `who` start, renew or finish the execution of `rec`? Its own
/// principal or an administrator may; a program's credential only on the
/// children of its own execution.
fn may_act_on(who: &Principal, rec: &WritRecord) -> Result<(), CallError> {
    if let Some(e) = &who.execution {
        // Its own children, asked for with this credential: not the
        // siblings its runner asked for (an MCP server holding its session's
        // credential must not finish the proxy's tool calls).
        if rec.parent.as_deref() != Some(e.as_str()) || rec.via.as_deref() != Some(e.as_str()) {
            return Err(CallError::Forbidden(format!(
                "the credential of execution {e} acts only on the children it asked for; writ {} is not one",
                rec.jti
            )));
        }
    }
    if rec.principal != who.uid && !who.admin {
        return Err(CallError::Forbidden(format!(
            "writ {} belongs to {}, not {}",
            rec.jti, rec.principal, who.uid
        )));
    }
    Ok(())
}

fn require_admin(who: &Principal) -> Result<(), CallError> {
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

/// A writ's nonce: 128 bits, as 32 lowercase hex digits. The first 48 bits
/// are the issue time in milliseconds and the other 80 are random, the
/// layout of a UUIDv7. A nonce has to be unique and unguessable, which 80
/// random bits per millisecond are by far; the time in front makes every
/// index keyed by jti (`writs`, `executions`) grow at its right edge
/// instead of dirtying one random page per writ in each group commit,
/// which cost a fifth of the governed rate (BENCHMARKS.md, issue 2).
fn new_jti(entropy: &dyn Entropy, now_ms: u64) -> Result<String, writ_artifact::EntropyError> {
    let mut b = [0u8; 16];
    entropy.fill(&mut b[6..])?;
    b[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    Ok(hex::encode(b))
}

/// A 256-bit random bearer token.
fn new_token(entropy: &dyn Entropy) -> Result<String, writ_artifact::EntropyError> {
    let mut b = [0u8; 32];
    entropy.fill(&mut b)?;
    Ok(format!("writ_{}", URL_SAFE_NO_PAD.encode(b)))
}

fn cedar_uid_check(s: &str) -> Result<(), String> {
    if s.len() > NAME_BYTES_MAX {
        return Err(format!(
            "an entity UID is at most {NAME_BYTES_MAX} bytes, not {}",
            s.len()
        ));
    }
    // The parser decisions use: what passes here can be decided for.
    writ_policy::check_entity_uid(s).map_err(|e| e.0)
}

/// The checks [`Authority::authorize`] makes before it decides anything:
/// field sizes, reserved context names, scope paths, what the writ would
/// carry, lifetime, parent jti. `Err` is answered 400 and nothing is logged.
pub fn validate_authorize_request(req: &AuthorizeRequest) -> Result<(), BadRequest> {
    for (name, v) in [
        ("action", &req.action),
        ("resource", &req.resource),
        ("audience", &req.audience),
    ] {
        if v.is_empty() || v.len() > NAME_BYTES_MAX {
            return Err(BadRequest(format!(
                "field `{name}` must be 1 to {NAME_BYTES_MAX} bytes"
            )));
        }
    }
    for key in RESERVED_CONTEXT {
        if req.context.contains_key(key) {
            return Err(BadRequest(format!(
                "field `context.{key}` is reserved; writ fills it from the request"
            )));
        }
    }
    req.scope
        .validate()
        .map_err(|e| BadRequest(format!("field `scope`: {e}")))?;
    // What the writ will carry must fit in a verifiable writ.
    let carried = serde_json::to_vec(&req.environment).map_or(usize::MAX, |v| v.len())
        + serde_json::to_vec(&req.scope).map_or(usize::MAX, |v| v.len())
        + req.action.len()
        + req.resource.len()
        + req.audience.len();
    if carried > WRIT_CARRIED_BYTES_MAX {
        return Err(BadRequest(format!(
            "fields `environment`, `scope`, `action`, `resource` and `audience` take {carried} bytes; \
             a writ carries at most {WRIT_CARRIED_BYTES_MAX}"
        )));
    }
    match req.lifetime_secs {
        Some(0) => {
            return Err(BadRequest(
                "field `lifetime_secs` must be at least 1".into(),
            ))
        }
        Some(n) if n > WRIT_LIFETIME_SECS_MAX => {
            return Err(BadRequest(format!(
                "field `lifetime_secs` is {n}; at most {WRIT_LIFETIME_SECS_MAX}"
            )))
        }
        _ => {}
    }
    if let Some(p) = &req.parent {
        if p.len() != 32 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadRequest(
                "field `parent` must be a writ jti (32 hex digits)".into(),
            ));
        }
    }
    if req.credential && !req.start {
        return Err(BadRequest(
            "field `credential` needs `start`: a credential belongs to a running execution".into(),
        ));
    }
    principals::check_delegates(&req.delegates)
}
