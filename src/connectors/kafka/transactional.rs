//! librdkafka's transactional producer behind [`TransactionalProducer`], for the KafkaSink on a
//! real broker or librdkafka's mock cluster, and readers of the output topic at both isolation
//! levels.
//!
//! What librdkafka cannot do that Flink's Java producer does, and what ckptlab does instead:
//! - No `resumeTransaction`: a librdkafka instance cannot finish a transaction another instance
//!   opened (Flink sets the Java producer's id and epoch by reflection,
//!   FlinkKafkaInternalProducer.java:300-337). So the instance that opened a transaction is kept
//!   in the factory's pool, which lives outside the cluster as the broker's transaction does: a
//!   task killed in process loses its writer, not the instance, and the restored committer
//!   commits through it. After a process restart the pool is empty and the transaction cannot be
//!   committed ([`TxnError::Client`]); the broker aborts it on its timeout.
//! - No producer id or epoch in librdkafka's API: the committable names the instance by the
//!   pool's count of `init_transactions` calls for the id in this process (`producer_id` -1,
//!   `epoch` the count), which is also what Flink's probing abort reads as "unused" (0) here.
//! - A commit of a transaction the instance already committed is answered from the pool's
//!   record of it: success, as the broker answers a re-commit (TransactionCoordinator.scala:598-600);
//!   librdkafka would refuse the call in its READY state. An instance leaves the pool when its
//!   transaction ended (only the outcome stays) or when a newer instance begins one with its id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::client::{client, consumer_config};
use super::detached::Detached;
use super::payload::record_value;
use crate::connectors::transactions::{
    FenceCause, Fate, IsolationLevel, ProducerFactory, ProducerIdAndEpoch, ReadRecord, TransactionalProducer, TxnError,
};

/// How long a transactional call (init, commit, abort, flush) may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The first delivery error since it was last taken.
#[derive(Default)]
struct DeliveryErrors(Mutex<Option<KafkaError>>);

struct TxnContext(Arc<DeliveryErrors>);

impl ClientContext for TxnContext {}

impl ProducerContext for TxnContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0 .0.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.clone());
        }
    }
}

struct Instance {
    producer: ThreadedProducer<TxnContext>,
    errors: Arc<DeliveryErrors>,
}

impl Instance {
    fn take_error(&self) -> Option<KafkaError> {
        self.errors.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// A transactional id's last transaction in this process.
enum Slot {
    /// Open in this instance.
    Live(Arc<Instance>),
    /// Ended: committed (`true`) or aborted.
    Finished { committed: bool },
}

/// Transactions by transactional id, with the count of `init_transactions` calls per id.
#[derive(Default)]
struct Pool {
    transactions: Mutex<HashMap<String, (ProducerIdAndEpoch, Slot)>>,
    inits: Mutex<HashMap<String, i16>>,
}

impl Pool {
    fn put(&self, transactional_id: &str, producer: ProducerIdAndEpoch, slot: Slot) {
        self.transactions.lock().unwrap_or_else(|p| p.into_inner()).insert(transactional_id.to_owned(), (producer, slot));
    }
}

/// The broker's error as a [`TxnError`].
fn txn_error(transactional_id: Option<&str>, timeout: Duration, e: KafkaError) -> TxnError {
    let transactional_id = transactional_id.unwrap_or_default().to_owned();
    match e.rdkafka_error_code() {
        // _FENCED is librdkafka's own "fenced by a newer instance" (a fatal error it raises on
        // PRODUCER_FENCED and INVALID_PRODUCER_EPOCH from the coordinator).
        Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced) => {
            TxnError::ProducerFenced { transactional_id, epoch: -1, cause: None }
        }
        Some(RDKafkaErrorCode::InvalidProducerEpoch) => TxnError::InvalidProducerEpoch { transactional_id, epoch: -1 },
        Some(RDKafkaErrorCode::InvalidTransactionTimeout) => {
            TxnError::InvalidTransactionTimeout { timeout_ms: timeout.as_millis() as u64, max_ms: None }
        }
        Some(RDKafkaErrorCode::InvalidTransactionalState) => TxnError::InvalidTxnState { transactional_id, state: e.to_string() },
        Some(RDKafkaErrorCode::InvalidProducerIdMapping) => TxnError::InvalidProducerIdMapping { transactional_id },
        _ => TxnError::Client(e.to_string()),
    }
}

/// Makes librdkafka producers of one output topic.
pub struct RdKafkaProducers {
    servers: String,
    topic: String,
    partitions: u32,
    timeout: Duration,
    /// `sink.properties`: producer properties given to every producer, after ckptlab's.
    properties: Vec<(String, String)>,
    pool: Arc<Pool>,
}

impl RdKafkaProducers {
    /// Producers of `topic` (with `partitions`) on `servers`, with `transaction.timeout.ms = timeout`.
    pub fn new(servers: &str, topic: &str, partitions: u32, timeout: Duration, properties: Vec<(String, String)>) -> Self {
        RdKafkaProducers {
            servers: servers.to_owned(),
            topic: topic.to_owned(),
            partitions: partitions.max(1),
            timeout,
            properties,
            pool: Arc::new(Pool::default()),
        }
    }

