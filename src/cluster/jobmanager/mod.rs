//! The JobManager: one actor that owns the task managers, the job's deployment, the checkpoint
//! coordinator and the restart strategy. Users' commands and tasks' reports come in on channels;
//! timers (a silent task manager's detection, restart delays, checkpoint triggers and expiries)
//! are computed as the next deadline, so an idle cluster sleeps.

mod checkpoints;
mod deployment;
mod taskmanagers;
mod view;

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::channel::{channel, ChannelStats};
use super::coordinator::{AckOutcome, CheckpointCoordinator, CheckpointPlan, CheckpointStats, CompletionPlan};
use super::coordinator::{CompletedCheckpoint, ExternalSnapshot, FinalizeError};
use super::counter::{AuditBaseline, AuditScope, Counter};
use super::element::Barrier;
use super::failure::{CheckpointFailureReason, FailureCause};
use super::heartbeat::{HeartbeatOptions, Schedule};
use super::gate::InputGate;
use super::restart::{strategy_name, RestartDecision, RestartState};
use super::runner::{OperatorRunner, TaskRunView};
use super::sink::SinkOperator;
use super::source_task::SourceTask;
use super::task::{AttemptProgress, DeclineReason, RuntimeKnobs, TaskContext, TaskControl, TaskReport, TaskState};
use super::view::JobStatus;
use crate::audit::Auditor;
use crate::config::{parse_loose_value, Config, ConfigLayers, OffsetReset, SeedBackend, DELAYS_TABLE, SCHEMA};
use crate::connectors::commit_log::CommitLog;
use crate::connectors::sink::OutputLine;
use crate::connectors::Topic;
use crate::events::{Event, EventBus};
use crate::keygroup::key_group_range;
use crate::state::create_backend;
use crate::state::shared::SharedStateRegistry;
use crate::state::storage::{CheckpointMetadata, CheckpointStorage, SnapshotKind};
use crate::state::SavepointFormat;
use crate::types::{CheckpointOptions, PersistedRecord, TaskId};
use deployment::Deployment;
use taskmanagers::TaskManagerState;

/// What a user (TUI key, scenario step) asks of the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Kill a task manager's process: RPCs to it fail at once, its connections break.
    KillTaskManager(String),
    /// Kill a task manager at the moment that hurts a two-phase-commit sink: when the next
    /// checkpoint completes, after its `_metadata` is written and before the notification
    /// reaches that task manager's tasks. Its sink then dies with a pre-committed transaction
    /// that the completed checkpoint holds and nobody committed; the restore must commit it.
    KillBeforeCommit(String),
    /// A task manager stops answering, its process and connections stay (only the heartbeat
    /// timeout finds it).
    HangTaskManager(String),
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
    /// Switch to one of the seed's state backends (memory, fs, rocksdb) as a Flink user does: a
    /// stop-with-savepoint in canonical format, then the job submitted again on the new backend,
    /// restoring that savepoint (a checkpoint restores only into the backend that wrote it).
    SwitchBackend(SeedBackend),
    /// Take a savepoint into `execution.checkpointing.savepoint-dir` in `format` (Flink's
    /// `--type`); `stop`: then stop the job (Flink's stop-with-savepoint: the job ends FINISHED).
    TriggerSavepoint {
        stop: bool,
        format: SavepointFormat,
    },
}

/// What a refusal of a command names, so that whoever gave the command (a scenario step) knows
/// it was refused: `kill`, `start`, `resubmit` and `backend` are the key of
/// [`Event::ConfigRejected`] (a refused option names its own key; `hang` too), `checkpoint` is a
/// [`Event::CheckpointTriggerRefused`], `generate` a [`Event::GeneratorStopped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumString, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Refusable {
    Kill,
    Hang,
    Start,
    Resubmit,
    Backend,
    Checkpoint,
    Generate,
}

