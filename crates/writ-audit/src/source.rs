//! Where a log is read from: a data dir's store, a server's routes, an
//! evidence bundle. The verifier reads through this trait and does no IO of
//! its own.

use writ_log::content::Content;
use writ_log::Hash;

/// One stored leaf as a source gives it.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub index: u64,
    /// The leaf's bytes; empty when the source gives only its hash (the
    /// content was erased, or is withheld from this reader). A log entry
    /// is never empty.
    pub bytes: Vec<u8>,
    /// The leaf hash the source stored beside the bytes, when it keeps one.
    pub stored_hash: Option<Hash>,
    /// The source withheld the bytes from this reader (an unsealed decision
    /// the public may not read); empty bytes without it mean erased, which
    /// a later `content_erased` entry must explain.
    pub withheld: bool,
}

/// A stored subtree hash: `(level, index, hash)`.
pub type Node = (u8, u64, Hash);

/// A source failing to give what was asked: the store or the network, a
/// server's refusal, or a page that is not what was asked. Not the log
/// being wrong: that is a [`crate::Problem`] of the [`crate::Report`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The source could not be read (IO, a server's refusal).
    #[error("{0}")]
    Unavailable(String),
    /// The source answered with something that is not what was asked.
    #[error("{0}")]
    Malformed(String),
}

impl SourceError {
    /// The source could not be read: `e` says why.
    pub fn unavailable(e: impl std::fmt::Display) -> SourceError {
        SourceError::Unavailable(e.to_string())
    }
    /// The source's answer is not what was asked: `e` says how.
    pub fn malformed(e: impl std::fmt::Display) -> SourceError {
        SourceError::Malformed(e.to_string())
    }
}

/// Callers that report errors as text keep their `?`.
impl From<SourceError> for String {
    fn from(e: SourceError) -> String {
        e.to_string()
    }
}

/// Where a log is read from. Errors are the source failing (IO), not the log
/// being wrong.
pub trait Source {
    fn size(&self) -> Result<u64, SourceError>;
    /// Leaves `start..end` in index order.
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, SourceError>;
    /// Stored subtree hashes after `after`, in completion order, or `None` if
    /// this source keeps none.
    fn stored_nodes(
        &self,
        after: Option<(u8, u64)>,
        limit: usize,
    ) -> Result<Option<Vec<Node>>, SourceError>;
    /// Signed checkpoint notes with `size >= from`, by size.
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, SourceError>;
    /// A signed policy bundle (JSON) by hash.
    fn bundle(&self, hash: &str) -> Result<Option<String>, SourceError>;
    /// What the sealed decisions among entries `start..end` commit to, by
    /// index; `None` if this source gives none (it is not an auditor's).
    fn contents(&self, start: u64, end: u64) -> Result<Option<Vec<(u64, Content)>>, SourceError> {
        let _ = (start, end);
        Ok(None)
    }
}
