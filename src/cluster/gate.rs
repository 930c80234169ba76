//! A task's input gate (Flink's `InputGate`): one queue per input channel, consumed in turn.
//!
//! A channel the barrier handler blocks is simply not consumed: its buffers stay in its queue,
//! the queue fills, and the sender waits for room (credit-based backpressure, as Flink 2; Flink
//! 1.2's BarrierBuffer instead copied them into the task, without limit). A buffer is delivered
//! only once its wire time has passed. Priority events (unaligned barriers) are delivered before
//! any buffer, blocked channel or not, and no buffer behind one is received before it.

use std::future::poll_fn;
use std::task::Poll;

use tokio::time::Instant;

use std::collections::VecDeque;

use super::channel::{blocks_upstream, Arrival, Buffer, ChannelStats, InputChannel};
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
    /// Buffers taken off the channel (received: each holds an exclusive or a borrowed floating
    /// buffer) and not delivered yet, some still waiting for their wire time.
    queue: VecDeque<Buffer>,
    /// Floating buffers of the gate this channel holds (those of `queue` beyond its exclusive ones).
    borrowed: usize,
    /// Buffers of `queue` that end with a barrier that blocks upstream: Flink's sender sends
    /// nothing behind one until consumption resumes.
    blocking: usize,
    held_priority: Option<(Instant, Barrier)>,
    blocked: bool,
    closed: bool,
}

impl Slot {
    /// Takes what the channel holds for this slot now: a priority event unless one is held, and
    /// buffers while the slot has credit (an exclusive buffer free, or a floating one to borrow),
    /// no priority event is ahead and no barrier that blocks upstream was received. True when
    /// something came.
    fn receive(&mut self, waker: Option<&std::task::Waker>) -> bool {
        let mut got = false;
        while !self.closed {
            let priority = self.held_priority.is_none();
            let mut data = priority && !self.blocked && self.blocking == 0;
            let needs_floating = data && self.queue.len() >= self.input.exclusive;
            let borrow = needs_floating && self.input.floating.try_take();
            if needs_floating && !borrow {
                data = false;
            }
            let arrival = self.input.take(priority, data, waker);
            if borrow && !matches!(arrival, Arrival::Buffer(_)) {
                self.input.floating.give_back(1);
            }
            match arrival {
                Arrival::Priority(p) => self.held_priority = Some(p),
                Arrival::Buffer(b) => {
                    self.borrowed += borrow as usize;
                    self.blocking += blocks_upstream(&b.1) as usize;
                    self.queue.push_back(b);
                }
                Arrival::Closed => {
                    self.closed = true;
                    return got;
                }
                Arrival::Empty => return got,
            }
            got = true;
        }
        got
    }

    /// The next buffer is delivered: its floating buffer, if it held one, goes back to the gate.
    fn pop(&mut self) -> Option<Buffer> {
        let b = self.queue.pop_front()?;
        self.blocking -= blocks_upstream(&b.1) as usize;
        self.return_floating();
        Some(b)
    }

