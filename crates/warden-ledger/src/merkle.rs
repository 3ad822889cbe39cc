//! The Merkle tree of RFC 6962 / RFC 9162: hashing, proof generation over stored subtree hashes, and
//! proof verification exactly as RFC 9162 sections 2.1.3.2 and 2.1.4.2 describe it.
//!
//! Proof *generation* never needs all leaves: every hash a proof contains is the root of a range of
//! leaves, and every range is split into perfect (power-of-two, aligned) subtrees whose hashes are
//! stored. [`NodeSource`] is how generation reads them; the tile layout lives in [`crate::tiles`].

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash of a leaf or an interior node.
pub type Hash = [u8; 32];

/// The hash of an empty tree, `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 || leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 1;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Why a proof did not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("first size {size1} is larger than second size {size2}")]
    SizesReversed { size1: u64, size2: u64 },
    #[error("a consistency proof from an empty tree is not defined (RFC 9162 2.1.4)")]
    FromEmptyTree,
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    #[error("proof for equal tree sizes must be empty")]
    NonEmptyForEqualSizes,
    #[error("a proof hash is {len} bytes, expected 32")]
    BadHashLength { len: usize },
    #[error("computed root does not match the expected root")]
    RootMismatch,
}

/// Checks an inclusion proof (RFC 9162 2.1.3.2): `leaf` at `index` is in the tree of `size` with `root`.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof (RFC 9162 2.1.4.2): the tree of `size1` with `root1` is a prefix of the
/// tree of `size2` with `root2`. Equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesReversed { size1, size2 });
    }
    if size1 == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyForEqualSizes);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    // Step 2: if size1 is a power of two, the path starts with root1 itself.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    path.extend(proof.iter());
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*path[0], *path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != root1 || &sr != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// [`verify_inclusion`] over hashes of unchecked length, as decoded from a file: any hash that is not
/// 32 bytes is rejected.
pub fn verify_inclusion_bytes<T: AsRef<[u8]>>(
    leaf: &[u8],
    index: u64,
    size: u64,
    proof: &[T],
    root: &[u8],
) -> Result<(), ProofError> {
    let leaf = hash_from_slice(leaf)?;
    let root = hash_from_slice(root)?;
    verify_inclusion(&leaf, index, size, &hashes_from_slices(proof)?, &root)
}

/// [`verify_consistency`] over hashes of unchecked length. For equal sizes nothing is hashed: the proof
/// must be empty and the roots byte-identical (as transparency-dev/merkle decides); otherwise any hash
/// that is not 32 bytes is rejected.
pub fn verify_consistency_bytes<T: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[T],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == size2 && size1 > 0 {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyForEqualSizes);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let root1 = hash_from_slice(root1)?;
    let root2 = hash_from_slice(root2)?;
    verify_consistency(size1, size2, &hashes_from_slices(proof)?, &root1, &root2)
}

fn hash_from_slice(h: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(h).map_err(|_| ProofError::BadHashLength { len: h.len() })
}

/// Converts proof hashes of unchecked length (as decoded from a file) into [`Hash`]es.
pub fn hashes_from_slices<T: AsRef<[u8]>>(items: &[T]) -> Result<Vec<Hash>, ProofError> {
    items.iter().map(|h| hash_from_slice(h.as_ref())).collect()
}

/// Read access to the hashes of perfect subtrees: the node at `level` and `index` covers leaves
/// `[index << level, (index + 1) << level)`. Callers only ask for nodes that are complete.
pub trait NodeSource {
    /// The error a read can fail with.
    type Error;
    /// The hash of the complete subtree at `level`, `index`.
    fn node(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Largest power of two strictly below `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The Merkle Tree Hash of leaves `[lo, hi)`, where `lo` is aligned as RFC 6962's recursive split
/// makes it, read from perfect subtrees.
pub fn range_hash<S: NodeSource>(src: &mut S, lo: u64, hi: u64) -> Result<Hash, S::Error> {
    let n = hi - lo;
    if n == 0 {
        return Ok(EMPTY_ROOT);
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return src.node(n.trailing_zeros() as u8, lo >> n.trailing_zeros());
    }
    // Right-edge ranges: fold the perfect subtrees of the decomposition from right to left.
    let k = split_point(n);
    let left = range_hash(src, lo, lo + k)?;
    let right = range_hash(src, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of `size` leaves.
pub fn root<S: NodeSource>(src: &mut S, size: u64) -> Result<Hash, S::Error> {
    range_hash(src, 0, size)
}

/// The inclusion proof (RFC 6962 `PATH(m, D[n])`) for leaf `index` in the tree of `size` leaves.
/// The caller checks `index < size`.
pub fn inclusion_proof<S: NodeSource>(
    src: &mut S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut out = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0, size);
    // Walk down from the root, collecting siblings; the proof lists them bottom-up.
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            out.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            out.push(range_hash(src, lo, lo + k)?);
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The consistency proof (RFC 6962 `PROOF(m, D[n])`) from `size1` to `size2`. The caller checks
/// `0 < size1 <= size2`; equal sizes give an empty proof.
pub fn consistency_proof<S: NodeSource>(
    src: &mut S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut out = Vec::with_capacity(64);
    if size1 == size2 || size1 == 0 {
        return Ok(out);
    }
    let (mut m, mut lo, mut hi, mut whole) = (size1, 0u64, size2, true);
    loop {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(range_hash(src, lo, hi)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            out.push(range_hash(src, lo + k, hi)?);
            hi = lo + k;
        } else {
            out.push(range_hash(src, lo, lo + k)?);
            m -= k;
            lo += k;
            whole = false;
        }
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Every perfect node recomputed from the leaves: slow and obviously right.
    struct Naive(Vec<Hash>);
    impl NodeSource for Naive {
        type Error = Infallible;
        fn node(&mut self, level: u8, index: u64) -> Result<Hash, Infallible> {
            let lo = (index << level) as usize;
            Ok(mth(&self.0[lo..lo + (1usize << level)]))
        }
    }

    /// RFC 6962 MTH, straight from the definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
    }

    #[test]
    fn roots_and_proofs_agree_with_the_definition() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut src = Naive(leaves.clone());
        for size in 1..=leaves.len() as u64 {
            let r = root(&mut src, size).unwrap();
            assert_eq!(r, mth(&leaves[..size as usize]));
            for i in 0..size {
                let p = inclusion_proof(&mut src, i, size).unwrap();
                verify_inclusion(&leaves[i as usize], i, size, &p, &r).unwrap();
            }
            for s1 in 1..=size {
                let r1 = root(&mut src, s1).unwrap();
                let p = consistency_proof(&mut src, s1, size).unwrap();
                verify_consistency(s1, size, &p, &r1, &r).unwrap();
            }
        }
    }
}
