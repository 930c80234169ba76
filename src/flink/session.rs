//! The scenario's job on ckptlab's local session cluster of processes ([`super::cluster`]):
//! submitted through REST as `flink run` would (the harness's classes as a jar,
//! `POST /jars/upload`, `POST /jars/:id/run` with `ckptlab.flink.CheckpointJob job.properties`),
//! watched through REST, and driven by process control: `kill tm-N` is SIGKILL to that
//! TaskManager's JVM, `hang tm-N` SIGSTOP, `start tm-N` a new TaskManager process. Detection is
//! Flink's own (failed RPCs and heartbeats in the JobManager, the restart strategy, slot requests).
//!
//! It answers the bridge as [`super::harness::Harness`] does, with the same [`FlinkState`] and
//! [`FlinkEvent`]s, polled every [`POLL`]: job status and every vertex's from `/jobs/:id`,
//! checkpoints from `/jobs/:id/checkpoints` (counts and history: id, status, end-to-end duration,
//! failure message), restarts from `/jobs/:id/exceptions` (one entry per failure the
//! failover handled), TaskManagers from `/taskmanagers` (a killed one is *lost* when the
//! ResourceManager drops it). What only the operators know (the sink's last count per key, read
//! positions, records emitted and received) comes from the files the TaskManagers' `Observed`
//! writes (`ckptlab.observe.dir`), merged by the newest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cluster::ClusterGuard;
use super::harness::{FlinkCheckpoint, FlinkEvent, FlinkState, HarnessError, Timed};
use super::install::Java;
use super::rest::Endpoint;

/// How often the job is looked at through REST.
pub const POLL: Duration = Duration::from_millis(100);
/// The harness job's entry class.
const ENTRY_CLASS: &str = "ckptlab.flink.CheckpointJob";

#[derive(Default)]
struct Shared {
    state: FlinkState,
    state_seq: u64,
    history: Vec<Timed>,
    gone: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// The local cluster a run used.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterSummary {
    pub rest: String,
    pub jobmanager_pid: u32,
    /// Every TaskManager process of the run: (name, pid), a restarted one again.
    pub taskmanagers: Vec<(String, u32)>,
    /// The run started it (and stopped it at its end).
    pub owned: bool,
    /// The pids killed by `kill` steps, each gone when the run looked after the kill.
    pub killed: Vec<u32>,
    /// Pids of the cluster still alive when the run ended (none when it stopped the cluster).
    pub alive_at_end: Vec<u32>,
    /// The cluster's config.yaml options beyond the distribution's (the scenario's heartbeat options).
    pub options: Vec<(String, String)>,
}

/// The job on the cluster, and the cluster (stopped with it when this run started it).
pub struct ClusterJob {
    cluster: Arc<Mutex<ClusterGuard>>,
    rest: Endpoint,
    /// The first job's id.
    pub job: String,
    /// The job the cluster runs now: a resubmission replaces it (the watcher follows it).
    current: Arc<Mutex<String>>,
    /// The uploaded jar's id, for a resubmission's `/jars/:id/run`.
    jar_id: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    poller: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    started_epoch: u64,
}

/// The harness's classes as a jar (cached beside them): what `/jars/upload` takes.
pub fn job_jar(java: &Java, harness_dir: &Path) -> Result<PathBuf, HarnessError> {
    let jar = harness_dir.join("job.jar");
    if jar.is_file() {
        return Ok(jar);
    }
    let tool = java.javac.with_file_name("jar");
    let partial = harness_dir.join(format!("job.jar.{}", std::process::id()));
    let out = Command::new(&tool)
        .arg("--create")
        .arg("--file")
        .arg(&partial)
        .arg("-C")
        .arg(harness_dir.join("classes"))
        .arg(".")
        .output()
        .map_err(|e| HarnessError::Compile { dir: harness_dir.display().to_string(), problem: format!("`{}` cannot run: {e}", tool.display()) })?;
    if !out.status.success() {
        return Err(HarnessError::Compile { dir: harness_dir.display().to_string(), problem: format!("jar failed: {}", String::from_utf8_lossy(&out.stderr)) });
    }
    std::fs::rename(&partial, &jar).map_err(|e| HarnessError::Compile { dir: harness_dir.display().to_string(), problem: e.to_string() })?;
    Ok(jar)
}

