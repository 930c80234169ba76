//! Playing steps against an engine, one at a time ([`Player`]), and the report of a run.

use super::*;

/// The outcome of a run, as `ckptlab run --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    pub scenario: String,
    pub description: String,
    pub passed: bool,
    pub failures: Vec<Failure>,
    pub verdict: Verdict,
    pub checkpoints: CheckpointSummary,
    pub restarts: u64,
    pub status: String,
    pub duration_ms: u64,
    /// Directories of the savepoints the run took.
    #[serde(default)]
    pub savepoints: Vec<String>,
    /// The job's id: its checkpoints are `<execution.checkpointing.dir>/<job_id>/chk-<n>`.
    #[serde(default)]
    pub job_id: String,
    /// The snapshot the run was started from (`--restore`), and what the verdict covers then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<crate::cluster::RestoreSummary>,
    /// Why the job's state could not be restored (a file of the checkpoint vanished or was
    /// damaged after the job started), when no attempt ran since: the verdict then reads
    /// "not restored", never `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_failure: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointSummary {
    pub triggered: u64,
    pub completed: u64,
    pub failed: u64,
    pub restored: u64,
    /// The last checkpoints, as the checkpoints pane shows them: duration, alignment, the
    /// checkpointed (delta) size and the full size, offsets, failure reason.
    pub history: Vec<crate::cluster::coordinator::CheckpointStats>,
}

/// Runs the steps against a started engine. `narrate` hears a line per step.
pub async fn run(scenario: &Scenario, engine: &Engine, mut narrate: impl FnMut(String)) -> RunReport {
    let mut player = Player::start(engine, &mut narrate).await;
    for step in &scenario.steps {
        if player.play(engine, step, &mut narrate).await == Flow::Stop {
            break;
        }
    }
    player.finish(engine, scenario, &mut narrate).await
}

/// Whether a run goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// An `await` timed out: the steps after it would test a state the run never reached.
    Stop,
}

/// Plays steps one at a time against one engine, collecting failures: `run` plays a whole
/// scenario with it; a lesson plays one step when the learner asks, and a comparison or the
/// Flink bridge interleave several engines step by step.
/// It holds no engine: every call names the one it plays on (the one it was attached to).
pub struct Player {
    started: Instant,
    failures: Vec<Failure>,
    // A command the engine refuses (a TM that is not there, a checkpoint that cannot be taken)
    // fails the step that gave it: a step that silently does nothing must not pass.
    refusals: Refusals,
    savepoints: Vec<String>,
    /// The generators `generate` steps started (`stop-generators` ends them).
    generators: Vec<tokio::task::JoinHandle<()>>,
}

impl Player {
    /// Waits for the job to run (as in the seed, the job is submitted and running before the
    /// first record is typed) and narrates where it was restored from.
    pub async fn start(engine: &Engine, narrate: &mut impl FnMut(String)) -> Player {
        let mut player = Player::attach(engine);
        if let Some(r) = engine.restored_from() {
            narrate(format!("   {}", r.headline()));
            narrate(format!("   verdict scope: {}", r.verdict_scope));
        }
        if !await_condition(engine, AwaitCondition::Running, DEFAULT_AWAIT_TIMEOUT).await {
            player.failures.push(Failure::of_run(
                FailureKind::NotRunning,
                format!("the job did not start running within 30s{}", why_not(&engine.view(false))),
            ));
        }
        player
    }

    /// A player on a running engine, without waiting for anything.
    pub fn attach(engine: &Engine) -> Player {
        Player {
            started: Instant::now(),
            failures: Vec::new(),
            refusals: Refusals { events: engine.events().subscribe(), issued: HashMap::new() },
            savepoints: Vec::new(),
            generators: Vec::new(),
        }
    }

    /// The failures so far (an `expect` that did not hold, a refused command, a timed-out await).
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Collects the engine's refusals of commands given so far.
    pub fn drain(&mut self) {
        self.refusals.drain(&mut self.failures);
    }

