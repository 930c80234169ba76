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

use std::collections::VecDeque;

use super::channel::{Buffer, ChannelStats, InputChannel};
use super::element::{Barrier, Record, StreamMessage};
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
    /// Buffers taken off the channel and not delivered yet: waiting for their wire time, or
    /// read ahead to capture an unaligned checkpoint's in-flight records.
    queue: VecDeque<Buffer>,
    held_priority: Option<(Instant, Barrier)>,
    blocked: bool,
    closed: bool,
    priority_closed: bool,
    capture: Option<Capture>,
}

/// The in-flight records of a channel ahead of its in-order barrier of `checkpoint`.
struct Capture {
    checkpoint: u64,
    records: Vec<Record>,
    /// The in-order barrier (or a cancel marker) of the checkpoint was seen.
    done: bool,
}

impl Capture {
    fn scan(&mut self, elements: &[StreamMessage]) {
        for e in elements {
            if self.done {
                return;
            }
            match e {
                StreamMessage::Record(r) => self.records.push(r.clone()),
                StreamMessage::Barrier(b) if b.checkpoint >= self.checkpoint => self.done = true,
                StreamMessage::CancelCheckpoint(id) if *id >= self.checkpoint => self.done = true,
                _ => {}
            }
        }
    }
}

impl Slot {
    /// Takes one buffer off the channel if there is one now.
    fn pull(&mut self) -> bool {
        if self.closed {
            return false;
        }
        match self.input.data.try_recv() {
            Ok(b) => {
                self.take(b);
                true
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                self.closed = true;
                false
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => false,
        }
    }

    fn take(&mut self, b: Buffer) {
        if let Some(c) = self.capture.as_mut() {
            c.scan(&b.1);
        }
        self.queue.push_back(b);
    }

    fn capturing(&self) -> bool {
        self.capture.as_ref().is_some_and(|c| !c.done)
    }

    /// Whether this slot wants the next buffer off the channel now.
    fn wants_data(&self) -> bool {
        !self.closed && ((!self.blocked && self.queue.is_empty()) || self.capturing())
    }
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
            .map(|input| Slot {
                input,
                queue: VecDeque::new(),
                held_priority: None,
                blocked: false,
                closed: false,
                priority_closed: false,
                capture: None,
            })
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

    /// Unaligned checkpoint `checkpoint` was just taken: the records queued on `channel` ahead of
    /// its in-order barrier were overtaken. They are read ahead out of the channel (freeing its
    /// credit, as Flink persists in-flight buffers without waiting for them to be processed),
    /// copied as channel state, and still delivered and processed in order.
    pub fn start_capture(&mut self, channel: usize, checkpoint: u64) {
        let s = &mut self.slots[channel];
        let mut c = Capture { checkpoint, records: Vec::new(), done: false };
        for (_, elements) in &s.queue {
            c.scan(elements);
        }
        s.capture = Some(c);
        while s.capturing() && s.pull() {}
    }

    /// Reads ahead on every channel still capturing, as far as the channels hold buffers now.
    pub fn pump_captures(&mut self) {
        for s in &mut self.slots {
            while s.capturing() && s.pull() {}
        }
    }

    /// The records captured on `channel` since the last call, and whether its capture is done.
    pub fn take_captured(&mut self, channel: usize) -> Option<(Vec<Record>, bool)> {
        let c = self.slots[channel].capture.as_mut()?;
        let out = (std::mem::take(&mut c.records), c.done);
        if c.done {
            self.slots[channel].capture = None;
        }
        Some(out)
    }

    /// Gives up every capture (the checkpoint was aborted).
    pub fn cancel_captures(&mut self) {
        for s in &mut self.slots {
            s.capture = None;
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
            if s.queue.is_empty() {
                s.pull();
            }
            if s.queue.front().is_some_and(|(at, _)| *at <= now) {
                let (_, elements) = s.queue.pop_front().expect("checked");
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
                let data = s.queue.front().filter(|_| !s.blocked).map(|(at, _)| *at);
                let prio = s.held_priority.as_ref().map(|(at, _)| *at);
                [data, prio]
            })
            .flatten()
            .min()
    }

    /// Ready when something arrived on a lane that wants it (it is then queued).
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
            if s.wants_data() {
                match s.input.data.poll_recv(cx) {
                    Poll::Ready(Some(b)) => {
                        s.take(b);
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