impl ClusterJob {
    /// Uploads the job and runs it with `properties`; starts watching it.
    pub fn submit(cluster: ClusterGuard, jar: &Path, properties: &Path) -> Result<ClusterJob, HarnessError> {
        let gone = |e: String| HarnessError::Gone(e);
        let cluster = Arc::new(Mutex::new(cluster));
        let (rest, observe, root) = {
            let mut g = lock(&cluster);
            let c = g.get();
            (c.rest(), c.observe_dir(), c.dir.clone())
        };
        // Figures of an earlier job on this cluster are not this one's (removed only below the
        // cluster's own directory).
        if let Ok(rd) = std::fs::read_dir(&observe) {
            for e in rd.flatten() {
                let _ = crate::workdir::remove_file_under(&root, &e.path());
            }
        }
        let bytes = std::fs::read(jar).map_err(|e| gone(format!("cannot read {}: {e}", jar.display())))?;
        let id = rest.upload_jar("ckptlab-job.jar", &bytes).map_err(|e| gone(e.to_string()))?;
        let started = Instant::now();
        let started_epoch = epoch_ms();
        let body = serde_json::json!({ "entryClass": ENTRY_CLASS, "programArgsList": [properties.display().to_string()] });
        let v = rest.post(&format!("/jars/{id}/run"), &body).map_err(|e| gone(e.to_string()))?;
        let job = v["jobid"].as_str().ok_or_else(|| gone(format!("/jars/{id}/run answered no jobid: {v}")))?.to_string();
        let shared = Arc::new(Mutex::new(Shared::default()));
        lock(&shared).history.push(Timed { at_ms: 0, event: FlinkEvent::Submitted { job: job.clone(), from: None } });
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(Mutex::new(job.clone()));
        let poller = {
            let (shared, stop, cluster, rest, current) = (shared.clone(), stop.clone(), cluster.clone(), rest.clone(), current.clone());
            std::thread::spawn(move || watch(&rest, &current, &cluster, &observe, &shared, &stop, started, started_epoch))
        };
        Ok(ClusterJob { cluster, rest, job, current, jar_id: id, shared, stop, poller: Some(poller), started, started_epoch })
    }

    /// The job the cluster runs now.
    pub fn current(&self) -> String {
        lock(&self.current).clone()
    }

    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn push(&self, event: FlinkEvent) {
        let at_ms = self.at_ms();
        lock(&self.shared).history.push(Timed { at_ms, event });
    }

    /// `kill tm-N`, `hang tm-N`, `start tm-N`, `checkpoint`, and tab-separated (they carry
    /// paths) `savepoint FORMAT DIR`, `stop-with-savepoint FORMAT DIR`, `submit PROPS [SAVEPOINT]`:
    /// these run in a thread of their own (a savepoint takes seconds) and answer with an event.
    pub fn send(&mut self, command: &str) -> Result<(), HarnessError> {
        if command.contains('\t') {
            let w: Vec<String> = command.split('\t').map(str::to_string).collect();
            let (rest, current, shared, jar, started) = (self.rest.clone(), self.current.clone(), self.shared.clone(), self.jar_id.clone(), self.started);
            let what = command.replace('\t', " ");
            std::thread::spawn(move || {
                let event = match command_with_paths(&rest, &current, &jar, &w) {
                    Ok(e) => e,
                    Err(reason) => FlinkEvent::Refused { what, reason: reason.to_string() },
                };
                let at_ms = started.elapsed().as_millis() as u64;
                lock(&shared).history.push(Timed { at_ms, event });
            });
            return Ok(());
        }
        let w: Vec<&str> = command.split_whitespace().collect();
        let refused = |what: &str, reason: String| FlinkEvent::Refused { what: what.to_string(), reason };
        let event = match (w.first().copied(), w.get(1).copied()) {
            (Some("kill"), Some(tm)) => match lock(&self.cluster).get().kill_tm(tm) {
                Ok(pid) => FlinkEvent::TmKilled { tm: tm.into(), pid },
                Err(e) => refused(command, e.to_string()),
            },
            (Some("hang"), Some(tm)) => match lock(&self.cluster).get().hang_tm(tm) {
                Ok(pid) => FlinkEvent::TmHung { tm: tm.into(), pid },
                Err(e) => refused(command, e.to_string()),
            },
            (Some("start"), Some(tm)) => match lock(&self.cluster).get().spawn_tm(tm) {
                Ok(d) => FlinkEvent::TmProcessStarted { tm: tm.into(), pid: d.pid },
                Err(e) => refused(command, e.to_string()),
            },
            (Some("checkpoint"), None) => match self.rest.post(&format!("/jobs/{}/checkpoints", self.current()), &serde_json::json!({})) {
                Ok(_) => return Ok(()),
                Err(e) => refused(command, e.to_string()),
            },
            _ => refused(command, "unknown command".into()),
        };
        self.push(event);
        Ok(())
    }

