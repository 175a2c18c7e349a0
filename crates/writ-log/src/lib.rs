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

pub mod content;
pub mod merkle;
pub mod note;
pub mod witness;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use writ_artifact::{canonical, ReasonCode, Scope};

/// Version tag inside every leaf but a sealed decision's.
pub const LEAF_VERSION: u64 = 1;
/// Version tag of a sealed decision's leaf: its request, context and
/// environment are a salted commitment ([`content`]), not values.
pub const LEAF_VERSION_SEALED: u64 = 2;
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
        /// Left out when false (leaves written before auditors existed).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        auditor: bool,
    },
    /// The content of entry `index` (a sealed decision's values, or the
    /// bytes of an older leaf that held them) was erased from the store;
    /// its leaf hash, and every proof through it, stay.
    ContentErased {
        time_ms: u64,
        by: String,
        index: u64,
        reason: String,
    },
    /// A registered principal changed: a new token (the old one stopped
    /// authenticating with this entry), or disabled, or enabled again.
    PrincipalChange {
        time_ms: u64,
        by: String,
        uid: String,
        change: PrincipalChangeKind,
    },
    /// An external identity issuer was registered (`added`) or removed:
    /// from this entry on, its tokens authenticate callers (or no longer
    /// do). `jwks` is the URL its keys are fetched from, or the `sha256:`
    /// of the key set registered with it.
    IssuerChange {
        time_ms: u64,
        by: String,
        name: String,
        change: IssuerChangeKind,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        issuer: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        audience: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        jwks: String,
        /// How a token maps to a principal: `TYPE::"<claim>"`.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        maps_to: String,
    },
    /// A resource's definition was pinned: what an enforcement point said
    /// the resource is (an MCP tool as listed, all but `_meta`), by its
    /// `sha256:` digest. `first_use`: the first allowed probe
    /// that carried a definition pinned it (`by` is its principal);
    /// `approved`: an administrator approved a new definition. A decision
    /// carrying another definition is denied (`definition_changed`)
    /// (docs/spec/log.md).
    Pin {
        time_ms: u64,
        by: String,
        resource: String,
        digest: String,
        change: PinChangeKind,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinChangeKind {
    FirstUse,
    Approved,
}

impl PinChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PinChangeKind::FirstUse => "first_use",
            PinChangeKind::Approved => "approved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerChangeKind {
    Added,
    Removed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalChangeKind {
    TokenRotated,
    Disabled,
    Enabled,
}

impl PrincipalChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalChangeKind::TokenRotated => "token_rotated",
            PrincipalChangeKind::Disabled => "disabled",
            PrincipalChangeKind::Enabled => "enabled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    Writ,
    Principal,
}

impl RevocationKind {
    /// Its name in entries, records and events.
    pub fn as_str(&self) -> &'static str {
        match self {
            RevocationKind::Writ => "writ",
            RevocationKind::Principal => "principal",
        }
    }
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
    /// The full Cedar context the policy saw. In a sealed leaf (version 2)
    /// it is left out (`Null` until [`DecisionEntry::open`]): the leaf
    /// carries [`DecisionEntry::content`] instead.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub context: Value,
    /// `sha256:` of the request the writ binds (left out when sealed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// `sha256:` of the environment the writ binds (left out when sealed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub environment: String,
    /// A sealed decision: the salted commitment to its context, request and
    /// environment ([`content`]); the values live beside the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub audience: String,
    pub scope: Scope,
    /// `sha256:` of the bundle that decided (empty when no bundle could be used).
    pub policy: String,
    pub decision: Outcome,
    /// Principals the writ's principal let name this writ as a parent
    /// (left out when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<String>,
    #[serde(default)]
    pub reason: Option<ReasonCode>,
    /// What the policy (or the check that denied) said. In a sealed leaf it
    /// is left out: part of the content (Cedar's errors quote values).
    #[serde(default)]
    pub message: String,
    /// The writ's nonce on allow.
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
    /// A probe: asked only whether the request would be allowed (an MCP
    /// proxy filtering `tools/list`); its writ is never started (left out
    /// when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe: bool,
}