    /// Plays one step; `narrate` hears what it did.
    pub async fn play(&mut self, engine: &Engine, step: &Step, narrate: &mut impl FnMut(String)) -> Flow {
        let failures = &mut self.failures;
        let refusals = &mut self.refusals;
        let savepoints = &mut self.savepoints;
        let started = self.started;
        refusals.drain(failures);
        for key in step.action.command_keys() {
            refusals.issued.insert(key, step.line);
        }
        if let Some(note) = &step.note {
            narrate(format!("  # {note}"));
        }
        let at = format!("[{:>6.1}s]", started.elapsed().as_secs_f64());
        match &step.action {
            Action::Produce { values, partition } => {
                for v in values {
                    if let Err(e) = engine.produce(v, *partition) {
                        failures.push(Failure::at(step.line, FailureKind::Produce, format!("produce {v:?}: {e}")));
                    }
                }
                narrate(format!("{at} produce {}", values.join(" ")));
            }
            Action::Generate(spec) => {
                narrate(format!(
                    "{at} generate {} records/s for {} over {}",
                    spec.rate,
                    spec.duration.map(format_duration).unwrap_or_default(),
                    spec.keys.join(",")
                ));
                self.generators.push(engine.generate(spec.clone()));
            }
            Action::StopGenerators => {
                let running = self.generators.iter().filter(|g| !g.is_finished()).count();
                narrate(format!("{at} stop the generators ({running} running)"));
                for g in self.generators.drain(..) {
                    g.abort();
                    // Its guard has counted it out of the running generators once it is gone.
                    let _ = g.await;
                }
            }
            Action::Kill(tm) => {
                narrate(format!("{at} kill {tm}"));
                engine.command(Command::KillTaskManager(tm.clone()));
            }
            Action::KillBeforeCommit(tm) => {
                narrate(format!("{at} kill {tm} when the next checkpoint completes, before its sink is notified"));
                match kill_before_commit(engine, tm).await {
                    Ok(checkpoint) => narrate(format!(
                        "{at} checkpoint {checkpoint} completed; {tm} killed before its notification: its pre-committed transaction is in the checkpoint, uncommitted"
                    )),
                    Err(reason) => failures.push(Failure::at(step.line, FailureKind::Refused, format!("kill {tm} before-commit: {reason}"))),
                }
            }
            Action::Hang(tm) => {
                narrate(format!("{at} hang {tm} (it answers nothing; its connections stay open)"));
                engine.command(Command::HangTaskManager(tm.clone()));
            }
            Action::Start(tm) => {
                narrate(format!("{at} start {}", tm.as_deref().unwrap_or("a new task manager")));
                engine.command(Command::StartTaskManager(tm.clone()));
            }
            Action::Checkpoint => {
                narrate(format!("{at} trigger a checkpoint"));
                engine.command(Command::TriggerCheckpoint);
            }
            Action::Resubmit => {
                narrate(format!("{at} resubmit the job"));
                engine.command(Command::Resubmit);
            }
            Action::SwitchBackend(b) => {
                narrate(format!("{at} switch the state backend to {b}"));
                engine.command(Command::SwitchBackend(b.clone()));
            }
            Action::Savepoint { stop, format } => {
                let what = if *stop { "stop with a savepoint" } else { "take a savepoint" };
                narrate(format!("{at} {what} ({})", format.name()));
                match savepoint(engine, *stop, *format).await {
                    Ok(path) => {
                        narrate(format!("{at} savepoint completed: {path}"));
                        savepoints.push(path);
                    }
                    Err(reason) => {
                        failures.push(Failure::at(
                        step.line,
                        FailureKind::Savepoint,
                        format!("{}: {reason}", if *stop { "stop-with-savepoint" } else { "savepoint" }),
                    ))
                    }
                }
            }
            Action::Set(pairs) => {
                for (k, v) in pairs {
                    narrate(format!("{at} set {k} = {v}"));
                    engine.command(Command::Set { key: k.clone(), value: v.clone() });
                }
            }
            Action::Wait(d) => {
                narrate(format!("{at} wait {}", format_duration(*d)));
                let until = Instant::now() + *d;
                while Instant::now() < until {
                    tokio::time::sleep_until(until.min(Instant::now() + DRAIN_EVERY)).await;
                    refusals.drain(failures);
                }
            }
            Action::Await { condition, timeout } => {
                narrate(format!("{at} await {}", condition.name()));
                let reached = await_condition(engine, *condition, *timeout).await;
                refusals.drain(failures);
                if !reached {
                    let v = engine.view(false);
                    failures.push(Failure::at(
                        step.line,
                        FailureKind::AwaitTimeout,
                        format!(
                            "await {} timed out after {} (job {}, tasks running: {}, generators: {}, positions {:?})",
                            condition.name(),
                            format_duration(*timeout),
                            v.status.label(),
                            v.all_tasks_running,
                            v.generators_running,
                            v.partitions.iter().map(|p| format!("p{}@{}/{}", p.partition, p.position, p.end)).collect::<Vec<_>>()
                        ) + &why_not(&v),
                    ));
                    return Flow::Stop;
                }
            }
            Action::Expect { key, checks, .. } => {
                let auditing = engine.config().lab.audit;
                let view = engine.view(true);
                let verdict = view.verdict.clone().unwrap_or_default();
                let ck = summary(&view);
                if !verdict.consistent {
                    failures.push(Failure::at(
                        step.line,
                        FailureKind::InconsistentVerdict,
                        "the verdict is inconsistent (the operator's state differs from the auditor's record of what it applied): its figures cannot be trusted",
                    ));
                }
                let mut shown = Vec::new();
                // The Kafka sink's output topic, read and judged once per expect that asks for it.
                let output = checks.iter().any(|(n, _)| n.is_output()).then(|| crate::connectors::kafka_sink::verdict::of_engine(engine, &verdict)).flatten().and_then(Result::ok);
                for (name, cmp) in checks {
                    if !auditing && name.from_verdict(key.as_deref()) {
                        failures.push(Failure::at(
                            step.line,
                            FailureKind::AuditorOff,
                            format!("expect {name}: the auditor is off (ckptlab.audit = false), so there is no verdict to check; set ckptlab.audit = true"),
                        ));
                        shown.push(format!("{name} = ? (the auditor is off) FAILED"));
                        continue;
                    }
                    let actual = figure(*name, &verdict, key.as_deref(), view.restarts, &ck, output.as_ref());
                    let ok = cmp.holds(actual);
                    let label = match key {
                        Some(k) => format!("{name}[{k}]"),
                        None => name.to_string(),
                    };
                    shown.push(format!("{label} = {actual} (want {cmp}) {}", if ok { "ok" } else { "FAILED" }));
                    if !ok {
                        failures.push(Failure::at(step.line, FailureKind::Expectation, format!("expected {label} {cmp}, got {actual}")));
                    }
                }
                narrate(format!("{at} expect {}", shown.join(", ")));
            }
        }
        Flow::Continue
    }

