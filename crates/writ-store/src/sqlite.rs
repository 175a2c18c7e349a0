//! The embedded store: SQLite, WAL, synchronous commits, one writer thread
//! doing group commit, and a small pool of read connections.
//!
//! `store.rs` opens it and holds the read pool and the writer's queue;
//! `schema.rs` has the tables and migrations; `writer.rs` the group commit
//! and WAL upkeep; `apply.rs` what each op writes; `read.rs` the reads;
//! `tree.rs` the stored Merkle tree; `pace.rs` how long a batch waits.

mod apply;
mod conn;
mod pace;
mod read;
mod schema;
mod store;
mod tree;
mod writer;

pub use store::SqliteStore;
pub use writer::{BATCH_TX_MAX, QUEUE_TX_MAX};

#[cfg(test)]
mod tests;
