//! At-least-once barrier handling, after Flink's `CheckpointBarrierTracker`: nothing blocks.
//! The task snapshots when Barrier(n) has come on every channel, so records that overtook the
//! barrier on a faster channel are already in the snapshot, and will be replayed after a
//! recovery: counted twice. With one input channel there is nothing to overtake.

use std::collections::BTreeMap;

use super::element::Barrier;

/// Barrier counts per checkpoint at one task's inputs.
pub struct BarrierTracker {
    channels: usize,
    seen: BTreeMap<u64, usize>,
    last: u64,
}

/// What the tracker tells its runner.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackerAction {
    /// Every channel delivered this barrier: snapshot, forward, ack.
    Snapshot(Barrier),
    /// An upstream task gave the checkpoint up: forward the cancel marker.
    Abort(u64),
}

impl BarrierTracker {
    pub fn new(channels: usize) -> Self {
        BarrierTracker { channels, seen: BTreeMap::new(), last: 0 }
    }

    pub fn on_barrier(&mut self, barrier: Barrier) -> Option<TrackerAction> {
        let id = barrier.checkpoint;
        if id <= self.last {
            return None;
        }
        let seen = self.seen.entry(id).or_insert(0);
        *seen += 1;
        if *seen < self.channels {
            return None;
        }
        // Older checkpoints still counting can no longer complete here (Flink drops them too).
        self.seen = self.seen.split_off(&(id + 1));
        self.last = id;
        Some(TrackerAction::Snapshot(barrier))
    }

    pub fn on_cancel(&mut self, checkpoint: u64) -> Option<TrackerAction> {
        if checkpoint <= self.last {
            return None;
        }
        self.seen.remove(&checkpoint);
        self.last = self.last.max(checkpoint);
        Some(TrackerAction::Abort(checkpoint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::element::CheckpointOptions;
    use crate::config::CheckpointMode;

    fn barrier(id: u64) -> Barrier {
        Barrier { checkpoint: id, options: CheckpointOptions::new(CheckpointMode::AtLeastOnce), triggered_at: crate::cluster::element::test_trigger_time() }
    }

    #[test]
    fn snapshots_when_the_last_channel_delivers_the_barrier() {
        let mut t = BarrierTracker::new(2);
        assert_eq!(t.on_barrier(barrier(1)), None);
        assert_eq!(t.on_barrier(barrier(1)), Some(TrackerAction::Snapshot(barrier(1))));
        assert_eq!(t.on_barrier(barrier(1)), None, "stale");
    }

    #[test]
    fn a_newer_checkpoint_completing_drops_older_counts() {
        let mut t = BarrierTracker::new(2);
        t.on_barrier(barrier(1));
        t.on_barrier(barrier(2));
        assert_eq!(t.on_barrier(barrier(2)), Some(TrackerAction::Snapshot(barrier(2))));
        assert_eq!(t.on_barrier(barrier(1)), None);
    }

    /// Catches: a tracker that waits for a barrier count it can never reach with one channel.
    #[test]
    fn one_input_channel_snapshots_at_its_barrier() {
        let mut t = BarrierTracker::new(1);
        assert_eq!(t.on_barrier(barrier(4)), Some(TrackerAction::Snapshot(barrier(4))));
    }

    /// Catches: a cancel marker that is not forwarded, or a cancelled checkpoint that still
    /// completes when its remaining barriers come.
    #[test]
    fn a_cancel_marker_aborts_the_checkpoint_and_its_late_barriers_are_stale() {
        let mut t = BarrierTracker::new(2);
        t.on_barrier(barrier(1));
        assert_eq!(t.on_cancel(1), Some(TrackerAction::Abort(1)));
        assert_eq!(t.on_barrier(barrier(1)), None);
        assert_eq!(t.on_barrier(barrier(1)), None, "its count was dropped with it");
        assert_eq!(t.on_cancel(1), None, "one abort per checkpoint");
    }

    /// Catches: a cancel of an older checkpoint that rewinds the tracker (the newer one's late
    /// barriers would then count again), or counts kept across a cancel of a newer checkpoint.
    #[test]
    fn a_cancel_never_moves_the_tracker_back() {
        let mut t = BarrierTracker::new(2);
        t.on_barrier(barrier(2));
        t.on_barrier(barrier(2));
        assert_eq!(t.on_cancel(1), None, "older than the completed checkpoint");
        assert_eq!(t.on_barrier(barrier(2)), None);
        t.on_barrier(barrier(3));
        assert_eq!(t.on_cancel(4), Some(TrackerAction::Abort(4)));
        assert_eq!(t.on_barrier(barrier(3)), None, "checkpoint 3 is older than the cancelled 4");
        assert_eq!(t.on_barrier(barrier(5)), None);
        assert_eq!(t.on_barrier(barrier(5)), Some(TrackerAction::Snapshot(barrier(5))));
    }
}
