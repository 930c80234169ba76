//! Key groups, as Flink shards keyed state: a key hashes to one of `max parallelism` key groups,
//! and each subtask of a keyed operator owns a contiguous range of key groups. Snapshots are kept
//! per key group so that a restore can hand each subtask exactly the groups it owns.
//!
//! The arithmetic is Flink 2's, bit for bit, so that a key lands on the same key group and the
//! same subtask here as in `ckptlab flink run` (whose job keys a `String` by `keyBy(..)`):
//! `key group = MathUtils.murmurHash(key.hashCode()) % maxParallelism`
//! (KeyGroupRangeAssignment.java:64-76) with Java's `String.hashCode()`, and the subtask
//! `keyGroupId * parallelism / maxParallelism` (KeyGroupRangeAssignment.java:126). Line numbers
//! are those of flink-dist-2.3.0's line tables.
//!
//! ```
//! use ckptlab::keygroup::{key_group, operator_index, key_group_range};
//! let kg = key_group("a");
//! assert_eq!(kg, 81); // KeyGroupRangeAssignment.assignToKeyGroup("a", 128) in Flink 2.3
//! let owner = operator_index(kg, 2);
//! assert!(key_group_range(owner, 2).contains(&kg));
//! ```

use std::ops::Range;

/// Flink's default maximum parallelism for every job ckptlab runs (`job.parallelism` <= 64):
/// `computeDefaultMaxParallelism(p)` is 128 for p <= 85. ckptlab's engine keeps this many key
/// groups; `job.max-parallelism` accepts only this value for now.
pub const MAX_PARALLELISM: u16 = 128;

/// `KeyGroupRangeAssignment.DEFAULT_LOWER_BOUND_MAX_PARALLELISM` (1 << 7).
pub const DEFAULT_LOWER_BOUND_MAX_PARALLELISM: u32 = 1 << 7;

/// `KeyGroupRangeAssignment.UPPER_BOUND_MAX_PARALLELISM` (Transformation's 1 << 15).
pub const UPPER_BOUND_MAX_PARALLELISM: u32 = 1 << 15;

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over the UTF-16 code units, in
/// wrapping 32-bit arithmetic (a character outside the BMP counts as its two surrogates).
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// Flink's `MathUtils.murmurHash(int)` (MathUtils.java:138-155): one murmur3 round of the 32-bit
/// code, the length (4 bytes) mixed in, `bitMix` (MathUtils.java:195-201), then made non-negative
/// (`Integer.MIN_VALUE` becomes 0, any other negative value its negation).
pub fn murmur_hash(code: i32) -> i32 {
    let mut code = code.wrapping_mul(0xcc9e_2d51_u32 as i32);
    code = code.rotate_left(15);
    code = code.wrapping_mul(0x1b87_3593);
    code = code.rotate_left(13);
    code = code.wrapping_mul(5).wrapping_add(0xe654_6b64_u32 as i32);
    code ^= 4;
    code = bit_mix(code);
    if code >= 0 {
        code
    } else if code != i32::MIN {
        -code
    } else {
        0
    }
}

/// Flink's `MathUtils.bitMix(int)` (MathUtils.java:195-201), murmur3's finalizer; `>>>` is a
/// logical shift, hence the casts through `u32`.
fn bit_mix(mut code: i32) -> i32 {
    let ushr = |c: i32, n: u32| ((c as u32) >> n) as i32;
    code ^= ushr(code, 16);
    code = code.wrapping_mul(0x85eb_ca6b_u32 as i32);
    code ^= ushr(code, 13);
    code = code.wrapping_mul(0xc2b2_ae35_u32 as i32);
    code ^= ushr(code, 16);
    code
}

/// The key group of a string key among `max_parallelism` groups: Flink's
/// `KeyGroupRangeAssignment.assignToKeyGroup(key, maxParallelism)` =
/// `computeKeyGroupForKeyHash(key.hashCode(), ..)` = `murmurHash(hash) % maxParallelism`
/// (KeyGroupRangeAssignment.java:64-76).
pub fn assign_to_key_group(key: &str, max_parallelism: u16) -> u16 {
    (murmur_hash(java_string_hash(key)) % i32::from(max_parallelism)) as u16
}

/// The key group of a key in ckptlab's engine (`MAX_PARALLELISM` groups).
pub fn key_group(key: &str) -> u16 {
    assign_to_key_group(key, MAX_PARALLELISM)
}

/// The subtask that owns a key group: Flink's `computeOperatorIndexForKeyGroup`
/// (KeyGroupRangeAssignment.java:126), `keyGroupId * parallelism / maxParallelism`.
pub fn operator_index_for_key_group(max_parallelism: u16, parallelism: usize, key_group: u16) -> usize {
    usize::from(key_group) * parallelism / usize::from(max_parallelism)
}

/// The subtask that owns a key group in ckptlab's engine.
pub fn operator_index(key_group: u16, parallelism: usize) -> usize {
    operator_index_for_key_group(MAX_PARALLELISM, parallelism, key_group)
}

/// The key groups a subtask owns: Flink's `computeKeyGroupRangeForOperatorIndex`
/// (KeyGroupRangeAssignment.java:96-105; Flink's range is inclusive, this one half-open).
pub fn key_group_range_for_operator_index(max_parallelism: u16, parallelism: usize, subtask: usize) -> Range<u16> {
    let max = usize::from(max_parallelism);
    let start = (subtask * max + parallelism - 1) / parallelism;
    let end = ((subtask + 1) * max - 1) / parallelism + 1;
    start as u16..end as u16
}

