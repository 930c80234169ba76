//! The mini cluster: a JobManager with its checkpoint coordinator, task managers with slots, and
//! the job's subtasks as tokio tasks connected by bounded, delayed channels.
//!
//! ```text
//! topic (outside the cluster) -> source[i] --keyBy--> counter[j] -> sink[0]
//! ```
//! [`Engine`] is the only entry point: commands go down as [`Command`], reports come up as
//! [`crate::events::Event`], and [`Engine::view`] gives a picture of now.

pub mod aligner;
pub mod channel;
pub mod coordinator;
pub mod counter;
pub mod element;
pub mod failure;
pub mod gate;
pub mod heartbeat;
pub mod jobmanager;
pub mod operator;
pub mod restart;
pub mod runner;
pub mod sink;
pub mod source_task;
pub mod task;
pub mod taskmanager;
pub mod tracker;
pub mod view;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::audit::{Auditor, Verdict};
use crate::config::{Config, ConfigError, ConfigLayers};
use crate::connectors::generator::{self, GeneratorSpec};
use crate::connectors::kafka::{KafkaSettings, KafkaTopic};
use crate::connectors::sink::OutputLine;
use crate::connectors::{EmbeddedTopic, Topic, TopicError};
use crate::events::EventBus;
use crate::state::StateError;
pub use jobmanager::{Command, Refusable};
use jobmanager::{JmSnapshot, JobManager};
use view::{ChannelView, ClusterView, DetectionView, JobStatus, PartitionView, TaskManagerView, TaskView, TmProcess};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error(transparent)]
    WorkDir(#[from] crate::workdir::WorkDirError),
    /// `execution.state-recovery.path` (`--restore`) names nothing restorable into this job.
    #[error("execution.state-recovery.path: {0}")]
    Restore(#[from] crate::state::storage::RestoreError),
}

/// ckptlab's private directory, when a default path points into it, and the leftovers of runs
/// whose process is gone: task managers' local directories, unfinished checkpoints.
fn prepare_local_dirs(cfg: &Config) -> Result<(), EngineError> {
    let home = crate::workdir::home();
    if cfg.tm_dir.starts_with(&home) || cfg.checkpointing.dir.starts_with(&home) {
        crate::workdir::prepare_home()?;
    }
    for dir in crate::workdir::sweep_dead(&cfg.tm_dir, jobmanager::TM_ROOT_PREFIX) {
        tracing::info!("removed the task manager directories of a run that is gone: {}", dir.display());
    }
    for path in crate::state::storage::sweep_abandoned(&cfg.checkpointing.dir) {
        tracing::info!("removed an unfinished checkpoint file of a run that is gone: {}", path.display());
    }
    Ok(())
}

/// Lines of output the view carries.
const VIEW_OUTPUT_LINES: usize = 200;

/// A running mini cluster. Must be created inside a tokio runtime.
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    events: EventBus,
    topic: Arc<dyn Topic>,
    /// The Kafka topic, when the source is Kafka (its mock broker can be taken down in tests).
    kafka: Option<Arc<KafkaTopic>>,
    auditor: Arc<Auditor>,
    output: Arc<Mutex<VecDeque<OutputLine>>>,
    snapshot: Arc<Mutex<JmSnapshot>>,
    knobs: Arc<task::RuntimeKnobs>,
    generators: Arc<AtomicUsize>,
    job_id: String,
    jobmanager: JoinHandle<()>,
    restored_from: Option<RestoreSummary>,
}

/// Where a restored job came from, in the words the workbench and `ckptlab run` show.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestoreSummary {
    /// The path as given.
    pub path: String,
    /// The directory holding `_metadata`.
    pub dir: String,
    pub checkpoint: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    pub from_parallelism: usize,
    pub to_parallelism: usize,
    /// Source offsets it restored, per partition.
    pub offsets: Vec<(u32, u64)>,
    /// What the verdict covers in such a run.
    pub verdict_scope: String,
    /// The snapshot's auditor record judges the run whole (else from the restored point on).
    #[serde(default)]
    pub judged_whole: bool,
}

