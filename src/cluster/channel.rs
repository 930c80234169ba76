//! Channels between subtasks: bounded queues of network buffers with a latency, one per pair of
//! sender and receiver subtask (Flink's result subpartition + input channel).
//!
//! A writer packs elements into a buffer and sends it when it is full, when a barrier must go, or
//! when the buffer timeout passes (Flink's `execution.buffer-timeout.interval`). A buffer carries
//! the instant it may be delivered (`sent + delay`): the receiving [`super::gate::InputGate`]
//! holds it until then, so a channel with 300 ms of delay still carries thousands of records per
//! second, each 300 ms late, in order. The queue is bounded (Flink's credits): a receiver that does
//! not consume a channel (blocked by alignment, or slow) makes it fill, and its sender wait on it:
//! backpressure. An unaligned barrier goes to the head of the queue, ahead of every buffer queued
//! before it (Flink's priority events), and the sender keeps copies of the records it overtook as
//! output channel state; it is the channel's only barrier of that checkpoint.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::element::{Barrier, StreamMessage};
use super::task::RuntimeKnobs;
use crate::types::TaskId;

/// One network buffer on the wire: when it may be delivered, and its elements.
pub type Buffer = (Instant, Vec<StreamMessage>);

/// A barrier in flight on a channel, as the view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BarrierInFlight {
    pub checkpoint: u64,
    /// Records sent before this barrier that the receiver has not taken yet (0 for a barrier
    /// that overtook them on the priority lane: then `overtook` is how many it passed).
    pub records_ahead: u64,
    pub overtook: u64,
}

/// Shared counters of one channel, read by the view.
#[derive(Debug)]
pub struct ChannelStats {
    pub from: TaskId,
    pub to: TaskId,
    /// This channel's extra latency (`ckptlab.delays`) in microseconds; changes while the job
    /// runs (the workbench's slow-channel key). A buffer's delivery time is fixed when it is sent
    /// and the receiver takes buffers in order, so a change never reorders a channel.
    delay_us: AtomicU64,
    /// Records sent and not yet taken by the receiving task.
    pub in_flight: AtomicI64,
    /// Barriers sent and not yet taken, oldest first, with the records sent count at the moment
    /// they were sent (to tell how many records are still ahead of each).
    barriers: Mutex<VecDeque<(u64, u64, bool)>>,
    /// Not consumed by the receiver: blocked by alignment.
    pub blocked: AtomicBool,
    /// The sender is waiting for capacity (backpressure).
    pub backpressured: AtomicBool,
    pub records_sent: AtomicU64,
    records_taken: AtomicU64,
}

impl ChannelStats {
    pub fn new(from: TaskId, to: TaskId, delay: Duration) -> Arc<Self> {
        Arc::new(ChannelStats {
            from,
            to,
            delay_us: AtomicU64::new(delay.as_micros() as u64),
            in_flight: AtomicI64::new(0),
            barriers: Mutex::new(VecDeque::new()),
            blocked: AtomicBool::new(false),
            backpressured: AtomicBool::new(false),
            records_sent: AtomicU64::new(0),
            records_taken: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }

    /// This channel's extra latency, on top of the hop delay.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us.load(Ordering::Relaxed))
    }

    /// Changes the extra latency for buffers sent from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    fn lock_barriers(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, u64, bool)>> {
        self.barriers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The receiver took a buffer off the channel.
    pub fn taken(&self, elements: &[StreamMessage]) {
        let mut records = 0;
        for e in elements {
            match e {
                StreamMessage::Record(_) => records += 1,
                StreamMessage::Barrier(b) => self.barrier_taken(b.checkpoint),
                StreamMessage::CancelCheckpoint(_) => {}
            }
        }
        self.in_flight.fetch_sub(records, Ordering::Relaxed);
        self.records_taken.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// A barrier left the channel (in order, or as a priority event: a checkpoint has one
    /// barrier per channel).
    pub fn barrier_taken(&self, checkpoint: u64) {
        let mut b = self.lock_barriers();
        if let Some(i) = b.iter().position(|(id, _, _)| *id == checkpoint) {
            b.remove(i);
        }
    }

    /// The barriers in flight, oldest first.
    pub fn barriers(&self) -> Vec<BarrierInFlight> {
        let taken = self.records_taken.load(Ordering::Relaxed);
        self.lock_barriers()
            .iter()
            .map(|(checkpoint, sent_before, priority)| {
                let ahead = sent_before.saturating_sub(taken);
                if *priority {
                    BarrierInFlight { checkpoint: *checkpoint, records_ahead: 0, overtook: ahead }
                } else {
                    BarrierInFlight { checkpoint: *checkpoint, records_ahead: ahead, overtook: 0 }
                }
            })
            .collect()
    }

    fn clear(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
        self.lock_barriers().clear();
    }
}

/// A pool of network buffers that several channels draw on: an input gate's floating buffers
/// (Flink's gate-wide floating buffers, lent to whichever channel has a backlog) or a result
/// partition's local buffer pool (shared by the subpartitions of one sending task).
#[derive(Debug)]
pub struct BufferPool {
    size: usize,
    used: AtomicUsize,
    /// Woken when a buffer comes back (a sender waiting for its partition's pool).
    returned: tokio::sync::Notify,
}

impl BufferPool {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(BufferPool { size, used: AtomicUsize::new(0), returned: tokio::sync::Notify::new() })
    }

    /// A pool that never runs out (`ckptlab.channel-capacity` bounds each channel alone).
    pub fn unbounded() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    /// Buffers in use now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn has_room(&self) -> bool {
        self.used() < self.size
    }