/// The key groups a subtask owns in ckptlab's engine.
pub fn key_group_range(subtask: usize, parallelism: usize) -> Range<u16> {
    key_group_range_for_operator_index(MAX_PARALLELISM, parallelism, subtask)
}

/// Flink's default max parallelism for an operator of parallelism `p`:
/// `min(max(roundUpToPowerOfTwo(p + p / 2), 128), 32768)` (KeyGroupRangeAssignment.java:139-143,
/// MathUtils.roundUpToPowerOfTwo at MathUtils.java:164-170). `p` must be in 1..=32768.
pub fn compute_default_max_parallelism(p: u32) -> u32 {
    (p + p / 2).next_power_of_two().clamp(DEFAULT_LOWER_BOUND_MAX_PARALLELISM, UPPER_BOUND_MAX_PARALLELISM)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, String.hashCode(), murmurHash(hashCode), assignToKeyGroup(key, 128),
    /// assignToKeyGroup(key, 1000), assignKeyToParallelOperator(key, 128, 3)), printed by a tiny
    /// Java program calling org.apache.flink.runtime.state.KeyGroupRangeAssignment and
    /// org.apache.flink.util.MathUtils from flink-dist-2.3.0.jar (the jar `ckptlab flink`
    /// installs under ~/.cache/ckptlab/flink), run with OpenJDK 17:
    /// `javac -cp flink-dist-2.3.0.jar Kg.java && java -cp flink-dist-2.3.0.jar:. Kg`.
    /// "polygenelubricants" hashes to Integer.MIN_VALUE; the emoji is two UTF-16 surrogates.
    const FLINK: &[(&str, i32, i32, u16, u16, usize)] = &[
        ("", 0, 593689054, 94, 54, 2),
        ("a", 97, 1455541201, 81, 201, 1),
        ("b", 98, 516420758, 22, 758, 0),
        ("1", 49, 985808566, 54, 566, 1),
        ("key-0", 101943362, 591317919, 31, 919, 0),
        ("key-17", -1134722988, 1460463584, 96, 584, 2),
        ("user-42", -147182656, 1600933524, 20, 524, 0),
        ("hello world", 1794106052, 1522757468, 92, 468, 2),
        ("\u{e9}", 233, 1107437598, 30, 598, 0),
        ("\u{fc}ber", 7604755, 1864126153, 73, 153, 1),
        ("\u{65e5}\u{672c}\u{8a9e}", 25921943, 1333041691, 27, 691, 0),
        ("\u{1f600}", 1772899, 1934073014, 54, 14, 1),
        ("\u{ff}\u{0}x", 245175, 456243248, 48, 248, 1),
        ("polygenelubricants", -2147483648, 1718298732, 108, 732, 2),
        ("the quick brown fox jumps over the lazy dog", -2082818701, 1229195320, 56, 320, 1),
    ];

    #[test]
    fn keys_land_on_flinks_key_groups_and_subtasks() {
        for &(key, hash, murmur, kg128, kg1000, subtask3) in FLINK {
            assert_eq!(java_string_hash(key), hash, "String.hashCode of {key:?}");
            assert_eq!(murmur_hash(hash), murmur, "murmurHash of {key:?}");
            assert_eq!(key_group(key), kg128, "key group of {key:?} among 128");
            assert_eq!(assign_to_key_group(key, 1000), kg1000, "key group of {key:?} among 1000");
            assert_eq!(operator_index(key_group(key), 3), subtask3, "subtask of {key:?} at parallelism 3");
        }
    }

    /// MathUtils.murmurHash of edge integers, from the same Java program.
    #[test]
    fn murmur_hash_of_edge_integers_is_flinks() {
        for (code, want) in
            [(0, 593689054), (1, 68075478), (-1, 1982413648), (i32::MIN, 1718298732), (i32::MAX, 1653689534), (42, 1134849565)]
        {
            assert_eq!(murmur_hash(code), want, "murmurHash({code})");
        }
    }

    /// KeyGroupRangeAssignment.computeDefaultMaxParallelism, from the same Java program.
    #[test]
    fn default_max_parallelism_is_flinks() {
        for (p, want) in [(1, 128), (2, 128), (4, 128), (85, 128), (86, 256), (100, 256), (128, 256), (1000, 2048), (30000, 32768)] {
            assert_eq!(compute_default_max_parallelism(p), want, "p = {p}");
        }
        assert!((1..=64).all(|p| compute_default_max_parallelism(p) == u32::from(MAX_PARALLELISM)), "every parallelism ckptlab allows");
    }

    #[test]
    fn ranges_partition_all_key_groups_consistently_with_operator_index() {
        for max in [128u16, 1000] {
            for p in 1..=10 {
                let mut covered = 0;
                for s in 0..p {
                    let r = key_group_range_for_operator_index(max, p, s);
                    for kg in r.clone() {
                        assert_eq!(operator_index_for_key_group(max, p, kg), s, "max={max} p={p} kg={kg}");
                    }
                    covered += r.len();
                }
                assert_eq!(covered, usize::from(max));
            }
        }
    }
}
