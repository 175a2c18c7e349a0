//! Sealed decisions: what a decision was asked (its Cedar context, the
//! request and environment the writ binds) kept beside the log, the leaf
//! carrying only a salted commitment to it.
//!
//! A decision's **content** is the RFC 8785 canonical JSON of
//! `{"context", "environment", "message", "request"}` (the message too:
//! Cedar's errors quote the values they could not use); its
//! **commitment**, the leaf's
//! `content`, is `sha256:` and the hex of SHA-256 over the domain tag
//! [`CONTENT_DOMAIN`], a random 32-byte salt and the content. The salt makes
//! the commitment say nothing about a guessable content (an argv, a path);
//! with salt and content, anyone can check the commitment and replay the
//! decision. Erasing the two leaves the leaf, its hash and every proof as
//! they were (docs/spec/log.md).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use writ_artifact::canonical;

use crate::DecisionEntry;

/// Domain separation of the commitment's hash.
pub const CONTENT_DOMAIN: &[u8] = b"writ-decision-content-v1\0";
/// Bytes of a salt.
pub const SALT_BYTES: usize = 32;

/// A sealed decision's content and salt: what opens its commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub salt: [u8; SALT_BYTES],
    /// The canonical JSON of `{"context", "environment", "message", "request"}`.
    pub bytes: Vec<u8>,
}

/// `sha256:<hex>` of `CONTENT_DOMAIN || salt || bytes`.
pub fn commitment(salt: &[u8; SALT_BYTES], bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(CONTENT_DOMAIN);
    h.update(salt);
    h.update(bytes);
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Why a decision cannot be sealed, or opened with a content.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("the decision is not sealed")]
    NotSealed,
    #[error("the content does not match the decision's commitment")]
    Mismatch,
    /// The content is not what a sealed decision keeps (what, in words).
    #[error("{0}")]
    Malformed(String),
}

impl DecisionEntry {
    /// Seal this decision with `salt`: its content becomes a commitment in
    /// `content`, and its leaf (version 2) carries that instead of the
    /// values and the message, which stay in this entry for the caller
    /// (not in the leaf).
    pub fn seal(&mut self, salt: [u8; SALT_BYTES]) -> Result<Content, ContentError> {
        let bytes = canonical::to_canonical_bytes(&json!({
            "context": self.context,
            "environment": self.environment,
            "message": self.message,
            "request": self.request,
        }))
        .map_err(|e| ContentError::Malformed(e.to_string()))?;
        self.content = Some(commitment(&salt, &bytes));
        Ok(Content { salt, bytes })
    }

    /// Open a sealed decision with its content: the commitment must match;
    /// then the context, request and environment are this entry's.
    pub fn open(&mut self, c: &Content) -> Result<(), ContentError> {
        let Some(committed) = &self.content else {
            return Err(ContentError::NotSealed);
        };
        if &commitment(&c.salt, &c.bytes) != committed {
            return Err(ContentError::Mismatch);
        }
        let v: Value = serde_json::from_slice(&c.bytes)
            .map_err(|e| ContentError::Malformed(format!("content: {e}")))?;
        let text = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ContentError::Malformed(format!("content has no `{k}`")))
        };
        self.request = text("request")?;
        self.environment = text("environment")?;
        self.message = text("message")?;
        self.context = v
            .get("context")
            .cloned()
            .ok_or_else(|| ContentError::Malformed("content has no `context`".into()))?;
        Ok(())
    }

    /// The leaf's version: sealed (2) or not (1).
    pub fn leaf_version(&self) -> u64 {
        if self.content.is_some() {
            crate::LEAF_VERSION_SEALED
        } else {
            crate::LEAF_VERSION
        }
    }

    /// Whether the values are at hand (an unsealed entry, or an opened one).
    pub fn is_open(&self) -> bool {
        !self.request.is_empty()
    }
}