    /// Producers of the same topic and pool with another sink's `transaction.timeout.ms` and
    /// properties: a sink that writes after another on this broker can commit or abort what the
    /// pool holds, with its own producer properties.
    pub fn with_properties(&self, timeout: Duration, properties: Vec<(String, String)>) -> Self {
        RdKafkaProducers {
            servers: self.servers.clone(),
            topic: self.topic.clone(),
            partitions: self.partitions,
            timeout,
            properties,
            pool: self.pool.clone(),
        }
    }

    fn config(&self, transactional_id: Option<&str>) -> ClientConfig {
        let mut c = client(&self.servers);
        c.set("linger.ms", "5").set("transaction.timeout.ms", self.timeout.as_millis().to_string());
        if let Some(tid) = transactional_id {
            c.set("transactional.id", tid);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn instance(&self, transactional_id: Option<&str>) -> Result<Arc<Instance>, TxnError> {
        let errors = Arc::new(DeliveryErrors::default());
        let producer = self
            .config(transactional_id)
            .create_with_context(TxnContext(errors.clone()))
            .map_err(|e| txn_error(transactional_id, self.timeout, e))?;
        Ok(Arc::new(Instance { producer, errors }))
    }
}

impl ProducerFactory for RdKafkaProducers {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn create(&self, transactional_id: Option<&str>) -> Result<Box<dyn TransactionalProducer>, TxnError> {
        Ok(Box::new(RdKafkaProducer {
            instance: self.instance(transactional_id)?,
            servers: self.servers.clone(),
            transactional_id: transactional_id.map(str::to_owned),
            topic: self.topic.clone(),
            timeout: self.timeout,
            producer: None,
            pool: self.pool.clone(),
        }))
    }

    fn resume(&self, transactional_id: &str, producer: ProducerIdAndEpoch) -> Result<Box<dyn TransactionalProducer>, TxnError> {
        let transactions = self.pool.transactions.lock().unwrap_or_else(|p| p.into_inner());
        let Some((current, slot)) = transactions.get(transactional_id) else {
            return Err(TxnError::Client(format!(
                "librdkafka cannot resume transaction {transactional_id} of another producer instance (no resumeTransaction): it is aborted at transaction.timeout.ms"
            )));
        };
        if *current != producer {
            // The id was initialised again since: the broker would answer PRODUCER_FENCED.
            return Err(TxnError::ProducerFenced {
                transactional_id: transactional_id.to_owned(),
                epoch: producer.epoch,
                cause: Some(FenceCause::NewerProducer),
            });
        }
        Ok(match slot {
            Slot::Live(instance) => Box::new(RdKafkaProducer {
                instance: instance.clone(),
                servers: self.servers.clone(),
                transactional_id: Some(transactional_id.to_owned()),
                topic: self.topic.clone(),
                timeout: self.timeout,
                producer: Some(producer),
                pool: self.pool.clone(),
            }),
            Slot::Finished { committed } => {
                Box::new(Ended { transactional_id: transactional_id.to_owned(), producer, committed: *committed })
            }
        })
    }

    fn transaction_timeout(&self) -> Duration {
        self.timeout
    }
}

/// One librdkafka producer (or a committer's view of a pooled one).
pub struct RdKafkaProducer {
    instance: Arc<Instance>,
    /// The bootstrap servers, for errors that must name the broker.
    servers: String,
    transactional_id: Option<String>,
    topic: String,
    timeout: Duration,
    producer: Option<ProducerIdAndEpoch>,
    pool: Arc<Pool>,
}

impl RdKafkaProducer {
    fn err(&self, e: KafkaError) -> TxnError {
        txn_error(self.transactional_id.as_deref(), self.timeout, e)
    }

    fn delivery_error(&self) -> Result<(), TxnError> {
        match self.instance.take_error() {
            Some(e) => Err(self.err(e)),
            None => Ok(()),
        }
    }

    fn end(&mut self, commit: bool) -> Result<(), TxnError> {
        let ended = if commit {
            self.instance.producer.commit_transaction(CALL_TIMEOUT)
        } else {
            self.instance.producer.abort_transaction(CALL_TIMEOUT)
        };
        ended.map_err(|e| self.err(e))?;
        if let (Some(tid), Some(p)) = (&self.transactional_id, self.producer) {
            self.pool.put(tid, p, Slot::Finished { committed: commit });
        }
        Ok(())
    }
}

impl TransactionalProducer for RdKafkaProducer {
    fn transactional_id(&self) -> Option<&str> {
        self.transactional_id.as_deref()
    }

    fn init_transactions(&mut self) -> Result<ProducerIdAndEpoch, TxnError> {
        let Some(tid) = self.transactional_id.clone() else {
            return Err(TxnError::IllegalState("initTransactions needs a transactional.id"));
        };
        self.instance.producer.init_transactions(CALL_TIMEOUT).map_err(|e| match e.rdkafka_error_code() {
            // librdkafka's timeout (no coordinator found or answering) and its "Transactions not
            // supported by any of the connected broker(s)": said with the broker's address.
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::BrokerTransportFailure,
            ) => TxnError::NoTransactionCoordinator {
                servers: self.servers.clone(),
                transactional_id: tid.clone(),
                waited_ms: CALL_TIMEOUT.as_millis() as u64,
                detail: e.to_string(),
            },
            _ => self.err(e),
        })?;
        let epoch = {
            let mut inits = self.pool.inits.lock().unwrap_or_else(|p| p.into_inner());
            let n = inits.entry(tid.clone()).or_insert(-1);
            *n += 1;
            *n
        };
        let producer = ProducerIdAndEpoch { producer_id: -1, epoch };
        self.producer = Some(producer);
        Ok(producer)
    }

    fn begin_transaction(&mut self) -> Result<(), TxnError> {
        self.instance.producer.begin_transaction().map_err(|e| self.err(e))?;
        if let (Some(tid), Some(p)) = (&self.transactional_id, self.producer) {
            self.pool.put(tid, p, Slot::Live(self.instance.clone()));
        }
        Ok(())
    }

    fn send(&mut self, partition: u32, value: &str) -> Result<(), TxnError> {
        self.delivery_error()?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut record = BaseRecord::<(), str, ()>::to(&self.topic).payload(value).partition(partition as i32);
        loop {
            match self.instance.producer.send(record) {
                Ok(()) => return Ok(()),
                // The queue is full: the producer's thread sends, and room comes back.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(self.err(e)),
            }
        }
    }

    fn flush(&mut self) -> Result<(), TxnError> {
        self.instance.producer.flush(CALL_TIMEOUT).map_err(|e| self.err(e))?;
        self.delivery_error()
    }

    fn commit_transaction(&mut self) -> Result<(), TxnError> {
        self.delivery_error()?;
        self.end(true)
    }

    fn abort_transaction(&mut self) -> Result<(), TxnError> {
        self.end(false)
    }

    fn producer_id_and_epoch(&self) -> Option<ProducerIdAndEpoch> {
        self.producer
    }
}

/// A committer's view of a transaction this process already ended: a commit of a committed one
/// succeeds, as the broker answers it; the rest is refused as the broker would.
struct Ended {
    transactional_id: String,
    producer: ProducerIdAndEpoch,
    committed: bool,
}

impl Ended {
    fn end(&self, commit: bool) -> Result<(), TxnError> {
        if commit == self.committed {
            Ok(())
        } else {
            let state = if self.committed { "CompleteCommit" } else { "CompleteAbort" };
            Err(TxnError::InvalidTxnState { transactional_id: self.transactional_id.clone(), state: state.to_owned() })
        }
    }
}

impl TransactionalProducer for Ended {
    fn transactional_id(&self) -> Option<&str> {
        Some(&self.transactional_id)
    }

