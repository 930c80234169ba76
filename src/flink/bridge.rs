//! Plays one scenario on ckptlab and on Flink at once, step by step, and judges both.
//!
//! The Flink job starts first (a JVM takes seconds); when all its tasks run, ckptlab's engine
//! starts on the same partition files and the steps play: produce and generate go only through
//! ckptlab (into the shared files, which the Flink source tails); kill, start and checkpoint go
//! to both engines at the same moment; an `await` waits for the condition on both; an `expect`
//! is judged on both, the Flink side by [`super::verdict`] against the records in the log. At
//! the end both sides' figures (outcome, recovery, restarts, checkpoints by outcome and failure
//! reason, median checkpoint duration) go to [`super::compare`], which says AGREE or DISAGREE.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::cluster::{ClusterError, ClusterGuard, ClusterSpec, LocalCluster, ProcState, Starter};
use super::compare::{self, Comparison, Side};
use super::harness::{self, FlinkCheckpoint, FlinkEvent, FlinkState, Harness, HarnessError, Timed, Verb};
use super::install::{self, InstallError, InstallProgress};
use super::options::{self, JobSpec};
use super::session::{self, ClusterJob, ClusterSummary};
use super::timeline::{self, Timeline};
use super::verdict::{self, LogTruth, TruthError};
use crate::audit::Verdict;
use crate::cluster::coordinator::CheckpointStatus;
use crate::cluster::{taskmanager, Engine, EngineError};
use crate::config::{Config, ConfigError, ConfigLayers};
use crate::events::{EventBus, Stamped};
use crate::scenario::{await_condition, Action, AwaitCondition, Figure, Flow, Player, RunReport, Scenario, ScenarioError};
use crate::workdir::WorkDirError;

/// How long the Flink job may take to have every task running after the JVM starts.
const FLINK_START_TIMEOUT: Duration = Duration::from_secs(180);
/// The Flink side is caught up when its readers are at the end of every partition, the sink has
/// received every record the sources emitted, and nothing was read or written for this long.
const FLINK_QUIET: Duration = Duration::from_millis(300);
/// How often an await looks at the Flink side.
const POLL: Duration = Duration::from_millis(20);
/// How long the JVM may take to cancel the job and exit before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// Run directories kept under `<ckptlab home>/flink-runs`.
const RUNS_KEPT: usize = 5;
/// How many state lines the end of a run waits for the print output to match the sink's report.
const OUTPUT_CHECKS: usize = 20;
/// How long, beyond the checkpoint interval, the bridge waits for Flink's first checkpoint
/// before ckptlab starts.
const FLINK_WARM_UP: Duration = Duration::from_secs(10);
/// How long the end of a run gives each side to catch up after the last step before judging it
/// (a side still behind then is "not caught up", and its lost is not judged).
const FINAL_CATCH_UP: Duration = Duration::from_secs(3);
/// A failed checkpoint whose reason was not recorded.
const UNKNOWN_REASON: &str = "UNKNOWN";

#[derive(Debug, Error)]
pub enum BridgeError {
    /// A step or option Flink cannot do; names the file and line.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    WorkDir(#[from] WorkDirError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The partition files the Flink side is judged against could not be read.
    #[error(transparent)]
    Truth(#[from] TruthError),
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the Flink job did not start: {why} (see {} and {})", output.display(), log.display())]
    NotStarted { why: String, output: PathBuf, log: PathBuf },
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Where the Flink side runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A MiniCluster in one JVM (the harness): a kill is `terminateTaskManager`.
    MiniCluster,
    /// ckptlab's local session cluster of processes (`ckptlab flink cluster`): a kill is SIGKILL
    /// to the TaskManager's JVM, a hang SIGSTOP; one is started for the run (and stopped at its
    /// end) unless `ckptlab flink cluster start` left one running.
    Local,
}

/// The Flink side, on either target: the same state, events and commands.
enum Flink {
    Mini(Harness),
    Cluster(ClusterJob),
}

impl Flink {
    fn state(&self) -> (FlinkState, u64) {
        match self {
            Flink::Mini(h) => h.state(),
            Flink::Cluster(c) => c.state(),
        }
    }

    fn history(&self) -> Vec<Timed> {
        match self {
            Flink::Mini(h) => h.history(),
            Flink::Cluster(c) => c.history(),
        }
    }

    fn gone(&self) -> Option<String> {
        match self {
            Flink::Mini(h) => h.gone(),
            Flink::Cluster(c) => c.gone(),
        }
    }

    fn send(&mut self, command: &str) -> Result<(), HarnessError> {
        match self {
            Flink::Mini(h) => h.send(command),
            Flink::Cluster(c) => c.send(command),
        }
    }

    fn shutdown(self, grace: Duration) {
        match self {
            Flink::Mini(h) => h.shutdown(grace),
            Flink::Cluster(c) => c.shutdown(grace),
        }
    }

    /// How often a fresh state comes.
    fn report_every(&self) -> Duration {
        match self {
            Flink::Mini(_) => Harness::REPORT_EVERY,
            Flink::Cluster(_) => session::POLL,
        }
    }
}


fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BridgeError {
    let path = path.to_path_buf();
    move |source| BridgeError::Io { what, path, source }
}

/// The Flink side's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlinkReport {
    pub passed: bool,
    pub failures: Vec<String>,
    /// The verdict at the end; before the job caught up a shortfall is `in_flight`, not `lost`.
    pub verdict: Verdict,
    /// At the end the job ran every task, had read the whole log and processed it.
    pub caught_up: bool,
    /// Flink's numRestarts.
    pub restarts: u64,
    pub checkpoints_completed: u64,
    pub checkpoints_failed: u64,
    /// Lines the sink wrote (replays included).
    pub output_lines: u64,
    pub status: String,
    /// Job status changes, checkpoints, restarts, task managers, refusals, in order.
    pub history: Vec<Timed>,
    pub flink_version: String,
    /// Where Flink's jars came from.
    pub jars: String,
    /// `expect` figures the Flink side does not measure (not judged there).
    pub not_measured: Vec<String>,
    /// `MiniCluster` or `local cluster`.
    #[serde(default)]
    pub target: String,
    /// On the local cluster: its address and processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterSummary>,
}

/// Where the time went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total_ms: u64,
    /// The first-use install of Flink's jars (none when they were there).
    pub install_ms: Option<u64>,
    /// Compiling the harness (0 when cached).
    pub compile_ms: u64,
    /// From starting the JVM to every task of the Flink job running.
    pub flink_start_ms: u64,
    /// Playing the steps on ckptlab (its awaits included).
    pub ckptlab_steps_ms: u64,
    /// What awaits waited for Flink after ckptlab had got there.
    pub flink_extra_wait_ms: u64,
    /// Cancelling the Flink job and stopping the JVM (on the local cluster: the cluster too when
    /// the run started it).
    pub flink_stop_ms: u64,
    /// Starting the local cluster until every TaskManager registered (None: not started by the run).
    #[serde(default)]
    pub cluster_start_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BridgeReport {
    pub scenario: String,
    pub file: String,
    pub ckptlab: RunReport,
    pub flink: FlinkReport,
    /// Both engines' figures side by side over the same window (from ckptlab's start to the end
    /// of the run), and AGREE or DISAGREE by the rule it states.
    pub comparison: Comparison,
    /// Every `expect` held on both engines.
    pub passed: bool,
    /// How ckptlab's lab options are emulated on Flink, and options that differ from Flink's defaults.
    pub notes: Vec<String>,
    pub flink_options: Vec<(String, String)>,
    pub timings: Timings,
    /// The partition files, job.properties, flink.log and the sink's output.
    pub run_dir: String,
    /// On the local cluster: what happened after each kill or hang, on Flink and in ckptlab's model.
    #[serde(default)]
    pub timeline: Vec<Timeline>,
    /// What the Flink side did for each savepoint, resubmit, switch-backend and `set` step (Flink
    /// applies configuration at submission: a stop-with-savepoint and a new job from it).
    #[serde(default)]
    pub flink_resubmissions: Vec<String>,
}

