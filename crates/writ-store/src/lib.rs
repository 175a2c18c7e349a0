//! Durable storage for the authority, behind the [`Store`] trait (by role:
//! [`LogRead`], [`StateRead`], [`Submit`], and [`Mesh`] for a shared store).
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

mod nodes;
mod pg;
mod pgtls;
mod roles;
mod sqlite;
mod types;

pub use pg::{PgStore, LEADER_LOCK};
pub use roles::{LogRead, Mesh, StateRead, Store, StoreRead, Submit};
pub use sqlite::{SqliteStore, BATCH_TX_MAX, QUEUE_TX_MAX};
pub use types::*;

/// The store's traits, for `use writ_store::prelude::*`: their methods are
/// then callable on any store.
pub mod prelude {
    pub use crate::roles::{LogRead, Mesh, StateRead, Store, StoreRead, Submit};
}

pub use writ_log::merkle::ProofError;
pub use writ_log::Hash;
