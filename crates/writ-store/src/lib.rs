//! Durable storage for the authority, behind the [`Store`] trait.
//!
//! The embedded store is SQLite in WAL mode with `synchronous=FULL`: a
//! transaction is acknowledged only after its commit is on disk. Throughput
//! comes from *group commit*: one writer thread takes every transaction that is
//! waiting, applies them one after the other, and commits them all with a
//! single fsync. Should one of them fail (a conflict), the batch is rolled
//! back and applied again with each transaction in its own savepoint, so only
//! the failing one is refused.
//!
//! **Invariant:** a [`Ticket`] resolves `Ok` only after the commit that holds
//! its transaction returned; an error from the commit fails every transaction
//! in the batch (none is acknowledged).
//!
//! **Invariant:** log indices are dense: entry `n` exists only if `0..n` do.
//!
//! The shared store ([`PgStore`]) keeps the same invariants across every
//! node writing one PostgreSQL database.
#![forbid(unsafe_code)]

mod pg;
mod pgtls;
mod sqlite;
mod types;

/// The key both stores give the stored subtree at `level >= 1`, `index`:
/// `last_leaf * 64 + level`, so keys grow in the order subtrees complete
/// and a full verification reads the nodes as one forward scan.
pub(crate) fn node_key(level: u8, index: u64) -> i64 {
    let last_leaf = ((index + 1) << level) - 1;
    (last_leaf as i64) * 64 + i64::from(level)
}

/// `(level, index)` of a [`node_key`] (keys are never negative).
pub(crate) fn node_of_key(key: i64) -> (u8, u64) {
    let level = (key & 63) as u8;
    let last_leaf = (key >> 6) as u64;
    (level, ((last_leaf + 1) >> level) - 1)
}

pub use pg::{PgStore, LEADER_LOCK};
pub use sqlite::{SqliteStore, BATCH_TX_MAX, QUEUE_TX_MAX};
pub use types::*;

/// What the authority needs from durable storage.
pub trait Store: Send + Sync + 'static {
    /// Queue `tx` for the next group commit. The transaction is queued when
    /// this returns (not when the ticket is first polled), without blocking,
    /// and transactions commit in the order they were queued: the authority
    /// calls this under its state lock to keep the log in decision order.
    fn submit(&self, tx: Tx) -> Ticket;

    fn log_size(&self) -> Result<u64, StoreError>;
    /// Leaves `start..end` (end exclusive), in index order.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredLeaf>, StoreError>;
    fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError>;
    /// Registered external identity issuers, by name.
    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError>;
    fn writ(&self, jti: &str) -> Result<Option<WritRecord>, StoreError>;
    /// Writs whose parent is `jti`.
    fn children(&self, jti: &str) -> Result<Vec<WritRecord>, StoreError>;
    fn execution(&self, jti: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    /// The contents kept for entries `start..end` (those that have one), in
    /// index order.
    fn contents(&self, start: u64, end: u64) -> Result<Vec<StoredContent>, StoreError>;
    /// Whether writ `jti`'s principal delegated it to `principal` (who may
    /// then name it as a parent).
    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError>;
    fn revocations(&self) -> Result<Vec<RevocationRecord>, StoreError>;
    fn bundle(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// Activations, oldest first; the last is the active bundle.
    fn activations(&self) -> Result<Vec<ActivationRecord>, StoreError>;
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;

    /// The Merkle root of the first `size` entries (`size` at most the log size).
    fn tree_root(&self, size: u64) -> Result<Hash, ProofError>;
    /// RFC 9162 inclusion proof of entry `index` in the tree of `size`.
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError>;
    /// RFC 9162 consistency proof between the trees of `first` and `second`.
    fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError>;
    /// Stored subtree hashes (level >= 1) in completion order, starting at
    /// key `after` (exclusive), at most `limit`: `(level, index, hash)`.
    fn nodes_after(
        &self,
        after: Option<(u8, u64)>,
        limit: usize,
    ) -> Result<Vec<(u8, u64, Hash)>, StoreError>;
    /// Checkpoints with `size >= from`, by size, at most `limit`.
    fn checkpoints(&self, from: u64, limit: usize) -> Result<Vec<CheckpointRecord>, StoreError>;
    /// The largest checkpoint.
    fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;

    /// Whether other writ nodes write this store too. The authority then
    /// follows their changes ([`Store::changes`], [`Store::state_seq`]) and
    /// decides only while it has confirmed it holds the current state.
    fn shared(&self) -> bool {
        false
    }
    /// A counter that every committed change to state the authority keeps
    /// in memory (revocations, activations, principals, issuers, keys) moves on.
    fn state_seq(&self) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Changes whenever another node may have changed that state.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Whether this node holds (taking it when free) the right to sign
    /// checkpoints. A store of one node always does.
    fn lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Give up signing checkpoints (shutdown).
    fn resign(&self) {}
    /// Record this node's health in the store, for `GET /v1/mesh`.
    fn heartbeat(&self, _node: &NodeRecord) -> Result<(), StoreError> {
        Ok(())
    }
    /// Every node that has reported to the store.
    fn mesh_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(Vec::new())
    }
}

pub use writ_log::merkle::ProofError;
pub use writ_log::Hash;