/// The snapshot of another run this job was started from (`execution.state-recovery.path`).
#[derive(Debug, Clone)]
pub struct RestoredFrom {
    /// The path as the user gave it.
    pub path: String,
    pub found: crate::state::storage::FoundSnapshot,
    /// Whether its auditor record judges this run whole, or the verdict starts at its point.
    pub judged: crate::audit::RestoreJudged,
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
    pub tms: Vec<TaskManagerRow>,
    pub tasks: Vec<TaskRow>,
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
    /// The JobManager's heartbeat requests, for the countdown of failed RPCs.
    pub heartbeat: Option<Schedule>,
}

impl JmSnapshot {
    /// Before the JobManager's first turn: a CREATED job with nothing deployed.
    pub(crate) fn created(cfg: &Config) -> Self {
        JmSnapshot {
            status: JobStatus::Created,
            attempt: 0,
            restarts: 0,
            failure: None,
            restore_failure: None,
            missing_slots: 0,
            restart_at: None,
            tms: Vec::new(),
            tasks: Vec::new(),
            channels: Vec::new(),
            keyed_views: Vec::new(),
            sink_view: None,
            progress: None,
            pending: Vec::new(),
            pending_triggered: Vec::new(),
            history: Vec::new(),
            counts: Default::default(),
            heartbeat_timeout: cfg.heartbeat_timeout,
            heartbeat: None,
            config: cfg.clone(),
        }
    }
}

/// A task manager in a [`JmSnapshot`] (lost incarnations a newer one replaced are left out).
pub(crate) struct TaskManagerRow {
    pub name: String,
    /// Why it stopped answering, if it did.
    pub silence: Option<super::heartbeat::Silence>,
    /// The JobManager declared it lost.
    pub lost: bool,
    pub slots: usize,
    /// Silent and not yet lost: when the JobManager finds out, and how.
    pub loss: Option<(super::heartbeat::Detection, Instant)>,
}

/// A deployed subtask in a [`JmSnapshot`].
pub(crate) struct TaskRow {
    pub task: TaskId,
    /// The index of its task manager's row in [`JmSnapshot::tms`].
    pub tm: usize,
    /// Deployed and reported RUNNING.
    pub running: bool,
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
    /// The heartbeat requests to the task managers: from the JobManager's start, every
    /// `heartbeat.interval` (HeartbeatManagerSenderImpl.java:77, :82-90).
    heartbeat: Schedule,
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
    /// Since when the job's tasks wait SCHEDULED for slots (`slot.request.timeout` counts from
    /// here); `None` while they have theirs or no restart has run yet.
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
    /// A stop-with-savepoint completed and the job waits for its tasks to finish.
    stopping: Option<Stopping>,
    /// A backend change under way: the job stops with a canonical savepoint, then is submitted
    /// again on the new backend from it.
    backend_change: Option<BackendChange>,
    /// A task manager to kill when the next checkpoint completes, before it is notified
    /// ([`Command::KillBeforeCommit`]).
    kill_before_commit: Option<String>,
    /// The savepoint the job last stopped with (id, path): `resubmit` of the FINISHED job
    /// restores it, as `flink run -s PATH` does after `flink stop`.
    stopped_with: Option<(u64, String)>,
}

/// A backend switch between its stop-with-savepoint and the new submission.
struct BackendChange {
    /// The canonical stop-with-savepoint's id, and its directory once it completed.
    savepoint: u64,
    dir: Option<PathBuf>,
    /// The backend asked for. The new submission's configuration is
    /// built from the job's layers when it is submitted, not when the switch was asked for: a
    /// key set while the stop-with-savepoint ran (a timeout, the tolerable failures) holds for
    /// the new job as it would for `flink run -s` with the configuration of that moment.
    backend: SeedBackend,
    from: String,
    to: String,
}