impl DecisionEntry {
    /// The leaf of a decision written field by field in RFC 8785 key order,
    /// with the context ordered as it is written ([`canonical::write_value`]):
    /// the hot path of every decision, a fifth of the cost of going through
    /// a JSON value. `None` when the context holds a number only the generic
    /// path can write. A test checks both paths give the same bytes.
    fn write_leaf(&self) -> Option<Vec<u8>> {
        fn key(out: &mut Vec<u8>, k: &str) {
            if out.len() > 1 {
                out.push(b',');
            }
            canonical::write_str(k, out);
            out.push(b':');
        }
        fn text(out: &mut Vec<u8>, k: &str, v: &str) {
            key(out, k);
            canonical::write_str(v, out);
        }
        fn opt_text(out: &mut Vec<u8>, k: &str, v: Option<&str>) {
            key(out, k);
            match v {
                Some(v) => canonical::write_str(v, out),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn json(out: &mut Vec<u8>, k: &str, v: &impl Serialize) -> Option<()> {
            key(out, k);
            serde_json::to_writer(&mut *out, v).ok()
        }
        let mut out = Vec::with_capacity(1024);
        out.push(b'{');
        text(&mut out, "action", &self.action);
        text(&mut out, "audience", &self.audience);
        if let Some(c) = &self.content {
            text(&mut out, "content", c);
        } else {
            key(&mut out, "context");
            if !canonical::write_value(&self.context, &mut out) {
                return None;
            }
        }
        json(&mut out, "decision", &self.decision)?;
        if !self.delegates.is_empty() {
            json(&mut out, "delegates", &self.delegates)?;
        }
        if self.content.is_none() {
            text(&mut out, "environment", &self.environment);
        }
        json(&mut out, "exp", &self.exp)?;
        opt_text(&mut out, "jti", self.jti.as_deref());
        if self.content.is_none() {
            text(&mut out, "message", &self.message);
        }
        opt_text(&mut out, "parent", self.parent.as_deref());
        text(&mut out, "policy", &self.policy);
        text(&mut out, "principal", &self.principal);
        if self.probe {
            json(&mut out, "probe", &true)?;
        }
        json(&mut out, "reason", &self.reason)?;
        if self.content.is_none() {
            text(&mut out, "request", &self.request);
        }
        text(&mut out, "resource", &self.resource);
        // `Scope`'s fields are declared in key order (net, read, write).
        json(&mut out, "scope", &self.scope)?;
        json(&mut out, "time_ms", &self.time_ms)?;
        text(&mut out, "type", "decision");
        json(&mut out, "v", &self.leaf_version())?;
        out.push(b'}');
        Some(out)
    }
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
    #[error(
        "leaf version {0} is not {LEAF_VERSION} (or {LEAF_VERSION_SEALED} for a sealed decision)"
    )]
    Version(String),
    #[error("leaf is not in RFC 8785 canonical form")]
    NotCanonical,
}

/// Why an entry cannot be written as leaf bytes.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("entry is {0} bytes; a log entry holds at most {LEAF_BYTES_MAX}")]
    TooLarge(usize),
    /// Not representable as canonical JSON (what, in words).
    #[error("{0}")]
    Json(String),
}

impl Entry {
    /// The exact bytes whose leaf hash goes into the tree.
    pub fn to_leaf(&self) -> Result<Vec<u8>, EncodeError> {
        let fast = match self {
            Entry::Decision(d) => d.write_leaf(),
            _ => None,
        };
        let leaf = match fast {
            Some(leaf) => leaf,
            None => self.generic_leaf()?,
        };
        if leaf.len() > LEAF_BYTES_MAX {
            return Err(EncodeError::TooLarge(leaf.len()));
        }
        Ok(leaf)
    }