    /// Takes a buffer if one is free.
    pub(super) fn try_take(&self) -> bool {
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| (u < self.size).then(|| u + 1)).is_ok()
    }

    /// Takes a buffer whether or not one is free (an event's buffer, a buffer given back).
    fn overdraw(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    pub(super) fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.returned.notify_waiters();
        }
    }
}

/// What bounds one channel's in-flight buffers, as Flink's credit-based flow control does
/// (`docs/runtime.md`, "Network buffers"): the receiver holds at most its exclusive buffers plus
/// the floating ones it borrowed from its gate, and the sender's subpartition queues at most
/// `queued` finished buffers, within its partition's pool.
#[derive(Debug, Clone)]
pub struct Credits {
    /// Buffers the receiver holds for this channel alone (Flink's exclusive buffers,
    /// `taskmanager.network.memory.buffers-per-channel`).
    pub exclusive: usize,
    /// The receiving gate's floating buffers (`floating-buffers-per-gate`), shared by its channels.
    pub floating: Arc<BufferPool>,
    /// Finished buffers the sender's subpartition may queue before its writer waits: Flink's
    /// `max-buffers-per-channel` less the one the writer fills.
    pub queued: usize,
    /// The sending task's result partition pool, shared by its subpartitions (finished buffers
    /// only: each subpartition's buffer in the writer's hand is counted out of it).
    pub partition: Arc<BufferPool>,
}

impl Credits {
    /// `ckptlab.channel-capacity`: one buffer at the receiver and `capacity` queued at the sender,
    /// no shared pools (ckptlab's model before Flink's credits).
    pub fn fixed(capacity: usize) -> Self {
        Credits { exclusive: 1, floating: BufferPool::new(0), queued: capacity.max(1), partition: BufferPool::unbounded() }
    }

    /// One channel's credits: Flink's, drawing on its receiver's `gate` pool and its sender's
    /// `partition` pool, or [`Self::fixed`] when `ckptlab.channel-capacity` is set.
    pub fn of(net: &crate::config::NetworkBuffers, gate: &Arc<BufferPool>, partition: &Arc<BufferPool>) -> Self {
        match net.channel_capacity {
            Some(capacity) => Self::fixed(capacity),
            None => Credits {
                exclusive: net.buffers_per_channel,
                floating: gate.clone(),
                // The writer fills one more (LocalBufferPool counts it for its subpartition).
                queued: net.max_buffers_per_channel.saturating_sub(1).max(1),
                partition: partition.clone(),
            },
        }
    }

    /// An input gate's floating buffers (SingleInputGateFactory: `floating-buffers-per-gate`
    /// per gate, NettyShuffleUtils.getMinMaxFloatingBuffersPerInputGate, :57).
    pub fn gate_pool(net: &crate::config::NetworkBuffers) -> Arc<BufferPool> {
        BufferPool::new(net.floating_buffers_per_gate)
    }

    /// The local buffer pool of a sender with `subpartitions` output channels, for finished
    /// buffers: Flink sizes a pipelined (bounded) partition's pool at most
    /// `subpartitions x buffers-per-channel + floating-buffers-per-gate` (NettyShuffleUtils
    /// .java:86-88), which the buffer each subpartition's writer fills counts in too.
    pub fn partition_pool(net: &crate::config::NetworkBuffers, subpartitions: usize) -> Arc<BufferPool> {
        let size = subpartitions * net.buffers_per_channel + net.floating_buffers_per_gate;
        BufferPool::new(size.saturating_sub(subpartitions).max(1))
    }
}

/// The queue of one channel, shared by its two ends (Flink's `PipelinedSubpartition`): the
/// buffers the sender finished and the receiver has not received yet, and priority events ahead
/// of them. Holding it in one place lets a priority barrier go to the head and see every buffer
/// it overtook, as Flink's subpartition does (PipelinedSubpartition.java:219-248). What the
/// receiver took off it (its credit) is in its input gate.
struct Wire {
    data: VecDeque<Buffer>,
    /// Priority events (unaligned barriers), each at the head of `data`: the receiver takes no
    /// buffer while one waits here.
    priority: VecDeque<(Instant, Barrier)>,
    /// In-order barriers in `data`, each the last element of its buffer (0: nothing to look for
    /// when the receiver takes a buffer).
    barriers: usize,
    sender_gone: bool,
    receiver_gone: bool,
    /// The receiver's waker, woken when something arrives or the sender goes.
    waker: Option<std::task::Waker>,
}

/// One channel's queue and credits, shared by its sender and its receiver.
pub struct Link {
    wire: Mutex<Wire>,
    /// Finished buffers the sender may queue; events need none (PipelinedSubpartition
    /// .java:610-619), and a buffer finished for a barrier may overdraw by one.
    capacity: usize,
    /// The sending task's pool, which every buffer on `data` holds one of.
    partition: Arc<BufferPool>,
    /// Woken when the receiver took a buffer (credit) or went away.
    credit: tokio::sync::Notify,
    /// Woken when the receiver took a buffer that ends with an in-order barrier.
    barrier_left: tokio::sync::Notify,
}