/// A stop-with-savepoint whose savepoint completed: the tasks that confirmed its notification
/// so far (the job is FINISHED when all have, StopWithSavepointTerminationHandlerImpl's
/// SavepointCreated state).
struct Stopping {
    savepoint: u64,
    path: String,
    finished: std::collections::HashSet<TaskId>,
}

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
                .with_savepoint_dir(&cfg.checkpointing.savepoint_dir)
                .with_behaviour(cfg.lab.storage),
        );
        let committed = Arc::new(AtomicU64::new(0));
        let mut coord = CheckpointCoordinator::new();
        if let Some(r) = &restored_from {
            // What the job that took the snapshot committed, in this process or another: those
            // of its transactions are not committed again (the new job's are all newer).
            let m = &r.found.metadata;
            match CommitLog::of(&m.job_id).map(|log| log.read()) {
                Some(Ok(Some(done))) => committed.store(done.min(m.checkpoint), std::sync::atomic::Ordering::Release),
                Some(Err(e)) => tracing::warn!(error = %e, "the snapshot's transaction log cannot be read: its staged transactions are committed again"),
                Some(Ok(None)) | None => {}
            }
            let owned = cfg.recovery.claim == crate::config::ClaimMode::Claim;
            let mut metadata = r.found.metadata.clone();
            if owned && cfg.backend.shares_files_across_checkpoints() {
                // The job owns a claimed checkpoint: its files (RocksDB's SSTs) become this job's shared files.
                let adopted = storage.adopt_claimed_shared(&mut metadata);
                tracing::debug!(files = adopted.len(), "claimed checkpoint's shared files adopted");
            }
            coord.restore_external(metadata, ExternalSnapshot { dir: r.found.dir.clone(), owned });
        }
        let cfg_interval = cfg.heartbeat_interval;
        let tms = (1..=cfg.taskmanagers).map(|i| TaskManagerState::new(super::taskmanager::name(i), 1, cfg.slots_per_tm)).collect();
        let tm_root = cfg.tm_dir.join(format!("{TM_ROOT_PREFIX}{}", &job_id[..12.min(job_id.len())]));
        // Best effort: only RocksDB writes there, and it reports its own errors.
        if std::fs::create_dir_all(&tm_root).is_ok() {
            let _ = crate::workdir::mark_owner(&tm_root);
        }
        let mut shared = SharedStateRegistry::new(storage.job_dir.as_ref().map(|d| d.join("shared")));
        // The adopted files of a claimed checkpoint are referenced by it until it is subsumed.
        if let Some(c) = coord.latest().filter(|c| c.external.as_ref().is_some_and(|e| e.owned)) {
            shared.register(&c.metadata.keyed);
        }
        JobManager {
            shared,
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
            committed,
            snapshot,
            tms,
            heartbeat: Schedule { start: Instant::now(), interval: cfg_interval },
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
            // Judged from the restored point on: the counters hear counts above the restored ones.
            audit_baseline: restored_from
                .as_ref()
                .filter(|r| r.judged != crate::audit::RestoreJudged::Whole)
                .map(|_| Arc::default()),
            restored_from,
            savepoints: std::collections::HashMap::new(),
            stopping: None,
            backend_change: None,
            kill_before_commit: None,
            stopped_with: None,
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
            let mut note = match &r.judged {
                crate::audit::RestoreJudged::Whole => String::from(
                    "the verdict judges the whole counts: the snapshot's auditor record carries what its state holds",
                ),
                crate::audit::RestoreJudged::FromRestoredPoint(why) => format!(
                    "the verdict judges from the restored point on ({why}): the restored counts are taken as given, and only records after its offsets are checked"
                ),
            };
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
            // The job's cancellation: every task ends, closing its operators (the Kafka sink's
            // writer aborts its open transaction) before the job counts as cancelled, as Flink's
            // CANCELED waits for every task's end.
            let tms = &self.tms;
            for cancelled in d.abort_all(|tm| tms[tm].answers()) {
                let _ = cancelled.await;
            }
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
            let own: Vec<_> = self.coord.retained().filter(|c| c.external.is_none()).map(|c| c.metadata.clone()).collect();
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
        for c in self.coord.take_retained() {
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

    pub(super) fn heartbeat_options(&self) -> HeartbeatOptions {
        HeartbeatOptions {
            interval: self.heartbeat.interval,
            timeout: self.cfg.heartbeat_timeout,
            rpc_failure_threshold: self.cfg.heartbeat_rpc_failure_threshold,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines = Vec::new();
        deadlines.extend((0..self.tms.len()).filter_map(|i| self.loss_of(i)).map(|(_, at)| at));
        deadlines.extend(self.restart_at);
        deadlines.extend(self.deploy_failure.as_ref().map(|(at, _)| *at));
        deadlines.extend(self.waiting_since.map(|w| w + self.cfg.slot_request_timeout));
        if self.status == JobStatus::Running {
            deadlines.extend(self.next_trigger);
        }
        deadlines.extend(self.coord.next_expiry(self.cfg.checkpointing.timeout));
        deadlines.into_iter().min()
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        for i in 0..self.tms.len() {
            if let Some((detection, _)) = self.loss_of(i).filter(|(_, at)| *at <= now) {
                self.tm_lost(i, detection);
            }
        }
        if self.deploy_failure.as_ref().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, cause)) = self.deploy_failure.take() {
                self.failover(cause);
            }
        }
        if self.waiting_since.is_some_and(|w| w + self.cfg.slot_request_timeout <= now) {
            self.waiting_since = None;
            let cause = FailureCause::SlotRequestTimeout { timeout: self.cfg.slot_request_timeout, missing: self.missing_slots };
            self.failover(cause);
        }
        if self.restart_at.is_some_and(|r| r <= now) {
            self.restart_at = None;
            self.try_deploy();
        }
        let timeout = self.cfg.checkpointing.timeout;
        for id in self.coord.expired(timeout, now) {
            self.fail_checkpoint(id, CheckpointFailureReason::Expired { timeout });
        }
        if self.status == JobStatus::Running && self.next_trigger.is_some_and(|t| t <= now) {
            self.periodic_trigger();
        }
    }

    // ---- commands -------------------------------------------------------------------------

    fn on_command(&mut self, c: Command) {
        match c {
            Command::KillTaskManager(name) => self.kill(&name),
            Command::KillBeforeCommit(name) => self.arm_kill_before_commit(name),
            Command::HangTaskManager(name) => self.hang(&name),
            Command::StartTaskManager(name) => self.start_tm(name),
            Command::TriggerCheckpoint => self.manual_trigger(),
            Command::Set { key, value } => self.set(&key, &value),
            Command::Resubmit => self.resubmit(),
            Command::SwitchBackend(backend) => self.switch_backend(backend),
            Command::TriggerSavepoint { stop, format } => {
                self.trigger_savepoint(stop, format);
            }
        }
    }

    fn reject(&self, key: &str, reason: String) {
        self.events.publish(Event::ConfigRejected { key: key.to_string(), reason });
    }

    /// A command refused: the event names it as [`Refusable`] does.
    fn refuse(&self, command: Refusable, reason: String) {
        self.reject(command.into(), reason)
    }

    fn manual_trigger(&mut self) {
        let refuse = |s: &Self, reason: String| s.events.publish(Event::CheckpointTriggerRefused { reason });
        if self.status != JobStatus::Running {
            return refuse(self, format!("the job is {}", self.status.label()));
        }
        if self.cfg.checkpointing.interval.is_none() {
            return refuse(self, "checkpointing is off (set an interval or a mode first)".into());
        }
        if self.coord.in_flight() >= self.max_concurrent() {
            // As Flink's CheckpointRequestDecider: the request waits for a free place, then runs
            // at once (min-pause holds back periodic checkpoints only).
            self.queued_trigger = true;
            self.events.publish(Event::CheckpointTriggerQueued { in_progress: self.coord.in_flight() });
            return;
        }
        self.trigger();
    }

    fn set(&mut self, key: &str, value: &str) {
        let runtime = SCHEMA.iter().find(|s| s.key == key).map(|s| s.runtime);
        let mut layers = self.layers.clone();
        if let Err(e) = layers.set_live(key, parse_loose_value(value), "runtime change") {
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
        self.storage.object_store().set(self.cfg.lab.storage);
        if delay {
            // A channel's latency changes for the buffers sent from now on (the workbench's
            // slow-channel key); the next deployment builds its channels from the new config.
            for c in self.deployment.iter().flat_map(|d| d.channels.iter()) {
                c.set_delay(self.cfg.extra_delay(c.from.parts(), c.to.parts()));
            }
        }
        if interval_changed {
            self.trigger_base = Instant::now();
        }
        self.schedule_next_trigger();
        self.events.publish(Event::ConfigChanged { key: key.to_string(), value: value.to_string() });
    }

    /// A backend change, as Flink users make one: Flink fixes the state backend when a job is
    /// submitted and restores a checkpoint or a native savepoint only into the backend that
    /// wrote it (StateUtil.java:152-154), so the job is stopped with a savepoint in canonical
    /// format (SavepointFormatType.java:32: "It lets you switch state backends") and submitted
    /// again on the new backend from it ([`Self::resubmit_on_new_backend`], once FINISHED). A job
    /// that runs no longer (FAILED, FINISHED) has nothing to stop: its next submission uses the
    /// new backend. One that is not yet or no longer RUNNING cannot take the savepoint: refused.
    fn switch_backend(&mut self, backend: SeedBackend) {
        let mut layers = self.layers.clone();
        if let Err(e) = layers.set_backend(backend.into(), "backend switch") {
            return self.refuse(Refusable::Backend, e.to_string());
        }
        let cfg = match layers.build() {
            Ok(c) => c,
            Err(e) => return self.refuse(Refusable::Backend, e.to_string()),
        };
        let (from, to) = (self.cfg.backend_label(), cfg.backend_label());
        if from == to {
            return self.refuse(Refusable::Backend, format!("already {to}"));
        }
        if let Some(c) = &self.backend_change {
            // Under way while its savepoint runs or the job stops; a failover meanwhile ended it.
            if self.savepoints.contains_key(&c.savepoint) || self.stopping.is_some() {
                return self.refuse(Refusable::Backend, format!("a switch to {} is under way (stop-with-savepoint {})", c.to, c.savepoint));
            }
            self.backend_change = None;
        }
        if matches!(self.status, JobStatus::Failed | JobStatus::Finished) {
            let note = format!("the job is {}: its next submission runs on {to}, from empty state", self.status.label());
            self.adopt_backend(layers, cfg);
            self.events.publish(Event::BackendSwitched { from, to, checkpoint: None, note });
            return;
        }
        if let Err(reason) = self.savepoint_refusal(true) {
            return self.refuse(Refusable::Backend, format!("a backend change stops the job with a canonical savepoint first, and {reason}"));
        }
        match self.trigger_savepoint(true, SavepointFormat::Canonical) {
            Some(savepoint) => self.backend_change = Some(BackendChange { savepoint, dir: None, backend, from, to }),
            None => self.refuse(Refusable::Backend, "its stop-with-savepoint (canonical) could not start: the job stays on this backend".into()),
        }
    }

    /// The configuration of another backend becomes the job's (its storage too).
    fn adopt_backend(&mut self, layers: ConfigLayers, cfg: Config) {
        self.storage = Arc::new(self.storage.with_kind(
            cfg.checkpointing.storage,
            &cfg.checkpointing.dir,
            &self.job_id,
            cfg.lab.jobmanager_max_state_size,
        ));
        self.shared.set_root(self.storage.job_dir.as_ref().map(|d| d.join("shared")));
        self.layers = layers;
        self.cfg = cfg;
    }

    /// The stop-with-savepoint of a backend change failed: the job fails over and stays on its
    /// backend (see [`Self::savepoint_failed`]).
    fn backend_change_failed(&mut self, savepoint: u64, reason: &str) {
        if let Some(c) = self.backend_change.take_if(|c| c.savepoint == savepoint) {
            self.refuse(
                Refusable::Backend,
                format!("stop-with-savepoint {savepoint} (canonical) failed: {reason}; the job fails over and stays on {}", c.from),
            );
        }
    }

    /// The job stopped with the backend change's canonical savepoint (FINISHED): it is submitted
    /// again on the new backend, restoring the savepoint as `flink run -s` does (under
    /// `execution.state-recovery.claim-mode`). The stopped job's checkpoints go, as a FINISHED
    /// job's do.
    fn resubmit_on_new_backend(&mut self) {
        let Some(change) = self.backend_change.take() else { return };
        let Some(dir) = change.dir else { return };
        let id = change.savepoint;
        // Today's layers with the new backend: what was set since the switch was asked for stays.
        let mut layers = self.layers.clone();
        let cfg = match layers.set_backend(change.backend.into(), "backend switch").and_then(|()| layers.build()) {
            Ok(cfg) => cfg,
            Err(e) => {
                return self.refuse(Refusable::Backend, format!("the job cannot be submitted on {}: {e}; it stays FINISHED", change.to))
            }
        };
        let found = match self.find_restorable(&dir, &cfg) {
            Ok(f) => f,
            Err(e) => {
                return self.refuse(Refusable::Backend, format!("savepoint {id} cannot be restored on {}: {e}; the job stays FINISHED", change.to))
            }
        };
        for c in self.coord.take_retained() {
            self.drop_checkpoint(&c);
        }
        self.adopt_backend(layers, cfg);
        let note = format!(
            "stop-with-savepoint (canonical) -> resubmit on {} from savepoint {id} ({})",
            change.to,
            found.dir.display()
        );
        self.restore_as_new_job(found);
        self.events.publish(Event::BackendSwitched { from: change.from, to: change.to, checkpoint: Some(id), note });
        self.events.publish(Event::JobSubmitted { job_id: self.job_id.clone(), name: self.cfg.job.name.clone() });
        self.status = JobStatus::Created;
        self.try_deploy();
    }

    fn resubmit(&mut self) {
        if self.status == JobStatus::Finished {
            return self.resubmit_from_savepoint();
        }
        if self.status != JobStatus::Failed {
            return self.refuse(
                Refusable::Resubmit,
                format!("the job is {}: a job is submitted again once it FAILED, or FINISHED with a stop-with-savepoint", self.status.label()),
            );
        }
        // A resubmitted job is a new job: it sees none of the old one's checkpoints.
        for c in self.coord.take_retained() {
            self.drop_checkpoint(&c);
        }
        // Nor the snapshot it was restored from: the verdict covers everything again.
        self.audit_baseline = None;
        self.coord.new_job();
        self.restart = RestartState::default();
        self.failure = None;
        self.restore_failure = None;
        self.events.publish(Event::JobSubmitted { job_id: self.job_id.clone(), name: self.cfg.job.name.clone() });
        self.try_deploy();
    }

    /// The job FINISHED with a stop-with-savepoint: it is submitted again restoring that
    /// savepoint, as `flink run -s PATH` after `flink stop` (under
    /// `execution.state-recovery.claim-mode`), on today's configuration. The stopped job's
    /// checkpoints go, as a FINISHED job's do; the auditor goes on from the savepoint's shadow,
    /// so the verdict stays whole.
    fn resubmit_from_savepoint(&mut self) {
        let Some((id, path)) = self.stopped_with.clone() else {
            return self.refuse(Refusable::Resubmit, "the job FINISHED without a stop-with-savepoint: there is no savepoint to restore".into());
        };
        let found = match self.find_restorable(std::path::Path::new(&path), &self.cfg) {
            Ok(f) => f,
            Err(e) => return self.refuse(Refusable::Resubmit, format!("savepoint {id} cannot be restored: {e}; the job stays FINISHED")),
        };
        for c in self.coord.take_retained() {
            self.drop_checkpoint(&c);
        }
        self.auditor.checkpoint_completed(id);
        self.stopped_with = None;
        self.restore_as_new_job(found);
        self.events.publish(Event::JobSubmitted { job_id: self.job_id.clone(), name: self.cfg.job.name.clone() });
        self.events.publish(Event::RestoredFromSnapshot {
            path: path.clone(),
            checkpoint: id,
            kind: "savepoint".into(),
            from_parallelism: self.cfg.job.parallelism,
            to_parallelism: self.cfg.job.parallelism,
            claim_mode: self.cfg.recovery.claim.flink_name().into(),
            note: "resubmitted after its stop-with-savepoint, as `flink run -s PATH` after `flink stop`".into(),
        });
        self.status = JobStatus::Created;
        self.try_deploy();
    }

    /// The savepoint in `dir`, if a job configured as `cfg` can restore it.
    fn find_restorable(&self, dir: &std::path::Path, cfg: &Config) -> Result<crate::state::storage::FoundSnapshot, crate::state::storage::RestoreError> {
        let shape = crate::state::storage::JobShape::of(cfg, self.topic.partitions());
        off_worker(|| crate::state::storage::find_snapshot(dir))
            .and_then(|found| crate::state::storage::check_compatible(&found, &shape).map(|()| found))
    }

    /// A new job that restores `found` first (owned under CLAIM), with a fresh restart strategy
    /// and no failure: the resubmissions after a stop-with-savepoint.
    fn restore_as_new_job(&mut self, found: crate::state::storage::FoundSnapshot) {
        let owned = self.cfg.recovery.claim == crate::config::ClaimMode::Claim;
        self.coord.restore_external(found.metadata, ExternalSnapshot { dir: found.dir, owned });
        self.coord.new_job();
        self.restart = RestartState::default();
        self.failure = None;
        self.restore_failure = None;
    }

    // ---- reports --------------------------------------------------------------------------

    fn on_report(&mut self, r: TaskReport) {
        let current = self.deployment.as_ref().map(|d| d.attempt);
        let attempt = match &r {
            TaskReport::Running { attempt, .. }
            | TaskReport::Ack { attempt, .. }
            | TaskReport::Decline { attempt, .. }
            | TaskReport::Failed { attempt, .. }
            | TaskReport::Finished { attempt, .. }
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
            TaskReport::Finished { task, .. } => {
                let tasks = self.deployment.as_ref().map_or(0, |d| d.tasks.len());
                let Some(stopping) = self.stopping.as_mut() else { return };
                stopping.finished.insert(task);
                if stopping.finished.len() == tasks {
                    // Every task handled the savepoint's notification (a sink committed): FINISHED.
                    self.stopped_with = Some((stopping.savepoint, stopping.path.clone()));
                    self.stopping = None;
                    self.cancel_attempt(CheckpointFailureReason::CoordinatorSuspend { why: "job stopped with a savepoint".into() });
                    self.status = JobStatus::Finished;
                    self.events.publish(Event::JobFinished { reason: "stopped with a savepoint".into() });
                    self.resubmit_on_new_backend();
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::BackendKind;
    use crate::events::Stamped;

    /// A JobManager of the built-in job with `sets` (`key=value`) on top, not running: a test
    /// calls its methods and reads its fields and the events it published. Its task managers'
    /// directories are in a temporary directory that lives as long as the fixture.
    pub(crate) struct Fixture {
        pub jm: JobManager,
        events: mpsc::UnboundedReceiver<Stamped>,
        _dir: tempfile::TempDir,
    }

    impl Fixture {
        pub fn new(sets: &[&str]) -> Fixture {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let mut layers = ConfigLayers::builtin();
            for (key, sub) in [("taskmanager.tmp-dirs", "tm"), ("execution.checkpointing.dir", "checkpoints"), ("execution.checkpointing.savepoint-dir", "savepoints")] {
                layers.set(&format!("{key}={}", dir.path().join(sub).display()), "test").expect(key);
            }
            for s in sets {
                layers.set(s, "test").expect(s);
            }
            let cfg = layers.build().expect("a valid configuration");
            let bus = EventBus::new(Instant::now());
            let events = bus.subscribe();
            let topic = crate::connectors::EmbeddedTopic::new(&cfg.source.topic, cfg.source.partitions, bus.clone()) as Arc<dyn Topic>;
            let auditor = Arc::new(Auditor::new(cfg.lab.audit, topic.clone(), cfg.job.parallelism, cfg.job.key_by));
            let knobs = RuntimeKnobs::new(cfg.lab.hop_delay, cfg.buffer_timeout);
            let snapshot = Arc::new(Mutex::new(JmSnapshot::created(&cfg)));
            let output = Arc::new(Mutex::new(VecDeque::new()));
            let jm = JobManager::new(knobs, layers, cfg, "0".repeat(32), bus, topic, auditor, output, snapshot, None);
            Fixture { jm, events, _dir: dir }
        }

        /// The events published since the last call.
        pub fn events(&mut self) -> Vec<Event> {
            std::iter::from_fn(|| self.events.try_recv().ok()).map(|s| s.event).collect()
        }

        /// The reasons of the refusals of `command` published since the last call.
        pub fn refusals(&mut self, command: Refusable) -> Vec<String> {
            let key: &str = command.into();
            self.events()
                .into_iter()
                .filter_map(|e| match e {
                    Event::ConfigRejected { key: k, reason } if k == key => Some(reason),
                    _ => None,
                })
                .collect()
        }
    }

    /// Catches: a switch to the backend the job already runs on that stops the job with a
    /// savepoint anyway (a needless restart).
    #[test]
    fn a_switch_to_the_running_backend_is_refused() {
        let mut f = Fixture::new(&[]);
        f.jm.on_command(Command::SwitchBackend(SeedBackend::Memory));
        assert_eq!(f.refusals(Refusable::Backend), ["already hashmap + jobmanager (MemoryStateBackend)"]);
        assert!(f.jm.backend_change.is_none());
    }

    /// Catches: a switch of a FAILED job that waits for a stop-with-savepoint no task can take,
    /// or that announces the switch without adopting the backend and its storage.
    #[test]
    fn a_failed_job_switches_backend_for_its_next_submission() {
        let mut f = Fixture::new(&[]);
        f.jm.status = JobStatus::Failed;
        f.jm.on_command(Command::SwitchBackend(SeedBackend::RocksDb));
        assert_eq!((f.jm.cfg.backend, f.jm.cfg.checkpointing.storage), SeedBackend::RocksDb.pair());
        assert_eq!(f.jm.storage.kind, crate::config::StorageKind::Filesystem, "its storage follows");
        let switched: Vec<_> = f
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::BackendSwitched { to, checkpoint, .. } => Some((to, checkpoint)),
                _ => None,
            })
            .collect();
        assert_eq!(switched, [("rocksdb + filesystem (RocksDBStateBackend)".to_string(), None)]);
        assert!(f.jm.backend_change.is_none(), "no savepoint to wait for");
    }

    /// Catches: a switch of a job that is not running which triggers a savepoint anyway (it
    /// would wait for barriers no task sends, and the job would never move).
    #[test]
    fn a_switch_before_the_job_runs_is_refused_with_the_savepoint_s_reason() {
        let mut f = Fixture::new(&[]);
        f.jm.on_command(Command::SwitchBackend(SeedBackend::Fs));
        assert_eq!(
            f.refusals(Refusable::Backend),
            ["a backend change stops the job with a canonical savepoint first, and the job is CREATED"]
        );
        assert_eq!(f.jm.cfg.backend, BackendKind::HashMap, "the job stays on its backend");
        assert_eq!(f.jm.cfg.checkpointing.storage, crate::config::StorageKind::JobManager);
    }

    /// Catches: a resubmission that restores a directory holding no snapshot (or one of
    /// another job's shape) instead of refusing it.
    #[test]
    fn find_restorable_refuses_what_is_not_a_snapshot_of_this_job() {
        let f = Fixture::new(&[]);
        let empty = tempfile::tempdir().expect("a temporary directory");
        let e = f.jm.find_restorable(empty.path(), &f.jm.cfg).unwrap_err();
        assert!(matches!(e, crate::state::storage::RestoreError::NotASnapshot { .. }), "{e}");
    }
}
