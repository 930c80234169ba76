//! The JobManager: one actor that owns the task managers, the job's deployment, the checkpoint
//! coordinator and the restart strategy. Users' commands and tasks' reports come in on channels;
//! timers (heartbeat timeouts, restart delays, checkpoint triggers and expiries) are computed as
//! the next deadline, so an idle cluster sleeps.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::channel::{channel, ChannelStats};
use super::coordinator::{AckOutcome, CheckpointCoordinator};
use super::coordinator::{CompletedCheckpoint, ExternalSnapshot};
use super::counter::{AuditBaseline, AuditScope, Counter};
use super::element::Barrier;
use super::failure::{CheckpointFailureReason, FailureCause};
use super::gate::InputGate;
use super::restart::{strategy_name, RestartDecision, RestartState};
use super::runner::{OperatorRunner, TaskRunView};
use super::sink::SinkOperator;
use super::source_task::SourceTask;
use super::task::{AttemptProgress, DeclineReason, OutputLine, RuntimeKnobs, TaskContext, TaskControl, TaskId, TaskReport, TaskState};
use super::view::JobStatus;
use crate::audit::Auditor;
use crate::config::{parse_loose_value, Config, ConfigLayers, OffsetReset, DELAYS_TABLE, SCHEMA};
use crate::connectors::Topic;
use crate::events::{Event, EventBus};
use crate::keygroup::key_group_range;
use crate::state::create_backend;
use crate::state::shared::SharedStateRegistry;
use crate::state::storage::CheckpointStorage;

/// What a user (TUI key, scenario step) asks of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    KillTaskManager(String),
    /// Start a killed task manager again, or a new one (`None`: the next name).
    StartTaskManager(Option<String>),
    TriggerCheckpoint,
    /// Change an option while the job runs (dotted Flink name).
    Set {
        key: String,
        value: String,
    },
    /// Submit the job again after it FAILED (a new run from empty state).
    Resubmit,
    /// Switch the state backend by the seed's name (memory, fs, rocksdb): the job restarts at
    /// once from its latest checkpoint, read into the new backend.
    SwitchBackend(String),
    /// Take a savepoint into `execution.checkpointing.savepoint-dir`; `stop`: then stop the job
    /// (Flink's stop-with-savepoint: the job ends FINISHED).
    TriggerSavepoint {
        stop: bool,
    },
}

/// The snapshot of another run this job was started from (`execution.state-recovery.path`).
#[derive(Debug, Clone)]
pub struct RestoredFrom {
    /// The path as the user gave it.
    pub path: String,
    pub found: crate::state::storage::FoundSnapshot,
}

/// One task manager process. A TM started again under the name of one that died and is not yet
/// declared lost is a new process (a new incarnation) beside the old one: the JobManager still
/// counts the old one's slots until its heartbeat times out.
pub(crate) struct TaskManagerState {
    pub name: String,
    /// 1 for the first process of this name, then one more for each start.
    pub incarnation: u32,
    pub alive: bool,
    pub killed_at: Option<Instant>,
    /// The JobManager noticed it is gone (heartbeat timeout): its slots are no longer offered.
    pub lost: bool,
    /// Lost, and a newer incarnation carries its name: no longer shown.
    pub superseded: bool,
    pub slots: usize,
}

impl TaskManagerState {
    fn new(name: String, incarnation: u32, slots: usize) -> Self {
        TaskManagerState { name, incarnation, alive: true, killed_at: None, lost: false, superseded: false, slots }
    }

    /// Dead, and the JobManager does not know yet: its slots are still offered to a restart.
    fn dead_undetected(&self) -> bool {
        !self.alive && !self.lost && self.killed_at.is_some()
    }
}

/// Flink's `pekko.ask.timeout` (10 s in Flink 2.3): an RPC to a dead task manager (a task's
/// submission or cancellation) gets no answer and fails after this long.
const RPC_ASK_TIMEOUT: Duration = Duration::from_secs(10);

struct DeployedTask {
    task: TaskId,
    tm: usize,
    handle: Option<AbortHandle>,
}

pub(crate) struct Deployment {
    pub attempt: u64,
    tasks: Vec<DeployedTask>,
    pub running: HashSet<TaskId>,
    /// One control channel per task (sources first, then counters, then the sink).
    control: Vec<(TaskId, mpsc::UnboundedSender<TaskControl>)>,
    pub channels: Vec<Arc<ChannelStats>>,
    pub keyed_views: Vec<Arc<Mutex<TaskRunView>>>,
    pub sink_view: Arc<Mutex<TaskRunView>>,
    pub progress: Arc<AttemptProgress>,
}

impl Deployment {
    fn abort_on(&mut self, tm: usize) -> Vec<String> {
        let mut names = Vec::new();
        for t in self.tasks.iter_mut().filter(|t| t.tm == tm) {
            if let Some(h) = t.handle.take() {
                h.abort();
                names.push(t.task.to_string());
            }
            self.running.remove(&t.task);
        }
        names
    }

    fn abort_all(&mut self) {
        for t in &mut self.tasks {
            if let Some(h) = t.handle.take() {
                h.abort();
            }
        }
        self.running.clear();
    }

    fn expected_tasks(&self) -> Vec<TaskId> {
        self.tasks.iter().map(|t| t.task).collect()
    }

    /// Sends a control message to every task (a task on a dead task manager hears nothing).
    fn tell_all(&self, c: TaskControl) {
        for (_, ctl) in &self.control {
            let _ = ctl.send(c);
        }
    }

    /// Sends a control message to the sources.
    fn tell_sources(&self, c: TaskControl) {
        for (task, ctl) in &self.control {
            if matches!(task, TaskId::Source(_)) {
                let _ = ctl.send(c);
            }
        }
    }
}

/// What the JobManager publishes after every turn, for [`super::Engine::view`].
pub(crate) struct JmSnapshot {
    pub status: JobStatus,
    pub attempt: u64,
    pub restarts: u64,
    pub failure: Option<String>,
    /// Why the state of the snapshot the job restores could not be read, until an attempt runs.
    pub restore_failure: Option<String>,
    pub missing_slots: usize,
    pub restart_at: Option<Instant>,
    pub tms: Vec<(String, bool, bool, usize, Option<Instant>)>,
    pub tasks: Vec<(TaskId, usize, bool)>,
    pub channels: Vec<Arc<ChannelStats>>,
    pub keyed_views: Vec<Arc<Mutex<TaskRunView>>>,
    pub sink_view: Option<Arc<Mutex<TaskRunView>>>,
    pub progress: Option<Arc<AttemptProgress>>,
    pub pending: Vec<super::view::PendingCheckpointView>,
    pub pending_triggered: Vec<Instant>,
    pub history: Vec<super::coordinator::CheckpointStats>,
    pub counts: super::coordinator::CheckpointCounts,
    pub config: Config,
    pub heartbeat_timeout: Duration,
}

