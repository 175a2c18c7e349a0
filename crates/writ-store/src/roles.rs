//! What the authority needs from durable storage, split by role: reading
//! the log ([`LogRead`]), reading the state ([`StateRead`]), writing
//! ([`Submit`]), and, for a store several nodes share, the [`Mesh`]
//! capability. A [`Store`] is all of them; code that only reads is given a
//! [`StoreRead`] (`&dyn Store` coerces to `&dyn StoreRead`).

use writ_log::merkle::ProofError;
use writ_log::Hash;

use crate::types::*;

/// Reads of the log: its leaves, what sealed decisions committed to, the
/// Merkle tree over it and the checkpoints signed of it.
pub trait LogRead: Send + Sync {
    fn log_size(&self) -> Result<u64, StoreError>;
    /// Leaves `start..end` (end exclusive), in index order.
    fn entries(&self, start: u64, end: u64) -> Result<Vec<StoredLeaf>, StoreError>;
    /// The contents kept for entries `start..end` (those that have one), in
    /// index order.
    fn contents(&self, start: u64, end: u64) -> Result<Vec<StoredContent>, StoreError>;
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
}

/// Reads of the state the log's entries built: principals, issuers, writs
/// and their executions, revocations, policy bundles and keys.
pub trait StateRead: Send + Sync {
    fn principals(&self) -> Result<Vec<PrincipalRecord>, StoreError>;
    /// Registered external identity issuers, by name.
    fn issuers(&self) -> Result<Vec<IssuerRecord>, StoreError>;
    fn writ(&self, jti: &str) -> Result<Option<WritRecord>, StoreError>;
    /// Writs whose parent is `jti`.
    fn children(&self, jti: &str) -> Result<Vec<WritRecord>, StoreError>;
    fn execution(&self, jti: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    /// Whether writ `jti`'s principal delegated it to `principal` (who may
    /// then name it as a parent).
    fn delegated(&self, jti: &str, principal: &str) -> Result<bool, StoreError>;
    fn revocations(&self) -> Result<Vec<RevocationRecord>, StoreError>;
    fn bundle(&self, hash: &str) -> Result<Option<String>, StoreError>;
    /// Activations, oldest first; the last is the active bundle.
    fn activations(&self) -> Result<Vec<ActivationRecord>, StoreError>;
    fn keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// The pinned definition of `resource`, if it has one.
    fn pin(&self, resource: &str) -> Result<Option<PinRecord>, StoreError>;
    /// Every pinned definition, by resource.
    fn pins(&self) -> Result<Vec<PinRecord>, StoreError>;
}

/// Writing: transactions, committed in group commits.
pub trait Submit: Send + Sync {
    /// Queue `tx` for the next group commit. The transaction is queued when
    /// this returns (not when the ticket is first polled), without blocking,
    /// and transactions commit in the order they were queued: the authority
    /// calls this under its state lock to keep the log in decision order.
    fn submit(&self, tx: Tx) -> Ticket;
}

/// What a store that other writ nodes write too offers them: following
/// each other's changes, one checkpoint signer, and each node's health.
pub trait Mesh: Send + Sync {
    /// A counter that every committed change to state the authority keeps
    /// in memory (revocations, activations, principals, issuers, keys) moves on.
    fn state_seq(&self) -> Result<u64, StoreError>;
    /// Changes whenever another node may have changed that state.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>>;
    /// Whether this node holds (taking it when free) the right to sign
    /// checkpoints.
    fn lead(&self) -> Result<bool, StoreError>;
    /// Give up signing checkpoints (shutdown).
    fn resign(&self);
    /// Record this node's health in the store, for `GET /v1/mesh`.
    fn heartbeat(&self, node: &NodeRecord) -> Result<(), StoreError>;
    /// Every node that has reported to the store.
    fn mesh_nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
}

/// Read-only access to a store: what the server's read routes and the
/// console are given. Every [`LogRead`] + [`StateRead`] is one.
pub trait StoreRead: LogRead + StateRead {}

impl<T: LogRead + StateRead + ?Sized> StoreRead for T {}

/// What the authority needs from durable storage.
pub trait Store: StoreRead + Submit + 'static {
    /// The [`Mesh`] capability of a store other writ nodes write too: the
    /// authority then follows their changes ([`Mesh::changes`],
    /// [`Mesh::state_seq`]) and decides only while it has confirmed it
    /// holds the current state. `None` for a store of one node (which
    /// always holds the right to sign checkpoints).
    fn mesh(&self) -> Option<&dyn Mesh>;

    /// Whether other writ nodes write this store too (it has a [`Mesh`]).
    fn shared(&self) -> bool {
        self.mesh().is_some()
    }
}

/// The Merkle computations of [`LogRead`] for a store with a method
/// `with_tree(size, f)` that runs `f` over its stored tree of `size`
/// entries: the same three methods in every store.
macro_rules! merkle_proofs {
    () => {
        fn tree_root(&self, size: u64) -> Result<Hash, ProofError> {
            self.with_tree(size, |r| Ok(merkle::root(r, size)?))
        }

        fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
            self.with_tree(size, |r| merkle::inclusion_proof(r, index, size))
        }

        fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, ProofError> {
            self.with_tree(second, |r| merkle::consistency_proof(r, first, second))
        }
    };
}
pub(crate) use merkle_proofs;
