//! The shared store: PostgreSQL, for many writ nodes acting as one authority.
//!
//! Every node runs the same group commit as the embedded store, against one
//! database. A batch takes the row lock on `writ_head` (the log size and the
//! state sequence) for its transaction, so appends from all nodes get one
//! total order and one Merkle tree; subtree hashes are written in the same
//! transaction as the leaves that complete them. Statements of a batch are
//! pipelined on the writer's connection: a batch costs about one round trip
//! plus its commit, however many transactions it holds.
//!
//! Nonces are spent by a primary key (`executions.jti`), so a writ spent on one
//! node is a conflict on every other. Transactions that change what the
//! authority keeps in memory (revocations, activations, principals, keys) bump
//! `writ_head.state_seq` and `NOTIFY writ_state`; nodes listen and reload.
//! Exactly one node holds the session advisory lock [`LEADER_LOCK`] and
//! signs checkpoints; when its session ends the lock passes to the next node
//! that asks.
//!
//! The store traits (`roles.rs`) are synchronous for reads; this store
//! runs its own small runtime and a caller's thread waits for the answer
//! (bounded by [`conn::READ_TIMEOUT`]), so it may be called from any
//! thread, async or not.
//!
//! `store.rs` connects and runs reads; `schema.rs` has the migrations;
//! `writer.rs` the group commit, `plan.rs` the statements of each op;
//! `read.rs` the reads; `tree.rs` the stored Merkle tree; `listen.rs` and
//! `mesh.rs` what nodes of a mesh share; `conn.rs` and `sql.rs` the
//! plumbing.

mod conn;
mod listen;
mod mesh;
mod plan;
mod read;
mod schema;
mod sql;
mod store;
mod tree;
mod writer;

pub use mesh::LEADER_LOCK;
pub use store::PgStore;
