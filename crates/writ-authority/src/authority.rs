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
use writ_store::{
    KeyRecord, KeyRole, KeyStatus, Op, PrincipalRecord, RevocationRecord, Store, StoreRead, Tx,
    WritRecord,
};

use crate::api::*;
use crate::status::{Oracle, Revoked, LINEAGE_DEPTH_MAX};
use writ_api::*;

mod admin;
mod decide;
mod erase;
mod executions;
mod finishing;
mod holder;
mod identity;
mod keys;
mod lineage;
mod pins;
mod principals;
mod state;
mod validate;

use decide::*;
use executions::*;
pub use finishing::PendingFinish;
use state::*;
pub use validate::validate_authorize_request;
use validate::*;

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
    Decision(DecisionEvent),
    Revocation {
        time_ms: u64,
        target: String,
        kind: RevocationKind,
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

/// Why the authority cannot open, join or catch up with its store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] writ_store::StoreError),
    #[error(transparent)]
    Encode(#[from] writ_log::EncodeError),
    /// A stored public key that is not the Ed25519 key its kid names.
    #[error(transparent)]
    Key(#[from] writ_artifact::KeyError),
    /// The store holds what this authority cannot use, or lacks what it
    /// needs (which, in words).
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for StateError {
    fn from(s: String) -> StateError {
        StateError::Invalid(s)
    }
}

impl From<&str> for StateError {
    fn from(s: &str) -> StateError {
        StateError::Invalid(s.to_owned())
    }
}

/// A decision, as announced once it is logged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionEvent {
    pub time_ms: u64,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub decision: Outcome,
    pub reason: Option<ReasonCode>,
    pub message: String,
    pub log_index: Option<u64>,
    pub jti: Option<String>,
}

impl DecisionEvent {
    /// The announcement of `entry`, taken before the entry is sealed and
    /// logged: its log index and jti follow once they are known.
    pub(crate) fn of(entry: &DecisionEntry) -> DecisionEvent {
        DecisionEvent {
            time_ms: entry.time_ms,
            principal: entry.principal.clone(),
            action: entry.action.clone(),
            resource: entry.resource.clone(),
            decision: entry.decision,
            reason: entry.reason,
            message: entry.message.clone(),
            log_index: None,
            jti: None,
        }
    }

    fn logged(self, log_index: Option<u64>, jti: Option<String>) -> Event {
        Event::Decision(DecisionEvent {
            log_index,
            jti,
            ..self
        })
    }
}

/// What `writ init` gets back.
#[derive(Debug)]
pub struct BootstrapOutput {
    pub admin_token: String,
    pub policy_hash: String,
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
    /// Finishes answered before their commit (`"durable": false`).
    finishing: Arc<finishing::Finishing>,
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

fn unavailable(msg: impl std::fmt::Display) -> Denial {
    Denial::new(ReasonCode::AuthorityUnavailable, msg.to_string())
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn writ_key_record(
    key: &WritKey,
    status: KeyStatus,
    now_ms: u64,
    until: Option<u64>,
) -> Result<KeyRecord, String> {
    Ok(KeyRecord {
        kid: key.kid().into(),
        role: KeyRole::Writ,
        public_jwk: serde_json::to_string(&key.jwk()).map_err(|e| e.to_string())?,
        status,
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
            role: KeyRole::Policy,
            public_jwk: serde_json::to_string(&policy_key.jwk())
                .map_err(|e| CallError::Unavailable(e.to_string()))?,
            status: KeyStatus::Active,
            created_ms: now,
            verify_until_ms: None,
        };
        let by = "writ init".to_string();
        let leaf = |e: Entry| {
            e.to_leaf()
                .map(|leaf| Op::Append { leaf })
                .map_err(CallError::from)
        };
        let ops = vec![
            Op::PutKey(
                writ_key_record(writ_key, KeyStatus::Active, now, None)
                    .map_err(CallError::Unavailable)?,
            ),
            leaf(Entry::KeyChange {
                time_ms: now,
                by: by.clone(),
                kid: writ_key.kid().into(),
                role: KeyRole::Writ.as_str().into(),
                status: KeyStatus::Active.as_str().into(),
            })?,
            Op::PutKey(policy_record),
            leaf(Entry::KeyChange {
                time_ms: now,
                by: by.clone(),
                kid: policy_key.kid().into(),
                role: KeyRole::Policy.as_str().into(),
                status: KeyStatus::Active.as_str().into(),
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
    ) -> Result<Authority, StateError> {
        let records = store.keys()?;
        let active: Vec<&str> = records
            .iter()
            .filter(|k| k.role == KeyRole::Writ && k.status == KeyStatus::Active)
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
        let seq = state_seq_of(store.as_ref())?;
        let state = load_state(store.as_ref(), clock.now_unix_ms(), Arc::new(signer), None)?;
        let log_size = store.log_size()?;
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
            finishing: Arc::default(),
        })
    }

    /// Join a shared store that another node initialized: record `key` (this
    /// node's own writ key, whose private half never leaves the node) as an
    /// active writ key, with its `key_change` entry. Other nodes verify its
    /// writs once they follow the change.
    pub async fn join(
        store: &dyn Store,
        clock: &dyn Clock,
        key: &WritKey,
    ) -> Result<u64, StateError> {
        if store.activations()?.is_empty() {
            return Err(
                "the store is not initialized; run `writ init --store URL` once first".into(),
            );
        }
        let now_ms = clock.now_unix_ms();
        let record = writ_key_record(key, KeyStatus::Active, now_ms, None)?;
        let leaf = Entry::KeyChange {
            time_ms: now_ms,
            by: "writ".into(),
            kid: key.kid().to_owned(),
            role: KeyRole::Writ.as_str().into(),
            status: KeyStatus::Active.as_str().into(),
        }
        .to_leaf()?;
        let indices = store
            .submit(Tx::new(vec![Op::PutKey(record), Op::Append { leaf }]))
            .await?;
        Ok(indices.first().copied().unwrap_or_default())
    }

    pub fn config(&self) -> &AuthorityConfig {
        &self.config
    }
    /// The store, to read: what the server's and console's routes get.
    /// Every change goes through the authority's own calls.
    pub fn reads(&self) -> Arc<dyn StoreRead> {
        self.store.clone()
    }
    /// The publisher of this authority's log checkpoints, signing with
    /// `key` under `origin` (docs/spec/log.md).
    pub fn log_publisher(
        &self,
        origin: &str,
        key: WritKey,
    ) -> Result<crate::LogPublisher, writ_log::note::NoteError> {
        crate::LogPublisher::new(self.store.clone(), self.clock.clone(), origin, key)
    }
    /// Give up the store's leader lock, if this node holds it (on shutdown).
    pub fn resign(&self) {
        if let Some(m) = self.store.mesh() {
            m.resign();
        }
    }
    /// Whether the store is shared with other nodes (a mesh).
    pub fn shared(&self) -> bool {
        self.store.shared()
    }
    /// Take or keep the store's leader lock (blocking); a store of one
    /// node always leads.
    pub fn lead(&self) -> Result<bool, writ_store::StoreError> {
        self.store.mesh().map_or(Ok(true), |m| m.lead())
    }
    /// Report this node to a shared store (blocking); nothing on a store
    /// of one node.
    pub fn heartbeat(&self, node: &writ_store::NodeRecord) -> Result<(), writ_store::StoreError> {
        self.store.mesh().map_or(Ok(()), |m| m.heartbeat(node))
    }
    /// The nodes of a shared store as they last reported themselves
    /// (blocking); none on a store of one node.
    pub fn mesh_nodes(&self) -> Result<Vec<writ_store::NodeRecord>, writ_store::StoreError> {
        self.store.mesh().map_or(Ok(Vec::new()), |m| m.mesh_nodes())
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
}

/// A 256-bit random bearer token.
fn new_token(entropy: &dyn Entropy) -> Result<String, writ_artifact::EntropyError> {
    let mut b = [0u8; 32];
    entropy.fill(&mut b)?;
    Ok(format!("writ_{}", URL_SAFE_NO_PAD.encode(b)))
}