/// How a run restored from `found` is judged: whole when the snapshot carries an auditor record
/// that fits this job and topic (the auditor is then seeded from it), else from the restored
/// point on, with the reason.
fn judge_restore(found: &crate::state::storage::FoundSnapshot, cfg: &Config, topic: &dyn Topic, auditor: &Auditor) -> crate::audit::RestoreJudged {
    use crate::audit::{AuditRecord, RestoreJudged, RECORD_FILE};
    if !auditor.enabled() {
        return RestoreJudged::FromRestoredPoint("the auditor is off (ckptlab.audit = false)".into());
    }
    let record = match AuditRecord::read(&found.dir) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return RestoreJudged::FromRestoredPoint(format!(
                "the snapshot has no auditor record (`{RECORD_FILE}`): taken with the auditor off or by an older ckptlab"
            ))
        }
        Err(e) => return RestoreJudged::FromRestoredPoint(format!("its auditor record cannot be used: {e}")),
    };
    if let Err(why) = record.fits(topic, cfg.job.key_by, &found.metadata.offsets) {
        return RestoreJudged::FromRestoredPoint(why.to_string());
    }
    auditor.seed(record);
    RestoreJudged::Whole
}

impl RestoreSummary {
    fn of(r: &jobmanager::RestoredFrom, to_parallelism: usize) -> Self {
        let m = &r.found.metadata;
        let offsets: Vec<String> = m.offsets.iter().map(|(p, o)| format!("p{p} {o}")).collect();
        RestoreSummary {
            path: r.path.clone(),
            dir: r.found.dir.display().to_string(),
            checkpoint: m.checkpoint,
            kind: m.kind.label().into(),
            from_parallelism: m.job.as_ref().map_or(m.keyed.len(), |j| j.parallelism),
            to_parallelism,
            offsets: m.offsets.clone(),
            verdict_scope: r.judged.scope(&offsets.join(", ")),
            judged_whole: r.judged == crate::audit::RestoreJudged::Whole,
        }
    }

    /// "restored from PATH (checkpoint 12, parallelism 2 -> 3)".
    pub fn headline(&self) -> String {
        let scale = if self.from_parallelism == self.to_parallelism {
            format!("parallelism {}", self.to_parallelism)
        } else {
            format!("parallelism {} -> {}", self.from_parallelism, self.to_parallelism)
        };
        format!("restored from {} ({} {}, {scale})", self.path, self.kind, self.checkpoint)
    }
}

impl Engine {
    /// Starts the cluster and submits the job. Subscribe to `events` first to see every event.
    pub fn start(layers: ConfigLayers, events: EventBus) -> Result<Engine, EngineError> {
        let cfg = layers.build()?;
        if cfg.backend.keeps_local_dir() {
            // Fail at start, with the option's name, rather than in every task.
            std::fs::create_dir_all(&cfg.tm_dir).map_err(|e| StateError::Write {
                path: format!("taskmanager.tmp-dirs = {}", cfg.tm_dir.display()),
                message: e.to_string(),
            })?;
        }
        let kafka = match &cfg.source.kafka {
            Some(k) => Some(KafkaTopic::connect(
                KafkaSettings {
                    bootstrap: k.bootstrap_servers.clone(),
                    topic: cfg.source.topic.clone(),
                    group: k.group_id.clone(),
                    partitions: cfg.source.partitions,
                    offset_reset: cfg.source.offset_reset,
                },
                events.clone(),
            )?),
            None => None,
        };
        let mut topic = kafka.clone().map(|k| k as Arc<dyn Topic>);
        if let (None, Some(dir)) = (&topic, &cfg.source.embedded_dir) {
            let log = crate::connectors::filelog::FileLogTopic::open(dir, &cfg.source.topic, cfg.source.partitions, events.clone())?;
            topic = Some(log as Arc<dyn Topic>);
        }
        let mut engine = Self::start_with_topic(layers, cfg, events, topic)?;
        engine.kafka = kafka;
        Ok(engine)
    }

