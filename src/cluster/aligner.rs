//! The input side of a task with several input channels: barrier alignment (EXACTLY_ONCE) and
//! barrier tracking (AT_LEAST_ONCE), after Flink's CheckpointBarrierHandler.
//!
//! Aligned: a channel that delivered Barrier(n) is blocked; what it delivers next is held until
//! Barrier(n) came on every channel. Then the task snapshots, and the held records are processed.
//! Tracking: nothing blocks; the task snapshots when the last Barrier(n) arrives, so records that
//! overtook the barrier on a faster channel are already in the snapshot, and will be replayed after
//! a recovery: counted twice.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::channel::ChannelStats;
use super::element::{Barrier, Record, StreamMessage};
use crate::config::CheckpointMode;

/// What the aligner hands to its task, in order.
#[derive(Debug, PartialEq)]
pub enum GateOutput {
    Record(Record),
    BarrierReceived {
        checkpoint: u64,
        channel: usize,
    },
    AlignmentStarted {
        checkpoint: u64,
    },
    /// Take the snapshot for this barrier now.
    Checkpoint {
        barrier: Barrier,
        alignment: Duration,
        buffered: u64,
    },
}

struct Alignment {
    checkpoint: u64,
    started: Instant,
    seen: usize,
    buffered: u64,
}

/// Alignment state of one task's input channels.
pub struct Aligner {
    channels: Vec<Arc<ChannelStats>>,
    blocked: Vec<bool>,
    held: Vec<VecDeque<StreamMessage>>,
    aligning: Option<Alignment>,
    tracking: BTreeMap<u64, usize>,
    last_checkpoint: u64,
}

impl Aligner {
    pub fn new(channels: Vec<Arc<ChannelStats>>) -> Self {
        let n = channels.len();
        Aligner {
            channels,
            blocked: vec![false; n],
            held: (0..n).map(|_| VecDeque::new()).collect(),
            aligning: None,
            tracking: BTreeMap::new(),
            last_checkpoint: 0,
        }
    }

    /// The checkpoint being aligned, if any.
    pub fn aligning(&self) -> Option<u64> {
        self.aligning.as_ref().map(|a| a.checkpoint)
    }

    /// Whether a channel is blocked by alignment (records on an open channel can skip the aligner).
    #[inline]
    pub fn is_blocked(&self, channel: usize) -> bool {
        self.blocked[channel]
    }

    /// Feeds one element that arrived on `channel`.
    pub fn push(&mut self, channel: usize, msg: StreamMessage, out: &mut Vec<GateOutput>) {
        if self.blocked[channel] {
            if matches!(msg, StreamMessage::Record(_)) {
                self.channels[channel].buffered.fetch_add(1, Ordering::Relaxed);
                if let Some(a) = &mut self.aligning {
                    a.buffered += 1;
                }
            }
            self.held[channel].push_back(msg);
            return;
        }
        match msg {
            StreamMessage::Record(r) => out.push(GateOutput::Record(r)),
            StreamMessage::Barrier(b) => {
                if b.checkpoint <= self.last_checkpoint {
                    return; // stale: a later checkpoint was already taken
                }
                out.push(GateOutput::BarrierReceived { checkpoint: b.checkpoint, channel });
                match b.options.mode {
                    CheckpointMode::ExactlyOnce => self.align(channel, b, out),
                    CheckpointMode::AtLeastOnce => self.track(b, out),
                }
            }
        }
    }

    fn track(&mut self, b: Barrier, out: &mut Vec<GateOutput>) {
        let seen = self.tracking.entry(b.checkpoint).or_insert(0);
        *seen += 1;
        if *seen >= self.channels.len() {
            self.last_checkpoint = b.checkpoint;
            self.tracking = self.tracking.split_off(&(b.checkpoint + 1));
            out.push(GateOutput::Checkpoint { barrier: b, alignment: Duration::ZERO, buffered: 0 });
        }
    }

    fn align(&mut self, channel: usize, b: Barrier, out: &mut Vec<GateOutput>) {
        if self.channels.len() == 1 {
            self.last_checkpoint = b.checkpoint;
            out.push(GateOutput::Checkpoint { barrier: b, alignment: Duration::ZERO, buffered: 0 });
            return;
        }
        match &self.aligning {
            Some(a) if a.checkpoint > b.checkpoint => return, // older than the one aligning: stale
            Some(a) if a.checkpoint < b.checkpoint => {
                // A newer barrier subsumes the alignment in progress (its checkpoint cannot complete).
                self.release(out);
            }
            _ => {}
        }
        if self.aligning.is_none() {
            self.aligning = Some(Alignment { checkpoint: b.checkpoint, started: Instant::now(), seen: 0, buffered: 0 });
            out.push(GateOutput::AlignmentStarted { checkpoint: b.checkpoint });
        }
        self.blocked[channel] = true;
        self.channels[channel].blocked.store(true, Ordering::Relaxed);
        let done = {
            let a = self.aligning.as_mut().expect("set above");
            a.seen += 1;
            a.seen >= self.channels.len()
        };
        if done {
            let a = self.aligning.take().expect("set above");
            self.last_checkpoint = b.checkpoint;
            out.push(GateOutput::Checkpoint { barrier: b, alignment: a.started.elapsed(), buffered: a.buffered });
            self.release(out);
        }
    }

