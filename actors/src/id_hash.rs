//! A fast hash for the node's own tables keyed by command id.
//!
//! Every call passes through a few of these tables on the leader (which
//! connection waits for it, when it arrived); std's SipHash was about 5% of
//! the leader's CPU under pipelined load. A command id is two `u64`s, so one
//! multiply per word does. Each table starts from a random seed, so ids
//! chosen to collide in one process do not collide in another. Never used
//! for replicated state: its iteration order differs per process.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A `HashMap` with [`IdHasher`].
pub type IdMap<K, V> = HashMap<K, V, BuildIdHasher>;

/// Builds [`IdHasher`]s from a seed drawn once per table.
#[derive(Clone)]
pub struct BuildIdHasher {
    seed: u64,
}

impl Default for BuildIdHasher {
    fn default() -> Self {
        // std's RandomState is seeded per process and varies per instance.
        BuildIdHasher {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }
}

impl BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.seed)
    }
}

/// One folded multiply per 64-bit word.
pub struct IdHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for IdHasher {
    fn write_u64(&mut self, word: u64) {
        // Folded multiply (as foldhash's): both halves of the 128-bit product,
        // so every input bit reaches both the low and the high bits.
        let product = u128::from(self.0 ^ word) * u128::from(K);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concoord_objects::CommandId;

    #[test]
    fn ids_differing_in_either_word_hash_apart_and_tables_are_seeded_apart() {
        let build = BuildIdHasher::default();
        let a = build.hash_one(CommandId::new(7, 1));
        assert_eq!(a, build.hash_one(CommandId::new(7, 1)));
        assert_ne!(a, build.hash_one(CommandId::new(7, 2)));
        assert_ne!(a, build.hash_one(CommandId::new(8, 1)));
        // The seed is random per table: two tables agreeing on a whole run of
        // ids would mean it is not.
        let other = BuildIdHasher::default();
        assert!((0..64).any(|seq| {
            build.hash_one(CommandId::new(7, seq)) != other.hash_one(CommandId::new(7, seq))
        }));
    }

    #[test]
    fn consecutive_sequence_numbers_spread_over_buckets() {
        // hashbrown takes the bucket from the low bits and a tag from the top 7.
        let build = BuildIdHasher::default();
        let hashes: Vec<u64> = (0..4096)
            .map(|seq| build.hash_one(CommandId::new(42, seq)))
            .collect();
        let low: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let top: std::collections::BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // Random hashes would fill about 2,590 of 4,096 buckets.
        assert!(low.len() > 2400, "{} of 4096 buckets used", low.len());
        assert_eq!(top.len(), 128, "every tag used");
    }

    #[test]
    fn a_table_keyed_by_id_behaves_as_a_map() {
        let mut map: IdMap<CommandId, u64> = IdMap::default();
        for seq in 0..1000 {
            map.insert(CommandId::new(seq % 3, seq), seq);
        }
        assert_eq!(map.len(), 1000);
        assert_eq!(map.get(&CommandId::new(2, 5)), Some(&5));
        assert_eq!(map.get(&CommandId::new(1, 5)), None);
    }
}