    /// Starts the cluster on a topic that already holds records (benchmarks pre-fill one).
    pub fn start_with_topic(
        layers: ConfigLayers,
        cfg: Config,
        events: EventBus,
        topic: Option<Arc<dyn Topic>>,
    ) -> Result<Engine, EngineError> {
        prepare_local_dirs(&cfg)?;
        let topic: Arc<dyn Topic> =
            topic.unwrap_or_else(|| EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, events.clone()) as Arc<dyn Topic>);
        let dyn_topic: Arc<dyn Topic> = topic.clone();
        let auditor = Arc::new(Auditor::new(cfg.lab.audit, dyn_topic.clone(), cfg.job.parallelism, cfg.job.key_by));
        let job_id = format!("{:032x}", rand::random::<u128>());
        let restored_from = match &cfg.recovery.path {
            Some(path) => {
                let found = crate::state::storage::find_snapshot(path)?;
                crate::state::storage::check_compatible(&found, &crate::state::storage::JobShape::of(&cfg, dyn_topic.partitions()))?;
                // Every state handle is read and checked (existence, size, checksum) before the
                // job is submitted: a snapshot that cannot work fails here with the file's name,
                // not in nine restarts of tasks that cannot restore it.
                crate::state::storage::read_state(&found, |_, _, _| {})?;
                let judged = judge_restore(&found, &cfg, dyn_topic.as_ref(), &auditor);
                Some(jobmanager::RestoredFrom { path: path.display().to_string(), found, judged })
            }
            None => None,
        };
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let snapshot = Arc::new(Mutex::new(JmSnapshot::created(&cfg)));
        let (commands, rx) = mpsc::unbounded_channel();
        let parallelism = cfg.job.parallelism;
        let knobs = task::RuntimeKnobs::new(cfg.lab.hop_delay, cfg.buffer_timeout);
        let jm = JobManager::new(
            knobs.clone(),
            layers,
            cfg,
            job_id.clone(),
            events.clone(),
            dyn_topic,
            auditor.clone(),
            output.clone(),
            snapshot.clone(),
            restored_from.clone(),
        );
        let jobmanager = tokio::spawn(jm.run(rx));
        Ok(Engine {
            commands,
            events,
            topic,
            kafka: None,
            auditor,
            output,
            snapshot,
            knobs,
            generators: Arc::new(AtomicUsize::new(0)),
            job_id,
            jobmanager,
            restored_from: restored_from.map(|r| RestoreSummary::of(&r, parallelism)),
        })
    }

    /// Why the job's state could not be restored, while no attempt has run since (a file of the
    /// checkpoint it restores vanished or was damaged after the job started).
    pub fn restore_failure(&self) -> Option<String> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner()).restore_failure.clone()
    }

    /// The snapshot of another run this job started from, if any (shown as "restored from PATH
    /// (checkpoint 12, parallelism 2 -> 3)"), with what the verdict covers then.
    pub fn restored_from(&self) -> Option<&RestoreSummary> {
        self.restored_from.as_ref()
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn topic(&self) -> Arc<dyn Topic> {
        self.topic.clone()
    }

    /// The Kafka topic, when the source is Kafka.
    pub fn kafka(&self) -> Option<&Arc<KafkaTopic>> {
        self.kafka.as_ref()
    }

    /// The configuration in force now (runtime changes included).
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// Sends a command to the JobManager.
    pub fn command(&self, c: Command) {
        // The JobManager lives as long as the engine.
        let _ = self.commands.send(c);
    }

    /// Produces a record to the topic (works while the job is down: the topic is outside the cluster).
    pub fn produce(&self, value: &str, partition: Option<u32>) -> Result<(u32, u64), TopicError> {
        self.topic.produce(value, partition)
    }

    /// Pauses or resumes the data path: sources stop reading and channels stop delivering, so
    /// records and barriers stay where they are. Timers (heartbeat timeout, checkpoint interval
    /// and timeout) keep running, as they would on a real cluster.
    pub fn set_paused(&self, paused: bool) {
        self.knobs.set_paused(paused);
    }

    pub fn is_paused(&self) -> bool {
        self.knobs.is_paused()
    }

    /// Starts a generator in the background.
    pub fn generate(&self, spec: GeneratorSpec) -> JoinHandle<()> {
        self.generators.fetch_add(1, Ordering::AcqRel);
        let topic: Arc<dyn Topic> = self.topic.clone();
        tokio::spawn(generator::run(topic, spec, self.generators.clone(), self.events.clone()))
    }

    /// The size of the auditor's record (ranges), for benchmarks.
    pub fn auditor_footprint(&self) -> usize {
        self.auditor.footprint()
    }

    /// Why a key's figures are what they are (see [`Auditor::explain`]).
    pub fn explain(&self, key: &str) -> crate::audit::Explanation {
        self.auditor.explain(key)
    }

    /// The ground-truth verdict now.
    pub fn verdict(&self) -> Verdict {
        self.auditor.verdict()
    }

    /// The verdict's totals, without the per-key table (see [`crate::audit::Auditor::verdict_totals`]).
    pub fn verdict_totals(&self) -> Verdict {
        self.auditor.verdict_totals()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JmSnapshot> {
        self.snapshot.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> JobStatus {
        self.lock().status
    }

    /// Running, every task running, no generator left, every record of the topic passed by the
    /// sources and everything they consumed arrived at the sink.
    pub fn caught_up(&self) -> bool {
        let s = self.lock();
        Self::caught_up_locked(&s, self.generators.load(Ordering::Acquire), &*self.topic)
    }

    fn caught_up_locked(s: &JmSnapshot, generators: usize, topic: &dyn Topic) -> bool {
        if s.status != JobStatus::Running || generators > 0 || s.tasks.is_empty() || !s.tasks.iter().all(|t| t.running) {
            return false;
        }
        let Some(progress) = &s.progress else { return false };
        let positions = progress.positions.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // Equal, not just past: a Kafka source may read a record before the auditor's mirror has it.
        let all_read = (0..topic.partitions()).all(|p| positions.get(p as usize).copied().unwrap_or(0) == topic.len(p));
        all_read && topic.in_sync() && progress.sink_received.load(Ordering::Acquire) == progress.source_emitted.load(Ordering::Acquire)
    }

    /// Every task of the job is running (no task manager of it is dead, noticed or not).
    pub fn all_tasks_running(&self) -> bool {
        let s = self.lock();
        s.status == JobStatus::Running && !s.tasks.is_empty() && s.tasks.iter().all(|t| t.running)
    }

    /// A picture of the cluster now; `with_verdict` adds the auditor's verdict (O(keys + in flight)).
    pub fn view(&self, with_verdict: bool) -> ClusterView {
        // Before the JobManager's snapshot lock: nothing the JobManager or a task waits on is held
        // while the verdict is computed.
        let verdict = with_verdict.then(|| self.auditor.verdict());
        let s = self.lock();
        let now = Instant::now();
        let generators = self.generators.load(Ordering::Acquire);
        let caught_up = Self::caught_up_locked(&s, generators, &*self.topic);
        let cfg = &s.config;
        let tm_name = |i: usize| s.tms.get(i).map(|t| t.name.clone()).unwrap_or_default();
        let run_view = |task: &task::TaskId| -> Option<runner::TaskRunView> {
            let v = match task {
                task::TaskId::Counter(j) => s.keyed_views.get(*j)?,
                task::TaskId::Sink => s.sink_view.as_ref()?,
                task::TaskId::Source(_) => return None,
            };
            Some(v.lock().unwrap_or_else(|e| e.into_inner()).clone())
        };
        let tasks: Vec<TaskView> = s
            .tasks
            .iter()
            .map(|t| TaskView {
                task: t.task,
                name: t.task.to_string(),
                tm: tm_name(t.tm),
                running: t.running,
                aligning: run_view(&t.task).and_then(|v| v.aligning),
                persisting: run_view(&t.task).and_then(|v| v.persisting),
            })
            .collect();
        let task_managers = s
            .tms
            .iter()
            .enumerate()
            .map(|(i, tm)| {
                use heartbeat::{Detection, Silence};
                let detection = tm.loss.map(|(by, _)| match (by, tm.silence, s.heartbeat) {
                    (Detection::RpcFailures { threshold }, Some(Silence::Killed { at }), Some(schedule)) => DetectionView::RpcFailures {
                        failed: schedule.count_between(at, now).min(threshold),
                        threshold,
                        interval_ms: schedule.interval.as_millis() as u64,
                    },
                    _ => DetectionView::HeartbeatTimeout { timeout_ms: s.heartbeat_timeout.as_millis() as u64 },
                });
                TaskManagerView {
                    name: tm.name.clone(),
                    alive: tm.silence.is_none(),
                    lost: tm.lost,
                    slots: tm.slots,
                    heartbeat_timeout_in_ms: tm.loss.map(|(_, at)| at.saturating_duration_since(now).as_millis() as u64),
                    detection,
                    process: match tm.silence {
                        None => TmProcess::Running,
                        Some(Silence::Hung { .. }) => TmProcess::Hung,
                        Some(Silence::Killed { .. }) => TmProcess::Killed,
                    },
                    tasks: s.tasks.iter().filter(|t| t.tm == i).map(|t| t.task).collect(),
                }
            })
            .collect();
        let channels = s
            .channels
            .iter()
            .map(|c| ChannelView {
                from: c.from,
                to: c.to,
                delay_ms: c.delay().as_millis() as u64,
                in_flight: c.in_flight.load(Ordering::Relaxed).max(0),
                barriers: c.barriers(),
                blocked: c.blocked.load(Ordering::Relaxed),
                // Records waiting in a channel alignment blocks.
                buffered: if c.blocked.load(Ordering::Relaxed) { c.in_flight.load(Ordering::Relaxed).max(0) } else { 0 },
                backpressured: c.backpressured.load(Ordering::Relaxed),
                records_sent: c.records_sent.load(Ordering::Relaxed),
            })
            .collect();
        let positions = s.progress.as_ref().map(|p| p.positions.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default();
        let committed = self.topic.last_committed();
        let partitions = (0..self.topic.partitions())
            .map(|p| PartitionView {
                partition: p,
                end: self.topic.len(p),
                log_start: self.topic.log_start(p),
                position: positions.get(p as usize).copied().unwrap_or(0),
                committed: committed.get(p as usize).copied().flatten(),
            })
            .collect();
        let output = {
            let out = self.output.lock().unwrap_or_else(|e| e.into_inner());
            out.iter().skip(out.len().saturating_sub(VIEW_OUTPUT_LINES)).cloned().collect()
        };
        ClusterView {
            time_ms: self.events.now_ms(),
            job_id: self.job_id.clone(),
            job_name: cfg.job.name.clone(),
            status: s.status,
            attempt: s.attempt,
            restarts: s.restarts,
            failure: s.failure.clone(),
            missing_slots: s.missing_slots,
            restart_in_ms: s.restart_at.map(|r| r.saturating_duration_since(now).as_millis() as u64),
            all_tasks_running: !s.tasks.is_empty() && s.tasks.iter().all(|t| t.running),
            checkpointing: cfg.checkpointing_label(),
            mode: crate::config::CheckpointingMode::of(&cfg.checkpointing),
            interval_ms: cfg.checkpointing.interval.map(|i| i.as_millis() as u64),
            backend: cfg.backend_pair(),
            hop_delay_ms: cfg.lab.hop_delay.as_millis() as u64,
            buffer_timeout_ms: (cfg.buffer_timeout != crate::config::BUFFER_TIMEOUT_DISABLED)
                .then(|| cfg.buffer_timeout.as_millis() as u64),
            paused: self.knobs.is_paused(),
            task_managers,
            tasks,
            channels,
            partitions,
            pending_checkpoints: s
                .pending
                .iter()
                .zip(&s.pending_triggered)
                .map(|(p, triggered)| {
                    let mut p = p.clone();
                    p.elapsed_ms = now.saturating_duration_since(*triggered).as_millis() as u64;
                    let views: Vec<(String, runner::TaskRunView)> = s
                        .keyed_views
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (format!("counter[{j}]"), v))
                        .chain(s.sink_view.iter().map(|v| ("sink[0]".to_string(), v)))
                        .map(|(name, v)| (name, v.lock().unwrap_or_else(|e| e.into_inner()).clone()))
                        .collect();
                    p.aligning = views.iter().filter(|(_, v)| v.aligning == Some(p.id)).map(|(n, _)| n.clone()).collect();
                    p.persisting = views.iter().filter(|(_, v)| v.persisting == Some(p.id)).map(|(n, _)| n.clone()).collect();
                    p
                })
                .collect(),
            checkpoint_history: s.history.clone(),
            checkpoint_counts: s.counts,
            output,
            generators_running: generators,
            caught_up,
            source: view::SourceView::of(&cfg.source, self.kafka.as_deref(), self.topic.describe()),
            topic_status: self.topic.health(),
            verdict,
            output_readers: crate::connectors::kafka_sink::output::readers_of(&*self.topic, cfg, &self.events),
        }
    }

    /// Stops every task and the JobManager.
    pub async fn shutdown(self) {
        drop(self.commands);
        let _ = self.jobmanager.await;
    }
}
