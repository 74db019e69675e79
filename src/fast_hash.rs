//! A fast, unkeyed hash for maps whose keys come from the policy.
//!
//! The policy's own rule keys fill these maps; a caller only looks names up. A caller
//! cannot add keys, so it cannot build colliding chains: the worst case of a lookup is set
//! by the operator's keys, and a keyed (slower) hash buys nothing here. Maps filled from
//! caller-controlled ids, like the counter store, keep std's keyed SipHash.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` hasher state for policy-keyed maps.
pub(crate) type FastBuildHasher = BuildHasherDefault<FastHasher>;

/// The multiply-rotate hash of rustc's `FxHasher`, eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            if let Some(prefix) = word.get_mut(..rest.len()) {
                prefix.copy_from_slice(rest);
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn write_u64(&mut self, word: u64) {
        self.add(word);
    }

    fn write_usize(&mut self, word: usize) {
        self.add(word as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}
