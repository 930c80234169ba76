//! One partition's records in the embedded topic: the 4-byte ids of their values, from a base
//! offset on, in chunks of a fixed size.
//!
//! Why chunks and not one ring (`VecDeque<u32>`): a ring's capacity doubles as it fills, so its
//! memory is the next power of two above the most records it ever held at once, paid again (old
//! and new buffer) while it grows. Retention (`source.embedded.retention = checkpointed`) frees the
//! front once per completed checkpoint, so what a partition holds is the backlog between releases,
//! and a long run that once held 2^21 + 1 ids (a slower checkpoint, a producer ahead) kept 16 MB
//! for 8 MB of records: measured with heaptrack (issue 24), the ring's buffer was 16.8 MB at the
//! peak of an 8 M-record run and 33.5 MB at 32 M, every other allocation site flat. Chunks cost
//! the records held plus one chunk being filled, and spare chunks up to what the last cycle
//! between two releases held: a released chunk is reused by the next records, so that a run whose
//! producer refills what retention frees allocates no chunk in its steady state (freeing and
//! allocating 256 KB blocks at every checkpoint fragmented glibc's heap: RSS crept up with the
//! heap's peak flat), and what a burst took is given back one cycle after it.

use std::collections::VecDeque;

/// Ids per chunk (256 KB).
pub const CHUNK: usize = 1 << 16;

#[derive(Default)]
pub struct IdLog {
    /// The offset of the first id held.
    base: u64,
    /// Every chunk but the last is full; the first one's ids start at `head`.
    chunks: VecDeque<Vec<u32>>,
    head: usize,
    len: usize,
    /// Empty chunks for the records to come.
    spare: Vec<Vec<u32>>,
    /// The most chunks held since the last release: the next cycle's likely need, which bounds
    /// the chunks (held and spare) a release keeps.
    high: usize,
    /// Chunks allocated so far (not reused).
    allocated: u64,
}

impl IdLog {
    /// The offset of the first record held (records below it were released).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The offset the next record gets.
    pub fn end(&self) -> u64 {
        self.base + self.len as u64
    }

