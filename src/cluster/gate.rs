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

    fn knobs() -> Arc<RuntimeKnobs> {
        RuntimeKnobs::new(Duration::ZERO, Duration::ZERO)
    }

    fn barrier(id: u64) -> Barrier {
        Barrier { checkpoint: id, options: CheckpointOptions::new(CheckpointMode::ExactlyOnce) }
    }

    fn link(
        name: &str,
        delay: Duration,
        capacity: usize,
        knobs: &Arc<RuntimeKnobs>,
    ) -> (crate::cluster::channel::OutputChannel, InputChannel) {
        channel(ChannelStats::new(name.into(), "t".into(), delay), capacity, knobs.clone())
    }

    async fn send(out: &mut crate::cluster::channel::OutputChannel, i: u64) {
        out.add(record(i), 1);
        out.flush().await;
    }

    /// What the gate delivers within `within` of model time, if anything.
    async fn next_within(gate: &mut InputGate, within: Duration) -> Option<GateEvent> {
        tokio::time::timeout(within, gate.next()).await.ok().flatten()
    }

    /// Catches: a gate that delivers a buffer as soon as it is on the channel, ignoring its wire
    /// time (a delay that is a no-op), or that delivers it late.
    #[tokio::test(start_paused = true)]
    async fn a_buffer_is_delivered_when_its_wire_time_has_passed() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(100), 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        let sent = Instant::now();
        send(&mut a, 0).await;
        assert_eq!(next_within(&mut gate, Duration::from_millis(99)).await, None, "still on the wire");
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(sent.elapsed(), Duration::from_millis(100));
    }

    /// A delay is wire time: a barrier sent after a slow record (the channel was sped up in
    /// between) still comes after it. Catches: a gate that delivers whatever is due first.
    #[tokio::test(start_paused = true)]
    async fn a_barrier_is_not_overtaken_by_a_delayed_record() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(300), 4, &knobs);
        let stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        stats.set_delay(Duration::ZERO);
        a.push_barrier(StreamMessage::Barrier(barrier(1))).await;
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![StreamMessage::Barrier(barrier(1))])));
    }

    /// Each input channel is its own queue: a slow link delays only its own buffers.
    /// Catches: one queue for the whole gate (head-of-line blocking across channels).
    #[tokio::test(start_paused = true)]
    async fn a_slow_channel_does_not_hold_up_another() {
        let knobs = knobs();
        let (mut slow, is) = link("slow", Duration::from_millis(300), 4, &knobs);
        let (mut fast, i_f) = link("fast", Duration::ZERO, 4, &knobs);
        let mut gate = InputGate::new(vec![is, i_f], knobs);
        send(&mut slow, 0).await;
        send(&mut fast, 1).await;
        let start = Instant::now();
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(1, vec![record(1)])));
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }

    /// Catches: a gate that always starts at channel 0, so a busy channel starves the others.
    #[tokio::test(start_paused = true)]
    async fn busy_channels_are_consumed_in_turn() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::ZERO, 8, &knobs);
        let (mut b, ib) = link("b", Duration::ZERO, 8, &knobs);
        let mut gate = InputGate::new(vec![ia, ib], knobs);
        for i in 0..3 {
            send(&mut a, i).await;
            send(&mut b, 10 + i).await;
        }
        let mut order = Vec::new();
        for _ in 0..6 {
            let Some(GateEvent::Buffer(ch, _)) = gate.next().await else { panic!("a buffer") };
            order.push(ch);
        }
        assert_eq!(order, vec![0, 1, 0, 1, 0, 1]);
    }

    /// Catches: a gate that still delivers a blocked channel's buffers once they are due, or
    /// reads the blocked channel ahead (taking its credit back: no backpressure).
    #[tokio::test(start_paused = true)]
    async fn a_blocked_channel_is_not_consumed_until_unblocked() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(10), 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        for i in 0..3 {
            send(&mut a, i).await;
        }
        gate.block(0);
        assert!(gate.is_blocked(0));
        assert_eq!(next_within(&mut gate, Duration::from_secs(1)).await, None);
        assert_eq!(gate.slots[0].queue.len(), 0, "nothing read off a blocked channel");
        gate.unblock_all();
        assert!(!gate.is_blocked(0) && !gate.stats(0).blocked.load(Ordering::Relaxed));
        for i in 0..3 {
            assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(i)])));
        }
    }

    /// A blocked channel's buffer that became due must not wake the gate (it may not be
    /// delivered): the other channel's later buffer is delivered at its own time.
    /// Catches: a gate that wakes for a blocked channel's buffer (it would spin at that instant
    /// and the paused clock would never reach the other buffer: the test hangs).
    #[tokio::test(start_paused = true)]
    async fn a_blocked_channel_with_a_due_buffer_lets_the_others_through() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(10), 4, &knobs);
        let (mut b, ib) = link("b", Duration::from_millis(50), 4, &knobs);
        let mut gate = InputGate::new(vec![ia, ib], knobs);
        let start = Instant::now();
        send(&mut a, 0).await;
        assert_eq!(next_within(&mut gate, Duration::from_millis(5)).await, None, "taken off the channel, still on the wire");
        gate.block(0);
        send(&mut b, 2).await;
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(1, vec![record(2)])));
        assert_eq!(start.elapsed(), Duration::from_millis(55));
        gate.unblock_all();
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
    }

    /// Catches: a priority barrier delivered before its wire time (a priority event still
    /// travels the link; it only skips the queue).
    #[tokio::test(start_paused = true)]
    async fn a_priority_barrier_waits_for_its_wire_time() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(40), 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        let start = Instant::now();
        a.push_priority(barrier(1));
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, barrier(1))));
        assert_eq!(start.elapsed(), Duration::from_millis(40));
    }

    /// Paused, the data path holds everything where it is. Catches: a gate that ignores pause.
    #[tokio::test(start_paused = true)]
    async fn a_paused_gate_delivers_nothing_until_resumed() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::ZERO, 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs.clone());
        send(&mut a, 0).await;
        a.push_priority(barrier(1));
        knobs.set_paused(true);
        assert_eq!(next_within(&mut gate, Duration::from_secs(5)).await, None);
        knobs.set_paused(false);
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, barrier(1))));
    }

    /// With every sender gone the gate waits (the failover cancels the task); it neither ends the
    /// task nor spins. Catches: a gate that returns, or busy-loops on closed channels.
    #[tokio::test(start_paused = true)]
    async fn a_gate_whose_senders_are_gone_waits_after_the_last_buffer() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::ZERO, 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        drop(a);
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])), "what was sent still arrives");
        assert_eq!(next_within(&mut gate, Duration::from_secs(5)).await, None);
        assert!(gate.slots[0].closed && gate.slots[0].priority_closed);
    }

    /// An unaligned checkpoint's overtaken records are read ahead out of the channel (freeing its
    /// credit), copied as channel state, and still delivered in order.
    /// Catches: a capture that waits until the records are processed (the sender stays
    /// backpressured), that moves records instead of copying them, or copies them twice.
    #[tokio::test(start_paused = true)]
    async fn a_capture_copies_the_queued_records_and_frees_the_channel() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::from_millis(100), 2, &knobs);
        let stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia], knobs);
        let sender = tokio::spawn(async move {
            for i in 0..4 {
                send(&mut a, i).await;
            }
            a
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(stats.backpressured.load(Ordering::Relaxed), "two buffers fill the channel");
        gate.start_capture(0, 5);
        tokio::time::sleep(Duration::from_millis(1)).await;
        gate.pump_captures();
        let (records, done) = gate.take_captured(0).expect("capturing");
        assert!(!done);
        let offsets: Vec<u64> = records.iter().map(|r| r.origin.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3], "read ahead past the channel's capacity");
        assert!(sender.is_finished(), "the capture freed the channel's credit");
        assert_eq!(gate.take_captured(0).map(|(r, _)| r.len()), Some(0), "each record once");
        for i in 0..4 {
            assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(i)])), "still delivered, in order");
        }
    }

    /// Catches: a capture that goes on after the upstream task gave the checkpoint up, or a
    /// `cancel_captures` that leaves one running.
    #[tokio::test(start_paused = true)]
    async fn a_capture_ends_at_the_cancel_marker_or_when_cancelled() {
        let knobs = knobs();
        let (mut a, ia) = link("a", Duration::ZERO, 8, &knobs);
        let (mut b, ib) = link("b", Duration::ZERO, 8, &knobs);
        let mut gate = InputGate::new(vec![ia, ib], knobs);
        send(&mut a, 0).await;
        a.push_barrier(StreamMessage::CancelCheckpoint(5)).await;
        send(&mut a, 1).await;
        gate.start_capture(0, 5);
        let (records, done) = gate.take_captured(0).expect("capturing");
        assert_eq!((records.len(), done), (1, true), "only the record ahead of the marker");
        assert_eq!(gate.take_captured(0), None, "a finished capture is gone");
        gate.start_capture(1, 6);
        gate.cancel_captures();
        send(&mut b, 2).await;
        gate.pump_captures();
        assert_eq!(gate.take_captured(1), None);
    }
}