    pub fn state(&self) -> (FlinkState, u64) {
        let g = lock(&self.shared);
        (g.state.clone(), g.state_seq)
    }

    pub fn history(&self) -> Vec<Timed> {
        let mut h = lock(&self.shared).history.clone();
        // Failures carry Flink's own timestamps, which may be earlier than when they were seen.
        h.sort_by_key(|t| t.at_ms);
        h
    }

    pub fn gone(&self) -> Option<String> {
        lock(&self.shared).gone.clone()
    }

    /// The cluster's address and processes (before the shutdown).
    pub fn summary(&self) -> ClusterSummary {
        let mut g = lock(&self.cluster);
        let c = g.get();
        ClusterSummary {
            rest: c.rest_url(),
            jobmanager_pid: c.file.jobmanager.pid,
            taskmanagers: c.file.taskmanagers.iter().map(|d| (d.name.clone(), d.pid)).collect(),
            owned: c.owned,
            killed: Vec::new(),
            alive_at_end: Vec::new(),
            options: c.file.options.clone(),
        }
    }

    /// Epoch ms of this job's t = 0 (its submission).
    pub fn started_epoch(&self) -> u64 {
        self.started_epoch
    }

    /// Cancels the job (`PATCH /jobs/:id?mode=cancel`), waits up to `grace` for it to end, and
    /// lets the guard resume hung TaskManagers and stop a cluster this run started.
    pub fn shutdown(mut self, grace: Duration) {
        lock(&self.cluster).get().resume_all();
        let job = self.current();
        let _ = self.rest.patch(&format!("/jobs/{job}?mode=cancel"));
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.rest.get(&format!("/jobs/{job}")) {
                Ok(v) if matches!(v["state"].as_str(), Some("CANCELED" | "FAILED" | "FINISHED")) => break,
                Err(_) => break,
                _ => std::thread::sleep(POLL),
            }
        }
        self.stop_watching();
    }

    fn stop_watching(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

impl Drop for ClusterJob {
    fn drop(&mut self) {
        // The watcher first: it holds the cluster too. Then the guard (dropped with the last
        // reference) stops a cluster this run started.
        self.stop_watching();
    }
}

/// How long a savepoint through REST may take before the bridge gives up on it.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a savepoint or a submission through REST did not complete (the reason of the
/// [`FlinkEvent::Refused`] it answers with).
#[derive(Debug, thiserror::Error)]
enum PathCommandError {
    /// Flink's REST API answered with an error (its first lines).
    #[error("{}", first_lines(&.0.to_string()))]
    Rest(#[from] super::rest::RestError),
    #[error("{path} answered no {field}: {answer}")]
    NoField { path: String, field: &'static str, answer: serde_json::Value },
    /// The operation failed on Flink: its exception's first lines.
    #[error("{}", first_lines(.0))]
    Failed(String),
    #[error("no outcome after {}s", .0.as_secs())]
    NoOutcome(Duration),
    #[error("unknown command")]
    Unknown,
}

/// A savepoint, a stop-with-savepoint or a resubmission through REST, as `flink savepoint`,
/// `flink stop` and `flink run -s` do it; the event it ends with, or why it failed (Flink's words).
fn command_with_paths(rest: &Endpoint, current: &Mutex<String>, jar: &str, w: &[String]) -> Result<FlinkEvent, PathCommandError> {
    let job = lock(current).clone();
    match w.first().map(String::as_str) {
        Some(kind @ ("savepoint" | "stop-with-savepoint")) => {
            let (format, dir) = (w.get(1).cloned().unwrap_or_default(), w.get(2).cloned().unwrap_or_default());
            let stop = kind == "stop-with-savepoint";
            // Flink 2.3's StopWithSavepointRequestBody (targetDirectory, drain, formatType) for
            // POST /jobs/:id/stop, SavepointTriggerRequestBody (target-directory, cancel-job,
            // formatType) for POST /jobs/:id/savepoints; both answer a TriggerResponse's
            // request-id, polled at GET /jobs/:id/savepoints/:triggerid (SavepointStatusHandler)
            // until status.id = COMPLETED with operation.location or operation.failure-cause.
            let (path, body) = if stop {
                (format!("/jobs/{job}/stop"), serde_json::json!({ "targetDirectory": dir, "drain": false, "formatType": format }))
            } else {
                (format!("/jobs/{job}/savepoints"), serde_json::json!({ "target-directory": dir, "cancel-job": false, "formatType": format }))
            };
            let v = rest.post(&path, &body)?;
            let trigger = v["request-id"].as_str().ok_or_else(|| PathCommandError::NoField { path: path.clone(), field: "request-id", answer: v.clone() })?.to_string();
            let deadline = Instant::now() + SAVEPOINT_TIMEOUT;
            loop {
                let s = rest.get(&format!("/jobs/{job}/savepoints/{trigger}"))?;
                if s["status"]["id"] == "COMPLETED" {
                    let op = &s["operation"];
                    if let Some(location) = op["location"].as_str() {
                        let id = savepoint_id(rest, &job, location);
                        return Ok(FlinkEvent::SavepointCompleted { stop, format, path: location.to_string(), id });
                    }
                    let cause = &op["failure-cause"];
                    let text = cause["serialized-throwable"].as_str().or(cause["class"].as_str()).map(str::to_string).unwrap_or_else(|| cause.to_string());
                    return Err(PathCommandError::Failed(text));
                }
                if Instant::now() >= deadline {
                    return Err(PathCommandError::NoOutcome(SAVEPOINT_TIMEOUT));
                }
                std::thread::sleep(POLL);
            }
        }
        Some("submit") => {
            let props = w.get(1).cloned().unwrap_or_default();
            let savepoint = w.get(2).cloned();
            // JarRunRequestBody: savepointPath, allowNonRestoredState (false: `flink run -s` without -n).
            let mut body = serde_json::json!({ "entryClass": ENTRY_CLASS, "programArgsList": [props] });
            if let Some(sp) = &savepoint {
                body["savepointPath"] = serde_json::Value::String(sp.clone());
                body["allowNonRestoredState"] = serde_json::Value::Bool(false);
            }
            let v = rest.post(&format!("/jars/{jar}/run"), &body)?;
            let new = v["jobid"].as_str().ok_or_else(|| PathCommandError::NoField { path: format!("/jars/{jar}/run"), field: "jobid", answer: v.clone() })?.to_string();
            *lock(current) = new.clone();
            Ok(FlinkEvent::Submitted { job: new, from: savepoint })
        }
        _ => Err(PathCommandError::Unknown),
    }
}

/// A Java exception's text cut to its first lines (a stack trace says more than a narration can).
fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with("at ")).take(6).collect();
    lines.join(" | ")
}

/// The checkpoint id of the savepoint at `location` in the job's statistics (its history).
fn savepoint_id(rest: &Endpoint, job: &str, location: &str) -> Option<u64> {
    let cp = rest.get(&format!("/jobs/{job}/checkpoints")).ok()?;
    cp["history"].as_array()?.iter().find(|c| c["external_path"].as_str() == Some(location)).and_then(|c| c["id"].as_u64())
}

/// The operators' figures, merged over the TaskManagers' files by the newest: the sink's last
/// count per key, each partition's read position, and (for caught-up) the records emitted by the
/// newest reader of each source subtask and received by the newest sink writer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Observed {
    pub counts: BTreeMap<String, u64>,
    pub positions: BTreeMap<String, u64>,
    pub emitted: u64,
    pub received: u64,
    pub output_lines: u64,
    /// Epoch ms of the last record read or written anywhere (0: none).
    pub activity: u64,
}

