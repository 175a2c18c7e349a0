//! The Merkle tree over the log, stored as subtree hashes.
//!
//! Level 0 is `entries.leaf_hash`. Every complete, aligned subtree of level
//! `l >= 1` is one row of `nodes`, written in the same transaction as the leaf
//! that completes it, keyed by `last_leaf * 64 + l`: keys then grow in the
//! order nodes complete, so a full verification reads `nodes` as one forward
//! scan. Memory held: the right edge of the tree (one hash per set bit of the
//! size) and the subtree hashes of level [`UPPER_LEVEL`] and above ([`Upper`],
//! about 1/128 of the tree: 2.5 MB at ten million entries), never the tree.

use std::sync::RwLock;

use rusqlite::{params, Connection, OptionalExtension};
pub(crate) use writ_log::merkle::Frontier;
use writ_log::merkle::{NodeReader, ReadError};
use writ_log::Hash;

pub(crate) use crate::nodes::node_key;

/// The lowest level [`Upper`] keeps in memory.
pub(crate) const UPPER_LEVEL: u8 = 8;

/// The committed subtree hashes of level >= [`UPPER_LEVEL`], in memory: an
/// inclusion proof then reads at most `UPPER_LEVEL` rows (which lie close
/// together in `nodes`) instead of one scattered row per level.
#[derive(Default)]
pub(crate) struct Upper {
    /// `levels[l - UPPER_LEVEL][i]`
    levels: RwLock<Vec<Vec<Hash>>>,
}

impl Upper {
    /// Read the upper levels of the committed tree of `size` entries.
    pub(crate) fn load(conn: &Connection, size: u64) -> Result<Upper, ReadError> {
        let reader = ConnNodes(conn, None);
        let mut levels = Vec::new();
        let mut level = UPPER_LEVEL;
        while level < 64 && size >> level > 0 {
            let count = size >> level;
            let mut v = Vec::with_capacity(count as usize);
            for i in 0..count {
                v.push(reader.node(level, i)?);
            }
            levels.push(v);
            level += 1;
        }
        Ok(Upper {
            levels: RwLock::new(levels),
        })
    }

    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let levels = self.levels.read().ok()?;
        levels
            .get(usize::from(level.checked_sub(UPPER_LEVEL)?))?
            .get(usize::try_from(index).ok()?)
            .copied()
    }

    /// Add nodes that were just committed, in completion order. A node out of
    /// order (which the writer never produces) is not kept: readers then fall
    /// back to the store for it and every later node of its level.
    pub(crate) fn extend(&self, nodes: &[(u8, u64, Hash)]) {
        let Ok(mut levels) = self.levels.write() else {
            return;
        };
        for &(level, index, hash) in nodes {
            let Some(l) = level.checked_sub(UPPER_LEVEL).map(usize::from) else {
                continue;
            };
            while levels.len() <= l {
                levels.push(Vec::new());
            }
            if levels[l].len() as u64 == index {
                levels[l].push(hash);
            }
        }
    }
}

/// Reads stored nodes through one connection, from memory where [`Upper`]
/// has them.
pub(crate) struct ConnNodes<'c>(pub &'c Connection, pub Option<&'c Upper>);

impl NodeReader for ConnNodes<'_> {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        if let Some(h) = self.1.and_then(|u| u.get(level, index)) {
            return Ok(h);
        }
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
