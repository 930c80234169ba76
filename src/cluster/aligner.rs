//! Exactly-once barrier handling at a task's inputs, after Flink's
//! `SingleCheckpointBarrierHandler` with its aligned and unaligned controllers.
//!
//! - Aligned: a channel that delivered Barrier(n) is blocked (not consumed) until Barrier(n) came
//!   on every channel; then the task snapshots and every channel is consumed again. The records
//!   behind a blocked channel's barrier wait in that channel, which fills and backpressures its
//!   sender.
//! - Unaligned: Barrier(n) comes as a priority event, ahead of the buffers the receiver holds;
//!   on the first one the task snapshots at once and forwards the barrier. What the barrier
//!   overtook at the receiver (the buffers received before it) and what still comes on channels
//!   whose Barrier(n) has not come is persisted as input channel state (RemoteInputChannel.java
//!   :592-666, :802-843), and processed as usual; the sender persisted what it overtook there.
//!   There is one barrier per channel: no in-order copy.
//! - Aligned with a timeout: aligned until alignment has taken `aligned-checkpoint-timeout`, then
//!   the same as unaligned for the channels whose barrier has not come yet.
//!
//! The aligner decides; the task's runner acts (blocks the gate, snapshots, persists, acks).

use std::time::Duration;

use tokio::time::Instant;

use super::element::{Alignment, Barrier};

/// What the runner must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AlignerAction {
    AlignmentStarted {
        checkpoint: u64,
    },
    /// Stop consuming this channel.
    Block(usize),
    UnblockAll,
    /// Take the snapshot now and forward the barrier (`unaligned`: ahead of queued output).
    Snapshot {
        barrier: Barrier,
        alignment: Duration,
        unaligned: bool,
    },
    /// A priority barrier of the snapshotted checkpoint came on this channel: the records the
    /// receiver holds ahead of it (received, or left of a buffer being processed) are input
    /// channel state.
    PersistQueued {
        checkpoint: u64,
        channel: usize,
    },
    /// Every barrier of the checkpoint has come: its channel state is complete, ack it.
    ChannelStateComplete {
        checkpoint: u64,
    },
    /// Give the checkpoint up: forward a cancel marker downstream; `decline` tells the
    /// JobManager why (nothing to tell when an upstream cancel marker caused it).
    Abort {
        checkpoint: u64,
        decline: Option<super::task::DeclineReason>,
    },
}

struct Pending {
    barrier: Barrier,
    started: Instant,
    /// The in-order barrier has come on this channel.
    arrived: Vec<bool>,
    /// The snapshot is taken (unaligned, or aligned and switched by the timeout).
    snapshotted: bool,
}

/// The exactly-once barrier state of one task's input channels.
pub struct Aligner {
    channels: usize,
    pending: Option<Pending>,
    /// The newest checkpoint this task finished or gave up: older barriers are stale.
    last: u64,
}

impl Aligner {
    pub fn new(channels: usize) -> Self {
        Aligner { channels, pending: None, last: 0 }
    }

    /// The checkpoint being aligned (channels blocked, no snapshot yet), if any.
    pub fn aligning(&self) -> Option<u64> {
        self.pending.as_ref().filter(|p| !p.snapshotted).map(|p| p.barrier.checkpoint)
    }

    /// The checkpoint whose channel state the records arriving on `channel` belong to: the
    /// snapshot is taken and the channel's in-order barrier has not come yet.
    #[inline]
    pub fn persisting(&self, channel: usize) -> Option<u64> {
        match &self.pending {
            Some(p) if p.snapshotted && !p.arrived[channel] => Some(p.barrier.checkpoint),
            _ => None,
        }
    }

    /// The checkpoint whose overtaken records some channel is still bringing, if any.
    pub fn persisting_any(&self) -> Option<u64> {
        self.pending.as_ref().filter(|p| p.snapshotted && p.arrived.iter().any(|a| !a)).map(|p| p.barrier.checkpoint)
    }

    /// How long the checkpoint in progress has been aligning (or persisting).
    pub fn elapsed_ms(&self) -> u64 {
        self.pending.as_ref().map_or(0, |p| p.started.elapsed().as_millis() as u64)
    }

    /// When an aligned-with-timeout alignment switches to unaligned: the timeout counts from the
    /// checkpoint's trigger, not from this task's first barrier, so a barrier that reaches a task
    /// after the timeout switches at once (Flink's BarrierAlignmentUtil.getTimerDelay:
    /// `max(timeout - (now - barrier.getTimestamp()), 0)`).
    pub fn deadline(&self) -> Option<Instant> {
        let p = self.pending.as_ref().filter(|p| !p.snapshotted)?;
        match p.barrier.options.alignment {
            Alignment::AlignedWithTimeout { timeout_ms } => Some(p.barrier.triggered_at + Duration::from_millis(timeout_ms)),
            _ => None,
        }
    }

