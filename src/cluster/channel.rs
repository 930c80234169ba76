//! Channels between subtasks: bounded queues of network buffers with a latency.
//!
//! A writer packs elements into a buffer and sends it when it is full, when a barrier must go, or
//! when the buffer timeout passes (Flink's `execution.buffer-timeout`). A buffer carries the instant
//! it may be delivered (`sent + delay`): a relay on the receiving side holds it until then, so a
//! channel with 300 ms of delay still carries thousands of records per second, each 300 ms late,
//! in order. Bounded capacity makes a slow receiver push back on its senders.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::element::StreamMessage;
use super::task::RuntimeKnobs;

/// What a task's input queue receives: the input channel index and the elements of one buffer.
pub type Input = (usize, Vec<StreamMessage>);

/// Shared counters of one channel, read by the view.
#[derive(Debug)]
pub struct ChannelStats {
    pub from: String,
    pub to: String,
    pub delay: Duration,
    /// Records sent and not yet taken by the receiving task.
    pub in_flight: AtomicI64,
    /// Barriers sent and not yet taken, oldest first.
    pub barriers: Mutex<VecDeque<u64>>,
    /// Blocked by alignment at the receiver.
    pub blocked: AtomicBool,
    /// Records held by the receiver's aligner while blocked.
    pub buffered: AtomicI64,
    /// The sender is waiting for capacity (backpressure).
    pub backpressured: AtomicBool,
    pub records_sent: AtomicU64,
}

impl ChannelStats {
    pub fn new(from: String, to: String, delay: Duration) -> Arc<Self> {
        Arc::new(ChannelStats {
            from,
            to,
            delay,
            in_flight: AtomicI64::new(0),
            barriers: Mutex::new(VecDeque::new()),
            blocked: AtomicBool::new(false),
            buffered: AtomicI64::new(0),
            backpressured: AtomicBool::new(false),
            records_sent: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> String {
        format!("{}->{}", self.from, self.to)
    }

    /// The receiver took a buffer off the channel.
    pub fn taken(&self, elements: &[StreamMessage]) {
        let mut records = 0;
        for e in elements {
            match e {
                StreamMessage::Record(_) => records += 1,
                StreamMessage::Barrier(_) => {
                    let mut b = self.barriers.lock().unwrap_or_else(|e| e.into_inner());
                    b.pop_front();
                }
            }
        }
        self.in_flight.fetch_sub(records, Ordering::Relaxed);
    }
}

/// The sending end of a channel, owned by the upstream task.
pub struct OutputChannel {
    target: mpsc::Sender<(Instant, Vec<StreamMessage>)>,
    pub stats: Arc<ChannelStats>,
    buffer: Vec<StreamMessage>,
    buffer_started: Option<Instant>,
    closed: bool,
    knobs: Arc<RuntimeKnobs>,
}

/// Builds a channel; returns the writer and, for a delayed channel, the relay task to run on the
/// receiver's side (it dies with the receiver).
pub fn channel(
    index_at_receiver: usize,
    input: mpsc::Sender<Input>,
    stats: Arc<ChannelStats>,
    capacity: usize,
    knobs: Arc<RuntimeKnobs>,
) -> (OutputChannel, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<StreamMessage>)>(capacity);
    let relay_knobs = knobs.clone();
    let relay = tokio::spawn(async move {
        while let Some((at, elements)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            relay_knobs.wait_while_paused().await;
            if input.send((index_at_receiver, elements)).await.is_err() {
                return;
            }
        }
    });
    let out = OutputChannel { target: tx, stats, buffer: Vec::new(), buffer_started: None, closed: false, knobs };
    (out, relay)
}

impl OutputChannel {
    /// The current latency: the shared hop delay plus this channel's extra delay.
    fn delay(&self) -> Duration {
        self.knobs.hop_delay() + self.stats.delay
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

    /// Sends a barrier right behind whatever is buffered.
    pub async fn push_barrier(&mut self, msg: StreamMessage) {
        if self.closed {
            return;
        }
        if let StreamMessage::Barrier(b) = &msg {
            self.stats.barriers.lock().unwrap_or_else(|e| e.into_inner()).push_back(b.checkpoint);
        }
        self.buffer.push(msg);
        self.flush().await;
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
        let records = elements.iter().filter(|e| matches!(e, StreamMessage::Record(_))).count() as i64;
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
            self.stats.in_flight.store(0, Ordering::Relaxed);
            self.stats.barriers.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::element::{Origin, Record};

    fn record(i: u64) -> StreamMessage {
        StreamMessage::Record(Record { key: "k".into(), value: "k".into(), origin: Origin { partition: 0, offset: i }, count: 0 })
    }

    /// A 300 ms channel is a long link, not a slow server: thousands of records cross it in about
    /// 300 ms, in order.
    #[tokio::test(start_paused = true)]
    async fn delay_is_latency_not_service_time() {
        let (tx, mut rx) = mpsc::channel::<Input>(8192);
        let stats = ChannelStats::new("source[0]".into(), "counter[0]".into(), Duration::from_millis(300));
        let (mut out, _relay) = channel(0, tx, stats.clone(), 8192, RuntimeKnobs::new(Duration::ZERO, Duration::ZERO));
        let start = Instant::now();
        for i in 0..5000 {
            if out.add(record(i), 1) {
                out.flush().await;
            }
        }
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 5000);
        let mut next = 0;
        while next < 5000 {
            let (_, elements) = rx.recv().await.unwrap();
            stats.taken(&elements);
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
        let (tx, mut rx) = mpsc::channel::<Input>(2);
        let stats = ChannelStats::new("a".into(), "b".into(), Duration::ZERO);
        let (mut out, _relay) = channel(0, tx, stats.clone(), 2, RuntimeKnobs::new(Duration::ZERO, Duration::ZERO));
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
            got += rx.recv().await.unwrap().1.len();
        }
        sender.await.unwrap();
    }
}
