//! Property tests over a real ledger (in-memory driver): for random sizes every proof the log produces
//! verifies, and any one-bit change to a proof, root, index or size makes verification fail.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // Tests fail by panicking.

use warden_ledger::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use warden_ledger::{Kind, Ledger, MemStore, Record, SignerKey};

/// SplitMix64: a tiny deterministic generator, so failures replay from the printed seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn record(i: u64) -> Record {
    Record {
        kind: Kind::Decision,
        time_ms: 1_700_000_000_000 + i as i64,
        actor: "test".into(),
        subjects: vec![],
        payload: serde_json::json!({ "i": i }).as_object().unwrap().clone(),
    }
}

/// The left/right steps from leaf `index` to the root in the tree of `size` leaves, after RFC 6962's
/// `PATH` recursion (written independently of the verifier).
fn inclusion_shape(index: u64, size: u64) -> Option<Vec<bool>> {
    if index >= size {
        return None;
    }
    let (mut lo, mut hi, mut out) = (0u64, size, Vec::new());
    while hi - lo > 1 {
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        out.push(index < lo + k);
        if index < lo + k { hi = lo + k } else { lo += k }
    }
    Some(out)
}

/// The steps of RFC 6962's `SUBPROOF` recursion from `m` to `n`.
fn consistency_shape(m: u64, n: u64) -> Option<Vec<(bool, bool)>> {
    if m == 0 || m > n {
        return None;
    }
    let (mut m, mut lo, mut hi, mut whole, mut out) = (m, 0u64, n, true, Vec::new());
    while m != hi - lo {
        let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
        out.push((m <= k, whole));
        if m <= k {
            hi = lo + k
        } else {
            m -= k;
            lo += k;
            whole = false
        }
    }
    out.push((true, whole));
    Some(out)
}

fn flip(h: &Hash, bit: u64) -> Hash {
    let mut h = *h;
    h[(bit / 8 % 32) as usize] ^= 1 << (bit % 8);
    h
}

#[test]
fn random_sizes_all_proofs_verify_and_any_bit_flip_fails() {
    let seed = 0x5eed_u64;
    let mut rng = Rng(seed);
    let ledger = Ledger::create(MemStore::default(), SignerKey::generate("test").unwrap()).unwrap();
    let mut leaves = Vec::new();
    let mut target = 0;
    for round in 0..12 {
        target += 1 + rng.below(if round < 6 { 40 } else { 700 });
        while (leaves.len() as u64) < target {
            let r = record(leaves.len() as u64);
            leaves.push(leaf_hash(&r.to_leaf()));
            ledger.append(&r).unwrap();
        }
        let size = ledger.size();
        let root = ledger.root_at(size).unwrap();
        let indices: Vec<u64> = if size <= 64 {
            (0..size).collect()
        } else {
            (0..64).map(|_| rng.below(size)).collect()
        };
        for index in indices {
            let proof = ledger.inclusion_proof(index, size).unwrap();
            let leaf = leaves[index as usize];
            verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
            let bit = rng.next();
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let k = rng.below(bad.len() as u64) as usize;
                bad[k] = flip(&bad[k], bit);
                assert!(
                    verify_inclusion(&leaf, index, size, &bad, &root).is_err(),
                    "seed {seed} size {size} index {index}"
                );
            }
            assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)).is_err());
            assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
            // RFC 9162 binds the size to the root only through the signed checkpoint, so a changed index
            // or size is accepted exactly when the leaf sits on an identical path in that tree.
            let shape = inclusion_shape(index, size);
            for b in [rng.below(64), rng.below(8)] {
                let (i2, s2) = (index ^ (1 << b), size ^ (1 << b));
                assert_eq!(
                    verify_inclusion(&leaf, i2, size, &proof, &root).is_ok(),
                    inclusion_shape(i2, size) == shape,
                    "index bit {b}"
                );
                assert_eq!(
                    verify_inclusion(&leaf, index, s2, &proof, &root).is_ok(),
                    inclusion_shape(index, s2) == shape,
                    "size bit {b}"
                );
            }
        }
        for _ in 0..48 {
            let from = 1 + rng.below(size);
            let r1 = ledger.root_at(from).unwrap();
            let proof = ledger.consistency_proof(from, size).unwrap();
            verify_consistency(from, size, &proof, &r1, &root).unwrap();
            if from == size {
                continue;
            }
            let bit = rng.next();
            let mut bad = proof.clone();
            let k = rng.below(bad.len() as u64) as usize;
            bad[k] = flip(&bad[k], bit);
            assert!(verify_consistency(from, size, &bad, &r1, &root).is_err());
            assert!(verify_consistency(from, size, &proof, &flip(&r1, bit), &root).is_err());
            assert!(verify_consistency(from, size, &proof, &r1, &flip(&root, bit)).is_err());
            let shape = consistency_shape(from, size);
            for b in [rng.below(64), rng.below(8)] {
                let (f2, s2) = (from ^ (1 << b), size ^ (1 << b));
                assert_eq!(
                    verify_consistency(f2, size, &proof, &r1, &root).is_ok(),
                    consistency_shape(f2, size) == shape,
                    "from {from} bit {b}"
                );
                assert_eq!(
                    verify_consistency(from, s2, &proof, &r1, &root).is_ok(),
                    consistency_shape(from, s2) == shape,
                    "to {size} bit {b}"
                );
            }
        }
    }
}

#[test]
fn checkpoints_are_signed_heads_of_the_tree() {
    let key = SignerKey::generate("warden.test/proofs").unwrap();
    let ledger = Ledger::create(MemStore::default(), key.clone()).unwrap();
    for i in 0..37 {
        ledger.append(&record(i)).unwrap();
    }
    let note = ledger.checkpoint().unwrap();
    let cp = warden_ledger::Checkpoint::open(&note, &key.verifier()).unwrap();
    assert_eq!((cp.size, cp.root), ledger.head());
    assert_eq!(
        ledger.checkpoint().unwrap(),
        note,
        "no new checkpoint while the tree has not grown"
    );
}