/// Merges the `observe-*.json` texts; figures set before `since` (epoch ms) are an earlier job's.
pub fn merge_observed(texts: &[String], since: u64) -> Observed {
    let pair = |v: &serde_json::Value| Some((v.get(0)?.as_u64()?, v.get(1)?.as_u64()?));
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut positions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut readers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut sink: Option<(u64, u64)> = None;
    let mut out = Observed::default();
    let newer = |m: &mut BTreeMap<String, (u64, u64)>, k: &str, (v, at): (u64, u64)| {
        if at >= since && m.get(k).is_none_or(|(_, a)| at >= *a) {
            m.insert(k.to_string(), (v, at));
        }
    };
    for t in texts {
        let Ok(j) = serde_json::from_str::<serde_json::Value>(t) else { continue };
        let fields = [("counts", &mut counts), ("positions", &mut positions), ("readers", &mut readers)];
        for (name, map) in fields {
            for (k, v) in j[name].as_object().into_iter().flatten() {
                if let Some(p) = pair(v) {
                    newer(map, k, p);
                }
            }
        }
        if let Some((received, at)) = pair(&j["sink"]) {
            if at >= since && sink.is_none_or(|(_, a)| at >= a) {
                sink = Some((received, at));
            }
        }
        let activity = j["activity"].as_u64().unwrap_or(0);
        if activity >= since {
            out.output_lines += j["output_lines"].as_u64().unwrap_or(0);
            out.activity = out.activity.max(activity);
        }
    }
    out.counts = counts.into_iter().map(|(k, (v, _))| (k, v)).collect();
    out.positions = positions.into_iter().map(|(k, (v, _))| (k, v)).collect();
    out.emitted = readers.values().map(|(v, _)| v).sum();
    out.received = sink.map(|(r, _)| r).unwrap_or(0);
    out
}

