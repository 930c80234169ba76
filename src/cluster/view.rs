//! The view: a cheap, serializable picture of the cluster now, for the TUI, the headless runner
//! and the tests. The engine never depends on who reads it.

use serde::{Deserialize, Serialize};

use super::coordinator::{CheckpointCounts, CheckpointStats};
use crate::audit::Verdict;
use crate::config::{BackendKind, CheckpointingMode, SourceConfig, StorageKind};
use crate::connectors::kafka::{KafkaTopic, MOCK};
use crate::connectors::sink::OutputLine;
use crate::types::TaskId;

/// The job's status as Flink's default scheduler (`jobmanager.scheduler: default`, Flink 2.3's
/// default for streaming jobs) reports it: a failover turns RUNNING into RESTARTING, and the
/// restart, once the delay and the cancellations are over, turns it back into RUNNING before any
/// slot is found (DefaultScheduler.java:404-413). Tasks then wait SCHEDULED for their slots;
/// the view says how many are missing (`missing_slots`). "WAITING FOR RESOURCES" is the Adaptive
/// Scheduler's state, which ckptlab does not model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Created,
    Running,
    Restarting,
    Failed,
    /// Stopped with a savepoint (Flink's stop-with-savepoint): nothing runs, nothing restarts.
    Finished,
}

impl JobStatus {
    pub fn label(self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Failed => "FAILED",
            JobStatus::Finished => "FINISHED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskManagerView {
    pub name: String,
    /// Its process runs and answers (false: killed or hung).
    pub alive: bool,
    /// The JobManager declared it lost (failed heartbeat RPCs or heartbeat timeout).
    pub lost: bool,
    pub slots: usize,
    /// Killed or hung and not yet noticed: milliseconds until the JobManager declares it lost.
    pub heartbeat_timeout_in_ms: Option<u64>,
    /// Killed or hung and not yet noticed: which detection is running, and how far it got.
    #[serde(default)]
    pub detection: Option<DetectionView>,
    /// Running, hung or killed (a hung TM stays hung once declared lost).
    #[serde(default)]
    pub process: TmProcess,
    pub tasks: Vec<crate::types::TaskId>,
}

/// A task manager's process as the view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TmProcess {
    #[default]
    Running,
    /// Answers nothing, its connections open.
    Hung,
    /// Gone: RPCs to it fail at once.
    Killed,
}

/// The detection that will declare a silent task manager lost (see [`crate::cluster::heartbeat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "by")]
pub enum DetectionView {
    /// A killed TM: `failed` of `threshold` heartbeat RPCs have failed so far.
    RpcFailures { failed: u32, threshold: u32, interval_ms: u64 },
    /// A hung TM (or failed-RPC detection off): no answer for `timeout_ms`.
    HeartbeatTimeout { timeout_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    pub task: TaskId,
    pub name: String,
    pub tm: String,
    pub running: bool,
    pub aligning: Option<u64>,
    /// Unaligned: the checkpoint whose overtaken records this task is persisting.
    #[serde(default)]
    pub persisting: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    pub from: crate::types::TaskId,
    pub to: crate::types::TaskId,
    pub delay_ms: u64,
    pub in_flight: i64,
    /// Barriers in flight, oldest first, with the records still ahead of each (or, for an
    /// unaligned barrier on the priority lane, how many it overtook).
    pub barriers: Vec<crate::cluster::channel::BarrierInFlight>,
    pub blocked: bool,
    /// Records waiting in the channel while alignment blocks it.
    pub buffered: i64,
    pub backpressured: bool,
    pub records_sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingCheckpointView {
    pub id: u64,
    /// EXACTLY_ONCE or AT_LEAST_ONCE (its barriers' options; `flink_name` for the text).
    pub mode: crate::types::CheckpointMode,
    pub acks: usize,
    pub total: usize,
    pub missing: Vec<String>,
    pub aligning: Vec<String>,
    /// Unaligned: tasks still capturing the records their barrier overtook.
    #[serde(default)]
    pub persisting: Vec<String>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionView {
    pub partition: u32,
    pub end: u64,
    /// The oldest record still held (above 0 once retention released records).
    #[serde(default)]
    pub log_start: u64,
    /// Where the current run's source is.
    pub position: u64,
    /// The consumer group's committed offset (Kafka: committed when a checkpoint completes).
    pub committed: Option<u64>,
}

/// Where the job's records come from: the topic outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    pub topic: TopicKind,
    /// The topic's own words ("embedded", "kafka localhost:9092, group ckptlab"), to print as
    /// they are; what they say is in `topic`.
    pub description: String,
}

/// The kinds of topic a source reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopicKind {
    /// The embedded topic, in memory.
    Embedded,
    /// The embedded topic with its log on disk (`source.embedded-dir`).
    EmbeddedOnDisk,
    /// A Kafka topic: the broker list in use (librdkafka's mock cluster's own when `mock`).
    Kafka { servers: String, mock: bool },
}

impl SourceView {
    /// The source an engine on `cfg` reads: `kafka` is its Kafka topic when it holds one, and
    /// `description` its topic's own ([`crate::connectors::topic::Topic::describe`]).
    pub fn of(cfg: &SourceConfig, kafka: Option<&KafkaTopic>, description: String) -> SourceView {
        let topic = match (&cfg.kafka, &cfg.embedded_dir) {
            (Some(k), _) => TopicKind::Kafka {
                servers: kafka.map_or_else(|| k.bootstrap_servers.clone(), |t| t.bootstrap_servers().to_string()),
                mock: k.bootstrap_servers == MOCK,
            },
            (None, Some(_)) => TopicKind::EmbeddedOnDisk,
            (None, None) => TopicKind::Embedded,
        };
        SourceView { topic, description }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub time_ms: u64,
    pub job_id: String,
    pub job_name: String,
    pub status: JobStatus,
    pub attempt: u64,
    pub restarts: u64,
    pub failure: Option<String>,
    pub missing_slots: usize,
    pub restart_in_ms: Option<u64>,
    pub all_tasks_running: bool,
    /// "EXACTLY_ONCE every 5s" or "checkpointing off", as the log and the compare screen print it.
    pub checkpointing: String,
    /// The checkpointing in force (off exactly when `interval_ms` is `None`).
    pub mode: CheckpointingMode,
    pub interval_ms: Option<u64>,
    /// The state backend and its checkpoint storage ([`crate::config::backend_label`] names them).
    pub backend: (BackendKind, StorageKind),
    pub hop_delay_ms: u64,
    /// `execution.buffer-timeout.interval` in force (`None`: disabled, buffers go when full).
    #[serde(default)]
    pub buffer_timeout_ms: Option<u64>,
    pub paused: bool,
    pub task_managers: Vec<TaskManagerView>,
    pub tasks: Vec<TaskView>,
    pub channels: Vec<ChannelView>,
    pub partitions: Vec<PartitionView>,
    pub pending_checkpoints: Vec<PendingCheckpointView>,
    pub checkpoint_history: Vec<CheckpointStats>,
    pub checkpoint_counts: CheckpointCounts,
    pub output: Vec<OutputLine>,
    pub generators_running: usize,
    pub caught_up: bool,
    /// Where the records come from: which topic, and its own description.
    pub source: SourceView,
    /// What is wrong with the topic now (Kafka broker unreachable, topic missing), if anything.
    pub topic_status: Option<String>,
    pub verdict: Option<Verdict>,
    #[serde(default)] pub output_readers: Option<crate::connectors::kafka_sink::readers::ReadersView>,
}