impl Link {
    fn lock(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.wire.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn has_room(&self, w: &Wire) -> bool {
        w.data.len() < self.capacity && self.partition.has_room()
    }

    /// Returns once the sender may put a buffer on the queue (or the receiver is gone).
    pub async fn credit(&self) {
        loop {
            let notified = self.credit.notified();
            let returned = self.partition.returned.notified();
            tokio::pin!(notified);
            tokio::pin!(returned);
            notified.as_mut().enable();
            returned.as_mut().enable();
            {
                let w = self.lock();
                if w.receiver_gone || self.has_room(&w) {
                    return;
                }
            }
            tokio::select! {
                () = notified => {}
                () = returned => {}
            }
        }
    }

    /// Returns when the receiver has taken a buffer that ended with an in-order barrier since
    /// the last call (at once if it did before).
    pub async fn barrier_left(&self) {
        self.barrier_left.notified().await
    }
}

/// The sending end of a channel, owned by the upstream task.
pub struct OutputChannel {
    link: Arc<Link>,
    pub stats: Arc<ChannelStats>,
    buffer: Vec<StreamMessage>,
    buffer_started: Option<Instant>,
    closed: bool,
    knobs: Arc<RuntimeKnobs>,
}

/// The receiving end of a channel, owned by the downstream task's input gate.
pub struct InputChannel {
    link: Arc<Link>,
    pub stats: Arc<ChannelStats>,
    /// Buffers the receiver holds for this channel alone.
    pub(super) exclusive: usize,
    /// The gate's floating buffers, which the gate lends its channels.
    pub(super) floating: Arc<BufferPool>,
}

/// What the receiving end found on the queue.
pub(super) enum Arrival {
    Priority((Instant, Barrier)),
    Buffer(Buffer),
    /// The sender is gone and the queue is empty.
    Closed,
    Empty,
}

/// Whether a buffer ends with a barrier after which Flink's sender sends nothing until the
/// receiver resumes consumption: an exactly-once aligned one (its data type blocks upstream,
/// PipelinedSubpartition.java: `isBlockingUpstream`). Events go last in their buffer.
pub(super) fn blocks_upstream(elements: &[StreamMessage]) -> bool {
    matches!(elements.last(), Some(StreamMessage::Barrier(b))
        if b.options.mode == crate::config::CheckpointMode::ExactlyOnce && b.options.alignment != super::element::Alignment::Unaligned)
}

impl InputChannel {
    /// Takes the next priority event (`priority`), or (`data`) the next buffer if no priority
    /// event is ahead of it, registering `waker` when there is nothing to take.
    pub(super) fn take(&self, priority: bool, data: bool, waker: Option<&std::task::Waker>) -> Arrival {
        let mut w = self.link.lock();
        if !w.priority.is_empty() {
            if priority {
                return Arrival::Priority(w.priority.pop_front().expect("not empty"));
            }
        } else if data {
            if let Some(b) = w.data.pop_front() {
                let barrier = w.barriers > 0 && matches!(b.1.last(), Some(StreamMessage::Barrier(_)));
                if barrier {
                    w.barriers -= 1;
                }
                drop(w);
                self.link.partition.give_back(1);
                self.link.credit.notify_one();
                if barrier {
                    self.link.barrier_left.notify_one();
                }
                return Arrival::Buffer(b);
            }
        }
        if w.sender_gone && w.data.is_empty() {
            return Arrival::Closed;
        }
        if let Some(waker) = waker {
            if !w.waker.as_ref().is_some_and(|old| old.will_wake(waker)) {
                w.waker = Some(waker.clone());
            }
        }
        Arrival::Empty
    }