    /// Unblocks every channel and processes what was held, in arrival order per channel.
    fn release(&mut self, out: &mut Vec<GateOutput>) {
        self.aligning = None;
        let mut drained = Vec::new();
        for ch in 0..self.channels.len() {
            self.blocked[ch] = false;
            self.channels[ch].blocked.store(false, Ordering::Relaxed);
            let q = std::mem::take(&mut self.held[ch]);
            let records = q.iter().filter(|m| matches!(m, StreamMessage::Record(_))).count() as i64;
            self.channels[ch].buffered.fetch_sub(records, Ordering::Relaxed);
            drained.push(q);
        }
        for (ch, q) in drained.into_iter().enumerate() {
            for msg in q {
                self.push(ch, msg, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::element::{CheckpointOptions, Origin};

    fn rec(v: &str, offset: u64) -> StreamMessage {
        StreamMessage::Record(Record { key: v.into(), value: v.into(), origin: Origin { partition: 0, offset }, count: 0 })
    }

    fn barrier(id: u64, mode: CheckpointMode) -> StreamMessage {
        StreamMessage::Barrier(Barrier { checkpoint: id, options: CheckpointOptions { mode } })
    }

    fn gate(n: usize) -> Aligner {
        Aligner::new((0..n).map(|i| ChannelStats::new(format!("s{i}"), "c".into(), Duration::ZERO)).collect())
    }

    fn order(out: &[GateOutput]) -> Vec<String> {
        out.iter()
            .filter_map(|o| match o {
                GateOutput::Record(r) => Some(r.value.to_string()),
                GateOutput::Checkpoint { barrier, .. } => Some(format!("#{}", barrier.checkpoint)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn exactly_once_holds_records_behind_a_barrier_until_aligned() {
        let mut g = gate(2);
        let mut out = Vec::new();
        g.push(0, barrier(1, CheckpointMode::ExactlyOnce), &mut out);
        g.push(0, rec("after", 1), &mut out);
        assert_eq!(g.channels[0].buffered.load(Ordering::Relaxed), 1);
        g.push(1, rec("before", 2), &mut out);
        g.push(1, barrier(1, CheckpointMode::ExactlyOnce), &mut out);
        assert_eq!(order(&out), vec!["before", "#1", "after"]);
        assert_eq!(g.channels[0].buffered.load(Ordering::Relaxed), 0);
        assert!(!g.channels[0].blocked.load(Ordering::Relaxed));
    }

    #[test]
    fn at_least_once_lets_records_overtake_the_barrier() {
        let mut g = gate(2);
        let mut out = Vec::new();
        g.push(0, barrier(1, CheckpointMode::AtLeastOnce), &mut out);
        g.push(0, rec("overtaker", 1), &mut out);
        g.push(1, barrier(1, CheckpointMode::AtLeastOnce), &mut out);
        assert_eq!(order(&out), vec!["overtaker", "#1"]);
    }

    #[test]
    fn held_barrier_of_the_next_checkpoint_blocks_again_while_draining() {
        let mut g = gate(2);
        let mut out = Vec::new();
        let eo = CheckpointMode::ExactlyOnce;
        g.push(0, barrier(1, eo), &mut out);
        g.push(0, rec("a", 1), &mut out);
        g.push(0, barrier(2, eo), &mut out);
        g.push(0, rec("b", 2), &mut out);
        g.push(1, barrier(1, eo), &mut out);
        g.push(1, rec("c", 3), &mut out);
        g.push(1, barrier(2, eo), &mut out);
        assert_eq!(order(&out), vec!["#1", "a", "c", "#2", "b"]);
    }

    #[test]
    fn one_input_channel_needs_no_alignment() {
        let mut g = gate(1);
        let mut out = Vec::new();
        g.push(0, barrier(3, CheckpointMode::ExactlyOnce), &mut out);
        g.push(0, rec("x", 1), &mut out);
        assert_eq!(order(&out), vec!["#3", "x"]);
    }
}