    fn init_transactions(&mut self) -> Result<ProducerIdAndEpoch, TxnError> {
        Err(TxnError::IllegalState("a resumed transaction's producer is only for its commit"))
    }

    fn begin_transaction(&mut self) -> Result<(), TxnError> {
        Err(TxnError::IllegalState("a resumed transaction's producer is only for its commit"))
    }

    fn send(&mut self, _: u32, _: &str) -> Result<(), TxnError> {
        Err(TxnError::IllegalState("a resumed transaction's producer is only for its commit"))
    }

    fn flush(&mut self) -> Result<(), TxnError> {
        Ok(())
    }

    fn commit_transaction(&mut self) -> Result<(), TxnError> {
        self.end(true)
    }

    fn abort_transaction(&mut self) -> Result<(), TxnError> {
        self.end(false)
    }

    fn producer_id_and_epoch(&self) -> Option<ProducerIdAndEpoch> {
        Some(self.producer)
    }
}

/// The cluster id the broker at `servers` reports (Metadata), `None` when none answers within
/// `wait`: how the verdict tells brokers apart whose transactions differ from Kafka's.
pub fn cluster_id(servers: &str, wait: Duration) -> Option<String> {
    let producer: rdkafka::producer::BaseProducer = client(servers).create().ok()?;
    producer.client().fetch_cluster_id(rdkafka::util::Timeout::After(wait))
}

/// A reader of the output topic at one isolation level, from the beginning of every partition.
pub struct OutputReader {
    consumer: Detached<BaseConsumer<DefaultConsumerContext>>,
    isolation: IsolationLevel,
}

impl OutputReader {
    pub fn new(servers: &str, topic: &str, partitions: u32, isolation: IsolationLevel) -> Result<Self, KafkaError> {
        let group = format!("ckptlab-output-{isolation}");
        let consumer: BaseConsumer<DefaultConsumerContext> =
            consumer_config(servers, &group, Duration::from_millis(100)).set("isolation.level", isolation.to_string()).create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        Ok(OutputReader { consumer: Detached::new(consumer), isolation })
    }

