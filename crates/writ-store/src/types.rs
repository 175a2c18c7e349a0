use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Why storage failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be read or written (disk full, read-only, locked,
    /// writer gone). The authority fails closed on it: `authority_unavailable`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The transaction conflicts with what is stored (nonce already spent,
    /// principal exists); nothing of it was applied.
    #[error("{0}")]
    Conflict(String),
    /// Stored data failed its own checks.
    #[error("store integrity: {0}")]
    Integrity(String),
}

/// One change inside a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Append a log leaf; its index is returned in order.
    Append {
        leaf: Vec<u8>,
    },
    /// Remember an issued writ (for lineage, revocation and the console). Its
    /// `log_index` is taken from the last `Append` before it in the same
    /// transaction, when there is one.
    RecordWrit(WritRecord),
    /// Spend a nonce: a conflict if it was spent before. With
    /// `credential_hash`, the execution gets a credential (the SHA-256 of
    /// its secret; the secret itself is never stored) that authenticates
    /// its program's requests as its children while it runs.
    Spend {
        jti: String,
        time_ms: u64,
        credential_hash: Option<[u8; 32]>,
    },
    /// Set the lease of a running execution: it may run until `lease_exp`
    /// (unix seconds) unless renewed. A conflict if it is not running.
    Lease {
        jti: String,
        lease_exp: u64,
    },
    /// Record the end of an execution.
    Finish {
        jti: String,
        time_ms: u64,
        exit_status: Option<i64>,
        outcome: String,
    },
    Revoke(RevocationRecord),
    /// Register a principal: a conflict if the UID exists.
    PutPrincipal(PrincipalRecord),
    /// Change a registered principal: a new token hash, disabled or
    /// enabled. A conflict if the UID does not exist.
    UpdatePrincipal {
        uid: String,
        token_hash: Option<[u8; 32]>,
        disabled: Option<bool>,
    },
    /// Register an external identity issuer (`writ issuer add`): a
    /// conflict if one of that name exists. `spec` is its JSON
    /// (`writ_identity::IssuerSpec`).
    PutIssuer {
        name: String,
        spec: String,
        created_ms: u64,
    },
    /// Remove the issuer `name`: a conflict if there is none.
    RemoveIssuer {
        name: String,
    },
    /// Keep the content of the last `Append` before it in the same
    /// transaction (a sealed decision's salt and values) beside the log.
    PutContent {
        salt: [u8; 32],
        content: Vec<u8>,
    },
    /// Erase the content kept for entry `index` and, when `leaf_too`, the
    /// bytes of its leaf (an older decision's, which held the values); its
    /// leaf hash stays, and so does every proof through it.
    EraseContent {
        index: u64,
        leaf_too: bool,
    },
    /// Let `principal` name writ `jti` as a parent (a delegation the
    /// writ's own principal asked for when it was issued).
    Delegate {
        jti: String,
        principal: String,
    },
    /// Store a signed bundle by hash (kept forever; a no-op if present).
    PutBundle {
        hash: String,
        signed_json: String,
    },
    /// Make a stored bundle the active one.
    Activate {
        hash: String,
        time_ms: u64,
        by: String,
    },
    PutKey(KeyRecord),
    /// Store a signed checkpoint: a conflict if one of that size exists.
    PutCheckpoint(CheckpointRecord),
    /// Replace the note of the checkpoint of `size` by one with more
    /// (co)signatures; the caller has checked it is the same checkpoint.
    Cosign {
        size: u64,
        note: String,
    },
    /// Pin the definition of `resource` to `digest`; its `log_index` is
    /// that of the last `Append` before it in the same transaction. On
    /// first use (`approved` false) a pin of the same digest is kept as it
    /// is and one of another digest is a conflict; an approval replaces
    /// any pin.
    Pin {
        resource: String,
        digest: String,
        time_ms: u64,
        approved: bool,
    },
}

/// Ops applied atomically.
#[derive(Debug, Clone, Default)]
pub struct Tx {
    pub ops: Vec<Op>,
}

