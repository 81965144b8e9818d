//! A small, fast, non-cryptographic hasher (the Firefox/rustc "FxHash") for the per-cycle
//! maps keyed by borrowed topology pairs: their keys come from the cluster's own labels, are
//! rebuilt every cycle, and are never exposed to an adversary's choice of many colliding keys
//! in a way that outlives one cycle, so SipHash's protection buys nothing and costs a lot.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_hash_equal_and_maps_work() {
        let mut m: FxMap<(&str, &str), i64> = FxMap::default();
        *m.entry(("zone", "a")).or_insert(0) += 1;
        *m.entry(("zone", "a")).or_insert(0) += 1;
        *m.entry(("zone", "b")).or_insert(0) += 1;
        assert_eq!(m.get(&("zone", "a")), Some(&2));
        assert_eq!(m.len(), 2);
    }
}