fn read_observed(dir: &Path, since: u64) -> Observed {
    let texts: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    merge_observed(&texts, since)
}

/// The watcher: polls REST and the observe files until `stop`, updating `shared`.
#[allow(clippy::too_many_arguments)]
fn watch(
    rest: &Endpoint,
    current: &Mutex<String>,
    cluster: &Mutex<ClusterGuard>,
    observe: &Path,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    started: Instant,
    started_epoch: u64,
) {
    let at = || started.elapsed().as_millis() as u64;
    let push = |event: FlinkEvent, at_ms: u64| lock(shared).history.push(Timed { at_ms, event });
    let mut last_status = String::new();
    let mut reported: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut failures_seen: BTreeSet<(u64, String)> = BTreeSet::new();
    let mut last_completed = 0;
    let mut last_failed = 0;
    let mut last_restarts = 0;
    let mut registered: BTreeMap<String, String> = BTreeMap::new();
    let mut entered: BTreeMap<String, u64> = BTreeMap::new();
    let mut misses = 0;
    let mut turn = 0u64;
    // The jobs before the current one: their figures (a resubmission's own start at 0).
    let mut job = lock(current).clone();
    let mut base = (0u64, 0u64, 0u64);
    let mut own = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Acquire) {
        turn += 1;
        let now = lock(current).clone();
        if now != job {
            base = (base.0 + own.0, base.1 + own.1, base.2 + own.2);
            own = (0, 0, 0);
            job = now;
            last_status.clear();
            failures_seen.clear();
            entered.clear();
        }
        let job = job.as_str();
        let details = match rest.get(&format!("/jobs/{job}")) {
            Ok(v) => {
                misses = 0;
                v
            }
            Err(e) => {
                misses += 1;
                // The JobManager gone for a second and more: the run cannot go on.
                if misses >= 10 {
                    lock(shared).gone = Some(format!("the JobManager stopped answering: {e}"));
                    return;
                }
                std::thread::sleep(POLL);
                continue;
            }
        };
        let status = details["state"].as_str().unwrap_or("UNKNOWN").to_string();
        let vertices = details["vertices"].as_array().cloned().unwrap_or_default();
        let all_running = status == "RUNNING" && !vertices.is_empty() && vertices.iter().all(|v| v["status"] == "RUNNING");
        let s = format!("{status}{}", if all_running { "/all-running" } else { "" });
        if s != last_status {
            push(FlinkEvent::Status { status: status.clone(), all_running }, at());
            last_status = s;
        }
        // When the job entered each state, by Flink's clock: a failover's moments exactly.
        for (state, ts) in details["timestamps"].as_object().into_iter().flatten() {
            let Some(ts) = ts.as_u64().filter(|t| *t > 0) else { continue };
            if entered.get(state) != Some(&ts) {
                entered.insert(state.clone(), ts);
                push(FlinkEvent::StateEntered { status: state.clone() }, ts.saturating_sub(started_epoch));
            }
        }
        let mut st = lock(shared).state.clone();
        st.status = status;
        st.all_running = all_running;
        if let Ok(cp) = rest.get(&format!("/jobs/{job}/checkpoints")) {
            own.0 = cp["counts"]["completed"].as_u64().unwrap_or(0);
            own.1 = cp["counts"]["failed"].as_u64().unwrap_or(0);
            st.checkpoints_completed = base.0 + own.0;
            st.checkpoints_failed = base.1 + own.1;
            let mut ended: Vec<&serde_json::Value> = cp["history"].as_array().into_iter().flatten().collect();
            ended.sort_by_key(|c| c["id"].as_u64());
            for c in ended {
                let (Some(id), Some(status)) = (c["id"].as_u64(), c["status"].as_str()) else { continue };
                if status == "IN_PROGRESS" || c["is_savepoint"] == true || !reported.insert((job.to_string(), id)) {
                    continue;
                }
                let message = c["failure_message"].as_str().map(str::to_string);
                // CheckpointingStatistics: end_to_end_duration, persisted_data (the in-flight data
                // of an unaligned checkpoint), is_unaligned; alignment is per subtask only
                // (/jobs/:id/checkpoints/details/:cid/subtasks/:vid), one call per vertex.
                let alignment_ms = (status == "COMPLETED").then(|| alignment_of(rest, job, id)).flatten();
                push(
                    FlinkEvent::Checkpoint(FlinkCheckpoint {
                        id,
                        status: status.to_string(),
                        duration_ms: c["end_to_end_duration"].as_u64().unwrap_or(0),
                        reason: message.as_deref().and_then(reason_of),
                        message,
                        persisted_bytes: c["persisted_data"].as_u64(),
                        alignment_ms,
                        unaligned: c["is_unaligned"].as_bool(),
                        job: Some(job.to_string()),
                    }),
                    at(),
                );
            }
        }
        if st.checkpoints_completed > last_completed {
            push(FlinkEvent::CheckpointCompleted { completed: st.checkpoints_completed }, at());
            last_completed = st.checkpoints_completed;
        }
        if st.checkpoints_failed > last_failed {
            push(FlinkEvent::CheckpointFailed { failed: st.checkpoints_failed }, at());
            last_failed = st.checkpoints_failed;
        }
        // Failures, TaskManagers: every other turn (they change on a kill, not per record).
        if turn % 2 == 0 {
            if let Ok(ex) = rest.get(&format!("/jobs/{job}/exceptions")) {
                let entries = ex["exceptionHistory"]["entries"].as_array().cloned().unwrap_or_default();
                for e in &entries {
                    let ts = e["timestamp"].as_u64().unwrap_or(0);
                    let name = e["exceptionName"].as_str().unwrap_or("").to_string();
                    if failures_seen.insert((ts, name.clone())) {
                        let message = e["stacktrace"].as_str().and_then(|s| s.lines().next()).unwrap_or("").to_string();
                        let tm = e["taskManagerId"].as_str().map(str::to_string);
                        let task = e["taskName"].as_str().map(str::to_string);
                        push(FlinkEvent::Failure { exception: name, message, task, tm }, ts.saturating_sub(started_epoch));
                    }
                }
                // One entry per failure the failover handled (each a restart), unless it failed the job.
                own.2 = entries.len() as u64 - u64::from(st.status == "FAILED" && !entries.is_empty());
                let restarts = base.2 + own.2;
                st.restarts = restarts;
                if restarts > last_restarts {
                    push(FlinkEvent::Restart { attempt: restarts }, at());
                    last_restarts = restarts;
                }
            }
            // The processes under the lock, the REST call outside it (a kill must not wait for it).
            let daemons = lock(cluster).0.as_ref().map(|c| c.file.taskmanagers.clone()).unwrap_or_default();
            if let Ok(v) = rest.get("/taskmanagers") {
                // By ResourceID: a tm-N started again registers under a new one, maybe before the
                // old one is dropped.
                let now: BTreeMap<String, String> = super::cluster::registered_in(&v, &daemons).into_iter().map(|(tm, id)| (id, tm)).collect();
                for (id, tm) in &now {
                    if !registered.contains_key(id) {
                        push(FlinkEvent::TmRegistered { tm: tm.clone(), resource_id: id.clone() }, at());
                    }
                }
                for (id, tm) in &registered {
                    if !now.contains_key(id) {
                        push(FlinkEvent::TmLost { tm: tm.clone(), resource_id: id.clone() }, at());
                    }
                }
                registered = now;
            }
        }
        let o = read_observed(observe, started_epoch);
        st.counts = o.counts;
        st.positions = o.positions;
        st.emitted = o.emitted;
        st.received = o.received;
        st.output_lines = o.output_lines;
        st.quiet_ms = if o.activity == 0 { epoch_ms().saturating_sub(started_epoch) } else { epoch_ms().saturating_sub(o.activity) };
        {
            let mut g = lock(shared);
            g.state = st;
            g.state_seq += 1;
        }
        std::thread::sleep(POLL);
    }
}