impl Tx {
    pub fn new(ops: Vec<Op>) -> Tx {
        Tx { ops }
    }
}

/// The result of a committed transaction: the log index of each `Append`, in order.
pub type TxResult = Result<Vec<u64>, StoreError>;

/// A transaction waiting for its group commit. Await it, or [`Ticket::wait`]
/// from a thread that is not an async runtime's.
pub struct Ticket(TicketInner);

enum TicketInner {
    Pending(tokio::sync::oneshot::Receiver<TxResult>),
    Ready(Option<TxResult>),
}

impl Ticket {
    pub fn pending(rx: tokio::sync::oneshot::Receiver<TxResult>) -> Ticket {
        Ticket(TicketInner::Pending(rx))
    }
    pub fn ready(r: TxResult) -> Ticket {
        Ticket(TicketInner::Ready(Some(r)))
    }
    /// Block until committed.
    pub fn wait(self) -> TxResult {
        match self.0 {
            TicketInner::Pending(rx) => rx.blocking_recv().unwrap_or_else(|_| Err(writer_gone())),
            TicketInner::Ready(r) => r.unwrap_or_else(|| Err(writer_gone())),
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store's writer stopped before committing".into())
}

impl Future for Ticket {
    type Output = TxResult;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<TxResult> {
        match &mut self.0 {
            TicketInner::Pending(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(writer_gone()))),
            TicketInner::Ready(r) => Poll::Ready(r.take().unwrap_or_else(|| Err(writer_gone()))),
        }
    }
}

/// A stored leaf. `leaf` is empty when its bytes were erased
/// ([`Op::EraseContent`]); `leaf_hash` always stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLeaf {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: [u8; 32],
}

/// The content kept beside a sealed decision's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    pub index: u64,
    pub salt: [u8; 32],
    pub content: Vec<u8>,
}

/// An issued writ, as remembered by the authority.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WritRecord {
    pub jti: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub audience: String,
    pub parent: Option<String>,
    pub root: String,
    pub depth: u32,
    /// JSON of the granted scope.
    pub scope: String,
    pub policy: String,
    pub iat: u64,
    pub exp: u64,
    pub log_index: u64,
    /// The execution whose credential asked for this writ (its parent),
    /// when one did: that credential may start, renew and finish it, and
    /// only then.
    #[serde(default)]
    pub via: Option<String>,
    /// The holder key's thumbprint (`cnf.jkt`) of a holder-bound writ:
    /// each start, renew and finish needs a proof by that key.
    #[serde(default)]
    pub holder: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecutionRecord {
    pub jti: String,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub exit_status: Option<i64>,
    pub outcome: Option<String>,
    /// Until when (unix seconds) the running execution is authorized: the
    /// writ's `exp` at start, moved on by each granted renewal.
    pub lease_exp: Option<u64>,
    /// SHA-256 of the execution's credential, when it was given one.
    #[serde(skip)]
    pub credential_hash: Option<[u8; 32]>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RevocationRecord {
    /// A writ's `jti` or a principal UID.
    pub target: String,
    /// `writ` or `principal`.
    pub kind: String,
    pub time_ms: u64,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub uid: String,
    /// SHA-256 of the bearer token; the token itself is never stored.
    pub token_hash: [u8; 32],
    pub admin: bool,
    /// May read what the log's entries commit to (the requests' content)
    /// and the console's views of it; distinct from `admin`.
    pub auditor: bool,
    pub created_ms: u64,
    /// A disabled principal cannot authenticate, and its writs do not verify
    /// while it stays disabled.
    pub disabled: bool,
}

/// An external identity issuer whose tokens authenticate callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRecord {
    pub name: String,
    /// Its JSON (`writ_identity::IssuerSpec`), as registered.
    pub spec: String,
    pub created_ms: u64,
}

