//! Log entries and their RFC 6962 encoding.
//!
//! Every decision, execution start and finish, revocation, policy activation,
//! key change and principal registration is one [`Entry`]. Its *leaf bytes* are
//! the RFC 8785 canonical JSON of the entry (with `"v":1`), and its leaf hash is
//! `SHA-256(0x00 || leaf)` (RFC 6962 section 2.1), so the Merkle tree can be
//! built over stored leaves without re-encoding anything.
//!
//! **API boundary:** pure functions; no IO.
#![forbid(unsafe_code)]

pub mod merkle;
pub mod note;
pub mod witness;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use writ_artifact::{canonical, ReasonCode, Scope};

/// Version tag inside every leaf.
pub const LEAF_VERSION: u64 = 1;
/// A leaf larger than this is refused (requests are size-limited upstream).
pub const LEAF_BYTES_MAX: usize = 1024 * 1024;

/// A 32-byte SHA-256 hash.
pub type Hash = [u8; 32];

/// RFC 6962 section 2.1: `MTH({d(0)}) = SHA-256(0x00 || d(0))`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// RFC 6962 section 2.1: `SHA-256(0x01 || MTH(left) || MTH(right))`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entry {
    Decision(Box<DecisionEntry>),
    ExecutionStart {
        time_ms: u64,
        jti: String,
        principal: String,
    },
    ExecutionFinish {
        time_ms: u64,
        jti: String,
        principal: String,
        exit_status: Option<i64>,
        duration_ms: u64,
        #[serde(default)]
        stdout_digest: Option<String>,
        #[serde(default)]
        stderr_digest: Option<String>,
        /// Why the runner ended it early (revoked, renewal denied, ...).
        #[serde(default)]
        terminated: Option<String>,
        /// How much of the scope the kernel enforced (`full`, `partial`,
        /// `none`), as the runner applied it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enforcement: Option<String>,
    },
    /// A running execution asked to extend its lease: policy re-evaluated
    /// against the active bundle, revocation and lineage re-checked.
    ExecutionRenew {
        time_ms: u64,
        jti: String,
        principal: String,
        /// The bundle that decided.
        policy: String,
        decision: Outcome,
        #[serde(default)]
        reason: Option<ReasonCode>,
        message: String,
        /// The new end of the lease on allow.
        #[serde(default)]
        lease_exp: Option<u64>,
    },
    Revocation {
        time_ms: u64,
        by: String,
        /// `jti` of a writ, or a principal UID.
        target: String,
        kind: RevocationKind,
        reason: String,
    },
    PolicyActivation {
        time_ms: u64,
        by: String,
        hash: String,
        /// The policy key that signed the bundle.
        kid: String,
    },
    KeyChange {
        time_ms: u64,
        by: String,
        kid: String,
        role: String,
        status: String,
    },
    PrincipalAdded {
        time_ms: u64,
        by: String,
        uid: String,
        admin: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    Writ,
    Principal,
}

/// Everything needed to re-evaluate a decision: the exact Cedar input, the
/// bundle hash, and what was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionEntry {
    pub time_ms: u64,
    pub principal: String,
    pub action: String,
    pub resource: String,
    /// The full Cedar context the policy saw.
    pub context: Value,
    pub request: String,
    pub environment: String,
    pub audience: String,
    pub scope: Scope,
    /// `sha256:` of the bundle that decided (empty when no bundle could be used).
    pub policy: String,
    pub decision: Outcome,
    #[serde(default)]
    pub reason: Option<ReasonCode>,
    pub message: String,
    /// The writ's nonce on allow.
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allow,
    Deny,
}

/// Why leaf bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub enum LeafError {
    #[error("leaf is {0} bytes; at most {LEAF_BYTES_MAX}")]
    TooLarge(usize),
    #[error("leaf is not a writ log entry: {0}")]
    Parse(String),
    #[error("leaf version {0} is not {LEAF_VERSION}")]
    Version(String),
    #[error("leaf is not in RFC 8785 canonical form")]
    NotCanonical,
}