    /// Gives back the floating buffers the queue no longer needs.
    fn return_floating(&mut self) {
        let needed = self.queue.len().saturating_sub(self.input.exclusive);
        if self.borrowed > needed {
            self.input.floating.give_back(self.borrowed - needed);
            self.borrowed = needed;
        }
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
            .map(|input| Slot { input, queue: VecDeque::new(), borrowed: 0, blocking: 0, held_priority: None, blocked: false, closed: false })
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

    /// Copies of the records received on `channel` and not delivered yet: when a priority barrier
    /// is delivered, the buffers it overtook at the receiver (RemoteInputChannel.java:592-666).
    pub fn received_records(&self, channel: usize) -> Vec<Record> {
        self.slots[channel]
            .queue
            .iter()
            .flat_map(|(_, elements)| elements.iter())
            .filter_map(|e| if let StreamMessage::Record(r) = e { Some(r.clone()) } else { None })
            .collect()
    }

    /// The alignment of `checkpoint` timed out: its in-order barrier on `channel`, if this
    /// receiver received it, becomes a priority event ahead of the buffers before it (Flink's
    /// RemoteInputChannel.convertToPriorityEvent); buffers received behind it go back behind it.
    /// False when the barrier has not been received: still queued at its sender, which switches
    /// it itself ([`super::channel::OutputChannel::convert_to_priority`]).
    pub fn convert_to_priority(&mut self, channel: usize, checkpoint: u64) -> bool {
        let s = &mut self.slots[channel];
        if s.held_priority.is_some() {
            return false;
        }
        let found = s.queue.iter().enumerate().find_map(|(i, (_, elements))| {
            elements.iter().position(|e| matches!(e, StreamMessage::Barrier(b) if b.checkpoint == checkpoint)).map(|j| (i, j))
        });
        let Some((i, j)) = found else { return false };
        let mut behind: Vec<Buffer> = s.queue.drain(i + 1..).collect();
        let (at, elements) = s.queue.back_mut().expect("found at i");
        let at = *at;
        let rest = elements.split_off(j + 1);
        let Some(StreamMessage::Barrier(b)) = elements.pop() else { return false };
        if elements.is_empty() {
            s.queue.pop_back();
        }
        if !rest.is_empty() {
            behind.insert(0, (at, rest));
        }
        s.input.give_back(behind.into_iter());
        s.blocking = s.queue.iter().filter(|(_, e)| blocks_upstream(e)).count();
        s.return_floating();
        s.held_priority = Some((at, b));
        true
    }

    /// Whether a priority event is due now (the task takes it before its next record).
    pub fn priority_due(&mut self) -> bool {
        let now = Instant::now();
        self.slots.iter_mut().any(|s| {
            if s.held_priority.is_none() {
                s.receive(None);
            }
            s.held_priority.as_ref().is_some_and(|(at, _)| *at <= now)
        })
    }

    /// The next delivery. Waits while the data path is paused, for wire time, and for input;
    /// when every channel is closed (all senders gone) it waits forever: the task is cancelled
    /// by the failover that follows.
    pub async fn next(&mut self) -> Option<GateEvent> {
        self.next_event(true).await
    }

    /// The next priority event only: what a task takes while its output waits for credit
    /// (priority events are urgent mail: they run while the task waits for output availability,
    /// StreamTask.java:656-705).
    pub async fn next_priority(&mut self) -> Option<GateEvent> {
        self.next_event(false).await
    }

    /// The next delivery; priority events only unless `data`.
    pub async fn next_event(&mut self, data: bool) -> Option<GateEvent> {
        loop {
            self.knobs.wait_while_paused().await;
            let now = Instant::now();
            if let Some(e) = self.ready(now, data) {
                return Some(e);
            }
            let wake = self.earliest_held(data);
            tokio::select! {
                biased;
                () = poll_fn(|cx| self.poll_arrivals(cx)) => {}
                () = super::source_task::sleep_until_opt(wake) => {}
            }
        }
    }

    /// A delivery whose time has come, without waiting: priority events first, then (`data`)
    /// buffers of unblocked channels in turn.
    fn ready(&mut self, now: Instant, data: bool) -> Option<GateEvent> {
        let n = self.slots.len();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if s.held_priority.is_none() {
                s.receive(None);
            }
            if s.held_priority.as_ref().is_some_and(|(at, _)| *at <= now) {
                let (_, b) = s.held_priority.take().expect("checked");
                s.input.stats.barrier_taken(b.checkpoint);
                return Some(GateEvent::Priority(i, b));
            }
        }
        if !data {
            return None;
        }
        for k in 0..n {
            let i = (self.next + k) % n;
            let s = &mut self.slots[i];
            if s.blocked {
                continue;
            }
            s.receive(None);
            if s.queue.front().is_some_and(|(at, _)| *at <= now) {
                let (_, elements) = s.pop().expect("checked");
                s.input.stats.taken(&elements);
                self.next = (i + 1) % n;
                return Some(GateEvent::Buffer(i, elements));
            }
        }
        None
    }