    /// Lets the last commands be answered, then reports the run.
    pub async fn finish(mut self, engine: &Engine, scenario: &Scenario, narrate: &mut impl FnMut(String)) -> RunReport {
        let started = self.started;
        // Commands of the last steps are answered after them.
        tokio::time::sleep(SETTLE).await;
        let cfg = engine.config();
        if cfg.checkpointing.retention != crate::config::Retention::NoExternalizedCheckpoints
            && cfg.checkpointing.storage == crate::config::StorageKind::Filesystem
        {
            narrate(format!(
                "   {}: when the job ends its retained checkpoints stay in {} (ckptlab run --restore that directory resumes from the newest)",
                cfg.checkpointing.retention.flink_name(),
                cfg.checkpointing.dir.join(engine.job_id()).display()
            ));
        }
        self.drain();
        let view = engine.view(true);
        let restore_failure = engine.restore_failure();
        if let Some(reason) = &restore_failure {
            self.failures.push(Failure::of_run(FailureKind::NotRestored, format!("not restored: {reason}")));
        }
        if view.verdict.as_ref().is_some_and(|v| !v.consistent) {
            self.failures.push(Failure::of_run(
                FailureKind::InconsistentVerdict,
                "the verdict is inconsistent at the end of the run (the operator's state differs from the auditor's record of what it applied): its figures cannot be trusted",
            ));
        }
        RunReport {
            scenario: scenario.name.clone(),
            description: scenario.description.clone(),
            passed: self.failures.is_empty(),
            failures: self.failures,
            verdict: view.verdict.clone().unwrap_or_default(),
            checkpoints: summary(&view),
            restarts: view.restarts,
            status: view.status.label().to_string(),
            duration_ms: started.elapsed().as_millis() as u64,
            savepoints: self.savepoints,
            job_id: engine.job_id().to_string(),
            restored_from: engine.restored_from().cloned(),
            restore_failure,
        }
    }
}

/// Why a job did not get where a step waited for it: the cause of its last failover (while it
/// is not running again) and the newest checkpoint failure, e.g. the OS error of a full disk.
fn why_not(v: &crate::cluster::view::ClusterView) -> String {
    let mut out = String::new();
    if let Some(cause) = &v.failure {
        out.push_str(&format!("; job {}: {cause}", v.status.label()));
    }
    if let Some((id, reason)) = v.checkpoint_history.iter().rev().find_map(|c| Some((c.id, c.failure.as_deref()?))) {
        // Said once: a failover for too many failed checkpoints already quotes the last reason.
        if !v.failure.as_deref().is_some_and(|f| f.contains(reason)) {
            out.push_str(&format!("; checkpoint {id} failed: {reason}"));
        }
    }
    out
}

