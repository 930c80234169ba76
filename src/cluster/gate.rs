//! A task's input gate (Flink's `InputGate`): one queue per input channel, consumed in turn.
//!
//! A channel the barrier handler blocks is simply not consumed: its buffers stay in its queue,
//! the queue fills, and the sender waits for room (credit-based backpressure, as Flink 2; Flink
//! 1.2's BarrierBuffer instead copied them into the task, without limit). A buffer is delivered
//! only once its wire time has passed. Priority events (unaligned barriers) are delivered before
//! any buffer, blocked channel or not.

use std::future::poll_fn;
use std::task::Poll;

use tokio::time::Instant;

use super::channel::{Buffer, ChannelStats, InputChannel};
use super::element::{Barrier, StreamMessage};
use super::task::RuntimeKnobs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the gate hands its task.
#[derive(Debug, PartialEq)]
pub enum GateEvent {
    /// The elements of one buffer from this channel, in order.
    Buffer(usize, Vec<StreamMessage>),
    /// A barrier that came ahead of the queue on this channel's priority lane.
    Priority(usize, Barrier),
}

struct Slot {
    input: InputChannel,
    /// A buffer taken off the queue whose wire time has not passed yet.
    held: Option<Buffer>,
    held_priority: Option<(Instant, Barrier)>,
    blocked: bool,
    closed: bool,
    priority_closed: bool,
}

/// The input channels of one task.
pub struct InputGate {
    slots: Vec<Slot>,
    /// Round-robin start, so that no channel starves another.
    next: usize,
    knobs: Arc<RuntimeKnobs>,
}