    /// What arrives within `wait`. A read_committed reader's records are committed; a
    /// read_uncommitted reader cannot tell, and marks them [`Fate::Open`] (compare with a
    /// read_committed reader to find the aborted ones).
    pub fn poll(&self, wait: Duration) -> Result<Vec<ReadRecord>, KafkaError> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.consumer.poll(left.min(Duration::from_millis(100))) {
                Some(Ok(m)) => out.push(ReadRecord {
                    offset: m.offset() as u64,
                    value: record_value(m.payload()).to_string(),
                    fate: match self.isolation {
                        IsolationLevel::ReadCommitted => Fate::Committed,
                        IsolationLevel::ReadUncommitted => Fate::Open,
                    },
                    producer: None,
                }),
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::kafka_sink::{
        CommitOutcome, DeliveryGuarantee, KafkaCommitter, KafkaSinkSettings, KafkaSinkWriter, RestoredSink,
    };
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;

    const TOPIC: &str = "output-topic";

    fn mock() -> (MockCluster<'static, DefaultProducerContext>, String) {
        let m = MockCluster::new(1).expect("mock cluster");
        m.create_topic(TOPIC, 1, 1).expect("topic");
        let servers = m.bootstrap_servers();
        (m, servers)
    }

    fn values(records: &[ReadRecord]) -> Vec<&str> {
        records.iter().map(|r| r.value.as_str()).collect()
    }

    /// Reads until `n` records came (or 10 s passed).
    fn read_n(r: &OutputReader, n: usize) -> Vec<ReadRecord> {
        let mut all = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while all.len() < n && Instant::now() < deadline {
            all.extend(r.poll(Duration::from_millis(200)).expect("poll"));
        }
        all
    }

    fn transactional(f: &RdKafkaProducers, tid: &str) -> Box<dyn TransactionalProducer> {
        let mut p = f.create(Some(tid)).expect("producer");
        p.init_transactions().expect("init");
        p
    }

    #[test]
    fn the_mock_cluster_runs_transactions_and_both_readers_see_committed_lines() {
        let (_m, servers) = mock();
        let f = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new());
        let mut p = transactional(&f, "t-0-1");
        p.begin_transaction().unwrap();
        p.send(0, "(a,1)").unwrap();
        p.send(0, "(b,1)").unwrap();
        p.commit_transaction().unwrap();
        for isolation in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
            let r = OutputReader::new(&servers, TOPIC, 1, isolation).unwrap();
            assert_eq!(values(&read_n(&r, 2)), ["(a,1)", "(b,1)"], "{isolation}");
        }
    }