/// Why a `savepoint` / `stop-with-savepoint` step did not get its savepoint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SavepointError {
    #[error("no outcome within {}", format_duration(*.0))]
    NoOutcome(Duration),
    /// The engine refused to trigger it (e.g. the job is not running).
    #[error("{0}")]
    Refused(String),
    /// It was triggered and failed (the reason the engine reported).
    #[error("{0}")]
    Failed(String),
    /// A stop-with-savepoint's savepoint was taken, but a task did not finish: the job failed
    /// over instead of ending FINISHED (as Flink's stop fails then).
    #[error("savepoint {0} was taken, but not every task finished: the job failed over instead of ending FINISHED")]
    NotFinished(String),
}

/// Takes a savepoint and waits for its outcome (as `flink savepoint` does); a stop-with-savepoint
/// also waits for the job to be FINISHED. Returns the savepoint's directory.
async fn savepoint(engine: &Engine, stop: bool, format: crate::state::SavepointFormat) -> Result<String, SavepointError> {
    let mut events = engine.events().subscribe();
    engine.command(Command::TriggerSavepoint { stop, format });
    let deadline = Instant::now() + DEFAULT_AWAIT_TIMEOUT;
    let mut mine = None;
    let mut done = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, events.recv()).await else {
            return Err(SavepointError::NoOutcome(DEFAULT_AWAIT_TIMEOUT));
        };
        match e.event {
            Event::SavepointTriggered { checkpoint, .. } if mine.is_none() => mine = Some(checkpoint),
            Event::CheckpointTriggerRefused { reason } if mine.is_none() => return Err(SavepointError::Refused(reason)),
            Event::SavepointFailed { checkpoint, reason } if mine == Some(checkpoint) => return Err(SavepointError::Failed(reason)),
            Event::SavepointCompleted { checkpoint, path, .. } if mine == Some(checkpoint) => {
                if !stop {
                    return Ok(path);
                }
                done = Some(path);
            }
            Event::JobFinished { .. } if done.is_some() => return Ok(done.unwrap_or_default()),
            Event::StopWithSavepointInterrupted { checkpoint, path } if mine == Some(checkpoint) => {
                return Err(SavepointError::NotFinished(path))
            }
            _ => {}
        }
    }
}

/// Why a before-commit kill did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum KillBeforeCommitError {
    #[error("no checkpoint completed within {}", format_duration(*.0))]
    NoCheckpoint(Duration),
    #[error("{0} was killed before any checkpoint completed")]
    KilledFirst(String),
    /// The engine refused the command (its reason).
    #[error("{0}")]
    Refused(String),
}

/// Arms a before-commit kill and waits until it happened: the checkpoint it followed, or why not.
async fn kill_before_commit(engine: &Engine, tm: &str) -> Result<u64, KillBeforeCommitError> {
    let mut events = engine.events().subscribe();
    engine.command(Command::KillBeforeCommit(tm.to_owned()));
    let deadline = Instant::now() + DEFAULT_AWAIT_TIMEOUT;
    let mut completed = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(e)) = tokio::time::timeout(left, events.recv()).await else {
            return Err(KillBeforeCommitError::NoCheckpoint(DEFAULT_AWAIT_TIMEOUT));
        };
        match e.event {
            Event::CheckpointCompleted { checkpoint, .. } => completed = Some(checkpoint),
            Event::TaskManagerKilled { tm: killed, .. } if killed == tm => {
                return completed.ok_or_else(|| KillBeforeCommitError::KilledFirst(tm.to_owned()))
            }
            // Its refusal is the player's to report (the step's `kill` key).
            Event::ConfigRejected { key, reason } => {
                if Refused::of_key(key) == Refused::Command(Refusable::Kill) {
                    return Err(KillBeforeCommitError::Refused(reason));
                }
            }
            _ => {}
        }
    }
}

/// How often a `wait` step looks for refusals (and keeps the event queue short).
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// How long the run waits after its last step for the engine to answer its last commands.
const SETTLE: Duration = Duration::from_millis(20);

/// The engine's answers to the commands steps gave: a refusal fails the step that gave it.
struct Refusals {
    events: tokio::sync::mpsc::UnboundedReceiver<crate::events::Stamped>,
    /// The line of the latest step that gave a command, by what a refusal names.
    issued: HashMap<Refused, usize>,
}

/// What a refusal names: a command, or an option's key (a refused `set`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Refused {
    Command(Refusable),
    Option(String),
}

impl Refused {
    /// The key of a [`Event::ConfigRejected`]: a command's name, else an option's key.
    pub(super) fn of_key(key: String) -> Refused {
        key.parse().map(Refused::Command).unwrap_or(Refused::Option(key))
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Command(c) => write!(f, "{c}"),
            Refused::Option(key) => f.write_str(key),
        }
    }
}