pub(crate) struct JobManager {
    pub layers: ConfigLayers,
    pub cfg: Config,
    pub job_id: String,
    pub events: EventBus,
    pub topic: Arc<dyn Topic>,
    pub auditor: Arc<Auditor>,
    pub knobs: Arc<RuntimeKnobs>,
    pub storage: Arc<CheckpointStorage>,
    pub output: Arc<Mutex<VecDeque<OutputLine>>>,
    pub committed: Arc<AtomicU64>,
    pub snapshot: Arc<Mutex<JmSnapshot>>,
    pub(crate) tms: Vec<TaskManagerState>,
    status: JobStatus,
    attempt: u64,
    restarts: u64,
    /// The cause of the last failover while the job is not running again (RESTARTING, FAILED).
    failure: Option<String>,
    /// A task could not restore the checkpoint it was deployed with, and no attempt has run
    /// since: its state is not restored (the verdict says so rather than judging it).
    restore_failure: Option<String>,
    missing_slots: usize,
    restart_at: Option<Instant>,
    restart: RestartState,
    deployment: Option<Deployment>,
    /// A task of the deployment was submitted to a dead task manager: the submission fails then.
    deploy_failure: Option<(Instant, FailureCause)>,
    /// The last attempt's progress, shown while no attempt runs (where the sources were).
    last_progress: Option<Arc<AttemptProgress>>,
    /// Since when the job waits for slots (`slot.request.timeout` counts from here).
    waiting_since: Option<Instant>,
    coord: CheckpointCoordinator,
    trigger_base: Instant,
    next_trigger: Option<Instant>,
    /// A checkpoint asked for while `max-concurrent-checkpoints` were running: it starts as soon as one ends.
    queued_trigger: bool,
    /// Reference counts of the shared files of retained checkpoints (incremental RocksDB).
    shared: SharedStateRegistry,
    /// `<taskmanager.tmp-dirs>/ckptlab-<job>`: one local directory per TM below it.
    tm_root: PathBuf,
    reports_tx: mpsc::UnboundedSender<TaskReport>,
    reports_rx: mpsc::UnboundedReceiver<TaskReport>,
    /// The snapshot of another run this job started from.
    restored_from: Option<RestoredFrom>,
    /// Its counts, which the verdict takes as given (the auditor saw none of their records).
    audit_baseline: Option<Arc<AuditBaseline>>,
    /// Savepoints in flight, and whether the job stops once each completes.
    savepoints: std::collections::HashMap<u64, bool>,
    /// A stop-with-savepoint completed: the job ends FINISHED at this time, once its tasks had
    /// a moment to handle notifyCheckpointComplete (a transactional sink commits then).
    finish_at: Option<Instant>,
}

/// How long tasks get to handle the completion of a stop-with-savepoint before they are stopped.
const STOP_GRACE: Duration = Duration::from_millis(100);

/// Runs blocking file or network I/O of the JobManager (fsync of `_metadata`, deleting
/// checkpoints, Kafka offset commits) without holding a runtime worker: on the multi-threaded
/// runtime the worker hands its other tasks to the rest first (`block_in_place`); on a
/// current-thread runtime (tests under the paused clock) there is nothing to hand over.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// How often the end of the job tries to remove its directories (10 ms apart).
const TM_ROOT_REMOVAL_TRIES: usize = 100;

/// The name of a job's directory of task-manager directories: `<taskmanager.tmp-dirs>/ckptlab-<job>`.
pub const TM_ROOT_PREFIX: &str = "ckptlab-";