/// Flink options that belong in the cluster's config.yaml, not the job's configuration: the
/// JobManager's and TaskManagers' heartbeats and the slot request timeout are read by the
/// processes when they start (HeartbeatManagerOptions, JobManagerOptions#SLOT_REQUEST_TIMEOUT).
fn cluster_options(flink: &[(String, String)]) -> Vec<(String, String)> {
    flink.iter().filter(|(k, _)| k.starts_with("heartbeat.") || k == "slot.request.timeout").cloned().collect()
}

/// The local cluster for a run: the running one `ckptlab flink cluster start` left, else a new one
/// (owned by the run). Blocking work off the runtime; progress narrated while the JVMs start.
async fn local_cluster(spec: &JobSpec, narrate: &mut impl FnMut(String)) -> Result<(ClusterGuard, Option<u64>), BridgeError> {
    if let Some(c) = LocalCluster::find()? {
        if c.jobmanager_state() == ProcState::Running {
            narrate(format!(
                "   using the running local cluster (REST {}, started by {}): its config.yaml holds, not the scenario's cluster options",
                c.rest_url(),
                c.file.started_for
            ));
            return Ok((ClusterGuard(Some(c)), None));
        }
    }
    let cspec = ClusterSpec {
        starter: Starter::Run,
        taskmanagers: spec.taskmanagers,
        slots: spec.slots,
        options: cluster_options(&spec.flink),
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let t = Instant::now();
    let mut h = tokio::task::spawn_blocking(move || {
        LocalCluster::start(&cspec, &mut |l| {
            let _ = tx.send(l);
        })
    });
    let result = loop {
        while let Ok(l) = rx.try_recv() {
            narrate(format!("   {l}"));
        }
        tokio::select! {
            r = &mut h => break r,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    };
    while let Ok(l) = rx.try_recv() {
        narrate(format!("   {l}"));
    }
    let cluster = result.map_err(|e| BridgeError::Refused(format!("the cluster start panicked: {e}")))??;
    Ok((ClusterGuard(Some(cluster)), Some(ms(t.elapsed()))))
}


fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// What a run says as it goes: its narration, or the install of Flink's jars (which a quiet run
/// still tells, since the first use waits minutes for it).
#[derive(Debug, Clone, PartialEq)]
pub enum Narration {
    /// A line per step and per Flink event worth saying.
    Line(String),
    Install(InstallProgress),
}

/// Runs `scenario` on both engines. `layers` is the configuration (the scenario's `[config]`
/// applied); `say` hears the narration as it goes.
pub async fn run(scenario: &Scenario, mut layers: ConfigLayers, target: Target, say: &mut impl FnMut(Narration)) -> Result<BridgeReport, BridgeError> {
    let t0 = Instant::now();
    let cfg0 = layers.build()?;
    scenario.check(&cfg0)?;
    if let Some(why) = options::refusal(scenario, &cfg0, target == Target::Local) {
        return Err(BridgeError::Refused(why));
    }
    let java = install::find_java()?;
    let jars = install::find_or_install_flink(&mut |p| say(Narration::Install(p)))?;
    let narrate = &mut |line: String| say(Narration::Line(line));
    let cache = install::cache_dir();
    std::fs::create_dir_all(&cache).map_err(io("create", &cache))?;
    let compile_start = Instant::now();
    let harness_dir = harness::compiled(&java, &jars, &cache)?;
    let compile_ms = ms(compile_start.elapsed());

    let home = crate::workdir::prepare_home()?;
    sweep_old_runs(&home.join("flink-runs"));
    let run_dir = home.join("flink-runs").join(format!(
        "run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
    ));
    let log_dir = run_dir.join("log");
    std::fs::create_dir_all(&log_dir).map_err(io("create", &log_dir))?;
    layers.set_value("source.embedded.dir", toml::Value::String(log_dir.display().to_string()), "ckptlab flink run")?;
    let cfg = layers.build()?;
    let spec = JobSpec::of(&cfg, &log_dir, &run_dir);
    let properties = run_dir.join("job.properties");
    std::fs::write(&properties, spec.to_properties()).map_err(io("write", &properties))?;
    let mut notes = spec.emulation_notes(&cfg);
    for (k, v, d) in options::differences_from_flink(&spec.flink, cfg.checkpointing.interval.is_some()) {
        notes.push(format!("{k} = {v} (Flink's default: {d})"));
    }

    let (mut flink, flink_start, cluster_start_ms) = match target {
        Target::MiniCluster => {
            narrate(format!(
                "   Flink {} ({}), Java {}: starting a MiniCluster with {} task managers x {} slot(s)",
                jars.version, jars.origin, java.major, spec.taskmanagers, spec.slots
            ));
            let flink_start = Instant::now();
            (Flink::Mini(Harness::spawn(&java, &jars, &harness_dir, &run_dir)?), flink_start, None)
        }
        Target::Local => {
            let (guard, started_ms) = local_cluster(&spec, narrate).await?;
            let jar = session::job_jar(&java, &harness_dir)?;
            narrate("   Flink: submitting the job through REST (/jars/upload, /jars/:id/run ckptlab.flink.CheckpointJob job.properties)".to_string());
            let flink_start = Instant::now();
            let props = properties.clone();
            let job = tokio::task::spawn_blocking(move || ClusterJob::submit(guard, &jar, &props))
                .await
                .map_err(|e| BridgeError::Refused(format!("the job submission panicked: {e}")))??;
            narrate(format!("   Flink: job {} submitted", job.job));
            (Flink::Cluster(job), flink_start, started_ms)
        }
    };
    if !await_flink(&flink, AwaitCondition::Running, FLINK_START_TIMEOUT, &Judge::new(&cfg, &log_dir, vec![]), 0).await {
        let why = flink.gone().unwrap_or_else(|| format!("not all tasks running after {}s", FLINK_START_TIMEOUT.as_secs()));
        tokio::task::spawn_blocking(move || flink.shutdown(SHUTDOWN_GRACE)).await.ok();
        return Err(BridgeError::NotStarted { why, output: run_dir.join(harness::OUTPUT_FILE), log: run_dir.join("flink.log") });
    }
    let flink_start_ms = ms(flink_start.elapsed());
    let from = if target == Target::Local { "submission" } else { "JVM start" };
    narrate(format!("   Flink: job running, every task ({:.1}s from {from})", flink_start_ms as f64 / 1000.0));
    // The first checkpoint in a fresh JVM loads classes and warms the JIT (600 ms where the next
    // takes 50): let it pass before ckptlab starts, so that the compared durations are Flink's
    // checkpointing, not its start. No record exists yet, so nothing else changes.
    if let Some(interval) = cfg.checkpointing.interval {
        let warm = Instant::now();
        if await_flink(&flink, AwaitCondition::CheckpointCompleted, interval + FLINK_WARM_UP, &Judge::new(&cfg, &log_dir, vec![]), 0).await {
            narrate(format!("   Flink: first checkpoint completed (+{:.1}s, the JVM warmed up)", warm.elapsed().as_secs_f64()));
        }
    }
    let start = verdict::log_truth(&log_dir, &cfg.source.topic, cfg.source.partitions, cfg.job.key_by, &[])?.lengths;
    let judge = Judge::new(&cfg, &log_dir, start);

    // The Flink side's configuration: a `set` or `switch-backend` changes it here, and the job is
    // submitted again with it (Flink applies configuration at submission).
    let bus = EventBus::new(tokio::time::Instant::now());
    let mut resubmit = Resubmission {
        layers: layers.clone(),
        spec: spec.clone(),
        jobs: 1,
        stopped_at: None,
        savepoint_dir: run_dir.join("savepoints"),
        said: Vec::new(),
        origin: Instant::now(),
        down_since: None,
        windows: Vec::new(),
        unaligned: vec![unaligned_enabled(&spec)],
    };
    // The model's own moments (failing, lost, restarting, running) for the timeline.
    let mut ckptlab_events = bus.subscribe();
    let engine = Engine::start(layers, bus)?;
    // Both sides are compared over the same window: Flink's figures from here on.
    let (flink_at_start, _) = flink.state();
    let flink_history_at_start = flink.history().len();
    let mut tms: Vec<usize> = (1..=cfg.taskmanagers).collect();
    let mut flink_failures = Vec::new();
    let mut not_measured = Vec::new();
    let mut ckptlab_steps = Duration::ZERO;
    let mut flink_extra = Duration::ZERO;
    let mut seen_events = 0;
    let mut player = Player::start(&engine, narrate).await;
    for step in &scenario.steps {
        let (before, _) = flink.state();
        let t = Instant::now();
        let flow = player.play(&engine, step, narrate).await;
        ckptlab_steps += t.elapsed();
        let sent = match &step.action {
            Action::Kill(tm) => {
                if let Ok(n) = taskmanager::parse_name(tm) {
                    tms.retain(|x| *x != n);
                }
                Some(format!("{} {tm}", Verb::Kill.word()))
            }
            Action::Start(tm) => {
                let n = match tm {
                    Some(name) => taskmanager::parse_name(name).unwrap_or(1),
                    None => (1..).find(|n| !tms.contains(n)).unwrap_or(1),
                };
                tms.push(n);
                Some(format!("{} {}", Verb::Start.word(), taskmanager::name(n)))
            }
            Action::Checkpoint => Some(Verb::Checkpoint.word().to_string()),
            // Refused before the run on the MiniCluster (flink::options).
            Action::Hang(tm) => Some(format!("{} {tm}", Verb::Hang.word())),
            // Played below, by ckptlab's side only (a before-commit kill is refused before the run).
            Action::Produce { .. }
            | Action::KillBeforeCommit(_)
            | Action::Generate(_)
            | Action::Set(_)
            | Action::Wait(_)
            | Action::Await { .. }
            | Action::Expect { .. }
            | Action::Resubmit
            | Action::StopGenerators
            | Action::SwitchBackend(_)
            | Action::Savepoint { .. } => None,
        };
        if let Some(command) = sent {
            if let Err(e) = flink.send(&command) {
                flink_failures.push(format!("line {}: {e}", step.line));
            }
        }
        // Savepoints, resubmissions and configuration changes: Flink's way (see [`Resubmission`]).
        if Resubmission::plays(&step.action) {
            let _ = narrate_events(&flink, seen_events, step.line, &mut flink_failures, narrate);
            let t = Instant::now();
            let done = resubmit.play(&mut flink, &step.action, &cfg, &log_dir, &run_dir, narrate).await;
            flink_extra += t.elapsed();
            if let Err(why) = done {
                narrate(format!("          Flink: {why}"));
                flink_failures.push(format!("line {}: {why}", step.line));
            }
            seen_events = flink.history().len();
        }
        match &step.action {
            Action::Await { condition, timeout } => {
                let w = Instant::now();
                let reached = await_flink(&flink, *condition, *timeout, &judge, before.checkpoints_completed).await;
                flink_extra += w.elapsed();
                let waited = w.elapsed().as_secs_f64();
                seen_events = narrate_events(&flink, seen_events, step.line, &mut flink_failures, narrate);
                if reached {
                    narrate(format!("          Flink: {} (+{waited:.1}s)", condition.name()));
                } else {
                    let (st, _) = flink.state();
                    flink_failures.push(format!(
                        "line {}: await {} timed out on Flink after {:.1}s (job {}, all tasks running: {}, positions {:?}, log {:?}, sink received {} of {} emitted)",
                        step.line,
                        condition.name(),
                        waited,
                        st.status,
                        st.all_running,
                        st.positions,
                        judge.truth().map(|t| t.lengths).unwrap_or_default(),
                        st.received,
                        st.emitted
                    ));
                }
            }
            Action::Expect { key, checks, .. } => {
                let (st, _) = flink.state();
                let caught_up = judge.caught_up(&st);
                let v = judge.verdict(&st, caught_up);
                let mut shown = Vec::new();
                for (name, cmp) in checks {
                    let label = key.as_ref().map_or(name.to_string(), |k| format!("{name}[{k}]"));
                    if *name == Figure::Lost && !caught_up {
                        // A shortfall now may be records not yet processed: no figure to check.
                        shown.push(format!("{label}: not judged on Flink (not caught up: {} records not processed yet) FAILED", v.in_flight));
                        flink_failures.push(format!(
                            "line {}: expected {label} {cmp}: cannot tell on Flink, the job had not caught up ({} records not processed yet)",
                            step.line, v.in_flight
                        ));
                        continue;
                    }
                    let history = flink.history();
                    let last = last_completed(history.get(flink_history_at_start..).unwrap_or_default());
                    match verdict::flink_figure(
                        *name,
                        key.as_deref(),
                        &v,
                        st.restarts.saturating_sub(flink_at_start.restarts),
                        st.checkpoints_completed.saturating_sub(flink_at_start.checkpoints_completed),
                        st.checkpoints_failed.saturating_sub(flink_at_start.checkpoints_failed),
                        last,
                    ) {
                        Some(actual) => {
                            let ok = cmp.holds(actual);
                            shown.push(format!("{label} = {actual} (want {cmp}) {}", if ok { "ok" } else { "FAILED" }));
                            if !ok {
                                flink_failures.push(format!("line {}: expected {label} {cmp}, got {actual} on Flink", step.line));
                            }
                        }
                        None => {
                            shown.push(format!("{label}: not measured on Flink"));
                            not_measured.push(format!("line {}: {label}", step.line));
                        }
                    }
                }
                narrate(format!("          Flink: expect {}", shown.join(", ")));
            }
            Action::Produce { .. }
            | Action::Generate(_)
            | Action::Kill(_)
            | Action::KillBeforeCommit(_)
            | Action::Hang(_)
            | Action::Start(_)
            | Action::Checkpoint
            | Action::Set(_)
            | Action::Wait(_)
            | Action::Resubmit
            | Action::StopGenerators
            | Action::SwitchBackend(_)
            | Action::Savepoint { .. } => {}
        }
        seen_events = narrate_events(&flink, seen_events, step.line, &mut flink_failures, narrate);
        if flow == Flow::Stop {
            break;
        }
    }
    // Judged once both had the chance to catch up after the last step.
    let (ckptlab_caught_up, flink_caught_up) = tokio::join!(
        await_condition(&engine, AwaitCondition::CaughtUp, FINAL_CATCH_UP),
        await_flink(&flink, AwaitCondition::CaughtUp, FINAL_CATCH_UP, &judge, 0)
    );
    let ckptlab_report = player.finish(&engine, scenario, narrate).await;
    let ckptlab_caught_up = ckptlab_caught_up && engine.caught_up();
    engine.shutdown().await;
    // The print sink's own output must end with what the sink reported from inside the JVM (a
    // line written after the last state line shows up in the next one: look a few times).
    let printed_path = run_dir.join(harness::OUTPUT_FILE);
    let mut st = flink.state().0;
    // On the local cluster the print output is in each TaskManager's .out file (not judged).
    if cfg.job.sink == crate::config::SinkKind::Print && target == Target::MiniCluster {
        let mut from_output = BTreeMap::new();
        for _ in 0..OUTPUT_CHECKS {
            st = flink.state().0;
            from_output = verdict::last_counts(&std::fs::read_to_string(&printed_path).unwrap_or_default(), cfg.job.key_by);
            if from_output == st.counts {
                break;
            }
            tokio::time::sleep(flink.report_every()).await;
        }
        if from_output != st.counts {
            flink_failures.push(format!(
                "the print sink's output ({}) ends with counts {from_output:?}, the sink reported {:?}",
                printed_path.display(),
                st.counts
            ));
        }
    }
    let flink_caught_up = flink_caught_up && judge.at_end(&st);
    let flink_verdict = judge.verdict(&st, flink_caught_up);
    if let Some(why) = flink.gone() {
        flink_failures.push(format!("the Flink JVM ended early: {why}"));
    }
    let history = flink.history();
    let mut ck_events: Vec<Stamped> = Vec::new();
    while let Ok(e) = ckptlab_events.try_recv() {
        ck_events.push(e);
    }
    let timeline = if target == Target::Local { timeline::timelines(&ck_events, &history) } else { Vec::new() };
    let mut cluster = match &flink {
        Flink::Cluster(c) => Some(c.summary()),
        Flink::Mini(_) => None,
    };
    let stop = Instant::now();
    tokio::task::spawn_blocking(move || flink.shutdown(SHUTDOWN_GRACE)).await.ok();
    let flink_stop_ms = ms(stop.elapsed());
    if let Some(c) = cluster.as_mut() {
        c.killed = history
            .iter()
            .filter_map(|t| match t.event {
                FlinkEvent::TmKilled { pid, .. } => Some(pid),
                _ => None,
            })
            .collect();
        // What is left of the cluster now: nothing when the run started it.
        let pids = std::iter::once(c.jobmanager_pid).chain(c.taskmanagers.iter().map(|(_, p)| *p));
        c.alive_at_end = pids.filter(|p| crate::workdir::process_alive(*p) && !is_zombie(*p)).collect();
    }
    if !resubmit.windows.is_empty() {
        let down: u64 = resubmit.windows.iter().map(|(a, b)| b - a).sum();
        notes.push(format!(
            "checkpoints completed: Flink's job was stopped for resubmissions {:.1}s in all ({}); ckptlab's checkpoints triggered then are left out of its count",
            down as f64 / 1000.0,
            resubmit.windows.iter().map(|(a, b)| format!("{:.1}s-{:.1}s", *a as f64 / 1000.0, *b as f64 / 1000.0)).collect::<Vec<_>>().join(", ")
        ));
    }
    // ckptlab submits a new job for a resubmit and a backend switch, never for a `set`.
    let ckptlab_jobs = 1 + scenario.steps.iter().filter(|s| matches!(s.action, Action::Resubmit | Action::SwitchBackend(_))).count() as u64;
    // Each Submitted event is one job, in order: its configuration's unaligned flag.
    let unaligned_jobs: BTreeSet<String> = history
        .iter()
        .filter_map(|t| match &t.event {
            FlinkEvent::Submitted { job, .. } => Some(job.clone()),
            _ => None,
        })
        .zip(resubmit.unaligned.iter())
        .filter(|(_, on)| **on)
        .map(|(j, _)| j)
        .collect();
    let comparison = compare::compare(
        &ckptlab_side(&ckptlab_report, ckptlab_caught_up, ckptlab_jobs, &resubmit.windows),
        &flink_side(
            &flink_verdict,
            flink_caught_up,
            &st,
            &flink_at_start,
            history.get(flink_history_at_start..).unwrap_or_default(),
            resubmit.jobs as u64,
            &unaligned_jobs,
        ),
    );
    let flink_report = FlinkReport {
        passed: flink_failures.is_empty(),
        failures: flink_failures,
        verdict: flink_verdict,
        caught_up: flink_caught_up,
        restarts: st.restarts,
        checkpoints_completed: st.checkpoints_completed,
        checkpoints_failed: st.checkpoints_failed,
        output_lines: st.output_lines,
        status: st.status.clone(),
        history,
        flink_version: jars.version.clone(),
        jars: jars.origin.clone(),
        not_measured,
        target: match target {
            Target::MiniCluster => "MiniCluster".into(),
            Target::Local => "local cluster".into(),
        },
        cluster,
    };
    Ok(BridgeReport {
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        passed: ckptlab_report.passed && flink_report.passed,
        ckptlab: ckptlab_report,
        flink: flink_report,
        comparison,
        notes,
        flink_options: spec.flink.clone(),
        timings: Timings {
            total_ms: ms(t0.elapsed()),
            install_ms: jars.install_secs.map(|s| (s * 1000.0) as u64),
            compile_ms,
            flink_start_ms,
            ckptlab_steps_ms: ms(ckptlab_steps),
            flink_extra_wait_ms: ms(flink_extra),
            flink_stop_ms,
            cluster_start_ms,
        },
        run_dir: run_dir.display().to_string(),
        timeline,
        flink_resubmissions: resubmit.said,
    })
}

/// How long a savepoint (or a stop-with-savepoint) may take on Flink.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// The newest completed checkpoint (not a savepoint) in `history`.
fn last_completed(history: &[Timed]) -> Option<&FlinkCheckpoint> {
    history.iter().rev().find_map(|t| match &t.event {
        FlinkEvent::Checkpoint(c) if c.completed() => Some(c),
        _ => None,
    })
}

/// A stop-with-savepoint or savepoint that completed on Flink.
struct SavepointDone {
    path: String,
    id: Option<u64>,
    /// From the request to the savepoint (for a stop: to the job FINISHED).
    took: Duration,
}

impl SavepointDone {
    fn name(&self) -> String {
        self.id.map_or_else(|| "savepoint".to_string(), |id| format!("savepoint {id}"))
    }
}

/// The Flink side's savepoints and submissions. ckptlab changes a running job's configuration
/// live; Flink applies configuration only when a job is submitted, so a `set` there is what a
/// Flink user does: stop-with-savepoint (canonical, Flink's default format, SavepointFormatType.java
/// DEFAULT = CANONICAL), then the job submitted again from that savepoint with the new options
/// (`flink run -s PATH`). The restored job carries on from the savepoint: the counters' keyed
/// state (so the sink's counts go on), the sources' read positions, and the checkpoint ids.
/// `switch-backend` is the same with the other state backend (canonical: the only format
/// a backend change restores from, FLIP-203), as ckptlab's own `b` does. `resubmit` after a
/// stop-with-savepoint submits from that savepoint; after a FAILED job, from nothing (a new job,
/// as ckptlab's resubmit). Restarts and checkpoint counts are summed over the jobs (the harness
/// and the REST watcher add each job's own to those of the jobs before it).
struct Resubmission {
    layers: ConfigLayers,
    spec: JobSpec,
    /// Jobs submitted so far (the first included).
    jobs: usize,
    /// The savepoint the job was stopped with, until a resubmission uses it.
    stopped_at: Option<String>,
    savepoint_dir: PathBuf,
    /// What the bridge said of each savepoint, resubmission and `set` on Flink.
    said: Vec<String>,
    /// ckptlab's engine start: the clock of its checkpoints' `trigger_ms`.
    origin: Instant,
    /// Since when (ms after `origin`) the Flink job is stopped for a resubmission.
    down_since: Option<u64>,
    /// The spans (ms after `origin`) from a stop-with-savepoint to its new job running: Flink
    /// takes no checkpoint then, while ckptlab's job runs on; the comparison leaves ckptlab's
    /// checkpoints of these spans out of its count.
    windows: Vec<(u64, u64)>,
    /// Per job submitted, in order: its `execution.checkpointing.unaligned.enabled`.
    unaligned: Vec<bool>,
}

/// The job's `execution.checkpointing.unaligned.enabled`.
fn unaligned_enabled(spec: &JobSpec) -> bool {
    spec.flink.iter().any(|(k, v)| k == "execution.checkpointing.unaligned.enabled" && v == "true")
}

/// Why a savepoint, resubmit, switch-backend or set step failed on the Flink side (the text
/// follows `Flink: ` in the narration and the report).
#[derive(Debug, Error)]
enum FlinkStepError {
    #[error("resubmit: the job is {0}: Flink submits a job again after it stopped with a savepoint (FINISHED) or FAILED")]
    NotResubmittable(String),
    #[error("{step}: {source}")]
    Config { step: String, source: ConfigError },
    #[error("{what}: the job is {status} (Flink takes a savepoint of a RUNNING job)")]
    NotRunning { what: &'static str, status: String },
    #[error("the harness did not take the command: {0}")]
    Send(#[from] HarnessError),
    #[error("Flink refused the {what}: {reason}")]
    Refused { what: &'static str, reason: String },
    #[error("{what}: no outcome on Flink after {}s", .after.as_secs())]
    NoOutcome { what: &'static str, after: Duration },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the job submitted from {from} FAILED (see flink.log)")]
    SubmittedFailed { from: String },
    #[error("the resubmitted job was not running after {}s", .after.as_secs())]
    NotStarted { after: Duration },
}

impl Resubmission {
    /// A line of narration, kept for the report too.
    fn say(&mut self, narrate: &mut impl FnMut(String), line: String) {
        narrate(line.clone());
        self.said.push(line.trim_start().to_string());
    }

    /// The steps Flink plays by a savepoint or a new job ([`Resubmission::play`]).
    fn plays(action: &Action) -> bool {
        match action {
            Action::Savepoint { .. } | Action::Resubmit | Action::SwitchBackend(_) | Action::Set(_) => true,
            Action::Produce { .. }
            | Action::Generate(_)
            | Action::Kill(_)
            | Action::KillBeforeCommit(_)
            | Action::Hang(_)
            | Action::Start(_)
            | Action::Checkpoint
            | Action::Wait(_)
            | Action::Await { .. }
            | Action::Expect { .. }
            | Action::StopGenerators => false,
        }
    }

    /// Plays a savepoint, resubmit, switch-backend or set step on Flink; Err: why it failed there.
    async fn play(&mut self, flink: &mut Flink, action: &Action, cfg: &Config, log_dir: &Path, run_dir: &Path, narrate: &mut impl FnMut(String)) -> Result<(), FlinkStepError> {
        match action {
            Action::Savepoint { stop, format } => {
                let sp = self.savepoint(flink, *stop, format.name()).await?;
                let what = if *stop { "stop-with-savepoint" } else { "savepoint" };
                self.say(narrate, format!("          Flink: {what}: {} ({}) completed: {}", sp.name(), format.name(), sp.path));
                if *stop {
                    self.stopped_at = Some(sp.path);
                }
                Ok(())
            }
            Action::Resubmit => {
                let (st, _) = flink.state();
                let from = match (st.status.as_str(), self.stopped_at.take()) {
                    ("FINISHED", Some(path)) => Some(path),
                    ("FAILED", _) => None,
                    (status, kept) => {
                        self.stopped_at = kept;
                        return Err(FlinkStepError::NotResubmittable(status.to_string()));
                    }
                };
                let spec = self.spec.clone();
                self.submit(flink, &spec, from.as_deref(), run_dir).await?;
                match from {
                    Some(path) => self.say(narrate, format!("          Flink: resubmitted from {path} (job {})", self.jobs)),
                    None => self.say(narrate, format!("          Flink: resubmitted from nothing: a new job (job {}), as ckptlab's resubmit of a FAILED job", self.jobs)),
                }
                Ok(())
            }
            Action::SwitchBackend(name) => {
                let mut layers = self.layers.clone();
                let step = || format!("switch-backend {name}");
                layers.set_backend(name.into(), "switch-backend").map_err(|source| FlinkStepError::Config { step: step(), source })?;
                let new_cfg = layers.build().map_err(|source| FlinkStepError::Config { step: step(), source })?;
                let spec = JobSpec::of(&new_cfg, log_dir, run_dir);
                if spec == self.spec {
                    self.say(narrate, format!("          Flink: already {}: nothing to switch", new_cfg.backend_label()));
                    return Ok(());
                }
                let sp = self.stop_and_resubmit(flink, &spec, run_dir).await?;
                self.say(narrate, format!(
                    "          Flink: a backend change is a new job: stop-with-savepoint {} (canonical), resubmitted from it on {} (job {}; {})",
                    sp.id.map_or_else(String::new, |i| i.to_string()),
                    new_cfg.backend_label(),
                    self.jobs,
                    sp.path
                ));
                self.layers = layers;
                self.spec = spec;
                Ok(())
            }
            Action::Set(pairs) => {
                let mut layers = self.layers.clone();
                for (k, v) in pairs {
                    // What ckptlab's own engine refuses live (jobmanager set: options read at
                    // cluster start) it refuses on both sides: nothing to resubmit for.
                    let runtime = crate::config::SCHEMA.iter().find(|s| s.key == k).map(|s| s.runtime);
                    if runtime != Some(true) && !k.starts_with(&format!("{}.", crate::config::DELAYS_TABLE)) {
                        self.say(narrate, format!("          Flink: set {k}: not applied (ckptlab applies it only when the cluster starts; so would Flink's new job)"));
                        return Ok(());
                    }
                    if layers.set_live(k, crate::config::parse_loose_value(v), "scenario set").is_err() {
                        return Ok(());
                    }
                }
                let Ok(new_cfg) = layers.build() else { return Ok(()) };
                let spec = JobSpec::of(&new_cfg, log_dir, run_dir);
                let said = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
                if spec == self.spec {
                    self.say(narrate, format!("          Flink: set {said}: ckptlab's own option, nothing changes in the Flink job"));
                    self.layers = layers;
                    return Ok(());
                }
                let _ = cfg;
                let sp = self.stop_and_resubmit(flink, &spec, run_dir).await?;
                self.say(narrate, format!(
                    "          Flink applies configuration at submission: stop-with-savepoint {} (canonical, {:.1}s: a savepoint is aligned, CheckpointOptions.java:109-110), resubmitted from it with {said} (job {}, running {:.1}s after the stop; ckptlab's side changed it live, Flink needs a new job; {})",
                    sp.id.map_or_else(String::new, |i| i.to_string()),
                    sp.took.as_secs_f64(),
                    self.jobs,
                    self.windows.last().map_or(0.0, |(a, b)| (b - a) as f64 / 1000.0),
                    sp.path
                ));
                self.layers = layers;
                self.spec = spec;
                Ok(())
            }
            Action::Produce { .. }
            | Action::Generate(_)
            | Action::Kill(_)
            | Action::KillBeforeCommit(_)
            | Action::Hang(_)
            | Action::Start(_)
            | Action::Checkpoint
            | Action::Wait(_)
            | Action::Await { .. }
            | Action::Expect { .. }
            | Action::StopGenerators => Ok(()),
        }
    }

    /// Stop-with-savepoint in canonical format, then the job `spec` submitted from it.
    async fn stop_and_resubmit(&mut self, flink: &mut Flink, spec: &JobSpec, run_dir: &Path) -> Result<SavepointDone, FlinkStepError> {
        let sp = self.savepoint(flink, true, "canonical").await?;
        self.submit(flink, spec, Some(&sp.path), run_dir).await?;
        Ok(sp)
    }

    /// A savepoint (`stop`: stop-with-savepoint) into the run's savepoint directory.
    async fn savepoint(&mut self, flink: &mut Flink, stop: bool, format: &str) -> Result<SavepointDone, FlinkStepError> {
        let verb = if stop { Verb::StopWithSavepoint } else { Verb::Savepoint };
        let what = verb.word();
        let (st, _) = flink.state();
        if st.status != "RUNNING" {
            return Err(FlinkStepError::NotRunning { what, status: st.status.clone() });
        }
        let seen = flink.history().len();
        let asked = Instant::now();
        if stop {
            self.down_since = Some(ms(asked.duration_since(self.origin)));
        }
        let dir = format!("file://{}", self.savepoint_dir.display());
        flink.send(&format!("{what}\t{}\t{dir}", format.to_uppercase()))?;
        let done = await_event(flink, seen, SAVEPOINT_TIMEOUT, |e| match e {
            FlinkEvent::SavepointCompleted { path, id, stop: s, .. } if *s == stop => Some(Ok(SavepointDone { path: path.clone(), id: *id, took: Duration::ZERO })),
            FlinkEvent::Refused { what: w, reason } if Verb::of(w) == Some(verb) => Some(Err(FlinkStepError::Refused { what, reason: reason.clone() })),
            _ => None,
        })
        .await
        .unwrap_or(Err(FlinkStepError::NoOutcome { what, after: SAVEPOINT_TIMEOUT }));
        let mut done = match done {
            Ok(d) => d,
            Err(e) => {
                // A failed stop-with-savepoint leaves the job running (Flink resumes its checkpoints).
                self.down_since = None;
                return Err(e);
            }
        };
        if stop {
            // The job ends FINISHED once every task confirmed the savepoint's notification.
            let judge_less = Instant::now() + SAVEPOINT_TIMEOUT;
            while flink.state().0.status != "FINISHED" && Instant::now() < judge_less && flink.gone().is_none() {
                tokio::time::sleep(POLL).await;
            }
        }
        done.took = asked.elapsed();
        Ok(done)
    }

    /// Submits `spec` as a new job (restored from `savepoint`) and waits for all its tasks to run.
    async fn submit(&mut self, flink: &mut Flink, spec: &JobSpec, savepoint: Option<&str>, run_dir: &Path) -> Result<(), FlinkStepError> {
        let props = run_dir.join(format!("job-{}.properties", self.jobs + 1));
        std::fs::write(&props, spec.to_properties()).map_err(|source| FlinkStepError::Write { path: props.clone(), source })?;
        let seen = flink.history().len();
        let mut command = format!("{}\t{}", Verb::Submit.word(), props.display());
        if let Some(sp) = savepoint {
            command.push('\t');
            command.push_str(sp);
        }
        flink.send(&command)?;
        await_event(flink, seen, FLINK_START_TIMEOUT, |e| match e {
            FlinkEvent::Submitted { .. } => Some(Ok(())),
            FlinkEvent::Refused { what, reason } if Verb::of(what) == Some(Verb::Submit) => Some(Err(FlinkStepError::Refused { what: "submission", reason: reason.clone() })),
            _ => None,
        })
        .await
        .unwrap_or(Err(FlinkStepError::NoOutcome { what: "resubmission", after: FLINK_START_TIMEOUT }))?;
        self.jobs += 1;
        self.unaligned.push(unaligned_enabled(spec));
        // Running: every task of the new job deployed and restored. A restore Flink refuses
        // (an incompatible savepoint) fails the job instead: its reason is in the failure.
        let deadline = Instant::now() + FLINK_START_TIMEOUT;
        let seq0 = flink.state().1;
        loop {
            let (st, seq) = flink.state();
            if seq > seq0 + 1 && st.all_running {
                if let Some(since) = self.down_since.take() {
                    self.windows.push((since, ms(self.origin.elapsed())));
                }
                return Ok(());
            }
            if seq > seq0 + 1 && st.status == "FAILED" {
                return Err(FlinkStepError::SubmittedFailed { from: savepoint.unwrap_or("nothing").to_string() });
            }
            if Instant::now() >= deadline || flink.gone().is_some() {
                return Err(FlinkStepError::NotStarted { after: FLINK_START_TIMEOUT });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits for the first event after `seen` that `pick` answers for; None on timeout.
async fn await_event<T>(flink: &Flink, seen: usize, timeout: Duration, pick: impl Fn(&FlinkEvent) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = flink.history().iter().skip(seen).find_map(|t| pick(&t.event)) {
            return Some(t);
        }
        if Instant::now() >= deadline || flink.gone().is_some() {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A pid that has ended but was not reaped yet (its parent still runs).
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z'))).unwrap_or(false)
}

/// Narrates the Flink events since `seen` (a refusal fails the step at `line`); returns how many there are now.
fn narrate_events(flink: &Flink, seen: usize, line: usize, failures: &mut Vec<String>, narrate: &mut impl FnMut(String)) -> usize {
    let history = flink.history();
    for e in history.iter().skip(seen) {
        if let Some(text) = describe(&e.event) {
            narrate(format!("          Flink: {text}"));
        }
        if let FlinkEvent::Refused { what, reason } = &e.event {
            failures.push(format!("line {line}: Flink refused `{what}`: {reason}"));
        }
    }
    history.len()
}

/// Keeps the newest [`RUNS_KEPT`] run directories under `runs` (each holds the partition files
/// and Flink's log of one run, to look into after it), deleting older ones.
fn sweep_old_runs(runs: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(runs) else { return };
    let mut dirs: Vec<(std::time::SystemTime, std::path::PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("run-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort();
    let excess = dirs.len().saturating_sub(RUNS_KEPT);
    for (_, d) in dirs.into_iter().take(excess) {
        let _ = crate::workdir::remove_tree_under(runs, &d);
    }
}

/// A Flink event as a narration line (None: not worth a line).
fn describe(e: &FlinkEvent) -> Option<String> {
    Some(match e {
        FlinkEvent::Status { status, all_running } => format!("job {status}{}", if *all_running { ", every task running" } else { "" }),
        FlinkEvent::Restart { attempt } => format!("restarted (attempt {attempt})"),
        FlinkEvent::TmTerminated { tm } => format!("{tm} terminated (MiniCluster#terminateTaskManager)"),
        FlinkEvent::TmStarted { tm } => format!("{tm} started (MiniCluster#startTaskManager)"),
        FlinkEvent::CheckpointTriggered { path } => format!("triggered checkpoint completed: {path}"),
        FlinkEvent::SavepointCompleted { .. } | FlinkEvent::Submitted { .. } => return None,
        FlinkEvent::Refused { what, reason } => format!("refused `{what}`: {reason}"),
        FlinkEvent::Error { message } => format!("error: {message}"),
        FlinkEvent::TmKilled { tm, pid } => format!("{tm}: SIGKILL to pid {pid} (the seed's `kill <pid>`)"),
        FlinkEvent::TmHung { tm, pid } => format!("{tm}: SIGSTOP to pid {pid} (hung: its connections stay open)"),
        FlinkEvent::TmProcessStarted { tm, pid } => format!("{tm}: a new TaskManager process, pid {pid} (the seed's `taskmanager.sh start`)"),
        FlinkEvent::TmRegistered { tm, resource_id } => format!("{tm} registered as {resource_id}"),
        FlinkEvent::TmLost { tm, resource_id } => format!("{tm} lost: {resource_id} gone from /taskmanagers"),
        FlinkEvent::Failure { exception, task, .. } => format!(
            "failure: {}{}",
            exception.rsplit('.').next().unwrap_or(exception),
            task.as_deref().map(|t| format!(" in {t}")).unwrap_or_default()
        ),
        _ => return None,
    })
}

/// The truth the Flink side is judged against: the log from the job's starting positions.
struct Judge {
    dir: std::path::PathBuf,
    topic: String,
    partitions: u32,
    key_by: crate::config::KeyBy,
    start: Vec<u64>,
    /// The sink shows its output when a checkpoint completes (two-phase commit).
    committing: bool,
}

impl Judge {
    fn new(cfg: &Config, dir: &std::path::Path, start: Vec<u64>) -> Judge {
        Judge {
            dir: dir.to_path_buf(),
            topic: cfg.source.topic.clone(),
            partitions: cfg.source.partitions,
            key_by: cfg.job.key_by,
            start,
            committing: cfg.job.sink == crate::config::SinkKind::Transactional,
        }
    }

    fn truth(&self) -> Result<LogTruth, TruthError> {
        verdict::log_truth(&self.dir, &self.topic, self.partitions, self.key_by, &self.start)
    }

    /// The verdict now; before the job `caught_up` a shortfall is records not yet processed.
    fn verdict(&self, st: &FlinkState, caught_up: bool) -> Verdict {
        let truth = self.truth().unwrap_or_default();
        verdict::flink_verdict(&truth, &st.counts, caught_up)
    }

    /// Caught up now, as an `await caught-up` would see it in one look: every task running, every
    /// reader at the end of its file, every record it emitted received by the sink, nothing read
    /// or written for [`FLINK_QUIET`]. Quiet alone is no proof: a counter that takes longer than
    /// that per record (a `ckptlab.record-cost`, or a machine under load) holds records with
    /// nothing moving, and their keys' counts would read as lost.
    fn caught_up(&self, st: &FlinkState) -> bool {
        st.all_running && st.received >= st.emitted && st.quiet_ms >= ms(FLINK_QUIET) && self.at_end(st)
    }

    /// Every partition's reader is at the end of its file.
    fn at_end(&self, st: &FlinkState) -> bool {
        let Ok(truth) = self.truth() else { return false };
        truth.lengths.iter().enumerate().all(|(p, len)| st.positions.get(&p.to_string()) == Some(len))
    }
}

/// Waits for a condition on the Flink side; false on timeout or when the JVM is gone.
async fn await_flink(flink: &Flink, condition: AwaitCondition, timeout: Duration, judge: &Judge, completed_before: u64) -> bool {
    let deadline = Instant::now() + timeout;
    let (_, seq0) = flink.state();
    // With a two-phase-commit sink the counts show when a checkpoint after the last record
    // completes: caught up means such a checkpoint completed (and the commit's output is out).
    let mut read_all_at: Option<u64> = None;
    loop {
        let (st, seq) = flink.state();
        // Only a state line sent after the wait began counts (the kill may not have landed yet).
        let fresh = seq > seq0 + 1;
        let ok = fresh
            && match condition {
                AwaitCondition::Running => st.all_running,
                AwaitCondition::CheckpointCompleted => st.checkpoints_completed > completed_before,
                AwaitCondition::CaughtUp => {
                    let read_all = judge.caught_up(&st);
                    if !read_all {
                        read_all_at = None;
                    } else if judge.committing && read_all_at.is_none() {
                        read_all_at = Some(st.checkpoints_completed);
                    }
                    read_all && (!judge.committing || read_all_at.is_some_and(|c| st.checkpoints_completed > c))
                }
                AwaitCondition::Failed => st.status == "FAILED",
                AwaitCondition::Finished => st.status == "FINISHED",
            };
        if ok {
            return true;
        }
        if Instant::now() >= deadline || flink.gone().is_some() {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// ckptlab's figures for the comparison, from its run report.
/// `windows`: spans (ms on ckptlab's clock) while the Flink job was stopped for a resubmission;
/// ckptlab's checkpoints triggered in them are left out of its completed count, so that both
/// count over the time both jobs ran.
fn ckptlab_side(r: &RunReport, caught_up: bool, jobs: u64, windows: &[(u64, u64)]) -> Side {
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    let mut completed_ms = Vec::new();
    let (mut aligned, mut unaligned) = (Vec::new(), Vec::new());
    for c in &r.checkpoints.history {
        match c.status {
            CheckpointStatus::Completed => {
                completed_ms.push(c.duration_ms);
                if c.unaligned { &mut unaligned } else { &mut aligned }.push(c.duration_ms);
            }
            CheckpointStatus::Failed => *failed.entry(c.failure_reason.clone().unwrap_or_else(|| UNKNOWN_REASON.into())).or_default() += 1,
            CheckpointStatus::InProgress => {}
        }
    }
    // The history keeps the last checkpoints only: failures older than it have no reason left.
    let older = r.checkpoints.failed.saturating_sub(failed.values().sum());
    if older > 0 {
        *failed.entry(UNKNOWN_REASON.into()).or_default() += older;
    }
    Side {
        lost: Some(r.verdict.lost),
        overcounted: r.verdict.overcounted,
        caught_up,
        unprocessed: if caught_up { 0 } else { r.verdict.in_flight.max(0) as u64 },
        checkpoints_completed: r.checkpoints.completed.saturating_sub(
            r.checkpoints
                .history
                .iter()
                .filter(|c| c.status == CheckpointStatus::Completed && windows.iter().any(|(a, b)| (*a..*b).contains(&c.trigger_ms)))
                .count() as u64,
        ),
        checkpoints_failed: failed,
        not_triggered: 0,
        restarts: r.restarts,
        median_checkpoint_ms: compare::median(completed_ms),
        median_aligned_ms: compare::median(aligned),
        median_unaligned_ms: compare::median(unaligned),
        jobs,
        status: r.status.clone(),
    }
}

/// Flink's figures for the comparison: `history` holds the harness's events since ckptlab's
/// engine started, `at_start` the state then (the counts are taken from there on).
/// `unaligned_jobs`: the jobs whose configuration enables unaligned checkpoints (Flink's
/// aligned and unaligned medians are split by it: its per-checkpoint `is_unaligned` says whether
/// a subtask overtook anything, which an idle one never does).
fn flink_side(v: &Verdict, caught_up: bool, st: &FlinkState, at_start: &FlinkState, history: &[Timed], jobs: u64, unaligned_jobs: &BTreeSet<String>) -> Side {
    let unaligned = |c: &FlinkCheckpoint| c.job.as_ref().map_or(c.unaligned == Some(true), |j| unaligned_jobs.contains(j));
    let checkpoints: Vec<&FlinkCheckpoint> = history
        .iter()
        .filter_map(|t| match &t.event {
            FlinkEvent::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    let mut failed: BTreeMap<String, u64> = BTreeMap::new();
    for c in checkpoints.iter().filter(|c| !c.completed()) {
        *failed.entry(c.reason.clone().unwrap_or_else(|| UNKNOWN_REASON.into())).or_default() += 1;
    }
    // Flink's failed count also holds checkpoints that failed before they were triggered, which
    // never enter its history.
    let failed_now = st.checkpoints_failed.saturating_sub(at_start.checkpoints_failed);
    Side {
        lost: caught_up.then_some(v.lost),
        overcounted: v.overcounted,
        caught_up,
        unprocessed: v.in_flight.max(0) as u64,
        checkpoints_completed: checkpoints.iter().filter(|c| c.completed()).count() as u64,
        not_triggered: failed_now.saturating_sub(failed.values().sum()),
        checkpoints_failed: failed,
        restarts: st.restarts.saturating_sub(at_start.restarts),
        median_checkpoint_ms: compare::median(checkpoints.iter().filter(|c| c.completed()).map(|c| c.duration_ms)),
        median_aligned_ms: compare::median(checkpoints.iter().filter(|c| c.completed() && !unaligned(c)).map(|c| c.duration_ms)),
        median_unaligned_ms: compare::median(checkpoints.iter().filter(|c| c.completed() && unaligned(c)).map(|c| c.duration_ms)),
        jobs,
        status: st.status.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(line: &str) -> Timed {
        Timed { at_ms: 0, event: serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")) }
    }

    fn state(line: &str) -> FlinkState {
        match serde_json::from_str(line) {
            Ok(FlinkEvent::State(s)) => s,
            other => panic!("not a state line: {other:?}"),
        }
    }

    /// Lines as the harness sends them (Harness.java), in a restart loop: checkpoints expire.
    #[test]
    fn flinks_figures_count_from_ckptlabs_start_by_reason_and_apart_from_pre_flight_failures() {
        let at_start = state(
            r#"{"event":"state","status":"RUNNING","all_running":true,"restarts":0,"checkpoints_completed":1,"checkpoints_failed":1,"output_lines":0,"quiet_ms":900,"counts":{},"positions":{"0":0,"1":0}}"#,
        );
        let now = state(
            r#"{"event":"state","status":"RESTARTING","all_running":false,"restarts":2,"checkpoints_completed":3,"checkpoints_failed":5,"output_lines":40,"quiet_ms":3,"counts":{"a":20},"positions":{"0":20}}"#,
        );
        let history = [
            r#"{"event":"checkpoint","id":2,"status":"COMPLETED","duration_ms":40}"#,
            r#"{"event":"status","status":"RUNNING","all_running":true}"#,
            r#"{"event":"checkpoint","id":3,"status":"FAILED","duration_ms":2001,"reason":"CHECKPOINT_EXPIRED","message":"Checkpoint expired before completing."}"#,
            r#"{"event":"checkpoint","id":4,"status":"COMPLETED","duration_ms":90}"#,
            r#"{"event":"checkpoint","id":5,"status":"FAILED","duration_ms":2003,"reason":"CHECKPOINT_EXPIRED","message":"Checkpoint expired before completing."}"#,
            r#"{"event":"checkpoint","id":6,"status":"FAILED","duration_ms":12,"message":"something new"}"#,
        ]
        .map(timed);
        let v = verdict::flink_verdict(
            &LogTruth { expected: BTreeMap::from([("a".to_string(), 60)]), produced: 60, lengths: vec![30, 30] },
            &now.counts,
            false,
        );
        let side = flink_side(&v, false, &now, &at_start, &history, 1, &BTreeSet::new());
        assert_eq!((side.checkpoints_completed, side.restarts, side.median_checkpoint_ms), (2, 2, Some(40)));
        assert_eq!(side.checkpoints_failed, BTreeMap::from([("CHECKPOINT_EXPIRED".to_string(), 2), (UNKNOWN_REASON.to_string(), 1)]));
        // 4 failed since the start, 3 of them in the history: one was never triggered.
        assert_eq!(side.not_triggered, 1);
        // Not caught up: the 40 records the sink has not counted yet are not lost.
        assert_eq!((side.lost, side.unprocessed), (None, 40));
        assert_eq!(compare::Recovery::of(&side), compare::Recovery::KeepsFailing);
    }
}
