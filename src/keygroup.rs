//! Key groups, as Flink shards keyed state: a key hashes to one of `MAX_PARALLELISM` key groups,
//! and each subtask of a keyed operator owns a contiguous range of key groups. Snapshots are kept
//! per key group so that a restore can hand each subtask exactly the groups it owns.
//!
//! ```
//! use ckptlab::keygroup::{key_group, operator_index, key_group_range};
//! let kg = key_group("a");
//! let owner = operator_index(kg, 2);
//! assert!(key_group_range(owner, 2).contains(&kg));
//! ```

use std::ops::Range;

/// Flink's default maximum parallelism for small jobs.
pub const MAX_PARALLELISM: u16 = 128;

/// The key group of a key (FNV-1a then a murmur finalizer, stable across runs and machines).
pub fn key_group(key: &str) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h % u64::from(MAX_PARALLELISM)) as u16
}

/// The subtask that owns a key group (Flink's `computeOperatorIndexForKeyGroup`).
pub fn operator_index(key_group: u16, parallelism: usize) -> usize {
    usize::from(key_group) * parallelism / usize::from(MAX_PARALLELISM)
}

/// The key groups a subtask owns (Flink's `computeKeyGroupRangeForOperatorIndex`).
pub fn key_group_range(subtask: usize, parallelism: usize) -> Range<u16> {
    let max = usize::from(MAX_PARALLELISM);
    let start = (subtask * max).div_ceil(parallelism);
    let end = ((subtask + 1) * max - 1) / parallelism + 1;
    start as u16..end as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_all_key_groups_consistently_with_operator_index() {
        for p in 1..=10 {
            let mut covered = 0;
            for s in 0..p {
                let r = key_group_range(s, p);
                for kg in r.clone() {
                    assert_eq!(operator_index(kg, p), s, "p={p} kg={kg}");
                }
                covered += r.len();
            }
            assert_eq!(covered, usize::from(MAX_PARALLELISM));
        }
    }
}
