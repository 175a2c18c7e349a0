//! RFC 6962 / RFC 9162 Merkle tree arithmetic over stored subtree hashes.
//!
//! The tree is never held in memory: every complete, aligned subtree hash
//! (level `l`, index `i` covers leaves `i*2^l .. (i+1)*2^l`) is stored once
//! when it completes, and roots and proofs read the O(log n) of them they
//! need through [`NodeReader`]. All functions are pure.
//!
//! A bad proof from outside is an `Err`/`false`; a reader that cannot supply
//! a node it must have is a [`ReadError`], which callers turn into a denial.

use crate::{leaf_hash, node_hash, Hash};
use sha2::{Digest, Sha256};

/// A stored node could not be read (the store is down, or lacks it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read tree node level {level} index {index}: {message}")]
pub struct ReadError {
    pub level: u8,
    pub index: u64,
    pub message: String,
}

/// Supplies stored hashes of complete, aligned subtrees; level 0 is the leaf
/// hashes.
pub trait NodeReader {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError>;
}

/// Why a proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is not inside a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error(
        "tree sizes {first} and {second} do not allow a consistency proof (need first <= second)"
    )]
    BadSizes { first: u64, second: u64 },
    #[error("tree size {size} is beyond the log, which has {log_size} entries")]
    BeyondLog { size: u64, log_size: u64 },
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The store holding the tree could not be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The largest power of two strictly less than `n` (`n >= 2`): RFC 6962's split.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` for a range the RFC recursion produces (`lo` aligned to the
/// largest power of two not above `hi - lo`).
fn subtree(r: &dyn NodeReader, lo: u64, hi: u64) -> Result<Hash, ReadError> {
    let n = hi - lo;
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return r.node(n.trailing_zeros() as u8, lo / n);
    }
    let k = split(n);
    Ok(node_hash(
        &subtree(r, lo, lo + k)?,
        &subtree(r, lo + k, hi)?,
    ))
}

/// The root of the tree of the first `size` leaves. The empty tree's root is
/// SHA-256 of the empty string (RFC 6962 section 2.1).
pub fn root(r: &dyn NodeReader, size: u64) -> Result<Hash, ReadError> {
    if size == 0 {
        return Ok(Sha256::digest([]).into());
    }
    subtree(r, 0, size)
}

/// The nodes that complete when leaf `index` (with hash `leaf`) is appended,
/// as `(level, index, hash)`, leaf first. `r` must already hold every node of
/// the tree of size `index`.
pub fn nodes_completed_by(
    r: &dyn NodeReader,
    index: u64,
    leaf: Hash,
) -> Result<Vec<(u8, u64, Hash)>, ReadError> {
    let mut out = vec![(0u8, index, leaf)];
    let (mut level, mut i, mut h) = (0u8, index, leaf);
    while i & 1 == 1 {
        let left = r.node(level, i - 1)?;
        h = node_hash(&left, &h);
        level += 1;
        i >>= 1;
        out.push((level, i, h));
    }
    Ok(out)
}

/// RFC 9162 section 2.1.3.1: the inclusion proof of leaf `index` in the tree of
/// size `size`.
pub fn inclusion_proof(r: &dyn NodeReader, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(r, index, 0, size, &mut out)?;
    Ok(out)
}

fn path(
    r: &dyn NodeReader,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), ReadError> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(r, m, lo, lo + k, out)?;
        out.push(subtree(r, lo + k, hi)?);
    } else {
        path(r, m - k, lo + k, hi, out)?;
        out.push(subtree(r, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.1: the consistency proof between the trees of sizes
/// `first` and `second`.
pub fn consistency_proof(
    r: &dyn NodeReader,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    if first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(r, first, 0, second, true, &mut out)?;
    }
    Ok(out)
}

fn subproof(
    r: &dyn NodeReader,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), ReadError> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(subtree(r, lo, hi)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(r, m, lo, lo + k, whole, out)?;
        out.push(subtree(r, lo + k, hi)?);
    } else {
        subproof(r, m - k, lo + k, hi, false, out)?;
        out.push(subtree(r, lo, lo + k)?);
    }
    Ok(())
}

/// RFC 9162 section 2.1.3.2: whether `proof` shows the leaf with hash `leaf`
/// at `index` in the tree of size `size` whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut h = *leaf;
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            h = node_hash(p, &h);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            h = node_hash(&h, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &h == root
}

/// RFC 9162 section 2.1.4.2: whether `proof` shows the tree of size `first`
/// with root `first_root` is a prefix of the tree of size `second` with root
/// `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    if first == 0 {
        // Every tree extends the empty one.
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((first_node, rest)) = path.split_first() else {
        return false;
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first_node, *first_node);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == first_root && &sr == second_root && s == 0
}