    /// A barrier came on `channel`, in order or (`priority`) ahead of the queue.
    pub fn on_barrier(&mut self, channel: usize, barrier: Barrier, priority: bool, out: &mut Vec<AlignerAction>) {
        let id = barrier.checkpoint;
        if id <= self.last {
            return; // stale: this checkpoint (or a later one) is done here
        }
        if let Some((old, snapshotted)) = self.pending.as_ref().map(|p| (p.barrier.checkpoint, p.snapshotted)) {
            if old > id {
                return; // older than the one in progress
            }
            if old < id {
                let p = Pending { snapshotted, ..self.pending.take().expect("checked") };
                self.pending = None;
                self.last = old;
                if !p.snapshotted {
                    // A newer barrier subsumes the alignment in progress: it cannot complete here.
                    out.push(AlignerAction::UnblockAll);
                    out.push(AlignerAction::Abort { checkpoint: old, decline: Some(super::task::DeclineReason::Subsumed { by: id }) });
                }
                // (Snapshotted: the old checkpoint's state is taken; only its late in-order
                // barriers were still to come, and they are stale now.)
            }
        }
        let channels = self.channels;
        let p = self.pending.get_or_insert_with(|| Pending {
            barrier,
            started: Instant::now(),
            arrived: vec![false; channels],
            snapshotted: false,
        });
        let unaligned = barrier.options.alignment == Alignment::Unaligned;
        if !p.snapshotted && unaligned {
            // The first unaligned barrier; channels blocked by this checkpoint's aligned
            // barriers (upstream tasks that did not switch) are consumed again.
            p.snapshotted = true;
            let alignment = p.started.elapsed();
            out.push(AlignerAction::Snapshot { barrier, alignment, unaligned: true });
            if p.arrived.iter().any(|a| *a) {
                out.push(AlignerAction::UnblockAll);
            }
        }
        if p.arrived[channel] {
            return; // a second barrier of one checkpoint on one channel: nothing new
        }
        if priority && p.snapshotted {
            out.push(AlignerAction::PersistQueued { checkpoint: id, channel });
        }
        p.arrived[channel] = true;
        let all = p.arrived.iter().all(|a| *a);
        if !p.snapshotted {
            if all {
                p.snapshotted = true;
                let alignment = p.started.elapsed();
                out.push(AlignerAction::Snapshot { barrier, alignment, unaligned: false });
                out.push(AlignerAction::UnblockAll);
            } else {
                if p.arrived.iter().filter(|a| **a).count() == 1 {
                    out.push(AlignerAction::AlignmentStarted { checkpoint: id });
                }
                out.push(AlignerAction::Block(channel));
            }
        }
        if all {
            self.pending = None;
            self.last = id;
            out.push(AlignerAction::ChannelStateComplete { checkpoint: id });
        }
    }