    /// The leaf through a JSON value: any entry, any context.
    fn generic_leaf(&self) -> Result<Vec<u8>, EncodeError> {
        let json = |e: serde_json::Error| EncodeError::Json(e.to_string());
        let (mut v, version) = match self {
            // A sealed decision's leaf holds its commitment, not its values.
            Entry::Decision(d) if d.content.is_some() => {
                let mut bare = d.as_ref().clone();
                bare.context = Value::Null;
                bare.request.clear();
                bare.environment.clear();
                let mut v = serde_json::to_value(Entry::Decision(Box::new(bare))).map_err(json)?;
                if let Value::Object(m) = &mut v {
                    m.remove("message");
                }
                (v, LEAF_VERSION_SEALED)
            }
            _ => (serde_json::to_value(self).map_err(json)?, LEAF_VERSION),
        };
        if let Value::Object(m) = &mut v {
            m.insert("v".into(), Value::from(version));
        }
        canonical::sort_keys_deep(&mut v);
        canonical::value_to_canonical_bytes(&v).map_err(|e| EncodeError::Json(e.to_string()))
    }

    /// Parse leaf bytes strictly: canonical form, known version, known shape.
    pub fn from_leaf(leaf: &[u8]) -> Result<Entry, LeafError> {
        if leaf.len() > LEAF_BYTES_MAX {
            return Err(LeafError::TooLarge(leaf.len()));
        }
        let mut v: Value =
            serde_json::from_slice(leaf).map_err(|e| LeafError::Parse(e.to_string()))?;
        if canonical::to_canonical_bytes(&v).map_err(|e| LeafError::Parse(e.to_string()))? != leaf {
            return Err(LeafError::NotCanonical);
        }
        let version = v.as_object_mut().and_then(|m| m.remove("v"));
        let sealed = match version.as_ref().and_then(Value::as_u64) {
            Some(LEAF_VERSION) => false,
            Some(LEAF_VERSION_SEALED) => true,
            _ => return Err(LeafError::Version(format!("{version:?}"))),
        };
        let e: Entry = serde_json::from_value(v).map_err(|e| LeafError::Parse(e.to_string()))?;
        // One shape per version: a sealed leaf is a decision with a
        // commitment and no values; any other leaf has no commitment.
        let shape_ok = match &e {
            Entry::Decision(d) if sealed => {
                d.content.is_some()
                    && d.context.is_null()
                    && d.request.is_empty()
                    && d.environment.is_empty()
                    && d.message.is_empty()
            }
            Entry::Decision(d) => d.content.is_none() && !d.request.is_empty(),
            _ => !sealed,
        };
        if !shape_ok {
            return Err(LeafError::Parse(format!(
                "a version {} leaf of this shape is not a writ log entry",
                if sealed {
                    LEAF_VERSION_SEALED
                } else {
                    LEAF_VERSION
                }
            )));
        }
        Ok(e)
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
            Entry::PrincipalChange { .. } => "principal_change",
            Entry::ContentErased { .. } => "content_erased",
            Entry::IssuerChange { .. } => "issuer_change",
            Entry::Pin { .. } => "pin",
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
            delegates: Vec::new(),
            reason: Some(ReasonCode::PolicyDenied),
            message: "no policy permits this request".into(),
            jti: None,
            parent: None,
            exp: None,
            probe: false,
            content: None,
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
        spaced = s.replace("\"v\":1", "\"v\":3").into_bytes();
        assert!(matches!(
            Entry::from_leaf(&spaced),
            Err(LeafError::Version(_))
        ));
    }