/// The longest alignment of any subtask of checkpoint `id` (the `alignment.duration` maxima of
/// TaskCheckpointStatisticsWithSubtaskDetails' summary, one vertex at a time).
fn alignment_of(rest: &Endpoint, job: &str, id: u64) -> Option<u64> {
    let d = rest.get(&format!("/jobs/{job}/checkpoints/details/{id}")).ok()?;
    let mut max = None;
    for vid in d["tasks"].as_object()?.keys() {
        let s = rest.get(&format!("/jobs/{job}/checkpoints/details/{id}/subtasks/{vid}")).ok()?;
        if let Some(m) = s["summary"]["alignment"]["duration"]["max"].as_u64() {
            max = Some(max.unwrap_or(0).max(m));
        }
    }
    max
}

/// The `CheckpointFailureReason` of a failure message (as Harness.reasonOf: the statistics keep
/// the message only; a CheckpointException's is its reason's message, or "PREFIX Failure reason: " + it).
fn reason_of(message: &str) -> Option<String> {
    let tail = message.rsplit_once(" Failure reason: ").map(|(_, t)| t).unwrap_or(message);
    REASONS.iter().find(|(_, m)| *m == tail || *m == message).map(|(r, _)| r.to_string())
}

/// Flink 2.3.0's `CheckpointFailureReason`s: each name and its `message()` (printed from the enum
/// in flink-dist-2.3.0.jar by a one-off Java program; the REST API gives the message only).
const REASONS: &[(&str, &str)] = &[
    ("PERIODIC_SCHEDULER_SHUTDOWN", "Periodic checkpoint scheduler is shut down."),
    ("TOO_MANY_CHECKPOINT_REQUESTS", "The maximum number of queued checkpoint requests exceeded"),
    ("MINIMUM_TIME_BETWEEN_CHECKPOINTS", "The minimum time between checkpoints is still pending. Checkpoint will be triggered after the minimum time."),
    ("NOT_ALL_REQUIRED_TASKS_RUNNING", "Not all required tasks are currently running."),
    ("IO_EXCEPTION", "An Exception occurred while triggering the checkpoint. IO-problem detected."),
    ("BLOCKING_OUTPUT_EXIST", "Blocking output edge exists in running tasks."),
    ("CHECKPOINT_ASYNC_EXCEPTION", "Asynchronous task checkpoint failed."),
    ("CHANNEL_STATE_SHARED_STREAM_EXCEPTION", "The checkpoint was aborted due to exception of other subtasks sharing the ChannelState file."),
    ("CHECKPOINT_EXPIRED", "Checkpoint expired before completing."),
    ("CHECKPOINT_SUBSUMED", "Checkpoint has been subsumed."),
    ("CHECKPOINT_DECLINED", "Checkpoint was declined."),
    ("CHECKPOINT_DECLINED_TASK_NOT_READY", "Checkpoint was declined (tasks not ready)"),
    ("CHECKPOINT_DECLINED_TASK_CLOSING", "Checkpoint was declined (task is closing)"),
    ("CHECKPOINT_DECLINED_SUBSUMED", "Checkpoint was canceled because a barrier from newer checkpoint was received."),
    ("CHECKPOINT_DECLINED_ON_CANCELLATION_BARRIER", "Task received cancellation from one of its inputs"),
    ("CHECKPOINT_DECLINED_INPUT_END_OF_STREAM", "Checkpoint was declined because one input stream is finished"),
    ("CHECKPOINT_COORDINATOR_SHUTDOWN", "CheckpointCoordinator shutdown."),
    ("CHECKPOINT_COORDINATOR_SUSPEND", "Checkpoint Coordinator is suspending."),
    ("JOB_FAILOVER_REGION", "FailoverRegion is restarting."),
    ("TASK_FAILURE", "Task has failed."),
    ("TASK_CHECKPOINT_FAILURE", "Task local checkpoint failure."),
    ("UNKNOWN_TASK_CHECKPOINT_NOTIFICATION_FAILURE", "Unknown task for the checkpoint to notify."),
    ("FINALIZE_CHECKPOINT_FAILURE", "Failure to finalize checkpoint."),
    ("TRIGGER_CHECKPOINT_FAILURE", "Trigger checkpoint failure."),
];


