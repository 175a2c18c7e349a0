//! The stored Merkle tree: fetching the nodes a computation reads in one
//! query, and the right edge of the tree a batch extends.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_postgres::Client;
use writ_log::merkle::{Frontier, NodeReader, ReadError};
use writ_log::Hash;

use super::sql::{hash_of, i64_of, pg_unavailable, query, stored_node, u64_of, Param};
use crate::nodes::node_key;
use crate::types::StoreError;

/// Nodes fetched for one computation; a node not fetched is a read error.
pub(super) struct Fetched(HashMap<(u8, u64), Hash>);

impl NodeReader for Fetched {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        self.0.get(&(level, index)).copied().ok_or(ReadError {
            level,
            index,
            message: "not stored".into(),
        })
    }
}

#[derive(Default)]
pub(super) struct Recording(pub(super) Mutex<Vec<(u8, u64)>>);

impl NodeReader for Recording {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        if let Ok(mut v) = self.0.lock() {
            v.push((level, index));
        }
        Ok([0; 32])
    }
}

pub(super) async fn fetch_nodes(c: &Client, keys: &[(u8, u64)]) -> Result<Fetched, StoreError> {
    let mut leaves = Vec::new();
    let mut inner = Vec::new();
    for &(l, i) in keys {
        if l == 0 {
            leaves.push(i64_of(i)?);
        } else {
            inner.push(node_key(l, i));
        }
    }
    let mut out = HashMap::new();
    if !leaves.is_empty() {
        for r in query(
            c,
            "SELECT idx, leaf_hash FROM entries WHERE idx = ANY($1)",
            &[Param::Ints(leaves)],
        )
        .await
        .map_err(pg_unavailable)?
        {
            let idx: i64 = r.try_get(0).map_err(pg_unavailable)?;
            out.insert(
                (0, u64_of(idx)?),
                hash_of(r.try_get(1).map_err(pg_unavailable)?)?,
            );
        }
    }
    if !inner.is_empty() {
        for r in query(
            c,
            "SELECT key, hash FROM tree_nodes WHERE key = ANY($1)",
            &[Param::Ints(inner)],
        )
        .await
        .map_err(pg_unavailable)?
        {
            out.insert(
                stored_node(r.try_get(0).map_err(pg_unavailable)?)?,
                hash_of(r.try_get(1).map_err(pg_unavailable)?)?,
            );
        }
    }
    Ok(Fetched(out))
}

pub(super) async fn load_frontier(c: &Client, size: u64) -> Result<Frontier, StoreError> {
    let wanted = Recording::default();
    let _ = Frontier::load(&wanted, size);
    let keys = wanted.0.into_inner().unwrap_or_default();
    let nodes = fetch_nodes(c, &keys).await?;
    Frontier::load(&nodes, size).map_err(|e| {
        StoreError::Integrity(format!(
            "the stored Merkle tree of {size} entries is incomplete: {e}"
        ))
    })
}