    #[test]
    fn a_decision_leaf_written_field_by_field_is_the_generic_one() {
        let Entry::Decision(base) = decision() else {
            unreachable!()
        };
        let contexts = [
            json!({}),
            json!({"z": 1, "a": {"y": [true, null], "\u{e9}": "\u{1}\"", "B": -7}}),
            json!({"big": u64::MAX, "request": {"argv": ["/bin/echo", "x"]}}),
            json!({"f": 1.5}),
        ];
        for (i, context) in contexts.into_iter().enumerate() {
            let mut d = base.clone();
            d.context = context;
            if i % 2 == 1 {
                d.decision = Outcome::Allow;
                d.reason = None;
                d.jti = Some("0123456789abcdef0123456789abcdef".into());
                d.parent = Some("fedcba9876543210fedcba9876543210".into());
                d.exp = Some(1_800_000_060);
                d.probe = i == 1;
                d.delegates = vec!["Agent::\"b\"".into(), "Agent::\"\u{e9}\"".into()];
                d.scope = Scope {
                    net: true,
                    read: vec!["/tmp".into(), "/\u{e9}".into()],
                    write: vec!["/var/x".into()],
                };
            }
            let e = Entry::Decision(d.clone());
            let generic = e.generic_leaf().unwrap();
            match d.write_leaf() {
                Some(fast) => assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(generic.clone()).unwrap()
                ),
                // A float, or an integer past 2^53 (RFC 8785 prints a double).
                None => assert!(i >= 2, "context {i} took the generic path"),
            }
            let leaf = e.to_leaf().unwrap();
            assert_eq!(leaf, generic);
            assert_eq!(Entry::from_leaf(&leaf).unwrap().kind(), "decision");
        }
    }

    #[test]
    fn a_pin_entry_round_trips_and_leaves_out_an_empty_reason() {
        let pin = Entry::Pin {
            time_ms: 7,
            by: "Agent::\"a\"".into(),
            resource: "Tool::\"fs/write\"".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            change: PinChangeKind::FirstUse,
            reason: String::new(),
        };
        let leaf = pin.to_leaf().unwrap();
        let text = String::from_utf8(leaf.clone()).unwrap();
        assert!(
            text.contains("\"change\":\"first_use\"") && !text.contains("reason"),
            "{text}"
        );
        assert_eq!(Entry::from_leaf(&leaf).unwrap(), pin);
        assert_eq!(pin.kind(), "pin");
    }

    #[test]
    fn a_sealed_decision_leaf_carries_a_commitment_and_opens_with_its_content() {
        let Entry::Decision(mut d) = decision() else {
            unreachable!()
        };
        d.context = json!({"request": {"argv": ["/bin/echo", "--api-key=sk_live_1"]}});
        // Cedar's errors quote the values they could not use.
        d.message = "invalid IP address: db.internal?token=sk_live_2".into();
        let content = d.seal([7; content::SALT_BYTES]).unwrap();
        let e = Entry::Decision(d.clone());
        let leaf = e.to_leaf().unwrap();
        let text = String::from_utf8(leaf.clone()).unwrap();
        // The fast path and the generic one agree, and neither lets a value out.
        assert_eq!(leaf, e.generic_leaf().unwrap());
        for secret in ["sk_live_1", "sk_live_2", "argv", &d.request, &d.environment] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("\"v\":2") && text.contains("\"content\":\"sha256:"),
            "{text}"
        );
        let Entry::Decision(mut parsed) = Entry::from_leaf(&leaf).unwrap() else {
            unreachable!()
        };
        assert!(parsed.context.is_null() && !parsed.is_open());
        parsed.open(&content).unwrap();
        assert_eq!(parsed.context, d.context);
        assert_eq!(parsed.message, d.message);
        assert_eq!(
            (&parsed.request, &parsed.environment),
            (&d.request, &d.environment)
        );
        // Another salt, or content changed by one byte, does not open it.
        let mut other = content.clone();
        other.salt[0] ^= 1;
        assert!(parsed.clone().open(&other).is_err());
        let mut other = content.clone();
        other.bytes[5] ^= 1;
        assert!(parsed.clone().open(&other).is_err());
        // One shape per version: values in a version 2 leaf, or a
        // commitment in a version 1 leaf, are not entries.
        let forged = text.replacen("\"content\":", "\"context\":{},\"content\":", 1);
        assert!(Entry::from_leaf(forged.as_bytes()).is_err());
        let v1 = text.replace("\"v\":2", "\"v\":1");
        assert!(Entry::from_leaf(v1.as_bytes()).is_err());
        let bad = Entry::ExecutionStart {
            time_ms: 1,
            jti: "j".into(),
            principal: "p".into(),
        }
        .to_leaf()
        .unwrap();
        let bad = String::from_utf8(bad)
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert!(Entry::from_leaf(bad.as_bytes()).is_err());
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