    /// The alignment timeout passed: snapshot now, persist what the late channels still bring.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<AlignerAction>) {
        if self.deadline().is_some_and(|d| d <= now) {
            let p = self.pending.as_mut().expect("deadline implies pending");
            p.snapshotted = true;
            let alignment = p.started.elapsed();
            out.push(AlignerAction::Snapshot { barrier: p.barrier, alignment, unaligned: true });
            out.push(AlignerAction::UnblockAll);
        }
    }

    /// An upstream task gave the checkpoint up (CancelCheckpointMarker).
    pub fn on_cancel(&mut self, checkpoint: u64, out: &mut Vec<AlignerAction>) {
        if checkpoint <= self.last {
            return;
        }
        if self.pending.as_ref().is_some_and(|p| p.barrier.checkpoint > checkpoint) {
            return;
        }
        let was_pending = self.pending.take().is_some();
        self.last = checkpoint;
        if was_pending {
            out.push(AlignerAction::UnblockAll);
        }
        out.push(AlignerAction::Abort { checkpoint, decline: None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::element::CheckpointOptions;
    use crate::config::CheckpointMode;

    fn barrier(id: u64, alignment: Alignment) -> Barrier {
        Barrier { checkpoint: id, options: CheckpointOptions { mode: CheckpointMode::ExactlyOnce, alignment }, triggered_at: Instant::now() }
    }

    fn kinds(out: &[AlignerAction]) -> Vec<String> {
        out.iter()
            .map(|a| match a {
                AlignerAction::AlignmentStarted { checkpoint } => format!("start {checkpoint}"),
                AlignerAction::Block(c) => format!("block {c}"),
                AlignerAction::UnblockAll => "unblock".into(),
                AlignerAction::Snapshot { barrier, unaligned, .. } => {
                    format!("snapshot {}{}", barrier.checkpoint, if *unaligned { " unaligned" } else { "" })
                }
                AlignerAction::ChannelStateComplete { checkpoint } => format!("ack {checkpoint}"),
                AlignerAction::PersistQueued { checkpoint, channel } => format!("persist {checkpoint} on {channel}"),
                AlignerAction::Abort { checkpoint, decline } => {
                    format!("abort {checkpoint}{}", if decline.is_some() { " declined" } else { "" })
                }
            })
            .collect()
    }

    #[test]
    fn aligned_blocks_each_channel_until_the_last_barrier() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        a.on_barrier(0, barrier(1, Alignment::Aligned), false, &mut out);
        assert_eq!(kinds(&out), vec!["start 1", "block 0"]);
        assert_eq!(a.aligning(), Some(1));
        assert_eq!(a.persisting(1), None, "aligned checkpoints persist nothing");
        out.clear();
        a.on_barrier(1, barrier(1, Alignment::Aligned), false, &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 1", "unblock", "ack 1"]);
        assert_eq!(a.aligning(), None);
    }

    #[test]
    fn one_input_channel_needs_no_alignment() {
        let mut a = Aligner::new(1);
        let mut out = Vec::new();
        a.on_barrier(0, barrier(3, Alignment::Aligned), false, &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 3", "unblock", "ack 3"]);
    }

    /// Catches: an unaligned barrier that waits for an in-order copy (the ack would wait behind
    /// the queue), or that does not persist what it overtook at the receiver.
    #[test]
    fn unaligned_snapshots_at_the_first_priority_barrier_and_persists_until_each_channel_has_its_own() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        let b = barrier(5, Alignment::Unaligned);
        a.on_barrier(1, b, true, &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 5 unaligned", "persist 5 on 1"]);
        assert_eq!((a.persisting(0), a.persisting(1)), (Some(5), None));
        out.clear();
        a.on_barrier(0, b, true, &mut out);
        assert_eq!(kinds(&out), vec!["persist 5 on 0", "ack 5"], "nothing blocks, no second barrier awaited");
        assert_eq!(a.persisting(0), None);
    }

    #[test]
    fn the_alignment_timeout_switches_to_unaligned_for_the_late_channels() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        let b = barrier(2, Alignment::AlignedWithTimeout { timeout_ms: 100 });
        a.on_barrier(0, b, false, &mut out);
        let deadline = a.deadline().expect("a deadline");
        out.clear();
        a.on_timeout(deadline, &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 2 unaligned", "unblock"]);
        assert_eq!((a.persisting(0), a.persisting(1)), (None, Some(2)), "only the late channel's records are channel state");
        out.clear();
        a.on_barrier(1, b, false, &mut out);
        assert_eq!(kinds(&out), vec!["ack 2"]);
    }

    /// Catches: an aligned checkpoint timeout counted from this task's first barrier instead of
    /// the checkpoint's trigger (Flink counts from the barrier's timestamp, so a barrier that took
    /// longer than the timeout to arrive switches at once, and one that took part of it leaves
    /// only the rest).
    #[test]
    fn the_alignment_timeout_counts_from_the_trigger_not_from_the_first_barrier() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        let triggered_at = Instant::now() - Duration::from_millis(70);
        let b = Barrier { triggered_at, ..barrier(2, Alignment::AlignedWithTimeout { timeout_ms: 100 }) };
        a.on_barrier(0, b, false, &mut out);
        assert_eq!(a.deadline(), Some(triggered_at + Duration::from_millis(100)), "30 ms of the 100 are left, not 100");
        let late = Barrier { checkpoint: 3, triggered_at: Instant::now() - Duration::from_millis(150), ..b };
        a.on_barrier(0, late, false, &mut out);
        out.clear();
        a.on_timeout(Instant::now(), &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 3 unaligned", "unblock"], "a barrier later than the timeout switches at once");
    }

    /// One upstream task switched to unaligned (its alignment timed out), the others sent
    /// aligned barriers that blocked their channels: the unaligned one snapshots and unblocks them.
    #[test]
    fn an_unaligned_barrier_after_aligned_ones_unblocks_their_channels() {
        let mut a = Aligner::new(3);
        let mut out = Vec::new();
        let aligned = barrier(1, Alignment::AlignedWithTimeout { timeout_ms: 30 });
        a.on_barrier(1, aligned, false, &mut out);
        a.on_barrier(2, aligned, false, &mut out);
        out.clear();
        a.on_barrier(0, barrier(1, Alignment::Unaligned), true, &mut out);
        assert_eq!(kinds(&out), vec!["snapshot 1 unaligned", "unblock", "persist 1 on 0", "ack 1"]);
        assert_eq!((a.persisting(0), a.persisting(1)), (None, None));
    }

    #[test]
    fn a_newer_barrier_subsumes_the_alignment_and_declines_it() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        a.on_barrier(0, barrier(1, Alignment::Aligned), false, &mut out);
        out.clear();
        a.on_barrier(1, barrier(2, Alignment::Aligned), false, &mut out);
        assert_eq!(kinds(&out), vec!["unblock", "abort 1 declined", "start 2", "block 1"]);
        out.clear();
        a.on_barrier(0, barrier(1, Alignment::Aligned), false, &mut out);
        assert!(out.is_empty(), "the stale barrier is ignored");
    }

    #[test]
    fn a_cancel_marker_ends_the_alignment_without_a_decline() {
        let mut a = Aligner::new(2);
        let mut out = Vec::new();
        a.on_barrier(0, barrier(4, Alignment::Aligned), false, &mut out);
        out.clear();
        a.on_cancel(4, &mut out);
        assert_eq!(kinds(&out), vec!["unblock", "abort 4"]);
        out.clear();
        a.on_barrier(1, barrier(4, Alignment::Aligned), false, &mut out);
        assert!(out.is_empty(), "the cancelled checkpoint's late barrier is stale");
    }
}
