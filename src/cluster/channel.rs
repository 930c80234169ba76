//! Channels between subtasks: bounded queues of network buffers with a latency, one per pair of
//! sender and receiver subtask (Flink's result subpartition + input channel).
//!
//! A writer packs elements into a buffer and sends it when it is full, when a barrier must go, or
//! when the buffer timeout passes (Flink's `execution.buffer-timeout.interval`). A buffer carries
//! the instant it may be delivered (`sent + delay`): the receiving [`super::gate::InputGate`]
//! holds it until then, so a channel with 300 ms of delay still carries thousands of records per
//! second, each 300 ms late, in order. The queue is bounded (Flink's credits): a receiver that does
//! not consume a channel (blocked by alignment, or slow) makes it fill, and its sender wait on it:
//! backpressure. An unaligned barrier also goes on the channel's priority lane, ahead of every
//! buffer queued before it (Flink's priority events).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::element::{Barrier, StreamMessage};
use super::task::RuntimeKnobs;

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
    pub from: String,
    pub to: String,
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
    pub fn new(from: String, to: String, delay: Duration) -> Arc<Self> {
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
                StreamMessage::Barrier(b) => self.barrier_taken(b.checkpoint, false),
                StreamMessage::CancelCheckpoint(_) => {}
            }
        }
        self.in_flight.fetch_sub(records, Ordering::Relaxed);
        self.records_taken.fetch_add(records as u64, Ordering::Relaxed);
    }

    /// A barrier left the channel (in order, or on the priority lane).
    pub fn barrier_taken(&self, checkpoint: u64, priority: bool) {
        let mut b = self.lock_barriers();
        if let Some(i) = b.iter().position(|(id, _, p)| *id == checkpoint && *p == priority) {
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

/// The sending end of a channel, owned by the upstream task.
pub struct OutputChannel {
    target: mpsc::Sender<Buffer>,
    priority: mpsc::UnboundedSender<(Instant, Barrier)>,
    pub stats: Arc<ChannelStats>,
    buffer: Vec<StreamMessage>,
    buffer_started: Option<Instant>,
    closed: bool,
    knobs: Arc<RuntimeKnobs>,
}

/// The receiving end of a channel, owned by the downstream task's input gate.
pub struct InputChannel {
    pub(super) data: mpsc::Receiver<Buffer>,
    pub(super) priority: mpsc::UnboundedReceiver<(Instant, Barrier)>,
    pub stats: Arc<ChannelStats>,
}

/// Builds a channel of `capacity` buffers.
pub fn channel(stats: Arc<ChannelStats>, capacity: usize, knobs: Arc<RuntimeKnobs>) -> (OutputChannel, InputChannel) {
    let (tx, rx) = mpsc::channel::<Buffer>(capacity);
    let (ptx, prx) = mpsc::unbounded_channel();
    let out =
        OutputChannel { target: tx, priority: ptx, stats: stats.clone(), buffer: Vec::new(), buffer_started: None, closed: false, knobs };
    (out, InputChannel { data: rx, priority: prx, stats })
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
    /// so the per-record path builds no future.)
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

    /// Sends a barrier (or a cancel marker) right behind whatever is buffered.
    pub async fn push_barrier(&mut self, msg: StreamMessage) {
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
        self.flush().await;
    }

    /// Sends an unaligned barrier on the priority lane, ahead of every buffer queued (and of the
    /// records still in this writer's buffer). Never waits: priority events need no credit.
    pub fn push_priority(&mut self, barrier: Barrier) {
        if self.closed {
            return;
        }
        let sent = self.stats.records_sent.load(Ordering::Relaxed) + self.buffer.iter().filter(|m| m.is_record()).count() as u64;
        let at = Instant::now() + self.delay();
        if self.priority.send((at, barrier)).is_ok() {
            self.stats.lock_barriers().push_back((barrier.checkpoint, sent, true));
        }
    }

    /// When the buffer must go out by the buffer timeout, if it holds anything.
    pub fn deadline(&self, buffer_timeout: Duration) -> Option<Instant> {
        self.buffer_started.map(|s| s + buffer_timeout)
    }

    /// Sends the buffer (waits for capacity: backpressure). A dead receiver drops it silently,
    /// as a network connection to a killed task manager does.
    pub async fn flush(&mut self) {
        self.buffer_started = None;
        if self.buffer.is_empty() || self.closed {
            self.buffer.clear();
            return;
        }
        let elements = std::mem::take(&mut self.buffer);
        let records = elements.iter().filter(|e| e.is_record()).count() as i64;
        self.stats.in_flight.fetch_add(records, Ordering::Relaxed);
        self.stats.records_sent.fetch_add(records as u64, Ordering::Relaxed);
        let at = Instant::now() + self.delay();
        let delivered = match self.target.try_send((at, elements)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.stats.backpressured.store(true, Ordering::Relaxed);
                let sent = self.target.send(item).await.is_ok();
                self.stats.backpressured.store(false, Ordering::Relaxed);
                sent
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        if !delivered {
            self.closed = true;
            self.stats.clear();
        }
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
        let stats = ChannelStats::new("source[0]".into(), "counter[0]".into(), Duration::from_millis(300));
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
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
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

    fn knobs() -> Arc<RuntimeKnobs> {
        RuntimeKnobs::new(Duration::ZERO, Duration::from_millis(100))
    }

    fn barrier(id: u64) -> Barrier {
        Barrier { checkpoint: id, options: crate::cluster::element::CheckpointOptions::new(crate::config::CheckpointMode::ExactlyOnce) }
    }

    /// Catches: a writer that sends each record at once, or one that reports "full" too early or
    /// too late.
    #[tokio::test(start_paused = true)]
    async fn a_buffer_is_full_at_max_records_and_nothing_is_sent_before_the_flush() {
        let (mut out, mut input) = channel(ChannelStats::new("a".into(), "b".into(), Duration::ZERO), 4, knobs());
        assert!(!out.add(record(0), 3));
        assert!(!out.add(record(1), 3));
        assert!(input.data.try_recv().is_err(), "buffered, not on the wire");
        assert!(out.add(record(2), 3), "the third record fills a buffer of three");
        out.flush().await;
        let (_, elements) = input.data.try_recv().expect("one buffer");
        assert_eq!(elements, vec![record(0), record(1), record(2)]);
        assert!(input.data.try_recv().is_err(), "one buffer for three records");
        assert_eq!(out.stats.records_sent.load(Ordering::Relaxed), 3);
    }

    /// Catches: a buffer timeout counted from the last record, or from the flush, or a deadline
    /// left behind by an empty buffer (a loop that would wake for nothing).
    #[tokio::test(start_paused = true)]
    async fn the_buffer_timeout_counts_from_the_first_record_of_a_buffer() {
        let timeout = Duration::from_millis(100);
        let (mut out, _input) = channel(ChannelStats::new("a".into(), "b".into(), Duration::ZERO), 4, knobs());
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
        let (mut out, mut input) = channel(ChannelStats::new("a".into(), "b".into(), Duration::ZERO), 4, knobs());
        out.add(record(0), 10);
        out.add(record(1), 10);
        out.push_barrier(StreamMessage::Barrier(barrier(1))).await;
        let (_, elements) = input.data.try_recv().expect("sent at once");
        assert_eq!(elements, vec![record(0), record(1), StreamMessage::Barrier(barrier(1))]);
        assert_eq!(out.deadline(Duration::from_millis(100)), None);
        assert_eq!(out.stats.in_flight.load(Ordering::Relaxed), 2, "barriers are not records in flight");
    }

    /// Catches: a view that counts records sent after the barrier as ahead of it, or that never
    /// forgets a barrier the receiver took.
    #[tokio::test(start_paused = true)]
    async fn a_barrier_in_flight_counts_the_records_still_ahead_of_it() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
        let (mut out, mut input) = channel(stats.clone(), 8, knobs());
        out.add(record(0), 1);
        out.flush().await;
        out.add(record(1), 10);
        out.push_barrier(StreamMessage::Barrier(barrier(7))).await;
        out.add(record(2), 1);
        out.flush().await;
        assert_eq!(stats.barriers(), vec![BarrierInFlight { checkpoint: 7, records_ahead: 2, overtook: 0 }]);
        let (_, first) = input.data.try_recv().expect("a buffer");
        stats.taken(&first);
        assert_eq!(stats.barriers()[0].records_ahead, 1);
        let (_, second) = input.data.try_recv().expect("a buffer");
        stats.taken(&second);
        assert!(stats.barriers().is_empty(), "taken with its buffer");
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 1, "the record behind it is still in flight");
    }

    /// Catches: a cancel marker shown as a barrier in flight (it never leaves the view).
    #[tokio::test(start_paused = true)]
    async fn a_cancel_marker_is_sent_but_is_no_barrier_in_flight() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
        let (mut out, mut input) = channel(stats.clone(), 8, knobs());
        out.push_barrier(StreamMessage::CancelCheckpoint(3)).await;
        assert!(stats.barriers().is_empty());
        assert_eq!(input.data.try_recv().expect("sent").1, vec![StreamMessage::CancelCheckpoint(3)]);
    }

    /// Priority events need no credit: the lane takes a barrier while every buffer slot is taken.
    /// Catches: a priority barrier sent on the data queue (it would wait behind the full queue).
    #[tokio::test(start_paused = true)]
    async fn a_priority_barrier_needs_no_credit_on_a_full_channel() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
        let (mut out, mut input) = channel(stats.clone(), 1, knobs());
        out.add(record(0), 1);
        out.flush().await;
        out.add(record(1), 10);
        out.push_priority(barrier(2));
        assert_eq!(input.priority.try_recv().map(|(_, b)| b), Ok(barrier(2)));
        assert_eq!(stats.barriers(), vec![BarrierInFlight { checkpoint: 2, records_ahead: 0, overtook: 2 }]);
        assert_eq!(input.data.try_recv().expect("the record").1, vec![record(0)], "the queue is untouched");
    }

    /// Catches: a delivery time that ignores the hop delay or the channel's own extra delay.
    #[tokio::test(start_paused = true)]
    async fn a_buffer_is_due_after_the_hop_delay_plus_the_channel_delay() {
        let knobs = RuntimeKnobs::new(Duration::from_millis(20), Duration::from_millis(100));
        let (mut out, mut input) = channel(ChannelStats::new("a".into(), "b".into(), Duration::from_millis(300)), 4, knobs);
        let sent = Instant::now();
        out.add(record(0), 1);
        out.flush().await;
        out.push_priority(barrier(1));
        assert_eq!(input.data.try_recv().expect("a buffer").0, sent + Duration::from_millis(320));
        assert_eq!(input.priority.try_recv().expect("a barrier").0, sent + Duration::from_millis(320));
    }

    /// A delay changed while the job runs applies to buffers sent from then on.
    /// Catches: a delay read at delivery instead of fixed at send time.
    #[tokio::test(start_paused = true)]
    async fn a_changed_delay_applies_to_buffers_sent_afterwards() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::from_millis(300));
        let (mut out, mut input) = channel(stats.clone(), 4, knobs());
        let sent = Instant::now();
        out.add(record(0), 1);
        out.flush().await;
        stats.set_delay(Duration::from_millis(10));
        assert_eq!(stats.delay(), Duration::from_millis(10));
        out.add(record(1), 1);
        out.flush().await;
        assert_eq!(input.data.try_recv().expect("first").0, sent + Duration::from_millis(300));
        assert_eq!(input.data.try_recv().expect("second").0, sent + Duration::from_millis(10));
    }

    /// Catches: buffers of one record only at a zero buffer timeout, or not while watching.
    #[test]
    fn buffers_hold_one_record_at_a_zero_timeout_or_with_a_hop_delay() {
        let (out, _input) = channel(ChannelStats::new("a".into(), "b".into(), Duration::ZERO), 4, knobs());
        assert!(!out.per_record(Duration::from_millis(100)), "flat out: full buffers");
        assert!(out.per_record(Duration::ZERO), "a zero buffer timeout sends each record");
        out.knobs.set_hop_delay(Duration::from_millis(50));
        assert!(out.per_record(Duration::from_millis(100)), "watching speed: each record visible on its own");
    }

    /// A killed receiver is a broken connection: the writer drops what it sends, never waits,
    /// and the view shows nothing in flight. Catches: a writer that hangs or keeps counting.
    #[tokio::test(start_paused = true)]
    async fn a_dead_receiver_closes_the_channel_and_drops_what_is_sent() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
        let (mut out, input) = channel(stats.clone(), 1, knobs());
        out.add(record(0), 1);
        out.push_barrier(StreamMessage::Barrier(barrier(1))).await;
        drop(input);
        out.add(record(1), 1);
        out.flush().await;
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
        assert!(stats.barriers().is_empty());
        assert!(!out.add(record(2), 1), "a closed channel never asks for a flush");
        out.push_barrier(StreamMessage::Barrier(barrier(2))).await;
        out.push_priority(barrier(3));
        assert!(stats.barriers().is_empty(), "nothing is in flight on a broken connection");
    }

    /// Catches: a sender waiting for credit that never notices its receiver died.
    #[tokio::test(start_paused = true)]
    async fn a_sender_waiting_for_credit_is_released_when_its_receiver_dies() {
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
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