impl Refusals {
    fn drain(&mut self, failures: &mut Vec<Failure>) {
        while let Ok(stamped) = self.events.try_recv() {
            let (what, reason) = match stamped.event {
                Event::ConfigRejected { key, reason } => (Refused::of_key(key), reason),
                Event::CheckpointTriggerRefused { reason } => (Refused::Command(Refusable::Checkpoint), format!("not triggered: {reason}")),
                Event::GeneratorStopped { reason, produced } => {
                    (Refused::Command(Refusable::Generate), format!("stopped after {produced} records: {reason}"))
                }
                _ => continue,
            };
            if let Some(line) = self.issued.get(&what) {
                failures.push(Failure::at(*line, FailureKind::Refused, format!("{what}: {reason}")));
            }
        }
    }
}

impl Action {
    /// What a refusal of this step's command names (see [`Refusals`]).
    pub(super) fn command_keys(&self) -> Vec<Refused> {
        match self {
            Action::Kill(_) | Action::KillBeforeCommit(_) => vec![Refused::Command(Refusable::Kill)],
            Action::Hang(_) => vec![Refused::Command(Refusable::Hang)],
            Action::Start(_) => vec![Refused::Command(Refusable::Start)],
            Action::Resubmit => vec![Refused::Command(Refusable::Resubmit)],
            Action::SwitchBackend(_) => vec![Refused::Command(Refusable::Backend)],
            Action::StopGenerators => Vec::new(),
            Action::Checkpoint | Action::Savepoint { .. } => vec![Refused::Command(Refusable::Checkpoint)],
            Action::Generate(_) => vec![Refused::Command(Refusable::Generate)],
            Action::Set(pairs) => pairs.iter().map(|(k, _)| Refused::Option(k.clone())).collect(),
            Action::Produce { .. } | Action::Wait(_) | Action::Await { .. } | Action::Expect { .. } => Vec::new(),
        }
    }
}

fn summary(view: &crate::cluster::view::ClusterView) -> CheckpointSummary {
    let c = view.checkpoint_counts;
    CheckpointSummary {
        triggered: c.triggered,
        completed: c.completed,
        failed: c.failed,
        restored: c.restored,
        history: view.checkpoint_history.clone(),
    }
}

/// Waits for a condition; false on timeout.
pub async fn await_condition(engine: &Engine, condition: AwaitCondition, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let completed_before = engine.view(false).checkpoint_counts.completed;
    loop {
        let ok = match condition {
            AwaitCondition::CheckpointCompleted => engine.view(false).checkpoint_counts.completed > completed_before,
            AwaitCondition::Running => engine.all_tasks_running(),
            AwaitCondition::CaughtUp => engine.caught_up(),
            AwaitCondition::Failed => engine.status() == JobStatus::Failed,
            AwaitCondition::Finished => engine.status() == JobStatus::Finished,
        };
        if ok {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The verdict table, per key and totals, as `ckptlab run` prints it.
pub fn verdict_table(v: &Verdict) -> String {
    table(v, None)
}

/// A run's verdict table: when the job's state could not be restored, no row reads `ok`: each
/// key says "not restored", the total says why.
pub fn report_table(r: &RunReport) -> String {
    table(&r.verdict, r.restore_failure.as_deref())
}

fn table(v: &Verdict, not_restored: Option<&str>) -> String {
    use crate::table::{Column, TextTable};
    let (l, r) = (Column::left(), Column::right());
    let mut t = TextTable::new(vec![l, r, r, r, r, l]);
    t.row(["key", "expected", "state", "lost", "overcounted", "verdict"]);
    t.rule();
    let keys: BTreeMap<_, _> = v.keys.iter().collect();
    for (k, kv) in keys {
        t.row([
            k.clone(),
            kv.expected.to_string(),
            kv.state.to_string(),
            kv.lost.to_string(),
            kv.overcounted.to_string(),
            match not_restored {
                Some(_) => "not restored".to_string(),
                None => crate::audit::summary(kv.lost, kv.overcounted),
            },
        ]);
    }
    let total = match not_restored {
        Some(reason) => format!("not restored: {reason}"),
        None => v.summary(),
    };
    // One rule under the header when there is no key: the TOTAL follows it.
    if !v.keys.is_empty() {
        t.rule();
    }
    t.row(["TOTAL".into(), v.expected.to_string(), v.state.to_string(), v.lost.to_string(), v.overcounted.to_string(), total]);
    t.render()
}