/// The right edge of a tree: the roots of the perfect subtrees that make up
/// a tree of `size` leaves, largest first. Enough to append leaves (learning
/// the nodes each completes) and to compute the root, in O(log n) memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub hashes: Vec<Hash>,
}

impl Frontier {
    /// Read the right edge of a stored tree of `size` leaves.
    pub fn load(r: &dyn NodeReader, size: u64) -> Result<Frontier, ReadError> {
        let mut hashes = Vec::new();
        for level in (0..64u8).rev() {
            if size >> level & 1 == 1 {
                let start = size >> (level + 1) << (level + 1);
                hashes.push(r.node(level, start >> level)?);
            }
        }
        Ok(Frontier { size, hashes })
    }

    /// Append a leaf hash; `out` is told each node it completes as
    /// `(level, index, hash)`, lowest level first.
    pub fn push(&mut self, leaf: Hash, mut out: impl FnMut(u8, u64, &Hash)) {
        let n = self.size;
        let mut h = leaf;
        let mut level = 0u8;
        while n >> level & 1 == 1 {
            // The lowest set bit's subtree is the last one on the edge.
            let left = self.hashes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            level += 1;
            out(level, n >> level, &h);
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The root of the tree (RFC 6962's empty-tree hash when empty).
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(first) = it.next() else {
            return Sha256::digest([]).into();
        };
        let mut acc = *first;
        for h in it {
            acc = node_hash(h, &acc);
        }
        acc
    }
}

/// Leaf hashes held in memory, computing every node on demand: for tests and
/// for verifying small evidence bundles.
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    pub leaves: Vec<Hash>,
}

impl MemoryTree {
    pub fn from_leaves<'a>(leaves: impl IntoIterator<Item = &'a [u8]>) -> MemoryTree {
        MemoryTree {
            leaves: leaves.into_iter().map(leaf_hash).collect(),
        }
    }
}