impl Entry {
    /// The exact bytes whose leaf hash goes into the tree.
    pub fn to_leaf(&self) -> Result<Vec<u8>, String> {
        let mut v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let Value::Object(m) = &mut v {
            m.insert("v".into(), Value::from(LEAF_VERSION));
        }
        canonical::sort_keys_deep(&mut v);
        let leaf = canonical::value_to_canonical_bytes(&v)?;
        if leaf.len() > LEAF_BYTES_MAX {
            return Err(format!(
                "entry is {} bytes; a log entry holds at most {LEAF_BYTES_MAX}",
                leaf.len()
            ));
        }
        Ok(leaf)
    }

    /// Parse leaf bytes strictly: canonical form, known version, known shape.
    pub fn from_leaf(leaf: &[u8]) -> Result<Entry, LeafError> {
        if leaf.len() > LEAF_BYTES_MAX {
            return Err(LeafError::TooLarge(leaf.len()));
        }
        let mut v: Value =
            serde_json::from_slice(leaf).map_err(|e| LeafError::Parse(e.to_string()))?;
        if canonical::to_canonical_bytes(&v).map_err(LeafError::Parse)? != leaf {
            return Err(LeafError::NotCanonical);
        }
        let version = v.as_object_mut().and_then(|m| m.remove("v"));
        if version != Some(Value::from(LEAF_VERSION)) {
            return Err(LeafError::Version(format!("{version:?}")));
        }
        serde_json::from_value(v).map_err(|e| LeafError::Parse(e.to_string()))
    }

    /// The entry's `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Decision(_) => "decision",
            Entry::ExecutionStart { .. } => "execution_start",
            Entry::ExecutionFinish { .. } => "execution_finish",
            Entry::ExecutionRenew { .. } => "execution_renew",
            Entry::Revocation { .. } => "revocation",
            Entry::PolicyActivation { .. } => "policy_activation",
            Entry::KeyChange { .. } => "key_change",
            Entry::PrincipalAdded { .. } => "principal_added",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision() -> Entry {
        Entry::Decision(Box::new(DecisionEntry {
            time_ms: 1,
            principal: "User::\"a\"".into(),
            action: "Action::\"exec\"".into(),
            resource: "Command::\"/bin/true\"".into(),
            context: json!({"x": [1, 2]}),
            request: canonical::digest_bytes(b"r"),
            environment: canonical::digest_bytes(b"e"),
            audience: "exec@h".into(),
            scope: Scope::default(),
            policy: canonical::digest_bytes(b"p"),
            decision: Outcome::Deny,
            reason: Some(ReasonCode::PolicyDenied),
            message: "no policy permits this request".into(),
            jti: None,
            parent: None,
            exp: None,
        }))
    }

    #[test]
    fn leaf_round_trip_is_canonical_and_versioned() {
        let e = decision();
        let leaf = e.to_leaf().unwrap();
        let s = std::str::from_utf8(&leaf).unwrap();
        assert!(
            s.contains("\"type\":\"decision\"") && s.contains("\"v\":1"),
            "{s}"
        );
        assert_eq!(Entry::from_leaf(&leaf).unwrap(), e);
        let mut spaced = s.replacen(',', ", ", 1).into_bytes();
        assert!(matches!(
            Entry::from_leaf(&spaced),
            Err(LeafError::NotCanonical)
        ));
        spaced = s.replace("\"v\":1", "\"v\":2").into_bytes();
        assert!(matches!(
            Entry::from_leaf(&spaced),
            Err(LeafError::Version(_))
        ));
    }

    #[test]
    fn rfc6962_domain_separation() {
        // The empty-leaf hash is SHA-256(0x00), as in RFC 6962 test vectors.
        assert_eq!(
            leaf_hash(b"")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let l = leaf_hash(b"a");
        assert_ne!(node_hash(&l, &l), leaf_hash(&[l, l].concat()));
    }
}