/// The pinned definition of a resource (`Op::Pin`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinRecord {
    pub resource: String,
    /// `sha256:` of the definition's RFC 8785 bytes.
    pub digest: String,
    pub time_ms: u64,
    /// The `pin` entry that set it.
    pub log_index: u64,
    /// Approved by an administrator (not pinned on first use).
    pub approved: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActivationRecord {
    pub seq: u64,
    pub hash: String,
    pub time_ms: u64,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub kid: String,
    pub role: KeyRole,
    /// The public key as a JWK (JSON).
    pub public_jwk: String,
    pub status: KeyStatus,
    pub created_ms: u64,
    pub verify_until_ms: Option<u64>,
}

/// What a stored key signs. Stored (and serialized) as its [`KeyRole::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Signs writs (`writ`).
    Writ,
    /// Signs policy bundles (`policy`).
    Policy,
    /// Signs the log's checkpoints (`log`).
    Log,
}

impl KeyRole {
    pub const ALL: [KeyRole; 3] = [KeyRole::Writ, KeyRole::Policy, KeyRole::Log];

    /// The name stored and serialized: `writ`, `policy` or `log`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Writ => "writ",
            KeyRole::Policy => "policy",
            KeyRole::Log => "log",
        }
    }
}

/// Where a stored key stands. Stored (and serialized) as its
/// [`KeyStatus::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Signs (`active`).
    Active,
    /// Retired from signing, still verifying writs it issued until
    /// `verify_until_ms` (`verify_only`).
    VerifyOnly,
    /// Neither signs nor verifies (`retired`).
    Retired,
}

impl KeyStatus {
    pub const ALL: [KeyStatus; 3] = [KeyStatus::Active, KeyStatus::VerifyOnly, KeyStatus::Retired];

    /// The name stored and serialized: `active`, `verify_only` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::VerifyOnly => "verify_only",
            KeyStatus::Retired => "retired",
        }
    }
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyRole {
    type Err = UnknownKeyValue;
    fn from_str(s: &str) -> Result<KeyRole, UnknownKeyValue> {
        KeyRole::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownKeyValue::new("role", s))
    }
}

impl std::str::FromStr for KeyStatus {
    type Err = UnknownKeyValue;
    fn from_str(s: &str) -> Result<KeyStatus, UnknownKeyValue> {
        KeyStatus::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownKeyValue::new("status", s))
    }
}

/// A key role or status this writ does not know (a store written by a
/// newer writ, or damaged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key {field} {value:?}")]
pub struct UnknownKeyValue {
    /// `role` or `status`.
    pub field: &'static str,
    pub value: String,
}

impl UnknownKeyValue {
    fn new(field: &'static str, value: &str) -> UnknownKeyValue {
        UnknownKeyValue {
            field,
            value: value.to_owned(),
        }
    }
}

/// A signed checkpoint the log published.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointRecord {
    pub size: u64,
    /// The C2SP signed note (checkpoint text, blank line, signatures).
    pub note: String,
    pub time_ms: u64,
}

/// A registered node of the mesh, as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub id: String,
    pub url: String,
    pub started_ms: u64,
    pub seen_ms: u64,
    pub policy: String,
    /// Revocations this node holds (its high-water mark).
    pub revocations: u64,
    /// The log size this node last saw.
    pub log_size: u64,
    /// The state sequence this node has loaded.
    pub state_seq: u64,
    pub leader: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The names are stored in both stores and serialized: they must stay.
    #[test]
    fn key_roles_and_statuses_keep_their_stored_names() {
        for (role, name) in [
            (KeyRole::Writ, "writ"),
            (KeyRole::Policy, "policy"),
            (KeyRole::Log, "log"),
        ] {
            assert_eq!(role.as_str(), name);
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{name}\""));
            assert_eq!(name.parse::<KeyRole>().unwrap(), role);
        }
        for (status, name) in [
            (KeyStatus::Active, "active"),
            (KeyStatus::VerifyOnly, "verify_only"),
            (KeyStatus::Retired, "retired"),
        ] {
            assert_eq!(status.as_str(), name);
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(name.parse::<KeyStatus>().unwrap(), status);
        }
        let e = "signer".parse::<KeyRole>().unwrap_err();
        assert_eq!(e.to_string(), "unknown key role \"signer\"");
        assert!("Active".parse::<KeyStatus>().is_err());
    }
}