#[cfg(test)]
mod tests {
    use super::*;

    /// Two TaskManagers' files after a restart: tm-1 (killed) holds the first attempt's figures,
    /// tm-2 the second's; a third file is an earlier job's.
    #[test]
    fn observed_figures_merge_by_the_newest_and_skip_an_earlier_jobs() {
        let killed = r#"{"pid":1,"at":1500,"output_lines":3,"activity":1400,"sink":[3,1100],"counts":{"1":[3,1400]},"positions":{"0":[2,1300],"1":[1,1300]},"readers":{"0":[2,1100],"1":[1,1100]}}"#;
        let alive = r#"{"pid":2,"at":5000,"output_lines":3,"activity":4900,"sink":[3,4000],"counts":{"1":[6,4900]},"positions":{"0":[4,4800]},"readers":{"0":[2,4000],"1":[1,4000]}}"#;
        let old = r#"{"pid":3,"at":900,"output_lines":50,"activity":800,"sink":[50,100],"counts":{"x":[50,800]},"positions":{"1":[99,800]},"readers":{"2":[50,100]}}"#;
        let o = merge_observed(&[killed.into(), alive.into(), old.into(), "not json".into()], 1000);
        assert_eq!(o.counts, BTreeMap::from([("1".to_string(), 6)]));
        // Partition 1's newest position is the killed TM's (the new reader has not set it yet).
        assert_eq!(o.positions, BTreeMap::from([("0".to_string(), 4), ("1".to_string(), 1)]));
        assert_eq!((o.emitted, o.received, o.output_lines, o.activity), (3, 3, 6, 4900));
    }

    #[test]
    fn failure_reasons_are_read_from_their_messages() {
        assert_eq!(reason_of("Checkpoint expired before completing.").as_deref(), Some("CHECKPOINT_EXPIRED"));
        assert_eq!(reason_of("Checkpoint 7 failed. Failure reason: Task has failed.").as_deref(), Some("TASK_FAILURE"));
        assert_eq!(reason_of("something new"), None);
    }
}