    /// Puts buffers the receiver had taken back at the head of the queue, in order (they were
    /// behind a barrier the receiver moved ahead of them).
    pub(super) fn give_back(&self, buffers: impl DoubleEndedIterator<Item = Buffer>) {
        let mut w = self.link.lock();
        let mut n = 0;
        for b in buffers.rev() {
            if matches!(b.1.last(), Some(StreamMessage::Barrier(_))) {
                w.barriers += 1;
            }
            w.data.push_front(b);
            n += 1;
        }
        drop(w);
        self.link.partition.overdraw(n);
    }
}

impl Drop for InputChannel {
    fn drop(&mut self) {
        let mut w = self.link.lock();
        w.receiver_gone = true;
        let n = w.data.len();
        w.data.clear();
        w.barriers = 0;
        drop(w);
        self.link.partition.give_back(n);
        self.link.credit.notify_one();
        self.link.barrier_left.notify_one();
    }
}

impl Drop for OutputChannel {
    fn drop(&mut self) {
        let mut w = self.link.lock();
        w.sender_gone = true;
        let waker = w.waker.take();
        drop(w);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Builds a channel of `capacity` buffers (`ckptlab.channel-capacity`: [`Credits::fixed`]).
pub fn channel(stats: Arc<ChannelStats>, capacity: usize, knobs: Arc<RuntimeKnobs>) -> (OutputChannel, InputChannel) {
    channel_with(stats, Credits::fixed(capacity), knobs)
}

/// Builds a channel bounded by `credits`.
pub fn channel_with(stats: Arc<ChannelStats>, credits: Credits, knobs: Arc<RuntimeKnobs>) -> (OutputChannel, InputChannel) {
    let link = Arc::new(Link {
        wire: Mutex::new(Wire {
            data: VecDeque::new(),
            priority: VecDeque::new(),
            barriers: 0,
            sender_gone: false,
            receiver_gone: false,
            waker: None,
        }),
        capacity: credits.queued.max(1),
        partition: credits.partition,
        credit: tokio::sync::Notify::new(),
        barrier_left: tokio::sync::Notify::new(),
    });
    let out = OutputChannel { link: link.clone(), stats: stats.clone(), buffer: Vec::new(), buffer_started: None, closed: false, knobs };
    // A receiver that can hold nothing would never take a buffer.
    let exclusive = if credits.floating.size == 0 { credits.exclusive.max(1) } else { credits.exclusive };
    (out, InputChannel { link, stats, exclusive, floating: credits.floating })
}

impl OutputChannel {
    /// The current latency: the shared hop delay plus this channel's extra delay.
    fn delay(&self) -> Duration {
        self.knobs.hop_delay() + self.stats.delay()
    }

    /// Whether buffers hold one record each (watching speed, or a zero buffer timeout).
    pub fn per_record(&self, buffer_timeout: Duration) -> bool {
        buffer_timeout.is_zero() || !self.knobs.hop_delay().is_zero()
    }

    /// Adds a record to the buffer; true when the buffer is full and must be flushed. (Not async,
    /// so the per-record path builds no future.) Not called while a full buffer waits for credit.
    #[inline]
    pub fn add(&mut self, msg: StreamMessage, max_records: usize) -> bool {
        if self.closed {
            return false;
        }
        if self.buffer.is_empty() {
            self.buffer_started = Some(Instant::now());
            self.buffer.reserve(max_records.min(4096));
        }
        self.buffer.push(msg);
        self.buffer.len() >= max_records
    }

    /// Sends a barrier (or a cancel marker) right behind whatever is buffered, at once: an event
    /// needs no credit (PipelinedSubpartition.java:610-619), and the buffer it finishes already
    /// holds its memory (Flink finishes the buffer builders before broadcasting an event).
    pub fn push_barrier(&mut self, msg: StreamMessage) {
        if self.closed {
            return;
        }
        if let StreamMessage::Barrier(b) = &msg {
            // Counted as sent once the records buffered ahead of it are.
            let ahead = self.buffer.iter().filter(|m| m.is_record()).count() as u64;
            let sent = self.stats.records_sent.load(Ordering::Relaxed) + ahead;
            self.stats.lock_barriers().push_back((b.checkpoint, sent, false));
        }
        self.buffer.push(msg);
        self.enqueue(true);
    }

    /// Whether the in-order barrier of `checkpoint` is still in this sender's queue (the
    /// receiver has not received it).
    pub fn holds_barrier(&self, checkpoint: u64) -> bool {
        let w = self.link.lock();
        w.barriers > 0 && w.data.iter().any(|(_, e)| matches!(e.last(), Some(StreamMessage::Barrier(b)) if b.checkpoint == checkpoint))
    }

    /// The aligned barrier of `checkpoint` timed out while still in this sender's queue: it
    /// becomes a priority (unaligned) barrier at the head of the queue, and copies of the records
    /// it overtook are returned, this sender's output channel state; they are still sent after
    /// it, and what was behind it stays behind (PipelinedSubpartition.java:330-356,
    /// `alignedBarrierTimeout`). None when the receiver has it already.
    pub fn convert_to_priority(&mut self, checkpoint: u64) -> Option<Vec<super::element::Record>> {
        let mut w = self.link.lock();
        if w.barriers == 0 {
            return None;
        }
        let i = w.data.iter().position(|(_, e)| matches!(e.last(), Some(StreamMessage::Barrier(b)) if b.checkpoint == checkpoint))?;
        let Some(StreamMessage::Barrier(mut barrier)) = w.data[i].1.pop() else { unreachable!("position i ends with the barrier") };
        w.barriers -= 1;
        barrier.options.alignment = super::element::Alignment::Unaligned;
        let overtaken: Vec<super::element::Record> = w
            .data
            .iter()
            .take(i + 1)
            .flat_map(|(_, elements)| elements.iter())
            .filter_map(|e| if let StreamMessage::Record(r) = e { Some(r.clone()) } else { None })
            .collect();
        let mut freed = 0;
        if w.data[i].1.is_empty() {
            w.data.remove(i);
            freed = 1;
        }
        // Due no later than the buffer at the head it overtook, nor before the priority event
        // ahead of it (see push_priority).
        let mut at = Instant::now() + self.delay();
        if let Some((head, _)) = w.data.front() {
            at = at.min(*head);
        }
        if let Some((ahead, _)) = w.priority.back() {
            at = at.max(*ahead);
        }
        w.priority.push_back((at, barrier));
        let waker = w.waker.take();
        drop(w);
        self.link.partition.give_back(freed);
        if let Some(waker) = waker {
            waker.wake();
        }
        if let Some(entry) = self.stats.lock_barriers().iter_mut().find(|(id, _, _)| *id == checkpoint) {
            entry.2 = true;
        }
        Some(overtaken)
    }

    /// Puts an unaligned barrier at the head of the queue, ahead of every buffer queued (after
    /// finishing the partly filled one), and returns copies of the records it overtook: the
    /// channel's output channel state, persisted by this sender (PipelinedSubpartition.java
    /// :219-248 copies them; they are still sent after the barrier). Never waits: a priority
    /// event needs no credit.
    pub fn push_priority(&mut self, barrier: Barrier) -> Vec<super::element::Record> {
        if self.closed {
            return Vec::new();
        }
        self.enqueue(true);
        if self.closed {
            return Vec::new();
        }
        let mut w = self.link.lock();
        // It overtakes the queue, so it is due no later than the buffer at its head would have
        // been (nor before the priority event ahead of it): a barrier due later would hold back
        // records already due, and with a checkpoint every 50 ms on a 243 ms channel one always
        // was, so that nothing was delivered for ten minutes of model time. In Flink the
        // barrier overtakes only the sender's queue and the receiver's; buffers on the network
        // arrive before it. The model's wire is both queues and the network in one.
        let mut at = Instant::now() + self.delay();
        if let Some((head, _)) = w.data.front() {
            at = at.min(*head);
        }
        if let Some((ahead, _)) = w.priority.back() {
            at = at.max(*ahead);
        }
        let overtaken: Vec<super::element::Record> = w
            .data
            .iter()
            .flat_map(|(_, elements)| elements.iter())
            .filter_map(|e| if let StreamMessage::Record(r) = e { Some(r.clone()) } else { None })
            .collect();
        w.priority.push_back((at, barrier));
        let waker = w.waker.take();
        drop(w);
        if let Some(waker) = waker {
            waker.wake();
        }
        let sent = self.stats.records_sent.load(Ordering::Relaxed);
        self.stats.lock_barriers().push_back((barrier.checkpoint, sent, true));
        overtaken
    }

    /// When the buffer must go out by the buffer timeout, if it holds anything.
    pub fn deadline(&self, buffer_timeout: Duration) -> Option<Instant> {
        self.buffer_started.map(|s| s + buffer_timeout)
    }

    /// Whether a buffer is held back for lack of credit (the task must wait before adding more).
    pub fn is_stuck(&self) -> bool {
        !self.buffer.is_empty() && self.stats.backpressured.load(Ordering::Relaxed)
    }

    /// The queue, to wait for credit on without holding this writer (the task keeps taking
    /// urgent mail meanwhile: StreamTask.java:656-705).
    pub fn link(&self) -> Arc<Link> {
        self.link.clone()
    }

    /// Puts the buffer on the queue if there is credit; false (the buffer kept, the channel
    /// backpressured) if not.
    pub fn try_flush(&mut self) -> bool {
        self.enqueue(false)
    }

    /// Sends the buffer, waiting for credit (backpressure). A dead receiver drops it silently,
    /// as a network connection to a killed task manager does.
    pub async fn flush(&mut self) {
        while !self.try_flush() {
            self.link.clone().credit().await;
        }
    }

    /// Moves the buffer onto the queue: when there is credit, or always (`overdraft`, for a
    /// buffer finished by an event). True when nothing is left in the writer.
    fn enqueue(&mut self, overdraft: bool) -> bool {
        if self.buffer.is_empty() || self.closed {
            self.buffer.clear();
            self.buffer_started = None;
            return true;
        }
        let mut w = self.link.lock();
        if w.receiver_gone {
            drop(w);
            self.closed = true;
            self.buffer.clear();
            self.buffer_started = None;
            self.stats.backpressured.store(false, Ordering::Relaxed);
            self.stats.clear();
            return true;
        }
        if overdraft {
            self.link.partition.overdraw(1);
        } else if w.data.len() >= self.link.capacity || !self.link.partition.try_take() {
            drop(w);
            self.stats.backpressured.store(true, Ordering::Relaxed);
            return false;
        }
        let elements = std::mem::take(&mut self.buffer);
        let records = elements.iter().filter(|e| e.is_record()).count() as i64;
        self.stats.in_flight.fetch_add(records, Ordering::Relaxed);
        self.stats.records_sent.fetch_add(records as u64, Ordering::Relaxed);
        let at = Instant::now() + self.delay();
        if matches!(elements.last(), Some(StreamMessage::Barrier(_))) {
            w.barriers += 1;
        }
        w.data.push_back((at, elements));
        let waker = w.waker.take();
        drop(w);
        if let Some(waker) = waker {
            waker.wake();
        }
        self.buffer_started = None;
        self.stats.backpressured.store(false, Ordering::Relaxed);
        true
    }
}

/// The aligned barrier of a checkpoint that may time out (`aligned-checkpoint-timeout` with
/// unaligned checkpoints on), sent in order on a task's outputs. The task acknowledges the
/// checkpoint once each has left its sender queue (received downstream), or, when the timeout
/// counted from the checkpoint's trigger has passed, turns those still queued into priority
/// barriers and persists what they overtook as its output channel state: Flink registers that
/// timer when the barrier is broadcast (SubtaskCheckpointCoordinatorImpl.java:385-405, the delay
/// from BarrierAlignmentUtil.getTimerDelay) and each subpartition converts its queued barrier
/// (PipelinedSubpartition.java:330-356); the channel state written (the ack) waits for both
/// outcomes.
#[derive(Debug)]
pub struct TimeoutableBarrier {
    pub checkpoint: u64,
    pub deadline: Instant,
    /// Outputs whose barrier may still be in the sender queue.
    waiting: Vec<usize>,
}

impl TimeoutableBarrier {
    /// For a barrier sent in order on `outputs` outputs that may time out; None for any other.
    pub fn new(barrier: &Barrier, outputs: usize) -> Option<Self> {
        match barrier.options.alignment {
            super::element::Alignment::AlignedWithTimeout { timeout_ms }
                if barrier.options.mode == crate::config::CheckpointMode::ExactlyOnce && outputs > 0 =>
            {
                Some(TimeoutableBarrier {
                    checkpoint: barrier.checkpoint,
                    deadline: barrier.triggered_at + Duration::from_millis(timeout_ms),
                    waiting: (0..outputs).collect(),
                })
            }
            _ => None,
        }
    }

    /// Forgets the outputs whose receiver has the barrier; at or past the deadline switches the
    /// others, adding what each overtook to `overtaken` as (output, record). True when no output
    /// is waiting any more.
    pub fn poll(&mut self, outputs: &mut [OutputChannel], now: Instant, overtaken: &mut Vec<(usize, super::element::Record)>) -> bool {
        let (id, past) = (self.checkpoint, now >= self.deadline);
        self.waiting.retain(|&j| {
            let o = &mut outputs[j];
            if !o.holds_barrier(id) {
                return false;
            }
            if !past {
                return true;
            }
            if let Some(records) = o.convert_to_priority(id) {
                overtaken.extend(records.into_iter().map(|r| (j, r)));
            }
            false
        });
        self.waiting.is_empty()
    }

    /// The queues to watch while waiting, for [`wait_for_barriers`].
    pub fn links(&self, outputs: &[OutputChannel]) -> Vec<Arc<Link>> {
        self.waiting.iter().map(|&j| outputs[j].link()).collect()
    }
}

/// Returns when a barrier may have left one of `links`, or at `deadline`.
pub async fn wait_for_barriers(links: Vec<Arc<Link>>, deadline: Instant) {
    if links.is_empty() {
        return;
    }
    let left = futures::future::select_all(links.iter().map(|l| Box::pin(l.barrier_left())));
    tokio::select! {
        _ = left => {}
        () = tokio::time::sleep_until(deadline) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::element::{Origin, Record};
    use crate::cluster::gate::{GateEvent, InputGate};

    fn record(i: u64) -> StreamMessage {
        StreamMessage::Record(Record { key: "k".into(), value: "k".into(), origin: Origin { partition: 0, offset: i }, count: 0 })
    }

    /// A 300 ms channel is a long link, not a slow server: thousands of records cross it in about
    /// 300 ms, in order.
    #[tokio::test(start_paused = true)]
    async fn delay_is_latency_not_service_time() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::from_millis(300));
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 8192, knobs.clone());
        let mut gate = InputGate::new(vec![input], knobs);
        let start = Instant::now();
        for i in 0..5000 {
            if out.add(record(i), 1) {
                out.flush().await;
            }
        }
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 5000);
        let mut next = 0;
        while next < 5000 {
            let Some(GateEvent::Buffer(_, elements)) = gate.next().await else { panic!("a buffer") };
            for e in elements {
                let StreamMessage::Record(r) = e else { panic!("records only") };
                assert_eq!(r.origin.offset, next, "in order");
                next += 1;
            }
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(320), "{took:?}");
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }

    /// A full channel makes its sender wait (backpressure) instead of growing without bound.
    #[tokio::test(start_paused = true)]
    async fn a_full_channel_pushes_back() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 2, knobs.clone());
        let mut gate = InputGate::new(vec![input], knobs);
        let sender = tokio::spawn(async move {
            for i in 0..10 {
                if out.add(record(i), 1) {
                    out.flush().await;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!sender.is_finished(), "the sender waits for capacity");
        assert!(stats.backpressured.load(Ordering::Relaxed));
        let mut got = 0;
        while got < 10 {
            let Some(GateEvent::Buffer(_, elements)) = gate.next().await else { panic!("a buffer") };
            got += elements.len();
        }
        sender.await.unwrap();
        assert!(!stats.backpressured.load(Ordering::Relaxed), "not backpressured once there was room");
    }

    /// The next buffer the receiver may take now.
    fn try_data(input: &InputChannel) -> Result<Buffer, ()> {
        match input.take(false, true, None) {
            Arrival::Buffer(b) => Ok(b),
            _ => Err(()),
        }
    }

    /// The next priority event the receiver may take now.
    fn try_priority(input: &InputChannel) -> Result<(Instant, Barrier), ()> {
        match input.take(true, false, None) {
            Arrival::Priority(p) => Ok(p),
            _ => Err(()),
        }
    }

    fn knobs() -> Arc<RuntimeKnobs> {
        RuntimeKnobs::new(Duration::ZERO, Duration::from_millis(100))
    }

    fn barrier(id: u64) -> Barrier {
        Barrier {
            checkpoint: id,
            options: crate::cluster::element::CheckpointOptions::new(crate::config::CheckpointMode::ExactlyOnce),
            triggered_at: tokio::time::Instant::now(),
        }
    }

    /// Catches: a writer that sends each record at once, or one that reports "full" too early or
    /// too late.
    #[tokio::test(start_paused = true)]
    async fn a_buffer_is_full_at_max_records_and_nothing_is_sent_before_the_flush() {
        let (mut out, input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 4, knobs());
        assert!(!out.add(record(0), 3));
        assert!(!out.add(record(1), 3));
        assert!(try_data(&input).is_err(), "buffered, not on the wire");
        assert!(out.add(record(2), 3), "the third record fills a buffer of three");
        out.flush().await;
        let (_, elements) = try_data(&input).expect("one buffer");
        assert_eq!(elements, vec![record(0), record(1), record(2)]);
        assert!(try_data(&input).is_err(), "one buffer for three records");
        assert_eq!(out.stats.records_sent.load(Ordering::Relaxed), 3);
    }

    /// Catches: a buffer timeout counted from the last record, or from the flush, or a deadline
    /// left behind by an empty buffer (a loop that would wake for nothing).
    #[tokio::test(start_paused = true)]
    async fn the_buffer_timeout_counts_from_the_first_record_of_a_buffer() {
        let timeout = Duration::from_millis(100);
        let (mut out, _input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 4, knobs());
        assert_eq!(out.deadline(timeout), None, "an empty buffer has no deadline");
        let first = Instant::now();
        out.add(record(0), 10);
        tokio::time::sleep(Duration::from_millis(30)).await;
        out.add(record(1), 10);
        assert_eq!(out.deadline(timeout), Some(first + timeout));
        out.flush().await;
        assert_eq!(out.deadline(timeout), None, "flushed: nothing waits for the timeout");
    }

    /// Catches: a barrier sent before (or without) the records buffered ahead of it, or left in
    /// the writer's buffer.
    #[tokio::test(start_paused = true)]
    async fn a_barrier_goes_out_at_once_right_behind_the_buffered_records() {
        let (mut out, input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 4, knobs());
        out.add(record(0), 10);
        out.add(record(1), 10);
        out.push_barrier(StreamMessage::Barrier(barrier(1)));
        let (_, elements) = try_data(&input).expect("sent at once");
        assert_eq!(elements, vec![record(0), record(1), StreamMessage::Barrier(barrier(1))]);
        assert_eq!(out.deadline(Duration::from_millis(100)), None);
        assert_eq!(out.stats.in_flight.load(Ordering::Relaxed), 2, "barriers are not records in flight");
    }

    /// Catches: a view that counts records sent after the barrier as ahead of it, or that never
    /// forgets a barrier the receiver took.
    #[tokio::test(start_paused = true)]
    async fn a_barrier_in_flight_counts_the_records_still_ahead_of_it() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 8, knobs());
        out.add(record(0), 1);
        out.flush().await;
        out.add(record(1), 10);
        out.push_barrier(StreamMessage::Barrier(barrier(7)));
        out.add(record(2), 1);
        out.flush().await;
        assert_eq!(stats.barriers(), vec![BarrierInFlight { checkpoint: 7, records_ahead: 2, overtook: 0 }]);
        let (_, first) = try_data(&input).expect("a buffer");
        stats.taken(&first);
        assert_eq!(stats.barriers()[0].records_ahead, 1);
        let (_, second) = try_data(&input).expect("a buffer");
        stats.taken(&second);
        assert!(stats.barriers().is_empty(), "taken with its buffer");
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 1, "the record behind it is still in flight");
    }

    /// Catches: a cancel marker shown as a barrier in flight (it never leaves the view).
    #[tokio::test(start_paused = true)]
    async fn a_cancel_marker_is_sent_but_is_no_barrier_in_flight() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 8, knobs());
        out.push_barrier(StreamMessage::CancelCheckpoint(3));
        assert!(stats.barriers().is_empty());
        assert_eq!(try_data(&input).expect("sent").1, vec![StreamMessage::CancelCheckpoint(3)]);
    }

    /// An unaligned barrier sent behind buffers on a slow channel is due when the buffer it
    /// overtook at the head was, and one checkpoint after another never keeps the records from
    /// coming. Catches: records starved behind priority barriers that are not due yet (every
    /// 50 ms a barrier on a 243 ms channel: nothing delivered for 600 s of model time in
    /// tests/it/semantics.rs, unaligned_never_loses_nor_overcounts, PROPTEST_RNG_SEED=1).
    #[tokio::test(start_paused = true)]
    async fn priority_barriers_never_hold_back_records_that_are_due() {
        let delay = Duration::from_millis(243);
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), delay);
        let knobs = RuntimeKnobs::new(Duration::ZERO, Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 8, knobs.clone());
        let mut gate = InputGate::new(vec![input], knobs);
        let start = Instant::now();
        // Two buffers, 10 ms apart; then a barrier every 50 ms, from 60 ms on.
        let sender = tokio::spawn(async move {
            out.add(record(0), 1);
            out.flush().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            out.add(record(1), 1);
            out.flush().await;
            for id in 1..=40 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                out.push_priority(barrier(id));
            }
            out
        });
        let (mut records, mut barriers) = (Vec::new(), Vec::new());
        while records.len() < 2 {
            match gate.next().await {
                Some(GateEvent::Priority(_, b)) => barriers.push((b.checkpoint, start.elapsed())),
                Some(GateEvent::Buffer(_, elements)) => records.extend(elements.into_iter().map(|e| (e, start.elapsed()))),
                None => panic!("the channel closed"),
            }
        }
        let ms = Duration::from_millis;
        assert_eq!(records, vec![(record(0), delay), (record(1), ms(10) + delay)], "each record after the delay, not later: barriers {barriers:?}");
        // The barriers that overtook the second came at its time at the latest.
        assert!(!barriers.is_empty() && barriers.iter().all(|(_, at)| *at <= ms(10) + delay), "{barriers:?}");
        // The next one overtook nothing: it takes the channel's delay from its own sending.
        let id = barriers.len() as u64 + 1;
        match gate.next().await {
            Some(GateEvent::Priority(_, b)) => assert_eq!((b.checkpoint, start.elapsed()), (id, ms(10 + 50 * id) + delay)),
            _ => panic!("a barrier"),
        }
        sender.abort();
    }

    /// Priority events need no credit: a barrier goes to the head of a full queue at once, the
    /// partly filled buffer is finished behind the queue (an overdraft), and the sender keeps a
    /// copy of every record it overtook: its output channel state.
    /// Catches: a priority barrier sent behind the queue, a sender that persists nothing (or
    /// loses its partial buffer), and a receiver that takes a buffer before the barrier.
    #[tokio::test(start_paused = true)]
    async fn a_priority_barrier_goes_to_the_head_and_the_sender_keeps_what_it_overtook() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 1, knobs());
        out.add(record(0), 1);
        out.flush().await;
        out.add(record(1), 10);
        let overtaken: Vec<u64> = out.push_priority(barrier(2)).iter().map(|r| r.origin.offset).collect();
        assert_eq!(overtaken, vec![0, 1], "the queued buffer and the partial one");
        assert_eq!(stats.barriers(), vec![BarrierInFlight { checkpoint: 2, records_ahead: 0, overtook: 2 }]);
        assert!(try_data(&input).is_err(), "no buffer is taken ahead of the barrier");
        assert_eq!(try_priority(&input).map(|(_, b)| b), Ok(barrier(2)));
        assert_eq!(try_data(&input).expect("the record").1, vec![record(0)], "still sent, after the barrier");
        assert_eq!(try_data(&input).expect("the record").1, vec![record(1)]);
    }

    /// An event needs no credit: an aligned barrier goes behind the queue while it is full.
    /// Catches: a barrier (and so a trigger) that waits for credit behind backpressure.
    #[tokio::test(start_paused = true)]
    async fn an_aligned_barrier_goes_behind_a_full_queue_without_waiting() {
        let (mut out, input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 1, knobs());
        out.add(record(0), 1);
        out.flush().await;
        out.add(record(1), 10);
        out.push_barrier(StreamMessage::Barrier(barrier(3)));
        assert_eq!(try_data(&input).expect("first").1, vec![record(0)]);
        assert_eq!(try_data(&input).expect("second").1, vec![record(1), StreamMessage::Barrier(barrier(3))]);
    }

    /// Catches: a delivery time that ignores the hop delay or the channel's own extra delay.
    #[tokio::test(start_paused = true)]
    async fn a_buffer_is_due_after_the_hop_delay_plus_the_channel_delay() {
        let knobs = RuntimeKnobs::new(Duration::from_millis(20), Duration::from_millis(100));
        let (mut out, input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::from_millis(300)), 4, knobs);
        let sent = Instant::now();
        out.add(record(0), 1);
        out.flush().await;
        out.push_priority(barrier(1));
        assert_eq!(try_priority(&input).expect("a barrier").0, sent + Duration::from_millis(320));
        assert_eq!(try_data(&input).expect("a buffer").0, sent + Duration::from_millis(320));
    }

    /// A delay changed while the job runs applies to buffers sent from then on.
    /// Catches: a delay read at delivery instead of fixed at send time.
    #[tokio::test(start_paused = true)]
    async fn a_changed_delay_applies_to_buffers_sent_afterwards() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::from_millis(300));
        let (mut out, input) = channel(stats.clone(), 4, knobs());
        let sent = Instant::now();
        out.add(record(0), 1);
        out.flush().await;
        stats.set_delay(Duration::from_millis(10));
        assert_eq!(stats.delay(), Duration::from_millis(10));
        out.add(record(1), 1);
        out.flush().await;
        assert_eq!(try_data(&input).expect("first").0, sent + Duration::from_millis(300));
        assert_eq!(try_data(&input).expect("second").0, sent + Duration::from_millis(10));
    }

    /// Catches: buffers of one record only at a zero buffer timeout, or not while watching.
    #[test]
    fn buffers_hold_one_record_at_a_zero_timeout_or_with_a_hop_delay() {
        let (out, _input) = channel(ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO), 4, knobs());
        assert!(!out.per_record(Duration::from_millis(100)), "flat out: full buffers");
        assert!(out.per_record(Duration::ZERO), "a zero buffer timeout sends each record");
        out.knobs.set_hop_delay(Duration::from_millis(50));
        assert!(out.per_record(Duration::from_millis(100)), "watching speed: each record visible on its own");
    }

    /// A killed receiver is a broken connection: the writer drops what it sends, never waits,
    /// and the view shows nothing in flight. Catches: a writer that hangs or keeps counting.
    #[tokio::test(start_paused = true)]
    async fn a_dead_receiver_closes_the_channel_and_drops_what_is_sent() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 1, knobs());
        out.add(record(0), 1);
        out.push_barrier(StreamMessage::Barrier(barrier(1)));
        drop(input);
        out.add(record(1), 1);
        out.flush().await;
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
        assert!(stats.barriers().is_empty());
        assert!(!out.add(record(2), 1), "a closed channel never asks for a flush");
        out.push_barrier(StreamMessage::Barrier(barrier(2)));
        out.push_priority(barrier(3));
        assert!(stats.barriers().is_empty(), "nothing is in flight on a broken connection");
    }

    /// Catches: a sender waiting for credit that never notices its receiver died.
    #[tokio::test(start_paused = true)]
    async fn a_sender_waiting_for_credit_is_released_when_its_receiver_dies() {
        let stats = ChannelStats::new(TaskId::Source(0), TaskId::Counter(0), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 1, knobs());
        out.add(record(0), 1);
        out.flush().await;
        let sender = tokio::spawn(async move {
            out.add(record(1), 1);
            out.flush().await;
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(stats.backpressured.load(Ordering::Relaxed));
        drop(input);
        tokio::time::timeout(Duration::from_secs(1), sender).await.expect("released").unwrap();
        assert!(!stats.backpressured.load(Ordering::Relaxed));
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }
}