impl NodeReader for MemoryTree {
    fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
        let width = 1u64.checked_shl(u32::from(level)).unwrap_or(0);
        let lo = index.saturating_mul(width);
        let missing = || ReadError {
            level,
            index,
            message: "not in the tree".into(),
        };
        if width == 0 || lo.saturating_add(width) > self.leaves.len() as u64 {
            return Err(missing());
        }
        if level == 0 {
            return self.leaves.get(lo as usize).copied().ok_or_else(missing);
        }
        Ok(node_hash(
            &self.node(level - 1, index * 2)?,
            &self.node(level - 1, index * 2 + 1)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 6962 section 2.1 read literally, as an independent model.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn roots_match_the_rfc_definition() {
        for n in 0..70u64 {
            let data = leaves(n);
            let t = MemoryTree::from_leaves(data.iter().map(Vec::as_slice));
            assert_eq!(root(&t, n).unwrap(), mth(&t.leaves), "size {n}");
        }
    }

    #[test]
    fn stored_nodes_rebuild_the_tree_incrementally() {
        // Append with nodes_completed_by into a map, then read roots from it.
        #[derive(Default)]
        struct Stored(HashMap<(u8, u64), Hash>);
        impl NodeReader for Stored {
            fn node(&self, level: u8, index: u64) -> Result<Hash, ReadError> {
                self.0.get(&(level, index)).copied().ok_or(ReadError {
                    level,
                    index,
                    message: "missing".into(),
                })
            }
        }
        let mut s = Stored::default();
        let data = leaves(70);
        let mem = MemoryTree::from_leaves(data.iter().map(Vec::as_slice));
        for (i, l) in mem.leaves.iter().enumerate() {
            for (level, index, h) in nodes_completed_by(&s, i as u64, *l).unwrap() {
                assert!(s.0.insert((level, index), h).is_none(), "node stored twice");
            }
            let size = i as u64 + 1;
            assert_eq!(root(&s, size).unwrap(), mth(&mem.leaves[..size as usize]));
        }
        // 70 leaves store 70 + 35 + 17 + 8 + 4 + 2 + 1 nodes: fewer than 2n.
        assert_eq!(s.0.len(), 137);
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        for n in 1..40u64 {
            let data = leaves(n);
            let t = MemoryTree::from_leaves(data.iter().map(Vec::as_slice));
            let r = root(&t, n).unwrap();
            for i in 0..n {
                let p = inclusion_proof(&t, i, n).unwrap();
                let leaf = t.leaves[i as usize];
                assert!(verify_inclusion(i, n, &leaf, &p, &r), "n={n} i={i}");
                assert!(!verify_inclusion(i, n, &leaf_hash(b"other"), &p, &r));
                if n > 1 {
                    assert!(
                        !verify_inclusion((i + 1) % n, n, &leaf, &p, &r),
                        "n={n} i={i} wrong index"
                    );
                    let mut bad = p.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(i, n, &leaf, &bad, &r));
                    assert!(
                        !verify_inclusion(i, n, &leaf, &p[..p.len() - 1], &r),
                        "short proof"
                    );
                }
                let mut long = p.clone();
                long.push(leaf);
                assert!(!verify_inclusion(i, n, &leaf, &long, &r), "long proof");
            }
        }
        assert_eq!(
            inclusion_proof(&MemoryTree::default(), 0, 0),
            Err(ProofError::OutOfRange { index: 0, size: 0 })
        );
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails() {
        let data = leaves(40);
        let t = MemoryTree::from_leaves(data.iter().map(Vec::as_slice));
        for second in 1..40u64 {
            let r2 = root(&t, second).unwrap();
            for first in 0..=second {
                let r1 = root(&t, first).unwrap();
                let p = consistency_proof(&t, first, second).unwrap();
                assert!(
                    verify_consistency(first, second, &r1, &r2, &p),
                    "{first}->{second}"
                );
                if first > 0 && first < second {
                    assert!(
                        !verify_consistency(first, second, &leaf_hash(b"x"), &r2, &p),
                        "{first}->{second} bad old root"
                    );
                    assert!(!verify_consistency(
                        first,
                        second,
                        &r1,
                        &leaf_hash(b"x"),
                        &p
                    ));
                    let mut bad = p.clone();
                    bad[0][5] ^= 0x80;
                    assert!(!verify_consistency(first, second, &r1, &r2, &bad));
                    if first + 1 < second {
                        let r_other = root(&t, first + 1).unwrap();
                        assert!(
                            !verify_consistency(first + 1, second, &r_other, &r2, &p),
                            "{first}->{second} wrong size"
                        );
                    }
                }
            }
        }
        assert!(consistency_proof(&t, 5, 4).is_err());
    }

    #[test]
    fn the_frontier_root_is_the_tree_root_at_every_size() {
        let leaves: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i]).collect();
        let t = MemoryTree::from_leaves(leaves.iter().map(Vec::as_slice));
        let mut f = Frontier::default();
        assert_eq!(f.root(), root(&t, 0).unwrap());
        for (i, l) in t.leaves.iter().enumerate() {
            let want = nodes_completed_by(&t, i as u64, *l).unwrap();
            let mut got = vec![(0u8, i as u64, *l)];
            f.push(*l, |lv, ix, h| got.push((lv, ix, *h)));
            assert_eq!(got, want);
            assert_eq!(f.root(), root(&t, i as u64 + 1).unwrap());
            assert_eq!(f, Frontier::load(&t, i as u64 + 1).unwrap());
        }
    }

    #[test]
    fn rfc6962_reference_tree_roots() {
        // The eight-leaf tree of the Certificate Transparency reference test
        // vectors (inputs "", 00, 10, 2021, 3031, 40414243, 5051525354555657,
        // 606162636465666768696a6b6c6d6e6f) and its published roots.
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let t = MemoryTree::from_leaves(inputs);
        for (i, want) in roots.iter().enumerate() {
            let got: String = root(&t, i as u64 + 1)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&got, want, "root of size {}", i + 1);
        }
    }
}