    /// librdkafka 2.12's mock writes no transaction markers and answers every fetch with
    /// LastStableOffset = end offset and no aborted transactions (rdkafka_mock_handlers.c:538-556;
    /// EndTxn only checks the producer id and epoch, :2406-2450): read_committed is
    /// read_uncommitted there.
    #[test]
    fn the_mock_cluster_shows_read_committed_readers_open_and_aborted_records() {
        let (_m, servers) = mock();
        let f = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new());
        let mut aborted = transactional(&f, "t-0-1");
        aborted.begin_transaction().unwrap();
        aborted.send(0, "aborted").unwrap();
        aborted.flush().unwrap();
        aborted.abort_transaction().unwrap();
        let mut open = transactional(&f, "t-0-2");
        open.begin_transaction().unwrap();
        open.send(0, "open").unwrap();
        open.flush().unwrap();
        let r = OutputReader::new(&servers, TOPIC, 1, IsolationLevel::ReadCommitted).unwrap();
        assert_eq!(values(&read_n(&r, 2)), ["aborted", "open"], "a broker would show none of them");
    }

    /// The mock hands a new producer id to every InitProducerId without one
    /// (rdkafka_mock_handlers.c:2097-2112 -> rd_kafka_mock_pid_new, :1935-1956): a second producer
    /// with the same transactional.id does not fence the first, whose commit still succeeds.
    #[test]
    fn the_mock_cluster_does_not_fence_on_re_init_with_the_same_transactional_id() {
        let (_m, servers) = mock();
        let f = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new());
        let mut first = transactional(&f, "t-0-1");
        first.begin_transaction().unwrap();
        first.send(0, "first").unwrap();
        first.flush().unwrap();
        let mut second = transactional(&f, "t-0-1");
        second.begin_transaction().unwrap();
        second.send(0, "second").unwrap();
        assert!(first.commit_transaction().is_ok(), "a broker would answer PRODUCER_FENCED");
        second.commit_transaction().unwrap();
    }

    /// The mock reads TransactionTimeoutMs and ignores it (rdkafka_mock_handlers.c:2069-2070):
    /// no INVALID_TRANSACTION_TIMEOUT for KafkaSink's 1 h, and no abort on the timeout.
    #[test]
    fn the_mock_cluster_neither_refuses_a_long_timeout_nor_aborts_on_a_short_one() {
        let (_m, servers) = mock();
        let long = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(3600), Vec::new());
        assert!(long.create(Some("t-long")).unwrap().init_transactions().is_ok(), "a broker at 15 min would refuse 1 h");
        let short = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_millis(1000), Vec::new());
        let mut p = transactional(&short, "t-short");
        p.begin_transaction().unwrap();
        p.send(0, "late").unwrap();
        p.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(p.commit_transaction().is_ok(), "a broker would have aborted it and fenced the commit");
    }

    #[test]
    fn the_kafka_sink_commits_through_the_pooled_instance_after_its_writer_is_killed() {
        let (_m, servers) = mock();
        let f: Arc<dyn ProducerFactory> = Arc::new(RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new()));
        let settings = KafkaSinkSettings { delivery_guarantee: DeliveryGuarantee::ExactlyOnce, transactional_id_prefix: Some("ck".into()) };
        let mut writer = KafkaSinkWriter::new(&settings, 0, 1, f.clone(), &RestoredSink::default()).unwrap();
        for i in 0..3 {
            writer.write(&format!("(k,{i})")).unwrap();
        }
        let committable = writer.barrier(1).unwrap().committable.expect("a transaction with records");
        drop(writer); // killed before notifyCheckpointComplete
        let mut committer = KafkaCommitter::new(f.clone());
        assert_eq!(committer.recover(std::slice::from_ref(&committable)).unwrap(), [CommitOutcome::Committed]);
        assert_eq!(committer.recover(std::slice::from_ref(&committable)).unwrap(), [CommitOutcome::Committed], "re-commit: a no-op");
        let r = OutputReader::new(&servers, TOPIC, 1, IsolationLevel::ReadCommitted).unwrap();
        let got = read_n(&r, 4);
        assert_eq!(values(&got), ["(k,0)", "(k,1)", "(k,2)"]);
    }

    /// Records/s through librdkafka's mock cluster per delivery guarantee (a checkpoint every
    /// 1000 lines). `cargo test --release --lib kafka::transactional::tests::mock_throughput -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn mock_throughput() {
        let (_m, servers) = mock();
        for guarantee in [DeliveryGuarantee::None, DeliveryGuarantee::AtLeastOnce, DeliveryGuarantee::ExactlyOnce] {
            let f: Arc<dyn ProducerFactory> =
                Arc::new(RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new()));
            let settings = KafkaSinkSettings { delivery_guarantee: guarantee, transactional_id_prefix: Some(format!("bench-{guarantee}")) };
            let mut writer = KafkaSinkWriter::new(&settings, 0, 1, f.clone(), &RestoredSink::default()).unwrap();
            let mut committer = KafkaCommitter::new(f.clone());
            let n = 50_000;
            let start = Instant::now();
            for c in 1..=(n / 1000) as u64 {
                for i in 0..1000 {
                    writer.write(&format!("(k,{i})")).unwrap();
                }
                if let Some(committable) = writer.barrier(c).unwrap().committable {
                    let producer = writer.take_precommitted(&committable.transactional_id);
                    assert_eq!(committer.commit(&committable, producer).unwrap(), CommitOutcome::Committed);
                }
            }
            println!("mock {guarantee}: {:.0} records/s", n as f64 / start.elapsed().as_secs_f64());
        }
    }

    /// The same checks against a real broker: `CKPTLAB_TXN_BROKER=127.0.0.1:9092 cargo test --release
    /// --lib kafka::transactional::tests::real_broker -- --ignored --nocapture` (with the topic
    /// `output-topic` present). Prints what the broker does rather than asserting one broker's
    /// behaviour.
    #[test]
    #[ignore]
    fn real_broker() {
        let Ok(servers) = std::env::var("CKPTLAB_TXN_BROKER") else { return println!("CKPTLAB_TXN_BROKER not set") };
        let long = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(3600), Vec::new());
        println!("init with transaction.timeout.ms = 1 h: {:?}", long.create(Some("rb-long")).unwrap().init_transactions());
        let f = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(60), Vec::new());
        let tag = std::process::id();
        let mut aborted = transactional(&f, &format!("rb-{tag}-a"));
        aborted.begin_transaction().unwrap();
        aborted.send(0, &format!("aborted-{tag}")).unwrap();
        aborted.flush().unwrap();
        println!("abort: {:?}", aborted.abort_transaction());
        let mut open = transactional(&f, &format!("rb-{tag}-o"));
        open.begin_transaction().unwrap();
        open.send(0, &format!("open-{tag}")).unwrap();
        open.flush().unwrap();
        let mut committed = transactional(&f, &format!("rb-{tag}-c"));
        committed.begin_transaction().unwrap();
        committed.send(0, &format!("committed-{tag}")).unwrap();
        println!("commit: {:?}", committed.commit_transaction());
        for isolation in [IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted] {
            let r = OutputReader::new(&servers, TOPIC, 1, isolation).unwrap();
            let got: Vec<String> = r.poll(Duration::from_secs(5)).unwrap().into_iter().map(|r| r.value).filter(|v| v.ends_with(&tag.to_string())).collect();
            println!("{isolation}: {got:?}");
        }
        let fencer = transactional(&f, &format!("rb-{tag}-o"));
        println!("re-init of the open transaction's id: {:?}", fencer.producer_id_and_epoch());
        println!("the first producer's commit after the re-init: {:?}", open.commit_transaction());
        let read = |isolation| -> Vec<String> {
            let r = OutputReader::new(&servers, TOPIC, 1, isolation).unwrap();
            r.poll(Duration::from_secs(5)).unwrap().into_iter().map(|r| r.value).filter(|v| v.ends_with(&tag.to_string())).collect()
        };
        println!("read_committed after the re-init: {:?}", read(IsolationLevel::ReadCommitted));
        let short = RdKafkaProducers::new(&servers, TOPIC, 1, Duration::from_secs(3), Vec::new());
        let mut late = transactional(&short, &format!("rb-{tag}-t"));
        late.begin_transaction().unwrap();
        late.send(0, &format!("timed-out-{tag}")).unwrap();
        late.flush().unwrap();
        std::thread::sleep(Duration::from_secs(20));
        println!("commit 20 s into a transaction with transaction.timeout.ms = 3 s: {:?}", late.commit_transaction());
        println!("read_committed at the end: {:?}", read(IsolationLevel::ReadCommitted));
    }
}