    /// Appends one id; returns its offset.
    pub fn push(&mut self, id: u32) -> u64 {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            let chunk = self.spare.pop().unwrap_or_else(|| {
                self.allocated += 1;
                Vec::with_capacity(CHUNK)
            });
            self.chunks.push_back(chunk);
            self.high = self.high.max(self.chunks.len());
        }
        self.chunks.back_mut().expect("a chunk with room was just ensured").push(id);
        self.len += 1;
        self.end() - 1
    }

    /// The ids of the records held from index `a` (0 = `base`) up to `b`, in order.
    pub fn range(&self, a: usize, b: usize) -> impl Iterator<Item = u32> + '_ {
        let (a, b) = (a.min(self.len), b.min(self.len));
        let (from, to) = (self.head + a, self.head + b);
        (from / CHUNK..to.div_ceil(CHUNK)).flat_map(move |c| {
            let lo = if c == from / CHUNK { from % CHUNK } else { 0 };
            let hi = if c == to / CHUNK { to % CHUNK } else { CHUNK };
            self.chunks[c][lo..hi].iter().copied()
        })
    }

    /// Drops the records below `below`; a chunk whose records are all gone is kept as a spare
    /// while the chunks kept are no more than the cycle since the last release held, else freed.
    pub fn release(&mut self, below: u64) {
        let n = below.saturating_sub(self.base).min(self.len as u64) as usize;
        if n == 0 {
            return;
        }
        self.base += n as u64;
        self.len -= n;
        self.head += n;
        while self.head >= CHUNK || (self.len == 0 && !self.chunks.is_empty()) {
            let Some(mut chunk) = self.chunks.pop_front() else { break };
            self.head = self.head.saturating_sub(CHUNK);
            chunk.clear();
            self.spare.push(chunk);
        }
        if self.len == 0 {
            self.head = 0;
        }
        self.spare.truncate(self.high.saturating_sub(self.chunks.len()));
        self.high = self.chunks.len();
    }

    /// Bytes the ids take: the chunks held and the spare ones (capacity, not only what is used).
    pub fn bytes(&self) -> usize {
        (self.chunks.len() + self.spare.len()) * CHUNK * std::mem::size_of::<u32>() + self.chunks.capacity() * std::mem::size_of::<Vec<u32>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize) -> IdLog {
        let mut log = IdLog::default();
        for i in 0..n {
            assert_eq!(log.push(i as u32), i as u64);
        }
        log
    }

    #[test]
    fn ranges_read_across_chunks_after_releases() {
        let mut log = filled(3 * CHUNK + 5);
        assert_eq!(log.range(CHUNK - 2, CHUNK + 2).collect::<Vec<_>>(), [CHUNK - 2, CHUNK - 1, CHUNK, CHUNK + 1].map(|i| i as u32));
        log.release(CHUNK as u64 + 3);
        assert_eq!((log.base(), log.len(), log.end()), (CHUNK as u64 + 3, 2 * CHUNK + 2, 3 * CHUNK as u64 + 5));
        let all: Vec<u32> = log.range(0, usize::MAX).collect();
        assert_eq!(all, (CHUNK as u32 + 3..3 * CHUNK as u32 + 5).collect::<Vec<_>>());
        assert_eq!(log.range(2 * CHUNK - 3, 2 * CHUNK + 10).collect::<Vec<_>>(), [3 * CHUNK as u32, 3 * CHUNK as u32 + 1, 3 * CHUNK as u32 + 2, 3 * CHUNK as u32 + 3, 3 * CHUNK as u32 + 4]);
        assert_eq!(log.range(5, 5).count(), 0);
        // Released below the base, or past the end: nothing more, nothing less.
        log.release(10);
        assert_eq!(log.base(), CHUNK as u64 + 3);
        log.release(u64::MAX);
        assert_eq!((log.base(), log.len()), (3 * CHUNK as u64 + 5, 0));
        assert_eq!(log.push(7), 3 * CHUNK as u64 + 5);
        assert_eq!(log.range(0, 1).collect::<Vec<_>>(), [7]);
    }

    /// The memory a partition holds follows the records it holds, not the most it ever held:
    /// while it holds N records, N's chunks plus one (or the last cycle's, reused); one release
    /// after a backlog of many chunks, what the cycle before held. A ring that doubles keeps its
    /// peak's capacity (64 chunks' worth for 40.5 chunks of records).
    #[test]
    fn memory_follows_the_records_held_not_the_peak() {
        let chunk_bytes = CHUNK * 4;
        let slack = 4096;
        let mut log = IdLog::default();
        let mut offset = 0u64;
        let mut last_cycle = 0usize;
        // Cycles of a producer ahead and a release per checkpoint, with one backlog far above the rest.
        for cycle in 0..40 {
            let backlog = if cycle == 7 { 40 * CHUNK } else { 3 * CHUNK + 123 };
            let mut most = 0;
            for _ in 0..backlog {
                offset = log.push((offset % 1000) as u32) + 1;
                most = most.max(log.len());
            }
            let now = log.len().div_ceil(CHUNK) + 1;
            assert!(log.bytes() <= now.max(last_cycle) * chunk_bytes + slack, "cycle {cycle}: {} bytes for {} records", log.bytes(), log.len());
            let keep = CHUNK as u64 / 2;
            log.release(offset - keep);
            assert_eq!(log.len() as u64, keep);
            let this_cycle = most.div_ceil(CHUNK) + 1;
            assert!(log.bytes() <= this_cycle * chunk_bytes + slack, "cycle {cycle}: {} bytes kept after the release", log.bytes());
            if cycle >= 9 {
                assert!(log.bytes() <= 6 * chunk_bytes + slack, "cycle {cycle}: {} bytes two cycles after the burst", log.bytes());
            }
            last_cycle = this_cycle;
        }
    }

    /// A producer that refills what each release freed reuses the released chunks: none is
    /// allocated in the steady state.
    #[test]
    fn a_steady_cycle_reuses_its_chunks() {
        let mut log = IdLog::default();
        let mut offset = 0;
        let mut before = 0;
        for cycle in 0..20 {
            for _ in 0..5 * CHUNK {
                offset = log.push(1) + 1;
            }
            if cycle >= 2 {
                assert_eq!(log.allocated, before, "cycle {cycle}: a chunk was allocated in the steady state");
            }
            before = log.allocated;
            log.release(offset - 1000);
        }
        assert_eq!(log.allocated, 6);
    }
}