impl JobManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        knobs: Arc<RuntimeKnobs>,
        layers: ConfigLayers,
        cfg: Config,
        job_id: String,
        events: EventBus,
        topic: Arc<dyn Topic>,
        auditor: Arc<Auditor>,
        output: Arc<Mutex<VecDeque<OutputLine>>>,
        snapshot: Arc<Mutex<JmSnapshot>>,
        restored_from: Option<RestoredFrom>,
    ) -> Self {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let storage = Arc::new(
            CheckpointStorage::new(cfg.checkpointing.storage, &cfg.checkpointing.dir, &job_id, cfg.lab.jobmanager_max_state_size)
                .with_savepoint_dir(&cfg.checkpointing.savepoint_dir),
        );
        let mut coord = CheckpointCoordinator::new();
        if let Some(r) = &restored_from {
            let owned = cfg.recovery.claim == crate::config::ClaimMode::Claim;
            coord.restore_external(r.found.metadata.clone(), ExternalSnapshot { dir: r.found.dir.clone(), owned });
        }
        let tms = (1..=cfg.taskmanagers).map(|i| TaskManagerState::new(super::taskmanager::name(i), 1, cfg.slots_per_tm)).collect();
        let tm_root = cfg.tm_dir.join(format!("{TM_ROOT_PREFIX}{}", &job_id[..12.min(job_id.len())]));
        // Best effort: only RocksDB writes there, and it reports its own errors.
        if std::fs::create_dir_all(&tm_root).is_ok() {
            let _ = crate::workdir::mark_owner(&tm_root);
        }
        JobManager {
            shared: SharedStateRegistry::new(storage.job_dir.as_ref().map(|d| d.join("shared"))),
            tm_root,
            knobs,
            layers,
            cfg,
            job_id,
            events,
            topic,
            auditor,
            storage,
            output,
            committed: Arc::new(AtomicU64::new(0)),
            snapshot,
            tms,
            status: JobStatus::Created,
            attempt: 0,
            restarts: 0,
            failure: None,
            restore_failure: None,
            missing_slots: 0,
            restart_at: None,
            restart: RestartState::default(),
            deployment: None,
            deploy_failure: None,
            last_progress: None,
            waiting_since: None,
            coord,
            trigger_base: Instant::now(),
            next_trigger: None,
            queued_trigger: false,
            reports_tx,
            reports_rx,
            audit_baseline: restored_from.as_ref().map(|_| Arc::default()),
            restored_from,
            savepoints: std::collections::HashMap::new(),
            finish_at: None,
        }
    }

    /// Runs until the command channel closes (the engine is dropped).
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        for tm in &self.tms {
            self.events.publish(Event::TaskManagerStarted { tm: tm.name.clone(), slots: tm.slots });
        }
        for d in self.layers.deprecated_keys() {
            self.events.publish(Event::ConfigKeyDeprecated {
                key: d.key.clone(),
                replacement: d.replacement.clone(),
                origin: d.origin.clone(),
            });
        }
        self.events.publish(Event::JobSubmitted { job_id: self.job_id.clone(), name: self.cfg.job.name.clone() });
        if let Some(r) = &self.restored_from {
            let m = &r.found.metadata;
            let from_parallelism = m.job.as_ref().map_or(m.keyed.len(), |j| j.parallelism);
            let mut note = String::from(
                "the verdict judges from the restored point on: the restored counts are taken as given, and only records after its offsets are checked",
            );
            if from_parallelism != self.cfg.job.parallelism {
                note.push_str("; key groups redistributed to the new subtasks, source offsets follow their partitions");
            }
            self.events.publish(Event::RestoredFromSnapshot {
                path: r.path.clone(),
                checkpoint: m.checkpoint,
                kind: m.kind.label().into(),
                from_parallelism,
                to_parallelism: self.cfg.job.parallelism,
                claim_mode: self.cfg.recovery.claim.flink_name().into(),
                note,
            });
        }
        self.try_deploy();
        self.publish();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                c = commands.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => break,
                },
                Some(r) = self.reports_rx.recv() => self.on_report(r),
                _ = super::source_task::sleep_until_opt(deadline) => self.on_timer(),
            }
            self.publish();
        }
        if let Some(mut d) = self.deployment.take() {
            d.abort_all();
        }
        // The cluster is gone, and with it every task manager's local disk.
        // Aborted tasks finish dropping (RocksDB closing, writes cleaning up) on other threads:
        // removal can race them, so it is tried again until the directory is gone.
        for _ in 0..TM_ROOT_REMOVAL_TRIES {
            let _ = off_worker(|| crate::workdir::remove_tree_under(&self.cfg.tm_dir, &self.tm_root));
            if !self.tm_root.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The job ends: cancelled (quit, end of `ckptlab run`), FAILED, or FINISHED (stopped with
        // a savepoint). `externalized-checkpoint-retention` decides whether its checkpoints stay.
        let keep = self.cfg.checkpointing.retention.keeps(self.status == JobStatus::Failed, self.status == JobStatus::Finished);
        for id in std::mem::take(&mut self.savepoints).into_keys() {
            off_worker(|| self.storage.end_savepoint(id, true));
        }
        if keep {
            let own: Vec<_> = self.coord.retained.iter().filter(|c| c.external.is_none()).map(|c| c.metadata.clone()).collect();
            // Aborted tasks' snapshot writes may still be finishing: let them end first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let kept = off_worker(|| self.storage.keep_retained(&own));
            self.events.publish(Event::CheckpointsRetained {
                retention: self.cfg.checkpointing.retention.flink_name().into(),
                paths: kept.iter().map(|p| p.display().to_string()).collect(),
            });
            return;
        }
        // A claimed snapshot belongs to the job, and goes with its checkpoints.
        for c in std::mem::take(&mut self.coord.retained) {
            if c.external.as_ref().is_some_and(|e| e.owned) {
                self.drop_checkpoint(&c);
            }
        }
        // (A snapshot write of an aborted task may still be cleaning up there: tried again too.)
        for _ in 0..TM_ROOT_REMOVAL_TRIES {
            off_worker(|| self.storage.discard_job());
            if !self.storage.job_dir.as_ref().is_some_and(|d| d.exists()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn now_ms(&self) -> u64 {
        self.events.now_ms()
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        for tm in self.tms.iter().filter(|t| t.dead_undetected()) {
            deadlines.extend(tm.killed_at.map(|k| k + self.cfg.heartbeat_timeout));
        }
        deadlines.extend(self.restart_at);
        deadlines.extend(self.deploy_failure.as_ref().map(|(at, _)| *at));
        if self.status == JobStatus::WaitingForResources {
            deadlines.extend(self.waiting_since.map(|w| w + self.cfg.slot_request_timeout));
        }
        if self.status == JobStatus::Running {
            deadlines.extend(self.next_trigger);
        }
        deadlines.extend(self.coord.next_expiry(self.cfg.checkpointing.timeout));
        deadlines.extend(self.finish_at);
        deadlines.into_iter().min()
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for i in 0..self.tms.len() {
            let tm = &self.tms[i];
            if tm.dead_undetected() && tm.killed_at.is_some_and(|k| k + self.cfg.heartbeat_timeout <= now) {
                self.tm_lost(i);
            }
        }
        if self.deploy_failure.as_ref().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, cause)) = self.deploy_failure.take() {
                self.failover(cause);
            }
        }
        if self.status == JobStatus::WaitingForResources && self.waiting_since.is_some_and(|w| w + self.cfg.slot_request_timeout <= now) {
            self.waiting_since = None;
            let cause = FailureCause::SlotRequestTimeout { timeout: self.cfg.slot_request_timeout, missing: self.missing_slots };
            self.failover(cause);
        }
        if self.restart_at.is_some_and(|r| r <= now) {
            self.restart_at = None;
            self.try_deploy();
        }
        if self.finish_at.is_some_and(|f| f <= now) {
            self.finish_at = None;
            self.cancel_attempt(CheckpointFailureReason::CoordinatorSuspend { why: "job stopped with a savepoint".into() });
            self.status = JobStatus::Finished;
            self.events.publish(Event::JobFinished { reason: "stopped with a savepoint".into() });
        }
        let timeout = self.cfg.checkpointing.timeout;
        let expired: Vec<u64> = self.coord.pending.values().filter(|p| p.triggered + timeout <= now).map(|p| p.id).collect();
        for id in expired {
            self.fail_checkpoint(id, CheckpointFailureReason::Expired { timeout });
        }
        if self.status == JobStatus::Running && self.next_trigger.is_some_and(|t| t <= now) {
            self.next_trigger = None;
            self.trigger();
        }
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, c: Command) {
        match c {
            Command::KillTaskManager(name) => self.kill(&name),
            Command::StartTaskManager(name) => self.start_tm(name),
            Command::TriggerCheckpoint => self.manual_trigger(),
            Command::Set { key, value } => self.set(&key, &value),
            Command::Resubmit => self.resubmit(),
            Command::SwitchBackend(name) => self.switch_backend(&name),
            Command::TriggerSavepoint { stop } => self.trigger_savepoint(stop),
        }
    }

    fn reject(&self, key: &str, reason: String) {
        self.events.publish(Event::ConfigRejected { key: key.to_string(), reason });
    }

    fn kill(&mut self, name: &str) {
        if let Err(e) = super::taskmanager::parse_name(name) {
            return self.reject("kill", e);
        }
        let Some(i) = self.tms.iter().position(|t| t.name == name && t.alive) else {
            if self.tms.iter().any(|t| t.name == name) {
                return self.reject("kill", format!("{name} is not running"));
            }
            let mut known: Vec<&str> = self.tms.iter().map(|t| t.name.as_str()).collect();
            known.dedup();
            return self.reject("kill", format!("no task manager {name}; known: {}", known.join(", ")));
        };
        let tm = &mut self.tms[i];
        tm.alive = false;
        tm.killed_at = Some(Instant::now());
        let tasks = self.deployment.as_mut().map(|d| d.abort_on(i)).unwrap_or_default();
        // The disk of a dead machine is gone: RocksDB instances are rebuilt from the checkpoint.
        // `name` passed parse_name: a plain `tm-N` below the TM root, checked again on delete.
        let _ = off_worker(|| crate::workdir::remove_tree_under(&self.tm_root, &self.tm_root.join(name)));
        let hosted = !tasks.is_empty();
        self.events.publish(Event::TaskManagerKilled { tm: name.to_string(), tasks });
        // Its peers' network connections to it break: a task on another, living task manager
        // fails at once and the job fails over without waiting for the heartbeat timeout. (With
        // no such peer, only the heartbeat timeout tells.)
        let peer = self
            .deployment
            .as_ref()
            .and_then(|d| d.tasks.iter().find(|t| t.tm != i && t.handle.is_some() && self.tms[t.tm].alive).map(|t| t.task));
        if let (true, Some(task)) = (hosted, peer) {
            self.failover(FailureCause::ConnectionLost { tm: name.to_string(), task });
        }
    }

    fn start_tm(&mut self, name: Option<String>) {
        if let Some(Err(e)) = name.as_deref().map(super::taskmanager::parse_name) {
            return self.reject("start", e);
        }
        let known = |s: &Self, n: &str| s.tms.iter().any(|t| t.name == n);
        let names = {
            let mut n: Vec<&str> = self.tms.iter().map(|t| t.name.as_str()).collect();
            n.sort_unstable();
            n.dedup();
            n.len()
        };
        if names >= crate::config::MAX_TASK_MANAGERS && !name.as_deref().is_some_and(|n| known(self, n)) {
            return self.reject("start", format!("the cluster has {names} task managers, the most it can have"));
        }
        // The lowest free number: names stay within tm-1 .. tm-64.
        let name =
            name.unwrap_or_else(|| super::taskmanager::name((1..).find(|n| !known(self, &super::taskmanager::name(*n))).unwrap_or(1)));
        if self.tms.iter().any(|t| t.name == name && t.alive) {
            return self.reject("start", format!("{name} is already running"));
        }
        let slots = self.cfg.slots_per_tm;
        match self.tms.iter().rposition(|t| t.name == name) {
            // Declared lost: the name's entry takes the new process.
            Some(i) if self.tms[i].lost => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms[i] = TaskManagerState::new(name.clone(), incarnation, slots);
            }
            // Dead and not yet detected: a new process beside the old one, whose slots the
            // JobManager still offers until the heartbeat timeout (starting it detects nothing).
            Some(i) => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms.push(TaskManagerState::new(name.clone(), incarnation, slots));
            }
            None => self.tms.push(TaskManagerState::new(name.clone(), 1, slots)),
        }
        self.events.publish(Event::TaskManagerStarted { tm: name, slots });
        if self.status == JobStatus::WaitingForResources {
            self.try_deploy();
        }
    }

    fn manual_trigger(&mut self) {
        let refuse = |s: &Self, reason: String| s.events.publish(Event::CheckpointTriggerRefused { reason });
        if self.status != JobStatus::Running {
            return refuse(self, format!("the job is {}", self.status.label()));
        }
        if self.cfg.checkpointing.interval.is_none() {
            return refuse(self, "checkpointing is off (set an interval or a mode first)".into());
        }
        if self.coord.pending.len() >= self.max_concurrent() {
            // As Flink's CheckpointRequestDecider: the request waits for a free place, then runs
            // at once (min-pause holds back periodic checkpoints only).
            self.queued_trigger = true;
            self.events.publish(Event::CheckpointTriggerQueued { in_progress: self.coord.pending.len() });
            return;
        }
        self.trigger();
    }

    fn set(&mut self, key: &str, value: &str) {
        let runtime = SCHEMA.iter().find(|s| s.key == key).map(|s| s.runtime);
        let mut layers = self.layers.clone();
        if let Err(e) = layers.set_value(key, parse_loose_value(value), "runtime change") {
            return self.reject(key, e.to_string());
        }
        let delay = key.starts_with(&format!("{DELAYS_TABLE}."));
        if runtime != Some(true) && !delay {
            return self.reject(key, format!("applies only when the cluster starts: run again with --set {key}={value}"));
        }
        let cfg = match layers.build() {
            Ok(c) => c,
            Err(e) => return self.reject(key, e.to_string()),
        };
        let interval_changed = cfg.checkpointing.interval != self.cfg.checkpointing.interval;
        self.layers = layers;
        self.cfg = cfg;
        self.knobs.set_hop_delay(self.cfg.lab.hop_delay);
        self.knobs.set_buffer_timeout(self.cfg.buffer_timeout);
        if delay {
            // A channel's latency changes for the buffers sent from now on (the workbench's
            // slow-channel key); the next deployment builds its channels from the new config.
            for c in self.deployment.iter().flat_map(|d| d.channels.iter()) {
                if let (Some(from), Some(to)) = (subtask_of(&c.from), subtask_of(&c.to)) {
                    c.set_delay(self.cfg.extra_delay(from, to));
                }
            }
        }
        if interval_changed {
            self.trigger_base = Instant::now();
        }
        self.schedule_next_trigger();
        self.events.publish(Event::ConfigChanged { key: key.to_string(), value: value.to_string() });
    }

    fn switch_backend(&mut self, name: &str) {
        let mut layers = self.layers.clone();
        if let Err(e) = layers.set_backend(name, "backend switch") {
            return self.reject("backend", e);
        }
        let cfg = match layers.build() {
            Ok(c) => c,
            Err(e) => return self.reject("backend", e.to_string()),
        };
        let (from, to) = (self.cfg.backend_label(), cfg.backend_label());
        if from == to {
            return self.reject("backend", format!("already {to}"));
        }
        self.storage = Arc::new(self.storage.with_kind(
            cfg.checkpointing.storage,
            &cfg.checkpointing.dir,
            &self.job_id,
            cfg.lab.jobmanager_max_state_size,
        ));
        self.shared.set_root(self.storage.job_dir.as_ref().map(|d| d.join("shared")));
        self.layers = layers;
        self.cfg = cfg;
        let restore = self.coord.latest().map(|c| c.metadata.checkpoint);
        let note = match restore {
            Some(id) => format!("the job restarts from checkpoint {id}, its state read into the new backend"),
            None => "no completed checkpoint: the job restarts from EMPTY state, sources from auto.offset.reset".into(),
        };
        self.events.publish(Event::BackendSwitched { from, to, checkpoint: restore, note });
        // A restart without a failure: cancel, drop what is pending, deploy again at once.
        self.cancel_attempt(CheckpointFailureReason::CoordinatorSuspend { why: "job restarted: state backend switched".into() });
        if matches!(self.status, JobStatus::Running | JobStatus::Restarting | JobStatus::Created) {
            self.restart_at = None;
            self.try_deploy();
        }
    }

    fn resubmit(&mut self) {
        if self.status != JobStatus::Failed {
            return self.reject("resubmit", format!("the job is {}, not FAILED", self.status.label()));
        }
        // A resubmitted job is a new job: it sees none of the old one's checkpoints.
        for c in std::mem::take(&mut self.coord.retained) {
            self.drop_checkpoint(&c);
        }
        // Nor the snapshot it was restored from: the verdict covers everything again.
        self.audit_baseline = None;
        self.restart = RestartState::default();
        self.failure = None;
        self.restore_failure = None;
        self.events.publish(Event::JobSubmitted { job_id: self.job_id.clone(), name: self.cfg.job.name.clone() });
        self.try_deploy();
    }

    // ---- reports --------------------------------------------------------------------------

    fn on_report(&mut self, r: TaskReport) {
        let current = self.deployment.as_ref().map(|d| d.attempt);
        let attempt = match &r {
            TaskReport::Running { attempt, .. }
            | TaskReport::Ack { attempt, .. }
            | TaskReport::Decline { attempt, .. }
            | TaskReport::Failed { attempt, .. }
            | TaskReport::RestoreFailed { attempt, .. } => *attempt,
        };
        if current != Some(attempt) {
            // A report from a cancelled attempt; a snapshot it acknowledged is nobody's.
            if let TaskReport::Ack { checkpoint, task, state, .. } = r {
                self.discard_unknown_ack(checkpoint, task, state);
            }
            return;
        }
        match r {
            TaskReport::Running { task, .. } => {
                let d = self.deployment.as_mut().expect("checked above");
                d.running.insert(task);
                if d.running.len() == d.tasks.len() {
                    // Every task restored its state: the last failure is behind the job.
                    self.failure = None;
                    self.restore_failure = None;
                    self.events.publish(Event::JobRunning { attempt });
                }
            }
            TaskReport::Ack { checkpoint, task, state, stats, channel_state, .. } => {
                match self.coord.ack(checkpoint, task, state, stats, channel_state) {
                    AckOutcome::Complete => self.complete(checkpoint),
                    AckOutcome::Pending => {}
                    AckOutcome::Unknown(state) => self.discard_unknown_ack(checkpoint, task, state),
                }
            }
            TaskReport::Decline { checkpoint, task, reason, .. } => {
                let reason = match reason {
                    DeclineReason::SnapshotFailed(message) => CheckpointFailureReason::AsyncException { task, message },
                    DeclineReason::Subsumed { .. } => CheckpointFailureReason::DeclinedSubsumed { task },
                };
                self.fail_checkpoint(checkpoint, reason)
            }
            // The next attempt restores the same, latest checkpoint (Flink never falls back to an
            // older one or to empty state: FLINK-22502); the restart strategy bounds the retries.
            TaskReport::RestoreFailed { task, checkpoint, reason, .. } => {
                self.restore_failure = Some(format!("{task} could not restore checkpoint {checkpoint}: {reason}"));
                self.failover(FailureCause::RestoreFailed { task, checkpoint, message: reason })
            }
            TaskReport::Failed { task, reason, .. } => self.failover(FailureCause::TaskFailed { task, message: reason }),
        }
    }

    /// An acknowledgement no pending checkpoint takes (it expired, was subsumed or failed, or its
    /// attempt was cancelled): its snapshot's files are deleted, as Flink discards the state of
    /// late and unknown acks. Files a retained checkpoint references are never touched.
    fn discard_unknown_ack(&mut self, checkpoint: u64, task: TaskId, state: TaskState) {
        let TaskState::Keyed { handle, .. } = state else { return };
        if !self.coord.is_retained(checkpoint) && !self.coord.pending.contains_key(&checkpoint) {
            // The checkpoint is neither complete nor running: its whole directory is garbage.
            off_worker(|| self.storage.discard(checkpoint));
            // A failed savepoint's directory was deleted already; a late write may have made it
            // again (RocksDB's upload creates its directory): without `_metadata` it goes.
            let written = match &handle {
                crate::state::StateHandle::File { path, .. } => Some(path.clone()),
                crate::state::StateHandle::RocksDb { dir, .. } => Some(dir.clone()),
                crate::state::StateHandle::Memory { .. } => None,
            };
            let root = self.storage.savepoint_dir.clone();
            let savepoint = written.and_then(|p| p.strip_prefix(&root).ok().and_then(|r| r.components().next()).map(|c| root.join(c)));
            if let Some(dir) = savepoint.filter(|d| !d.join(crate::state::storage::METADATA).exists()) {
                off_worker(|| {
                    let _ = crate::workdir::remove_tree_under(&root, &dir);
                });
            }
        }
        off_worker(|| self.shared.discard_unregistered(std::slice::from_ref(&handle)));
        self.events.publish(Event::CheckpointAckDiscarded { checkpoint, task: task.to_string() });
    }

    /// Checkpoints allowed in flight at once (a min-pause forces one).
    fn max_concurrent(&self) -> usize {
        let configured = CheckpointCoordinator::max_concurrent(self.cfg.checkpointing.max_concurrent, self.cfg.checkpointing.min_pause);
        // Flink does not run unaligned checkpoints concurrently: one at a time.
        if self.cfg.checkpointing.unaligned {
            1
        } else {
            configured
        }
    }

    // ---- checkpoints ----------------------------------------------------------------------

    fn schedule_next_trigger(&mut self) {
        self.next_trigger = None;
        let Some(interval) = self.cfg.checkpointing.interval else { return };
        if self.status != JobStatus::Running || self.coord.pending.len() >= self.max_concurrent() {
            return;
        }
        if self.queued_trigger {
            self.next_trigger = Some(Instant::now());
            return;
        }
        let mut at = self.trigger_base + interval;
        if let Some(done) = self.coord.last_completion {
            at = at.max(done + self.cfg.checkpointing.min_pause);
        }
        self.next_trigger = Some(at);
    }

    fn trigger(&mut self) {
        let Some(d) = &self.deployment else { return };
        self.queued_trigger = false;
        let now = Instant::now();
        if let Err(reason) = CheckpointCoordinator::check_trigger(&d.expected_tasks(), &d.running) {
            // Pre-flight: nothing is triggered and nothing fails; the next one comes an interval later.
            self.trigger_base = now;
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("{} ({})", reason, reason.flink_name()) });
            self.schedule_next_trigger();
            return;
        }
        let mode = self.cfg.checkpointing.mode;
        let id = self.coord.begin(mode, now, self.now_ms(), d.expected_tasks());
        self.trigger_base = now;
        if let Err(e) = self.storage.prepare(id) {
            self.fail_checkpoint(id, CheckpointFailureReason::IoException { message: e.to_string() });
            self.schedule_next_trigger();
            return;
        }
        self.events.publish(Event::CheckpointTriggered { checkpoint: id, mode: mode.flink_name().into() });
        let barrier = Barrier { checkpoint: id, options: self.cfg.checkpointing.options() };
        if let Some(d) = &self.deployment {
            // A source on a killed task manager cannot take it: the checkpoint will not complete.
            d.tell_sources(TaskControl::TriggerCheckpoint(barrier));
        }
        self.schedule_next_trigger();
    }

    /// Takes a savepoint (Flink's canonical format) through the same barriers as a checkpoint,
    /// always aligned, as Flink's savepoints; works with periodic checkpointing off too.
    fn trigger_savepoint(&mut self, stop: bool) {
        let refuse =
            |s: &Self, reason: String| s.events.publish(Event::CheckpointTriggerRefused { reason: format!("savepoint: {reason}") });
        if self.status != JobStatus::Running || self.finish_at.is_some() {
            let status = if self.finish_at.is_some() { "stopping" } else { self.status.label() };
            return refuse(self, format!("the job is {status}"));
        }
        if stop && self.savepoints.values().any(|s| *s) {
            return refuse(self, "a stop-with-savepoint is already in progress".into());
        }
        let Some(d) = &self.deployment else { return refuse(self, "no job is deployed".into()) };
        if let Err(reason) = CheckpointCoordinator::check_trigger(&d.expected_tasks(), &d.running) {
            return refuse(self, format!("{} ({})", reason, reason.flink_name()));
        }
        let mode = self.cfg.checkpointing.mode;
        let id = self.coord.begin_savepoint(mode, Instant::now(), self.now_ms(), d.expected_tasks());
        match off_worker(|| self.storage.begin_savepoint(id, &self.job_id)) {
            Ok(dir) => {
                self.savepoints.insert(id, stop);
                self.events.publish(Event::SavepointTriggered { checkpoint: id, path: dir.display().to_string(), stop });
            }
            Err(e) => return self.fail_checkpoint(id, CheckpointFailureReason::IoException { message: e.to_string() }),
        }
        let barrier = Barrier { checkpoint: id, options: super::element::CheckpointOptions::new(mode) };
        if let Some(d) = &self.deployment {
            d.tell_sources(TaskControl::TriggerCheckpoint(barrier));
        }
    }

    /// Every task acknowledged a savepoint: `_metadata` goes beside its files, and that is all.
    /// Flink 2 neither recovers from a savepoint it took nor commits side effects for one
    /// (FLIP-193), except a stop-with-savepoint, after which the job ends FINISHED.
    fn complete_savepoint(&mut self, id: u64, mut completion: super::coordinator::Completion) {
        let stop = self.savepoints.remove(&id).unwrap_or(false);
        completion.metadata.job = Some(crate::state::storage::JobShape::of(&self.cfg, self.topic.partitions()));
        let dir = self.storage.savepoint_location(id);
        let written = off_worker(|| self.storage.write_metadata(&completion.metadata)).map_err(|e| format!("writing _metadata: {e}"));
        if let Err(message) = written {
            let handles = completion.metadata.keyed.clone();
            let reason = CheckpointFailureReason::FinalizeFailure { message };
            self.coord.record_failure(completion.stats, &reason);
            self.savepoints.insert(id, stop);
            self.after_failure(id, &handles, reason);
            return;
        }
        self.storage.end_savepoint(id, false);
        let bytes = completion.stats.full_size;
        self.coord.record_savepoint(completion);
        let path = dir.map(|d| d.display().to_string()).unwrap_or_default();
        self.events.publish(Event::SavepointCompleted { checkpoint: id, path, bytes });
        if stop {
            if let Some(d) = &self.deployment {
                d.tell_all(TaskControl::NotifyCheckpointComplete(id));
            }
            self.next_trigger = None;
            self.finish_at = Some(Instant::now() + STOP_GRACE);
        }
    }

    fn complete(&mut self, id: u64) {
        let now = Instant::now();
        let Some(mut completion) = self.coord.complete(id, &self.job_id, now) else { return };
        if completion.metadata.kind == crate::state::storage::SnapshotKind::Savepoint {
            return self.complete_savepoint(id, completion);
        }
        completion.metadata.job = Some(crate::state::storage::JobShape::of(&self.cfg, self.topic.partitions()));
        // Finalisation (Flink's FINALIZE_CHECKPOINT_FAILURE): every shared file the snapshots
        // reuse must still be there, and `_metadata` must be written, or the checkpoint fails.
        let finalised = crate::state::storage::CheckpointStorage::check_shared_files(&completion.metadata.keyed)
            .map_err(|e| e.to_string())
            .and_then(|()| off_worker(|| self.storage.write_metadata(&completion.metadata)).map_err(|e| format!("writing _metadata: {e}")));
        if let Err(message) = finalised {
            let handles = completion.metadata.keyed.clone();
            let reason = CheckpointFailureReason::FinalizeFailure { message };
            self.coord.record_failure(completion.stats, &reason);
            self.after_failure(id, &handles, reason);
            return;
        }
        // Register the new checkpoint's shared files before dropping old ones: files both use survive.
        self.shared.register(&completion.metadata.keyed);
        self.storage.completed(id);
        // Kafka: the checkpointed offsets go to the consumer group, for monitoring (as Flink).
        off_worker(|| self.topic.commit(&completion.metadata.offsets));
        let (duration_ms, bytes, offsets) =
            (completion.stats.duration_ms, completion.stats.checkpointed_size, completion.stats.offsets.clone());
        let dropped = self.coord.retain(completion, self.cfg.checkpointing.num_retained, now);
        self.auditor.checkpoint_completed(id);
        for old in dropped {
            self.drop_checkpoint(&old);
        }
        if self.cfg.source.retention == crate::connectors::topic::Retention::Checkpointed && self.cfg.source.kafka.is_none() {
            self.release_topic(&offsets);
        }
        self.events.publish(Event::CheckpointCompleted { checkpoint: id, duration_ms, bytes, offsets });
        if let Some(d) = &self.deployment {
            d.tell_all(TaskControl::NotifyCheckpointComplete(id));
        }
        // A checkpoint subsumes older checkpoints, never a savepoint.
        let older: Vec<u64> = self.coord.pending.keys().filter(|p| **p < id && !self.savepoints.contains_key(*p)).copied().collect();
        for p in older {
            self.fail_checkpoint(p, CheckpointFailureReason::Subsumed { by: id });
        }
        self.schedule_next_trigger();
    }

    /// `source.embedded.retention = checkpointed`: free the records below the oldest retained
    /// checkpoint's offsets that no source and no verdict needs any more.
    fn release_topic(&self, latest: &[(u32, u64)]) {
        let positions = self.auditor.positions();
        let oldest = self.coord.oldest_offsets();
        for &(p, off) in latest {
            let mut floor = off.min(self.auditor.retain_floor(p));
            if let Some(o) = oldest.iter().find(|(q, _)| *q == p) {
                floor = floor.min(o.1);
            }
            if self.auditor.enabled() {
                if let Some(&pos) = positions.get(p as usize) {
                    floor = floor.min(pos);
                }
            }
            self.topic.release(p, floor);
        }
    }

    /// A retained checkpoint is no longer needed: its exclusive files go, its shared ones lose a
    /// reference. A snapshot the job was restored from goes only when the job claimed it (CLAIM);
    /// its files in the other job's `shared/` stay (ckptlab deletes only below its own).
    fn drop_checkpoint(&mut self, c: &CompletedCheckpoint) {
        let m = &c.metadata;
        match &c.external {
            None => off_worker(|| {
                self.storage.discard(m.checkpoint);
                self.shared.unregister(&m.keyed);
            }),
            Some(ExternalSnapshot { dir, owned: true }) => {
                // Claimed: the job owns it wherever it lies (a savepoint too, as Flink's CLAIM
                // treats a restored snapshot like one of its own checkpoints). Its handles were
                // resolved below its own directory when it was read, so only its files go.
                let gone = off_worker(|| CheckpointStorage::discard_claimed(dir, m));
                if !gone {
                    tracing::warn!(dir = %dir.display(), "claimed snapshot subsumed: its directory holds other files and stays");
                }
            }
            Some(ExternalSnapshot { owned: false, .. }) => {}
        }
        self.auditor.checkpoint_discarded(m.checkpoint);
    }

    fn fail_checkpoint(&mut self, id: u64, reason: CheckpointFailureReason) {
        if let Some((_, handles)) = self.coord.fail(id, &reason, Instant::now()) {
            self.after_failure(id, &handles, reason);
        }
    }

    fn after_failure(&mut self, id: u64, handles: &[crate::state::StateHandle], reason: CheckpointFailureReason) {
        if let Some(d) = &self.deployment {
            d.tell_all(TaskControl::NotifyCheckpointAborted(id));
        }
        if self.savepoints.remove(&id).is_some() {
            // A failed savepoint's directory goes; it never counts toward tolerable failures.
            off_worker(|| self.storage.end_savepoint(id, true));
            self.auditor.checkpoint_discarded(id);
            self.events.publish(Event::CheckpointFailed { checkpoint: id, reason: reason.to_string() });
            self.events.publish(Event::SavepointFailed { checkpoint: id, reason: reason.to_string() });
            self.schedule_next_trigger();
            return;
        }
        off_worker(|| {
            self.storage.discard(id);
            self.shared.discard_unregistered(handles);
        });
        self.auditor.checkpoint_discarded(id);
        self.events.publish(Event::CheckpointFailed { checkpoint: id, reason: reason.to_string() });
        if reason.counts_toward_tolerable() && self.deployment.is_some() {
            let tolerable = self.cfg.checkpointing.tolerable_failed;
            if let Some(failed) = self.coord.take_intolerable(tolerable) {
                self.failover(FailureCause::TolerableCheckpointFailuresExceeded { failed, tolerable, last: reason });
                return;
            }
        }
        self.schedule_next_trigger();
    }

    // ---- failure and recovery -------------------------------------------------------------

    /// The heartbeat timeout: the JobManager learns that the task manager itself, and its slots,
    /// are gone. Its tasks' peers usually failed the job long before (see `kill`); only a job
    /// whose tasks all ran there, or a deployment to it, still fails over now.
    fn tm_lost(&mut self, i: usize) {
        let after_ms = self.tms[i].killed_at.map_or(0, |k| k.elapsed().as_millis() as u64);
        self.tms[i].lost = true;
        let name = self.tms[i].name.clone();
        self.tms[i].superseded =
            self.tms.iter().enumerate().any(|(j, t)| j != i && t.name == name && t.incarnation > self.tms[i].incarnation);
        self.events.publish(Event::TaskManagerLost { tm: name.clone(), after_ms });
        let hosts_tasks = self.deployment.as_ref().is_some_and(|d| d.tasks.iter().any(|t| t.tm == i));
        if hosts_tasks {
            self.failover(FailureCause::TaskManagerLost { tm: name, heartbeat_timeout: self.cfg.heartbeat_timeout });
        }
    }

    /// Ends the running attempt: its tasks are cancelled and its pending checkpoints fail.
    fn cancel_attempt(&mut self, reason: CheckpointFailureReason) {
        if let Some(mut d) = self.deployment.take() {
            d.abort_all();
        }
        self.deploy_failure = None;
        let pending: Vec<u64> = self.coord.pending.keys().copied().collect();
        for id in pending {
            self.fail_checkpoint(id, reason.clone());
        }
        self.next_trigger = None;
        if std::mem::take(&mut self.queued_trigger) {
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("the queued checkpoint request was dropped: {reason}") });
        }
    }

    fn failover(&mut self, cause: FailureCause) {
        let reason = cause.to_string();
        self.events.publish(Event::JobFailing { reason: reason.clone() });
        let now = Instant::now();
        // The restart waits until every task of the failed attempt is cancelled. A task on a dead
        // task manager never confirms: its cancellation ends when the RPC times out, or when the
        // JobManager declares the task manager lost, whichever comes first.
        let cancelled_at = self
            .deployment
            .as_ref()
            .map(|d| {
                d.tasks
                    .iter()
                    .filter(|t| self.tms[t.tm].dead_undetected())
                    .filter_map(|t| self.tms[t.tm].killed_at)
                    .map(|k| (k + self.cfg.heartbeat_timeout).min(now + RPC_ASK_TIMEOUT))
                    .fold(now, Instant::max)
            })
            .unwrap_or(now);
        self.cancel_attempt(cause.checkpoint_reason());
        let kind = self.cfg.restart.effective(self.cfg.checkpointing.interval.is_some());
        match self.restart.on_failure(&self.cfg.restart, kind, Instant::now()) {
            RestartDecision::RestartAfter(delay) => {
                self.status = JobStatus::Restarting;
                // Shown (status line, run's last lines) until an attempt runs again.
                self.failure = Some(reason.clone());
                self.restarts += 1;
                self.restart_at = Some(cancelled_at + delay);
                self.events.publish(Event::JobRestarting {
                    attempt: self.attempt + 1,
                    delay_ms: delay.as_millis() as u64,
                    strategy: strategy_name(kind).into(),
                });
            }
            RestartDecision::Fail(why) => {
                self.status = JobStatus::Failed;
                self.restart_at = None;
                self.waiting_since = None;
                let msg = format!("{reason}; {why}");
                self.failure = Some(msg.clone());
                self.events.publish(Event::JobFailed { reason: msg });
            }
        }
    }

    fn try_deploy(&mut self) {
        let p = self.cfg.job.parallelism;
        // Every slot the JobManager knows of: living task managers' first, then those of dead
        // ones it has not yet declared lost (a deployment there fails, as in Flink).
        let offered = |dead: bool| {
            self.tms.iter().enumerate().filter(move |(_, t)| !t.lost && t.alive != dead).flat_map(|(i, t)| std::iter::repeat_n(i, t.slots))
        };
        let slots: Vec<usize> = offered(false).chain(offered(true)).collect();
        if slots.len() < p {
            let missing = p - slots.len();
            if self.status != JobStatus::WaitingForResources || self.missing_slots != missing {
                self.events.publish(Event::JobWaitingForResources { missing_slots: missing });
            }
            if self.status != JobStatus::WaitingForResources || self.waiting_since.is_none() {
                self.waiting_since = Some(Instant::now());
            }
            self.status = JobStatus::WaitingForResources;
            self.missing_slots = missing;
            return;
        }
        self.missing_slots = 0;
        self.waiting_since = None;
        // Always the latest completed checkpoint: a restore that failed is retried with it.
        let restore = self.coord.latest().map(|c| c.metadata.clone());
        let external_restore = self.coord.latest().is_some_and(|c| c.external.is_some());
        let partitions = self.topic.partitions();
        let mut positions: Vec<u64> = (0..partitions)
            .map(|part| match self.cfg.source.offset_reset {
                OffsetReset::Latest => self.topic.end_offset(part),
                // Kafka's earliest: the log start offset (0 unless retention released records).
                OffsetReset::Earliest => self.topic.log_start(part),
            })
            .collect();
        let note;
        if let Some(m) = &restore {
            for (part, off) in &m.offsets {
                if let Some(slot) = positions.get_mut(*part as usize) {
                    *slot = *off;
                }
            }
            self.coord.counts.restored += 1;
            note = String::new();
        } else {
            // As Flink's Kafka source: without a checkpoint, the group's committed offsets first.
            let mut from_group = 0;
            for (slot, offset) in positions.iter_mut().zip(off_worker(|| self.topic.committed())) {
                if let Some(o) = offset {
                    *slot = o;
                    from_group += 1;
                }
            }
            let reset = match self.cfg.source.offset_reset {
                OffsetReset::Latest => "auto.offset.reset = latest: records produced meanwhile are skipped",
                OffsetReset::Earliest => "auto.offset.reset = earliest: the whole topic is replayed",
            };
            note = if from_group == 0 {
                reset.into()
            } else if from_group == partitions {
                "from the consumer group's committed offsets".into()
            } else {
                format!("from the consumer group's committed offsets where it has one, else {reset}")
            };
        }
        self.attempt += 1;
        let attempt = self.attempt;
        self.auditor.deploy(attempt, &positions, restore.as_ref().map(|m| m.checkpoint));
        if self.attempt > 1 || restore.is_some() {
            self.events.publish(Event::StateRestored {
                checkpoint: restore.as_ref().map(|m| m.checkpoint),
                offsets: positions.iter().enumerate().map(|(i, o)| (i as u32, *o)).collect(),
                note,
            });
        }
        match self.spawn(attempt, &slots[..p], &positions, restore.as_ref(), external_restore) {
            Ok(d) => {
                // A task submitted to a dead task manager: the submission times out.
                self.deploy_failure = d.tasks.iter().find(|t| !self.tms[t.tm].alive).map(|t| {
                    let cause = FailureCause::DeploymentFailed { tm: self.tms[t.tm].name.clone(), task: t.task };
                    (Instant::now() + RPC_ASK_TIMEOUT, cause)
                });
                self.last_progress = Some(d.progress.clone());
                self.deployment = Some(d);
            }
            Err(reason) => {
                self.status = JobStatus::Failed;
                self.failure = Some(reason.clone());
                self.events.publish(Event::JobFailed { reason });
                return;
            }
        }
        self.status = JobStatus::Running;
        self.trigger_base = Instant::now();
        self.schedule_next_trigger();
    }

    /// Builds channels and tasks of one attempt; tasks placed on a dead task manager never start.
    fn spawn(
        &mut self,
        attempt: u64,
        slots: &[usize],
        positions: &[u64],
        restore: Option<&crate::state::storage::CheckpointMetadata>,
        external_restore: bool,
    ) -> Result<Deployment, String> {
        let cfg = &self.cfg;
        let p = cfg.job.parallelism;
        let cap = cfg.lab.channel_capacity;
        let progress = Arc::new(AttemptProgress { positions: Mutex::new(positions.to_vec()), ..AttemptProgress::default() });
        let ctx = |task: TaskId| TaskContext {
            attempt,
            task,
            reports: self.reports_tx.clone(),
            events: self.events.clone(),
            auditor: self.auditor.clone(),
            progress: progress.clone(),
            knobs: self.knobs.clone(),
            buffer_records: cfg.lab.buffer_records,
            storage: self.storage.clone(),
            output: self.output.clone(),
        };
        let alive = |tm: usize| self.tms[tm].alive;
        let mut tasks = Vec::new();
        let mut channels = Vec::new();
        let mut control = Vec::new();
        let cost = |op: &str, i: usize| cfg.record_cost((op, i));
        let sink_tm = slots[0];
        // counter[j] -> sink[0]
        let mut counter_outputs = Vec::new();
        let mut sink_inputs = Vec::new();
        for j in 0..p {
            let stats = ChannelStats::new(format!("counter[{j}]"), "sink[0]".into(), cfg.extra_delay(("counter", j), ("sink", 0)));
            channels.push(stats.clone());
            let (out, input) = channel(stats, cap, self.knobs.clone());
            counter_outputs.push(out);
            sink_inputs.push(input);
        }
        // source[i] -> counter[j]: a hash shuffle, one channel per pair.
        let mut source_outputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
        let mut counter_inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
        for (i, outs) in source_outputs.iter_mut().enumerate() {
            for (j, ins) in counter_inputs.iter_mut().enumerate() {
                let stats =
                    ChannelStats::new(format!("source[{i}]"), format!("counter[{j}]"), cfg.extra_delay(("source", i), ("counter", j)));
                channels.push(stats.clone());
                let (out, input) = channel(stats, cap, self.knobs.clone());
                outs.push(out);
                ins.push(input);
            }
        }
        let channel_state = restore.map(|m| rescale_channel_state(m, p)).unwrap_or_default();
        let replay = |task: TaskId| -> Vec<super::task::PersistedRecord> {
            channel_state.iter().find(|c| c.task == task).map(|c| c.records.clone()).unwrap_or_default()
        };
        let audit_scope = self.audit_baseline.clone().map(|baseline| AuditScope { baseline, records_baseline: external_restore });
        // Sources.
        for (i, outputs) in source_outputs.into_iter().enumerate() {
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            control.push((TaskId::Source(i), ctl_tx));
            let assigned: Vec<(u32, u64)> =
                (0..self.topic.partitions()).filter(|part| *part as usize % p == i).map(|part| (part, positions[part as usize])).collect();
            let reader = self.topic.clone().reader(&assigned);
            let task = SourceTask {
                ctx: ctx(TaskId::Source(i)),
                index: i,
                positions: assigned,
                reader,
                topic: self.topic.clone(),
                control: ctl_rx,
                outputs,
                key_by: cfg.job.key_by,
            };
            let handle = alive(slots[i]).then(|| tokio::spawn(task.run()).abort_handle());
            tasks.push(DeployedTask { task: TaskId::Source(i), tm: slots[i], handle });
        }
        // Counters.
        let mut keyed_views = Vec::new();
        for (j, (inputs, output)) in counter_inputs.into_iter().zip(counter_outputs).enumerate() {
            let tm_name = &self.tms[slots[j]].name;
            let local =
                self.tm_root.join(tm_name).join(format!("job_{}_counter_{j}_attempt_{attempt}", &self.job_id[..8.min(self.job_id.len())]));
            let backend = create_backend(cfg, local);
            let view = Arc::new(Mutex::new(TaskRunView::default()));
            keyed_views.push(view.clone());
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            let id = TaskId::Counter(j);
            control.push((id, ctl_tx));
            let runner = OperatorRunner {
                ctx: ctx(id),
                op: Counter::new(j, key_group_range(j, p), backend, restore.map(|m| (m.checkpoint, m.keyed.clone())))
                    .with_audit_scope(audit_scope.clone()),
                gate: InputGate::new(inputs, self.knobs.clone()),
                output: Some(output),
                control: ctl_rx,
                record_cost: cost("counter", j),
                replay: replay(id),
                view,
            };
            let handle = alive(slots[j]).then(|| tokio::spawn(runner.run()).abort_handle());
            tasks.push(DeployedTask { task: id, tm: slots[j], handle });
        }
        // Sink.
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        control.push((TaskId::Sink, ctl_tx));
        let sink_view = Arc::new(Mutex::new(TaskRunView::default()));
        let runner = OperatorRunner {
            ctx: ctx(TaskId::Sink),
            op: SinkOperator {
                sink: crate::connectors::sink::create(cfg.job.sink),
                recover: restore.map(|m| m.staged_output.clone()),
                committed: self.committed.clone(),
            },
            gate: InputGate::new(sink_inputs, self.knobs.clone()),
            output: None,
            control: ctl_rx,
            record_cost: cost("sink", 0),
            replay: replay(TaskId::Sink),
            view: sink_view.clone(),
        };
        let handle = alive(sink_tm).then(|| tokio::spawn(runner.run()).abort_handle());
        tasks.push(DeployedTask { task: TaskId::Sink, tm: sink_tm, handle });
        Ok(Deployment { attempt, tasks, running: HashSet::new(), control, channels, keyed_views, sink_view, progress })
    }

    // ---- view -----------------------------------------------------------------------------

    fn publish(&self) {
        let d = self.deployment.as_ref();
        // Lost incarnations that a newer one replaced are not shown; a task placed on one is
        // shown on the row of its name.
        let visible: Vec<usize> = (0..self.tms.len()).filter(|&i| !self.tms[i].superseded).collect();
        let shown_at = |tm: usize| {
            visible
                .iter()
                .position(|&v| v == tm)
                .or_else(|| visible.iter().rposition(|&v| self.tms[v].name == self.tms[tm].name))
                .unwrap_or(0)
        };
        let now = Instant::now();
        let pending = self
            .coord
            .pending
            .values()
            .map(|p| {
                super::view::PendingCheckpointView {
                    id: p.id,
                    mode: p.mode.flink_name().into(),
                    acks: p.acks.len(),
                    total: p.expected.len(),
                    missing: p.missing().iter().map(|t| t.to_string()).collect(),
                    // Filled in live by the view: alignment changes without the JobManager hearing of it.
                    aligning: Vec::new(),
                    persisting: Vec::new(),
                    elapsed_ms: now.duration_since(p.triggered).as_millis() as u64,
                }
            })
            .collect();
        let snap = JmSnapshot {
            status: self.status,
            attempt: self.attempt,
            restarts: self.restarts,
            failure: self.failure.clone(),
            restore_failure: self.restore_failure.clone(),
            missing_slots: self.missing_slots,
            restart_at: self.restart_at,
            tms: visible.iter().map(|&i| &self.tms[i]).map(|t| (t.name.clone(), t.alive, t.lost, t.slots, t.killed_at)).collect(),
            tasks: d
                .map(|d| d.tasks.iter().map(|t| (t.task, shown_at(t.tm), t.handle.is_some() && d.running.contains(&t.task))).collect())
                .unwrap_or_default(),
            channels: d.map(|d| d.channels.clone()).unwrap_or_default(),
            keyed_views: d.map(|d| d.keyed_views.clone()).unwrap_or_default(),
            sink_view: d.map(|d| d.sink_view.clone()),
            progress: d.map(|d| d.progress.clone()).or_else(|| self.last_progress.clone()),
            pending,
            pending_triggered: self.coord.pending.values().map(|p| p.triggered).collect(),
            history: self.coord.history.iter().cloned().collect(),
            counts: self.coord.counts,
            config: self.cfg.clone(),
            heartbeat_timeout: self.cfg.heartbeat_timeout,
        };
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
    }
}

