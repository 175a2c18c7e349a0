//! The Merkle tree over the log, stored as subtree hashes.
//!
//! Level 0 is `entries.leaf_hash`. Every complete, aligned subtree of level
//! `l >= 1` is one row of `nodes`, written in the same transaction as the leaf
//! that completes it, keyed by `last_leaf * 64 + l`: keys then grow in the
//! order nodes complete, so a full verification reads `nodes` as one forward
//! scan. Memory held: the right edge of the tree (one hash per set bit of the
//! size), never the tree.

use rusqlite::{params, Connection, OptionalExtension};
pub(crate) use writ_log::merkle::Frontier;
use writ_log::merkle::{NodeReader, ReadError};
use writ_log::Hash;

/// `nodes.key` of the subtree at `level >= 1`, `index`.
pub(crate) fn node_key(level: u8, index: u64) -> i64 {
    let last_leaf = ((index + 1) << level) - 1;
    (last_leaf as i64) * 64 + i64::from(level)
}

/// Reads stored nodes through one connection.
pub(crate) struct ConnNodes<'c>(pub &'c Connection);

impl NodeReader for ConnNodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        let err = |message: String| ReadError {
            level,
            index,
            message,
        };
        let row: Option<Vec<u8>> = if level == 0 {
            self.0
                .prepare_cached("SELECT leaf_hash FROM entries WHERE idx = ?1")
                .and_then(|mut s| s.query_row([index], |r| r.get(0)).optional())
        } else {
            self.0
                .prepare_cached("SELECT hash FROM nodes WHERE key = ?1")
                .and_then(|mut s| {
                    s.query_row([node_key(level, index)], |r| r.get(0))
                        .optional()
                })
        }
        .map_err(|e| err(e.to_string()))?;
        row.ok_or_else(|| err("not stored".into()))?
            .try_into()
            .map_err(|_| err("stored hash is not 32 bytes".into()))
    }
}

/// Insert one completed node.
pub(crate) fn insert_node(
    conn: &Connection,
    level: u8,
    index: u64,
    hash: &Hash,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO nodes (key, hash) VALUES (?1, ?2)")?
        .execute(params![node_key(level, index), &hash[..]])?;
    Ok(())
}

/// Build `nodes` from `entries` (a store made before the tree was stored).
pub(crate) fn rebuild(conn: &Connection) -> rusqlite::Result<u64> {
    conn.execute("DELETE FROM nodes", [])?;
    let mut f = Frontier::default();
    let mut s = conn.prepare("SELECT idx, leaf_hash FROM entries ORDER BY idx")?;
    let mut rows = s.query([])?;
    let mut pending: Vec<(u8, u64, Hash)> = Vec::new();
    while let Some(r) = rows.next()? {
        let h: Vec<u8> = r.get(1)?;
        let h: Hash = h.try_into().map_err(|_| {
            rusqlite::Error::InvalidColumnType(1, "leaf_hash".into(), rusqlite::types::Type::Blob)
        })?;
        f.push(h, |l, i, h| pending.push((l, i, *h)));
        for (l, i, h) in pending.drain(..) {
            insert_node(conn, l, i, &h)?;
        }
    }
    Ok(f.size)
}
