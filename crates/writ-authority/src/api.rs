//! The authority's call errors. The request and response shapes live in
//! `writ-api` (re-exported from this crate), where clients reach them
//! without depending on the authority.

/// The failure of an administrative or execution call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A denial with its reason code (replayed, revoked, expired, ...).
    #[error("{0}")]
    Denied(writ_artifact::Denial),
    #[error("{0}")]
    Unavailable(String),
}

impl From<writ_store::StoreError> for CallError {
    fn from(e: writ_store::StoreError) -> CallError {
        match e {
            writ_store::StoreError::Conflict(m) => CallError::Conflict(m),
            other => CallError::Unavailable(other.to_string()),
        }
    }
}

impl From<writ_log::EncodeError> for CallError {
    fn from(e: writ_log::EncodeError) -> CallError {
        CallError::Unavailable(e.to_string())
    }
}