/// A checkpoint's channel state for a job of parallelism `p`: as it is when the parallelism is
/// the one it was taken with; otherwise each counter's in-flight records go to the subtask that
/// now owns their key group (Flink redistributes unaligned channel state on rescaling too), in
/// their order, and the sink's stay the sink's.
fn rescale_channel_state(m: &crate::state::storage::CheckpointMetadata, p: usize) -> Vec<crate::state::storage::TaskChannelState> {
    use crate::state::storage::TaskChannelState;
    let taken_with = m.job.as_ref().map_or(m.keyed.len(), |j| j.parallelism);
    if taken_with == p || m.channel_state.is_empty() {
        return m.channel_state.clone();
    }
    let mut counters: Vec<TaskChannelState> = (0..p).map(|j| TaskChannelState { task: TaskId::Counter(j), records: Vec::new() }).collect();
    let mut out = Vec::new();
    let mut old: Vec<&TaskChannelState> = m.channel_state.iter().collect();
    old.sort_by_key(|c| c.task);
    for c in old {
        match c.task {
            TaskId::Counter(_) => {
                for r in &c.records {
                    let owner = crate::keygroup::operator_index(crate::keygroup::key_group(&r.record.key), p);
                    let mut r = r.clone();
                    r.channel = r.channel.min(p - 1);
                    counters[owner].records.push(r);
                }
            }
            _ => out.push(c.clone()),
        }
    }
    out.extend(counters.into_iter().filter(|c| !c.records.is_empty()));
    out
}

/// `counter[1]` -> `("counter", 1)`: a channel end's operator and subtask index.
fn subtask_of(name: &str) -> Option<(&str, usize)> {
    let (op, rest) = name.split_once('[')?;
    Some((op, rest.strip_suffix(']')?.parse().ok()?))
}
