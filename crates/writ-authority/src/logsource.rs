//! The store as a log source: what `writ log verify`/`export`/`proof`, `writ
//! assess` and the console's assessment read an authority's log through
//! (`writ_audit::Source`, `writ_audit::evidence::ProofSource`).

use std::sync::Arc;

use writ_audit::evidence::ProofSource;
use writ_audit::{Leaf, Node, Source, SourceError};
use writ_log::content::Content;
use writ_log::Hash;
use writ_store::{StoreError, StoreRead};

/// A store as a log source: every leaf with its stored hash, the stored
/// subtree hashes, checkpoints, bundles, and (the store is an auditor's)
/// what sealed decisions commit to.
pub struct StoreSource(pub Arc<dyn StoreRead>);

impl Source for StoreSource {
    fn size(&self) -> Result<u64, SourceError> {
        self.0.log_size().map_err(SourceError::unavailable)
    }
    fn leaves(&self, start: u64, end: u64) -> Result<Vec<Leaf>, SourceError> {
        Ok(self
            .0
            .entries(start, end)
            .map_err(SourceError::unavailable)?
            .into_iter()
            .map(|l| Leaf {
                index: l.index,
                bytes: l.leaf,
                stored_hash: Some(l.leaf_hash),
                withheld: false,
            })
            .collect())
    }
    fn stored_nodes(
        &self,
        after: Option<(u8, u64)>,
        limit: usize,
    ) -> Result<Option<Vec<Node>>, SourceError> {
        self.0
            .nodes_after(after, limit)
            .map(Some)
            .map_err(SourceError::unavailable)
    }
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, SourceError> {
        Ok(self
            .0
            .checkpoints(from, limit)
            .map_err(SourceError::unavailable)?
            .into_iter()
            .map(|c| (c.size, c.note))
            .collect())
    }
    fn bundle(&self, hash: &str) -> Result<Option<String>, SourceError> {
        self.0.bundle(hash).map_err(SourceError::unavailable)
    }
    fn contents(&self, start: u64, end: u64) -> Result<Option<Vec<(u64, Content)>>, SourceError> {
        contents(self.0.as_ref(), start, end)
            .map(Some)
            .map_err(SourceError::unavailable)
    }
}

/// What the sealed decisions among entries `start..end` commit to, by index.
pub fn contents(
    store: &dyn StoreRead,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, Content)>, StoreError> {
    Ok(store
        .contents(start, end)?
        .into_iter()
        .map(|c| {
            let content = Content {
                salt: c.salt,
                bytes: c.content,
            };
            (c.index, content)
        })
        .collect())
}

impl ProofSource for StoreSource {
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, SourceError> {
        self.0
            .inclusion_proof(index, size)
            .map_err(SourceError::unavailable)
    }
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, SourceError> {
        self.0
            .consistency_proof(first, second)
            .map_err(SourceError::unavailable)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, SourceError> {
        Ok(self
            .0
            .latest_checkpoint()
            .map_err(SourceError::unavailable)?
            .map(|c| (c.size, c.note)))
    }
}
