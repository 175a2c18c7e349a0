//! Keys of the stored subtree hashes, the same in both stores.

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
