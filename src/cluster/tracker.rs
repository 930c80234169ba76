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
        Barrier { checkpoint: id, options: CheckpointOptions::new(CheckpointMode::AtLeastOnce) }
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
}