    fn earliest_held(&self, data: bool) -> Option<Instant> {
        self.slots
            .iter()
            .flat_map(|s| {
                let data = s.queue.front().filter(|_| data && !s.blocked).map(|(at, _)| *at);
                let prio = s.held_priority.as_ref().map(|(at, _)| *at);
                [data, prio]
            })
            .flatten()
            .min()
    }

    /// Ready when something arrived on a channel (it is then held or queued).
    fn poll_arrivals(&mut self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut arrived = false;
        for s in &mut self.slots {
            arrived |= s.receive(Some(cx.waker()));
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
    use crate::types::TaskId;
    use std::time::Duration;

    fn record(i: u64) -> StreamMessage {
        StreamMessage::Record(Record { key: "k".into(), value: "k".into(), origin: Origin { partition: 0, offset: i }, count: 0 })
    }

    /// A blocked channel is not consumed: its queue fills and its sender waits (backpressure),
    /// while the other channel goes on; unblocked, everything arrives in order.
    #[tokio::test(start_paused = true)]
    async fn a_blocked_channel_backpressures_its_sender_and_loses_nothing() {
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut a, ia) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 2, knobs.clone());
        let (mut b, ib) = channel(ChannelStats::new(TaskId::Source(1), TaskId::Counter(0), Duration::ZERO), 2, knobs.clone());
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
        let (mut a, ia) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 8, knobs.clone());
        let stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia], knobs);
        for i in 0..3 {
            a.add(record(i), 1);
            a.flush().await;
        }
        let barrier = Barrier { checkpoint: 4, options: CheckpointOptions::new(CheckpointMode::ExactlyOnce), triggered_at: crate::cluster::element::test_trigger_time() };
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
        Barrier { checkpoint: id, options: CheckpointOptions::new(CheckpointMode::ExactlyOnce), triggered_at: crate::cluster::element::test_trigger_time() }
    }

    fn link(
        from: TaskId,
        delay: Duration,
        capacity: usize,
        knobs: &Arc<RuntimeKnobs>,
    ) -> (crate::cluster::channel::OutputChannel, InputChannel) {
        channel(ChannelStats::new(from, TaskId::Counter(0), delay), capacity, knobs.clone())
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(100), 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(300), 4, &knobs);
        let stats = a.stats.clone();
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        stats.set_delay(Duration::ZERO);
        a.push_barrier(StreamMessage::Barrier(barrier(1)));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![StreamMessage::Barrier(barrier(1))])));
    }

    /// Each input channel is its own queue: a slow link delays only its own buffers.
    /// Catches: one queue for the whole gate (head-of-line blocking across channels).
    #[tokio::test(start_paused = true)]
    async fn a_slow_channel_does_not_hold_up_another() {
        let knobs = knobs();
        let (mut slow, is) = link(TaskId::Source(1), Duration::from_millis(300), 4, &knobs);
        let (mut fast, i_f) = link(TaskId::Source(0), Duration::ZERO, 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::ZERO, 8, &knobs);
        let (mut b, ib) = link(TaskId::Source(1), Duration::ZERO, 8, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(10), 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(10), 4, &knobs);
        let (mut b, ib) = link(TaskId::Source(1), Duration::from_millis(50), 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(40), 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::ZERO, 4, &knobs);
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
        let (mut a, ia) = link(TaskId::Source(0), Duration::ZERO, 4, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        drop(a);
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])), "what was sent still arrives");
        assert_eq!(next_within(&mut gate, Duration::from_secs(5)).await, None);
        assert!(gate.slots[0].closed);
    }

    /// The receiver holds what it received ahead of a priority barrier: those records are the
    /// receiver's part of the channel state, and nothing behind the barrier is received first.
    /// Catches: a gate that takes buffers from behind a priority barrier (they would be
    /// processed before the snapshot and persisted by the sender too: counted twice).
    #[tokio::test(start_paused = true)]
    async fn a_priority_barrier_is_received_before_the_buffers_behind_it() {
        let knobs = knobs();
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(10), 8, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        assert_eq!(next_within(&mut gate, Duration::from_millis(1)).await, None, "received, still on the wire");
        send(&mut a, 1).await;
        let overtaken = a.push_priority(barrier(3));
        assert_eq!(overtaken.iter().map(|r| r.origin.offset).collect::<Vec<_>>(), vec![1], "the sender's part");
        assert_eq!(gate.received_records(0).iter().map(|r| r.origin.offset).collect::<Vec<_>>(), vec![0], "the receiver's part");
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])), "received before the barrier: due first");
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, barrier(3))));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(1)])));
    }

    /// A timed-out aligned barrier still queued at its sender is not the receiver's to convert
    /// (Flink's receiver converts only what it received); the sender turns it into a priority
    /// event, keeps what it overtook as its output channel state, and sends that after it, in
    /// order, with what was behind it.
    /// Catches: a receiver that reaches into its sender's queue (the overtaken records would be
    /// persisted by the receiver as well as the sender: counted twice on restore), and a sender
    /// conversion that loses or reorders records.
    #[tokio::test(start_paused = true)]
    async fn a_timed_out_barrier_still_at_its_sender_is_converted_by_the_sender() {
        let knobs = knobs();
        let (mut a, ia) = link(TaskId::Source(0), Duration::ZERO, 8, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        send(&mut a, 0).await;
        a.add(record(1), 10);
        a.push_barrier(StreamMessage::Barrier(barrier(5)));
        send(&mut a, 2).await;
        assert!(!gate.convert_to_priority(0, 5), "not received: the receiver cannot reach it");
        assert!(a.convert_to_priority(6).is_none(), "no barrier of checkpoint 6 on the channel");
        let overtaken: Vec<u64> = a.convert_to_priority(5).expect("queued at the sender").iter().map(|r| r.origin.offset).collect();
        assert_eq!(overtaken, vec![0, 1], "the sender's output channel state");
        assert!(!a.holds_barrier(5), "switched: no in-order copy is left");
        let mut unaligned = barrier(5);
        unaligned.options.alignment = crate::cluster::element::Alignment::Unaligned;
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, unaligned)));
        assert!(gate.received_records(0).is_empty(), "the receiver persists none of them");
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(1)])));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(2)])));
    }

    /// Catches: a conversion that finds a barrier the gate received already but delivers the
    /// buffers behind it first.
    #[tokio::test(start_paused = true)]
    async fn a_received_timed_out_barrier_goes_ahead_and_what_was_behind_it_goes_back() {
        let knobs = knobs();
        let (mut a, ia) = link(TaskId::Source(0), Duration::from_millis(10), 8, &knobs);
        let mut gate = InputGate::new(vec![ia], knobs);
        a.add(record(0), 10);
        a.push_barrier(StreamMessage::Barrier(barrier(5)));
        assert_eq!(next_within(&mut gate, Duration::from_millis(1)).await, None, "received, on the wire");
        a.add(record(1), 10);
        a.add(record(2), 10);
        a.flush().await;
        assert!(gate.convert_to_priority(0, 5));
        assert_eq!(gate.received_records(0).iter().map(|r| r.origin.offset).collect::<Vec<_>>(), vec![0]);
        assert_eq!(gate.next().await, Some(GateEvent::Priority(0, barrier(5))), "due with the buffer it was in: first");
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(1), record(2)])));
    }

    /// Flink's defaults (NettyShuffleEnvironmentConfiguration.java:325-332): 2 exclusive buffers
    /// per channel, 8 floating per gate, 10 per sender subpartition.
    fn flink_buffers() -> crate::config::NetworkBuffers {
        crate::config::NetworkBuffers::new(32 * 1024, 2, 8, 10, 0, 4)
    }

    /// Fills `out` with one-record buffers until its sender waits for credit; returns the
    /// records it sent (the last one is in the writer's hand).
    async fn fill(out: &mut crate::cluster::channel::OutputChannel, first: u64) -> u64 {
        if !out.try_flush() {
            return 0; // the buffer in hand still waits
        }
        let mut i = first;
        loop {
            if out.add(record(i), 1) && !out.try_flush() {
                return i + 1 - first;
            }
            i += 1;
        }
    }

    /// Under backpressure the in-flight data of each channel is bounded by Flink's credits, as
    /// the model states them: at the receiver its exclusive buffers plus the floating ones it
    /// borrowed, the gate lending at most `floating-buffers-per-gate` in all; at the sender at
    /// most `max-buffers-per-channel` (queued, and the one the writer fills), within the
    /// partition's pool. So is what an unaligned barrier persists: the sender's part and the
    /// receiver's part together never exceed (exclusive + floating + max-buffers-per-channel)
    /// buffers per channel.
    /// Catches: "credit ignores floating buffers" (the backlogged channel would hold 2 at its
    /// receiver, not 10), floating buffers per channel instead of per gate (the second channel
    /// would get 10 too: 20 at one gate), a sender that queues past max-buffers-per-channel, and
    /// a receiver that keeps a floating buffer after delivering.
    #[tokio::test(start_paused = true)]
    async fn in_flight_buffers_are_bounded_by_flinks_credits_at_both_ends() {
        let net = flink_buffers();
        let knobs = knobs();
        let gate_pool = crate::cluster::channel::Credits::gate_pool(&net);
        // Two senders, each its own partition (one subpartition each); a 1 s wire keeps every
        // buffer received but not deliverable while we look.
        let make = |from: TaskId| {
            let partition = crate::cluster::channel::Credits::partition_pool(&net, 1);
            let credits = crate::cluster::channel::Credits::of(&net, &gate_pool, &partition);
            crate::cluster::channel::channel_with(ChannelStats::new(from, TaskId::Counter(0), Duration::from_secs(1)), credits, knobs.clone())
        };
        let (mut a, ia) = make(TaskId::Source(0));
        let (mut b, ib) = make(TaskId::Source(1));
        let mut gate = InputGate::new(vec![ia, ib], knobs);
        let sent_a = fill(&mut a, 0).await;
        assert_eq!(next_within(&mut gate, Duration::from_millis(1)).await, None, "nothing due yet");
        // The gate received what its credits allow: channel a borrowed every floating buffer.
        let sent_a = sent_a + fill(&mut a, 1000).await;
        let sent_b = fill(&mut b, 2000).await;
        assert_eq!(next_within(&mut gate, Duration::from_millis(1)).await, None);
        let sent_a = sent_a + fill(&mut a, 4000).await;
        let sent_b = sent_b + fill(&mut b, 3000).await;
        let (received_a, received_b) = (gate.slots[0].queue.len(), gate.slots[1].queue.len());
        assert_eq!(received_a, 2 + 8, "exclusive plus every floating buffer of the gate");
        assert_eq!(received_b, 2, "only its exclusive buffers: the gate's floating ones are lent");
        assert_eq!(gate_pool.used(), 8);
        // Senders: 9 queued and one full in hand each, the rest waits at the source.
        assert_eq!((sent_a as usize, sent_b as usize), (received_a + 10, received_b + 10));
        for ch in 0..2 {
            let in_flight = gate.stats(ch).in_flight.load(Ordering::Relaxed) as usize;
            assert!(in_flight < 2 + 8 + 10, "channel {ch}: {in_flight} records in flight (one buffer still in hand)");
        }
        // Delivering a buffer gives its floating buffer back to the gate.
        assert_eq!(gate.next().await, Some(GateEvent::Buffer(0, vec![record(0)])));
        assert_eq!((gate_pool.used(), gate.slots[0].borrowed), (7, 7));
        for (ch, out, in_flight) in [(0, &mut a, sent_a - 1), (1, &mut b, sent_b)] {
            // An unaligned barrier now persists the sender's part and the receiver's, once each.
            let at_sender = out.push_priority(barrier(1)).len();
            let at_receiver = gate.received_records(ch).len();
            assert_eq!((at_sender + at_receiver) as u64, in_flight, "channel {ch}: every record in flight, once");
            assert!(at_sender <= 10 && at_receiver <= 2 + 8, "channel {ch}: {at_sender} + {at_receiver}");
        }
    }
}