impl InputGate {
    pub fn new(inputs: Vec<InputChannel>, knobs: Arc<RuntimeKnobs>) -> Self {
        let slots = inputs
            .into_iter()
            .map(|input| Slot { input, held: None, held_priority: None, blocked: false, closed: false, priority_closed: false })
            .collect();
        InputGate { slots, next: 0, knobs }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn stats(&self, channel: usize) -> &Arc<ChannelStats> {
        &self.slots[channel].input.stats
    }

    /// Stops consuming a channel (alignment): its records wait in its queue.
    pub fn block(&mut self, channel: usize) {
        self.slots[channel].blocked = true;
        self.slots[channel].input.stats.blocked.store(true, Ordering::Relaxed);
    }

    pub fn is_blocked(&self, channel: usize) -> bool {
        self.slots[channel].blocked
    }

    /// Consumes every channel again.
    pub fn unblock_all(&mut self) {
        for s in &mut self.slots {
            s.blocked = false;
            s.input.stats.blocked.store(false, Ordering::Relaxed);
        }
    }

    /// The next delivery. Waits while the data path is paused, for wire time, and for input;
    /// when every channel is closed (all senders gone) it waits forever: the task is cancelled
    /// by the failover that follows.
    pub async fn next(&mut self) -> Option<GateEvent> {
        loop {
            self.knobs.wait_while_paused().await;
            let now = Instant::now();
            if let Some(e) = self.ready(now) {
                return Some(e);
            }
            let wake = self.earliest_held();
            tokio::select! {
                biased;
                () = poll_fn(|cx| self.poll_arrivals(cx)) => {}
                () = super::source_task::sleep_until_opt(wake) => {}
            }
        }
    }

    /// A delivery whose time has come, without waiting: priority lanes first, then buffers of
    /// unblocked channels in turn.
    fn ready(&mut self, now: Instant) -> Option<GateEvent> {
        let n = self.slots.len();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.held_priority.is_none() && !s.priority_closed {
                match s.input.priority.try_recv() {
                    Ok(p) => s.held_priority = Some(p),
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => s.priority_closed = true,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if s.held_priority.as_ref().is_some_and(|(at, _)| *at <= now) {
                let (_, b) = s.held_priority.take().expect("checked");
                s.input.stats.barrier_taken(b.checkpoint, true);
                return Some(GateEvent::Priority(i, b));
            }
        }
        for k in 0..n {
            let i = (self.next + k) % n;
            let s = &mut self.slots[i];
            if s.blocked {
                continue;
            }
            if s.held.is_none() && !s.closed {
                match s.input.data.try_recv() {
                    Ok(b) => s.held = Some(b),
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => s.closed = true,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if s.held.as_ref().is_some_and(|(at, _)| *at <= now) {
                let (_, elements) = s.held.take().expect("checked");
                s.input.stats.taken(&elements);
                self.next = (i + 1) % n;
                return Some(GateEvent::Buffer(i, elements));
            }
        }
        None
    }

    fn earliest_held(&self) -> Option<Instant> {
        self.slots
            .iter()
            .flat_map(|s| {
                let data = s.held.as_ref().filter(|_| !s.blocked).map(|(at, _)| *at);
                let prio = s.held_priority.as_ref().map(|(at, _)| *at);
                [data, prio]
            })
            .flatten()
            .min()
    }

    /// Ready when something arrived on a lane that has nothing held (it is then held).
    fn poll_arrivals(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut arrived = false;
        for s in &mut self.slots {
            if s.held_priority.is_none() && !s.priority_closed {
                match s.input.priority.poll_recv(cx) {
                    Poll::Ready(Some(p)) => {
                        s.held_priority = Some(p);
                        arrived = true;
                    }
                    Poll::Ready(None) => s.priority_closed = true,
                    Poll::Pending => {}
                }
            }
            if !s.blocked && s.held.is_none() && !s.closed {
                match s.input.data.poll_recv(cx) {
                    Poll::Ready(Some(b)) => {
                        s.held = Some(b);
                        arrived = true;
                    }
                    Poll::Ready(None) => s.closed = true,
                    Poll::Pending => {}
                }
            }
        }
        if arrived {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::channel::channel;
    use crate::cluster::element::{CheckpointOptions, Origin, Record};
    use crate::config::CheckpointMode;
    use std::time::Duration;

    fn record(i: u64) -> StreamMessage {
        StreamMessage::Record(Record { key: "k".into(), value: "k".into(), origin: Origin { partition: 0, offset: i }, count: 0 })
    }

    /// A blocked channel is not consumed: its queue fills and its sender waits (backpressure),
    /// while the other channel goes on; unblocked, everything arrives in order.
    #[tokio::test(start_paused = true)]
    async fn a_blocked_channel_backpressures_its_sender_and_loses_nothing() {
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut a, ia) = channel(ChannelStats::new("a".into(), "t".into(), Duration::ZERO), 2, knobs.clone());
        let (mut b, ib) = channel(ChannelStats::new("b".into(), "t".into(), Duration::ZERO), 2, knobs.clone());
        let a_stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia, ib], knobs);
        gate.block(0);
        let sender = tokio::spawn(async move {
            for i in 0..10 {
                if a.add(record(i), 1) {
                    a.flush().await;
                }
            }
        });
        b.add(record(100), 1);
        b.flush().await;
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(1, vec![record(100)])));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!sender.is_finished(), "the sender of the blocked channel waits for room");
        assert!(a_stats.backpressured.load(Ordering::Relaxed) && a_stats.blocked.load(Ordering::Relaxed));
        gate.unblock_all();
        let mut next = 0;
        while next < 10 {
            let Some(GateEvent::Buffer(0, elements)) = gate.next().await else { panic!("channel 0") };
            for e in elements {
                assert_eq!(e, record(next));
                next += 1;
            }
        }
        sender.await.unwrap();
    }

    /// A priority barrier is delivered ahead of the buffers queued before it, even on a blocked
    /// channel, and the view counts the records it overtook.
    #[tokio::test(start_paused = true)]
    async fn a_priority_barrier_overtakes_the_queue() {
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut a, ia) = channel(ChannelStats::new("a".into(), "t".into(), Duration::ZERO), 8, knobs.clone());
        let stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia], knobs);
        for i in 0..3 {
            a.add(record(i), 1);
            a.flush().await;
        }
        let barrier = Barrier { checkpoint: 4, options: CheckpointOptions::new(CheckpointMode::ExactlyOnce) };
        a.push_priority(barrier);
        assert_eq!(stats.barriers()[0].overtook, 3);
        gate.block(0);
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, barrier)));
        assert!(stats.barriers().is_empty());
        gate.unblock_all();
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
    }
}
