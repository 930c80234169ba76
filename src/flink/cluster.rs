//! A local Flink 2.3 standalone session cluster of processes, as the seed's `start-cluster.sh`
//! makes one: a JobManager JVM (`StandaloneSessionClusterEntrypoint`) and N TaskManager JVMs
//! (`TaskManagerRunner`) on 127.0.0.1, from the flink-dist jar the bridge installs.
//!
//! Each JVM is started the way Flink's bin scripts start it (flink-dist/src/main/flink-bin/bin:
//! `jobmanager.sh` / `taskmanager.sh` -> `flink-daemon.sh`): memory options from
//! `BashJavaUtils GET_JM_RESOURCE_PARAMS` / `GET_TM_RESOURCE_PARAMS` (config.sh
//! `parseResourceParamsAndExportLogs`: the first result line is JVM options, the second dynamic
//! `-D` properties put before the arguments), then
//! `java $JVM_ARGS -XX:+IgnoreUnrecognizedVMOptions $env.java.opts.all -Dlog.file=... -Dlog4j.configuration[File]=file:conf/log4j.properties -classpath <lib/*.jar sorted, flink-dist last> CLASS --configDir conf [--executionMode cluster]`,
//! stdout and stderr to the daemon's `.out` file. The cluster lives in `<ckptlab home>/flink-cluster`:
//! `conf/config.yaml` (Flink's distribution config.yaml on 127.0.0.1 with free ports), `log/`,
//! one pid file per process (`pids/jobmanager.pid`, `pids/tm-N.pid`) and `cluster.json` (ports,
//! pids, names), so that a cluster a dead ckptlab left is found and can be stopped. A pid counts
//! as the cluster's only while `/proc/PID/cmdline` names this conf directory (a reused pid is not
//! ours).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::install::{self, FlinkJars, InstallError, Java};
use super::rest::{Endpoint, RestError};

/// The JobManager's entry point (flink-daemon.sh `standalonesession`).
pub const JOBMANAGER_CLASS: &str = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint";
/// A TaskManager's entry point (flink-daemon.sh `taskexecutor`).
pub const TASKMANAGER_CLASS: &str = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner";
const BASH_JAVA_UTILS: &str = "org.apache.flink.runtime.util.bash.BashJavaUtils";
/// BashJavaUtils' prefix of a result line (`BashJavaUtils.EXECUTION_PREFIX`).
const EXECUTION_PREFIX: &str = "BASH_JAVA_UTILS_EXEC_RESULT:";
/// Flink 2.3.0's distribution config.yaml (flink-dist-2.3.0.jar!/config.yaml), `env.java.opts.all`:
/// the module openings Flink needs on Java 17.
const DIST_JAVA_OPTS: &str = "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.api=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.parser=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.tree=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.util=ALL-UNNAMED --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED";
/// Process sizes: smaller than the distribution's 1600m / 1728m, so that three JVMs sit lightly
/// on a shared machine; every other memory option keeps Flink's default (the TM's task heap is
/// then 160 MB).
const JM_PROCESS_SIZE: &str = "1024m";
const TM_PROCESS_SIZE: &str = "1280m";
/// The cluster's log configuration, written as conf/log4j.properties.
const LOG4J: &str = include_str!("../../assets/flink/cluster-log4j.properties");
/// How long the cluster may take to answer on REST and register every TaskManager.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `stop` waits after SIGTERM before SIGKILL (flink-daemon.sh `guaranteed_kill`: 10 s).
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("cannot {what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    WorkDir(#[from] crate::workdir::WorkDirError),
    #[error("a local Flink cluster is already running (JobManager pid {pid}, REST {rest}): `ckptlab flink cluster stop` ends it")]
    AlreadyRunning { pid: u32, rest: String },
    #[error("no local Flink cluster is running (`ckptlab flink cluster start` starts one)")]
    NotRunning,
    #[error("BashJavaUtils {command} (Flink's memory calculation, as its bin scripts run it) failed: {output}")]
    Resources { command: &'static str, output: String },
    #[error("cannot start {name} ({java}): {source}")]
    Spawn { name: String, java: String, source: std::io::Error },
    #[error("{name} (pid {pid}) ended while the cluster started; the end of {}:\n{tail}", log.display())]
    Died { name: String, pid: u32, log: PathBuf, tail: String },
    #[error("the cluster did not come up within {}s: {why} (logs in {})", START_TIMEOUT.as_secs(), dir.display())]
    Timeout { why: String, dir: PathBuf },
    #[error("no task manager {name} in the local cluster (it has {known})")]
    NoSuchTm { name: String, known: String },
    #[error("{name} is still running (pid {pid}): kill it before starting it again")]
    TmRunning { name: String, pid: u32 },
    #[error(transparent)]
    Rest(#[from] RestError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError {
    let path = path.to_path_buf();
    move |source| ClusterError::Io { what, path, source }
}

/// One JVM of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Daemon {
    /// `jobmanager` or `tm-N`.
    pub name: String,
    pub pid: u32,
    /// Its log (`-Dlog.file`) and its stdout/stderr.
    pub log: PathBuf,
    pub out: PathBuf,
    /// The RPC port it was given (a TaskManager's `taskmanager.rpc.port`; the JobManager's
    /// `jobmanager.rpc.port`): how a TaskManager is found in REST /taskmanagers.
    pub rpc_port: u16,
    /// When it was started, ms since the Unix epoch.
    pub started_ms: u64,
}

/// What `cluster.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub flink_version: String,
    pub rest_port: u16,
    pub slots: usize,
    /// The ckptlab process that started it.
    pub started_by: u32,
    pub jobmanager: Daemon,
    /// Every TaskManager process started, in order (a restarted tm-N is a new entry).
    pub taskmanagers: Vec<Daemon>,
    /// The Flink options beyond the distribution's (heartbeat, ...), as config.yaml has them.
    #[serde(default)]
    pub options: Vec<(String, String)>,
    /// What started it, as `status` says it: `ckptlab flink cluster start`, or a `ckptlab flink
    /// run` that stops it at its end.
    #[serde(default)]
    pub started_for: String,
    /// Which command started it (none in a file written before this was recorded: see
    /// [`ClusterFile::started_by_run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starter: Option<Starter>,
}

impl ClusterFile {
    /// Whether a `ckptlab flink run` started it (and so stops it at its end, and leaves it
    /// behind if it dies).
    pub fn started_by_run(&self) -> bool {
        match self.starter {
            Some(Starter::Run) => true,
            Some(Starter::ClusterStart) => false,
            // A cluster.json from before `starter` was recorded: only its text tells.
            None => self.started_for.contains("flink run"),
        }
    }
}

/// The command that starts a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Starter {
    /// `ckptlab flink cluster start`: the cluster runs until `ckptlab flink cluster stop`.
    ClusterStart,
    /// `ckptlab flink run --cluster local` when no cluster ran: stopped at the run's end.
    Run,
}

impl Starter {
    /// What `status` says started it, the process `pid` of ckptlab that did.
    pub fn describe(self, pid: u32) -> String {
        match self {
            Starter::ClusterStart => "ckptlab flink cluster start".to_string(),
            Starter::Run => format!("ckptlab flink run (pid {pid})"),
        }
    }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Who starts it, for `status` and for who stops it.
    pub starter: Starter,
    pub taskmanagers: usize,
    pub slots: usize,
    /// Flink options for config.yaml beyond the distribution's (a scenario's heartbeat options).
    pub options: Vec<(String, String)>,
}

/// A TaskManager as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TmStatus {
    pub name: String,
    pub pid: u32,
    /// Alive, `stopped` (SIGSTOP: hung), or gone.
    pub state: ProcState,
    pub rpc_port: u16,
    /// Its ResourceID as the JobManager knows it (REST /taskmanagers `id`), when registered.
    pub resource_id: Option<String>,
    pub slots: Option<u64>,
    pub free_slots: Option<u64>,
    pub log: PathBuf,
}

/// What `/proc` says of one of the cluster's pids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcState {
    Running,
    /// Stopped by a signal (a `hang`).
    Stopped,
    /// Gone, a zombie, or a pid now used by another program.
    Gone,
}

/// The cluster's directory: `<ckptlab home>/flink-cluster`.
pub fn cluster_dir() -> Result<PathBuf, ClusterError> {
    let home = crate::workdir::prepare_home()?;
    Ok(home.join("flink-cluster"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// A free TCP port on 127.0.0.1 (bound and released: another program could take it meanwhile,
/// which the JVM then reports as a bind failure in its log).
pub fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind a port on", Path::new("127.0.0.1")))?;
    Ok(l.local_addr().map_err(io("read the port of", Path::new("127.0.0.1")))?.port())
}

/// `pid`'s state, and whether its command line names `conf` (so it is this cluster's JVM).
pub fn proc_state(pid: u32, conf: &Path) -> ProcState {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let conf = conf.as_os_str().as_encoded_bytes();
    if cmdline.is_empty() || !cmdline.windows(conf.len()).any(|w| w == conf) {
        return ProcState::Gone;
    }
    // /proc/PID/stat: "pid (comm) S ...": the state letter follows the last ')'.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) {
        Some('Z') | Some('X') | None => ProcState::Gone,
        Some('T') | Some('t') => ProcState::Stopped,
        Some(_) => ProcState::Running,
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory preconditions; a pid that is gone yields ESRCH, ignored.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Flink's classpath as config.sh `constructFlinkClassPath` builds it: every jar under lib/,
/// sorted, flink-dist last.
pub fn flink_classpath(lib: &Path) -> Result<String, ClusterError> {
    let mut jars = Vec::new();
    let mut stack = vec![lib.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io("read", &d))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jar") {
                jars.push(p);
            }
        }
    }
    jars.sort();
    let (dist, rest): (Vec<PathBuf>, Vec<PathBuf>) =
        jars.into_iter().partition(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("flink-dist")));
    Ok(rest.iter().chain(dist.iter()).map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"))
}

/// Where `bin/bash-java-utils.jar` is: beside lib/ (a distribution's or the PyPI package's).
fn bash_java_utils_jar(jars: &FlinkJars) -> PathBuf {
    jars.lib.parent().unwrap_or(&jars.lib).join("bin").join("bash-java-utils.jar")
}

/// The JVM options and dynamic properties BashJavaUtils computes for `command`
/// (`GET_JM_RESOURCE_PARAMS` or `GET_TM_RESOURCE_PARAMS`) from `conf`.
fn resource_params(java: &Java, jars: &FlinkJars, conf: &Path, command: &'static str) -> Result<(Vec<String>, Vec<String>), ClusterError> {
    let dist = std::fs::read_dir(&jars.lib)
        .map_err(io("read", &jars.lib))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("flink-dist")))
        .ok_or_else(|| ClusterError::Resources { command, output: format!("no flink-dist jar in {}", jars.lib.display()) })?;
    let out = Command::new(&java.java)
        .arg("-classpath")
        .arg(format!("{}:{}", bash_java_utils_jar(jars).display(), dist.display()))
        .arg(BASH_JAVA_UTILS)
        .arg(command)
        .arg("--configDir")
        .arg(conf)
        .output()
        .map_err(|e| ClusterError::Resources { command, output: e.to_string() })?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let results: Vec<&str> = text.lines().filter_map(|l| l.find(EXECUTION_PREFIX).map(|i| &l[i + EXECUTION_PREFIX.len()..])).collect();
    if !out.status.success() || results.len() != 2 {
        return Err(ClusterError::Resources { command, output: text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n") });
    }
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    Ok((words(results[0]), words(results[1])))
}

/// config.yaml: Flink 2.3's distribution config.yaml (flat keys) on 127.0.0.1 with free ports.
fn config_yaml(rpc_port: u16, rest_port: u16, slots: usize, observe: &Path, options: &[(String, String)]) -> String {
    let mut lines = vec![
        "# Written by `ckptlab flink cluster start`: Flink 2.3.0's distribution config.yaml".to_string(),
        "# (flink-dist-2.3.0.jar!/config.yaml) with every address 127.0.0.1, free ports for the".to_string(),
        "# JobManager's RPC and REST, smaller process sizes (distribution: 1600m / 1728m), and the".to_string(),
        "# scenario's cluster options last. Everything else is Flink's default.".to_string(),
        format!("env.java.opts.all: {DIST_JAVA_OPTS}"),
        "jobmanager.bind-host: 127.0.0.1".into(),
        "jobmanager.rpc.address: 127.0.0.1".into(),
        format!("jobmanager.rpc.port: {rpc_port}"),
        format!("jobmanager.memory.process.size: {JM_PROCESS_SIZE}"),
        "jobmanager.execution.failover-strategy: region".into(),
        "taskmanager.bind-host: 127.0.0.1".into(),
        "taskmanager.host: 127.0.0.1".into(),
        format!("taskmanager.numberOfTaskSlots: {slots}"),
        format!("taskmanager.memory.process.size: {TM_PROCESS_SIZE}"),
        "# ckptlab's instrumentation: where the job's operators write what ckptlab judges (Observed.java).".into(),
        format!("env.java.opts.taskmanager: -Dckptlab.observe.dir={}", observe.display()),
        "parallelism.default: 1".into(),
        "rest.address: 127.0.0.1".into(),
        "rest.bind-address: 127.0.0.1".into(),
        format!("rest.port: {rest_port}"),
        "# The REST handlers' execution-graph cache (default 3000 ms): ckptlab polls /jobs/:id for the".into(),
        "# moments of a failover, which a 3 s cache would show late. It changes nothing in the job.".into(),
        "web.refresh-interval: 100".into(),
    ];
    for (k, v) in options {
        lines.push(format!("{k}: {v}"));
    }
    lines.join("\n") + "\n"
}

/// The last lines of a file (for an error).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A local cluster: its directory, its processes, and the handles of those this process started
/// (waited for after a kill, so that a killed pid is really gone, not a zombie).
pub struct LocalCluster {
    pub dir: PathBuf,
    pub file: ClusterFile,
    java: Option<Java>,
    jars: Option<FlinkJars>,
    tm_params: Option<(Vec<String>, Vec<String>)>,
    children: BTreeMap<u32, Child>,
    /// The cluster was started by this process (and `stop` at the end is this process's to do).
    pub owned: bool,
}

impl LocalCluster {
    fn conf(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// Where the TaskManagers' `Observed` writes its figures (`-Dckptlab.observe.dir`).
    pub fn observe_dir(&self) -> PathBuf {
        self.dir.join("observe")
    }

    pub fn rest(&self) -> Endpoint {
        Endpoint { host: "127.0.0.1".into(), port: self.file.rest_port }
    }

    pub fn rest_url(&self) -> String {
        self.rest().url()
    }

    /// The cluster [`cluster_dir`] records (its processes may be alive or gone), if any.
    pub fn find() -> Result<Option<LocalCluster>, ClusterError> {
        let dir = cluster_dir()?;
        let Some(file) = read_file(&dir) else { return Ok(None) };
        let c = LocalCluster { dir, file, java: None, jars: None, tm_params: None, children: BTreeMap::new(), owned: false };
        Ok(Some(c))
    }

    /// Whether any of its processes is alive.
    pub fn any_alive(&self) -> bool {
        self.daemons().any(|d| proc_state(d.pid, &self.conf()) != ProcState::Gone)
    }

    fn daemons(&self) -> impl Iterator<Item = &Daemon> {
        std::iter::once(&self.file.jobmanager).chain(self.file.taskmanagers.iter())
    }

    /// Starts a cluster of `spec.taskmanagers` TaskManagers; `progress` hears each step.
    pub fn start(spec: &ClusterSpec, progress: &mut dyn FnMut(String)) -> Result<LocalCluster, ClusterError> {
        let t0 = Instant::now();
        if let Some(old) = LocalCluster::find()? {
            if proc_state(old.file.jobmanager.pid, &old.conf()) != ProcState::Gone {
                return Err(ClusterError::AlreadyRunning { pid: old.file.jobmanager.pid, rest: old.rest_url() });
            }
            // A dead cluster's TaskManagers, if any outlived their JobManager.
            old.stop(&mut |_| {});
        }
        let java = install::find_java()?;
        let jars = install::find_or_install_flink(&mut |m| progress(m.to_string()))?;
        let dir = cluster_dir()?;
        let home = dir.parent().map(Path::to_path_buf).unwrap_or_else(|| dir.clone());
        if dir.exists() {
            crate::workdir::remove_tree_under(&home, &dir)?;
        }
        let conf = dir.join("conf");
        for d in [&conf, &dir.join("log"), &dir.join("pids")] {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
        }
        let rpc_port = free_port()?;
        let rest_port = free_port()?;
        let yaml = conf.join("config.yaml");
        std::fs::write(&yaml, config_yaml(rpc_port, rest_port, spec.slots, &dir.join("observe"), &spec.options)).map_err(io("write", &yaml))?;
        let log4j = conf.join("log4j.properties");
        std::fs::write(&log4j, LOG4J).map_err(io("write", &log4j))?;
        progress(format!(
            "Flink {} ({}), Java {}: a session cluster of 1 JobManager and {} TaskManager(s) x {} slot(s) on 127.0.0.1, in {}",
            jars.version,
            jars.origin,
            java.major,
            spec.taskmanagers,
            spec.slots,
            dir.display()
        ));
        // Both calculations at once: two short JVMs before the cluster's own.
        let (jm_params, tm_params) = std::thread::scope(|s| {
            let jm = s.spawn(|| resource_params(&java, &jars, &conf, "GET_JM_RESOURCE_PARAMS"));
            let tm = resource_params(&java, &jars, &conf, "GET_TM_RESOURCE_PARAMS");
            (jm.join().unwrap_or_else(|_| Err(ClusterError::Resources { command: "GET_JM_RESOURCE_PARAMS", output: "panicked".into() })), tm)
        });
        let (jm_params, tm_params) = (jm_params?, tm_params?);
        progress(format!("  memory (BashJavaUtils, as bin/jobmanager.sh and bin/taskmanager.sh): JobManager {}; TaskManager {}", jm_params.0.join(" "), tm_params.0.join(" ")));
        let placeholder = Daemon { name: "jobmanager".into(), pid: 0, log: PathBuf::new(), out: PathBuf::new(), rpc_port, started_ms: 0 };
        let mut cluster = LocalCluster {
            dir: dir.clone(),
            file: ClusterFile {
                flink_version: jars.version.clone(),
                rest_port,
                slots: spec.slots,
                started_by: std::process::id(),
                jobmanager: placeholder,
                taskmanagers: Vec::new(),
                options: spec.options.clone(),
                started_for: spec.starter.describe(std::process::id()),
                starter: Some(spec.starter),
            },
            java: Some(java),
            jars: Some(jars),
            tm_params: Some(tm_params),
            children: BTreeMap::new(),
            owned: true,
        };
        let jm = cluster.spawn("jobmanager", JOBMANAGER_CLASS, &jm_params.0, &[], &jm_params.1, &["--executionMode", "cluster"], rpc_port)?;
        progress(format!("  JobManager: pid {} (log {})", jm.pid, jm.log.display()));
        cluster.file.jobmanager = jm;
        cluster.save()?;
        let result = (|| {
            for n in 1..=spec.taskmanagers {
                let name = crate::cluster::taskmanager::name(n);
                let d = cluster.spawn_tm(&name)?;
                progress(format!("  {name}: pid {} (log {})", d.pid, d.log.display()));
            }
            cluster.await_up(spec.taskmanagers, t0, progress)
        })();
        if let Err(e) = result {
            cluster.stop(&mut |_| {});
            return Err(e);
        }
        progress(format!("cluster up in {:.1}s: REST {} (the web UI too)", t0.elapsed().as_secs_f64(), cluster.rest_url()));
        Ok(cluster)
    }

    /// Starts one JVM as flink-daemon.sh does and records it.
    fn spawn(&mut self, name: &str, class: &str, jvm: &[String], opts: &[String], dynamic: &[String], extra: &[&str], rpc_port: u16) -> Result<Daemon, ClusterError> {
        let java = self.java.clone().map(Ok).unwrap_or_else(install::find_java)?;
        let jars = match &self.jars {
            Some(j) => j.clone(),
            None => install::find_or_install_flink(&mut |_| {})?,
        };
        let conf = self.conf();
        let log = self.dir.join("log").join(format!("{name}.log"));
        let out = self.dir.join("log").join(format!("{name}.out"));
        let out_file = std::fs::File::create(&out).map_err(io("create", &out))?;
        let err_file = out_file.try_clone().map_err(io("open", &out))?;
        let mut cmd = Command::new(&java.java);
        cmd.args(jvm)
            .arg("-XX:+IgnoreUnrecognizedVMOptions")
            .args(DIST_JAVA_OPTS.split_whitespace())
            .args(opts)
            .arg(format!("-Dlog.file={}", log.display()))
            .arg(format!("-Dlog4j.configuration=file:{}", conf.join("log4j.properties").display()))
            .arg(format!("-Dlog4j.configurationFile=file:{}", conf.join("log4j.properties").display()))
            .arg(format!("-Dlogback.configurationFile=file:{}", conf.join("logback.xml").display()))
            .arg("-classpath")
            .arg(flink_classpath(&jars.lib)?)
            .arg(class)
            .args(dynamic)
            .arg("--configDir")
            .arg(&conf)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file));
        // Its own process group, as a daemon: a Ctrl-C in ckptlab's terminal reaches ckptlab,
        // whose guard stops the cluster, not the JVMs half-way.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|source| ClusterError::Spawn { name: name.to_string(), java: java.java.display().to_string(), source })?;
        let d = Daemon { name: name.to_string(), pid: child.id(), log, out, rpc_port, started_ms: now_ms() };
        let pid_file = self.dir.join("pids").join(format!("{name}.pid"));
        std::fs::write(&pid_file, format!("{}\n", d.pid)).map_err(io("write", &pid_file))?;
        self.children.insert(d.pid, child);
        Ok(d)
    }

    /// Starts a TaskManager process named `name` (taskmanager.sh start).
    pub fn spawn_tm(&mut self, name: &str) -> Result<Daemon, ClusterError> {
        if let Some(d) = self.tm(name) {
            let pid = d.pid;
            if proc_state(pid, &self.conf()) != ProcState::Gone {
                return Err(ClusterError::TmRunning { name: name.to_string(), pid });
            }
        }
        let (jvm, dynamic) = match &self.tm_params {
            Some(p) => p.clone(),
            None => {
                let java = install::find_java()?;
                let jars = install::find_or_install_flink(&mut |_| {})?;
                let p = resource_params(&java, &jars, &self.conf(), "GET_TM_RESOURCE_PARAMS")?;
                self.tm_params = Some(p.clone());
                p
            }
        };
        let port = free_port()?;
        let mut dynamic = dynamic;
        // Its RPC port, pinned so that REST /taskmanagers (whose `path` names it) tells which
        // process is which; its ResourceID stays Flink's default (host:port-random).
        dynamic.push(format!("-Dtaskmanager.rpc.port={port}"));
        // env.java.opts.taskmanager (taskmanager.sh adds FLINK_ENV_JAVA_OPTS_TM).
        let opts = vec![format!("-Dckptlab.observe.dir={}", self.observe_dir().display())];
        let d = self.spawn(name, TASKMANAGER_CLASS, &jvm, &opts, &dynamic, &[], port)?;
        self.file.taskmanagers.push(d.clone());
        self.save()?;
        Ok(d)
    }

    /// The newest process of `name`.
    pub fn tm(&self, name: &str) -> Option<&Daemon> {
        self.file.taskmanagers.iter().rev().find(|d| d.name == name)
    }

    fn save(&self) -> Result<(), ClusterError> {
        let path = self.dir.join("cluster.json");
        let text = serde_json::to_string_pretty(&self.file).unwrap_or_default();
        std::fs::write(&path, text).map_err(io("write", &path))
    }

    /// Waits until REST answers and `n` TaskManagers are registered; a JVM that ends fails it.
    fn await_up(&mut self, n: usize, t0: Instant, progress: &mut dyn FnMut(String)) -> Result<(), ClusterError> {
        let rest = self.rest();
        let mut rest_up = false;
        let mut registered: Vec<String> = Vec::new();
        loop {
            for d in self.daemons().cloned().collect::<Vec<_>>() {
                if self.reap(d.pid) || proc_state(d.pid, &self.conf()) == ProcState::Gone {
                    let log = if d.log.is_file() { d.log.clone() } else { d.out.clone() };
                    let tail = format!("{}\n{}", tail(&d.out, 10), tail(&log, 15));
                    return Err(ClusterError::Died { name: d.name.clone(), pid: d.pid, log, tail });
                }
            }
            if !rest_up && rest.get("/overview").is_ok() {
                rest_up = true;
                progress(format!("  JobManager: REST {} answers ({:.1}s)", rest.url(), t0.elapsed().as_secs_f64()));
            }
            if rest_up {
                if let Ok(tms) = self.registered() {
                    for (name, id) in tms {
                        if !registered.contains(&name) {
                            progress(format!("  {name}: registered as {id} ({:.1}s)", t0.elapsed().as_secs_f64()));
                            registered.push(name);
                        }
                    }
                    if registered.len() >= n {
                        return Ok(());
                    }
                }
            }
            if t0.elapsed() > START_TIMEOUT {
                let why = if rest_up { format!("{} of {n} TaskManagers registered", registered.len()) } else { "REST never answered".to_string() };
                return Err(ClusterError::Timeout { why, dir: self.dir.clone() });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reaps `pid` if it is this process's child and has ended; true when it had.
    fn reap(&mut self, pid: u32) -> bool {
        match self.children.get_mut(&pid).map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                self.children.remove(&pid);
                true
            }
            _ => false,
        }
    }

    /// The TaskManagers REST /taskmanagers lists, by ckptlab's name (matched by RPC port in
    /// their `path`), with their ResourceID.
    pub fn registered(&self) -> Result<Vec<(String, String)>, ClusterError> {
        Ok(registered_in(&self.rest().get("/taskmanagers")?, &self.file.taskmanagers))
    }

    /// Every TaskManager process started, newest per name, with what REST says of it.
    pub fn status(&self) -> Vec<TmStatus> {
        let rest: Vec<serde_json::Value> =
            self.rest().get("/taskmanagers").ok().and_then(|v| v["taskmanagers"].as_array().cloned()).unwrap_or_default();
        let mut names: Vec<&str> = Vec::new();
        for d in &self.file.taskmanagers {
            if !names.contains(&d.name.as_str()) {
                names.push(&d.name);
            }
        }
        names
            .into_iter()
            .filter_map(|n| self.tm(n))
            .map(|d| {
                let r = rest.iter().find(|t| t["path"].as_str().is_some_and(|p| p.contains(&format!(":{}/", d.rpc_port))));
                TmStatus {
                    name: d.name.clone(),
                    pid: d.pid,
                    state: proc_state(d.pid, &self.conf()),
                    rpc_port: d.rpc_port,
                    resource_id: r.and_then(|t| t["id"].as_str()).map(str::to_string),
                    slots: r.and_then(|t| t["slotsNumber"].as_u64()),
                    free_slots: r.and_then(|t| t["freeSlots"].as_u64()),
                    log: d.log.clone(),
                }
            })
            .collect()
    }

    /// The JobManager's state.
    pub fn jobmanager_state(&self) -> ProcState {
        proc_state(self.file.jobmanager.pid, &self.conf())
    }

    /// SIGKILL to `name`'s process (the seed's `kill <pid>` of `ps -ef | grep taskmanager`), and
    /// waits until the pid is gone. Returns the pid.
    pub fn kill_tm(&mut self, name: &str) -> Result<u32, ClusterError> {
        let d = self.live_tm(name)?;
        signal(d.pid, libc::SIGKILL);
        self.await_gone(d.pid, Duration::from_secs(5));
        Ok(d.pid)
    }

    /// SIGSTOP to `name`'s process: it stops answering heartbeats without closing a connection.
    pub fn hang_tm(&mut self, name: &str) -> Result<u32, ClusterError> {
        let d = self.live_tm(name)?;
        signal(d.pid, libc::SIGSTOP);
        Ok(d.pid)
    }

    /// SIGCONT to every stopped process (the end of a run, a `stop`).
    pub fn resume_all(&self) {
        for d in self.daemons() {
            if proc_state(d.pid, &self.conf()) == ProcState::Stopped {
                signal(d.pid, libc::SIGCONT);
            }
        }
    }

    fn live_tm(&self, name: &str) -> Result<Daemon, ClusterError> {
        let known = || {
            let mut names: Vec<String> = self.file.taskmanagers.iter().map(|d| d.name.clone()).collect();
            names.dedup();
            if names.is_empty() { "none".into() } else { names.join(", ") }
        };
        let d = self.tm(name).cloned().ok_or_else(|| ClusterError::NoSuchTm { name: name.to_string(), known: known() })?;
        if proc_state(d.pid, &self.conf()) == ProcState::Gone {
            return Err(ClusterError::NoSuchTm { name: format!("{name} (pid {} is gone)", d.pid), known: known() });
        }
        Ok(d)
    }

    /// Waits until `pid` is gone (reaped when it is this process's child).
    fn await_gone(&mut self, pid: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.children.get_mut(&pid) {
                if let Ok(Some(_)) = c.try_wait() {
                    self.children.remove(&pid);
                }
            }
            if !self.children.contains_key(&pid) && proc_state(pid, &self.conf()) == ProcState::Gone {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops every process (stop-cluster.sh: the TaskManagers, then the JobManager): SIGCONT to a
    /// hung one, SIGTERM, and SIGKILL after [`STOP_GRACE`]; then removes the pid files and
    /// cluster.json. `progress` hears each process. Returns the pids that were stopped.
    pub fn stop(mut self, progress: &mut dyn FnMut(String)) -> Vec<u32> {
        self.resume_all();
        let conf = self.conf();
        let tms: Vec<Daemon> = self.file.taskmanagers.iter().rev().cloned().collect();
        let mut stopped = Vec::new();
        for group in [tms, vec![self.file.jobmanager.clone()]] {
            let alive: Vec<Daemon> = group.into_iter().filter(|d| d.pid != 0 && proc_state(d.pid, &conf) != ProcState::Gone).collect();
            for d in &alive {
                progress(format!("stopping {} (pid {})", d.name, d.pid));
                signal(d.pid, libc::SIGTERM);
            }
            for d in &alive {
                if !self.await_gone(d.pid, STOP_GRACE) {
                    progress(format!("{} (pid {}) did not stop within {}s: killing it", d.name, d.pid, STOP_GRACE.as_secs()));
                    signal(d.pid, libc::SIGKILL);
                    self.await_gone(d.pid, Duration::from_secs(5));
                }
                stopped.push(d.pid);
            }
        }
        // Children that ended earlier (a killed TaskManager): reap them too.
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.try_wait();
        }
        // Only below the cluster's own directory (ckptlab's home), never a path from outside.
        let _ = crate::workdir::remove_file_under(&self.dir, &self.dir.join("cluster.json"));
        if let Ok(rd) = std::fs::read_dir(self.dir.join("pids")) {
            for e in rd.flatten() {
                let _ = crate::workdir::remove_file_under(&self.dir, &e.path());
            }
        }
        self.owned = false;
        stopped
    }
}

/// The TaskManagers a REST /taskmanagers answer lists, by the name of the process whose RPC port
/// their `path` names (`pekko.tcp://flink@127.0.0.1:PORT/user/rpc/taskmanager_0`), with their ResourceID.
pub fn registered_in(v: &serde_json::Value, processes: &[Daemon]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for tm in v["taskmanagers"].as_array().into_iter().flatten() {
        let (Some(id), Some(path)) = (tm["id"].as_str(), tm["path"].as_str()) else { continue };
        if let Some(d) = processes.iter().rev().find(|d| path.contains(&format!(":{}/", d.rpc_port))) {
            out.push((d.name.clone(), id.to_string()));
        }
    }
    out
}

fn read_file(dir: &Path) -> Option<ClusterFile> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).ok()?).ok()
}

/// Stops the cluster when dropped (an error, a panic, the end of a run) unless it was handed on.
pub struct ClusterGuard(pub Option<LocalCluster>);

impl ClusterGuard {
    pub fn get(&mut self) -> &mut LocalCluster {
        self.0.as_mut().expect("the guard holds its cluster until dropped")
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if c.owned {
                c.stop(&mut |_| {});
            } else {
                c.resume_all();
            }
        }
    }
}

/// Stops whatever cluster [`cluster_dir`] records (a signal handler's last act: it needs no
/// handle, only the pid files).
pub fn stop_recorded() -> Vec<u32> {
    match LocalCluster::find() {
        Ok(Some(c)) => c.stop(&mut |_| {}),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_file_says_whether_a_run_started_it_and_old_files_by_their_text() {
        let daemon = Daemon { name: "jobmanager".into(), pid: 1, log: PathBuf::new(), out: PathBuf::new(), rpc_port: 1, started_ms: 0 };
        let file = |started_for: &str, starter| ClusterFile {
            flink_version: "2.3.0".into(),
            rest_port: 1,
            slots: 1,
            started_by: 1,
            jobmanager: daemon.clone(),
            taskmanagers: Vec::new(),
            options: Vec::new(),
            started_for: started_for.into(),
            starter,
        };
        assert!(file(&Starter::Run.describe(7), Some(Starter::Run)).started_by_run());
        assert!(!file(&Starter::ClusterStart.describe(7), Some(Starter::ClusterStart)).started_by_run());
        assert!(file("ckptlab flink run (pid 7)", None).started_by_run());
        assert!(!file("ckptlab flink cluster start", None).started_by_run());
        // A file from before `starter` was recorded still reads.
        let mut old = serde_json::to_value(file("ckptlab flink run (pid 7)", None)).unwrap();
        assert!(old.get("starter").is_none());
        old["starter"] = serde_json::json!("cluster-start");
        assert_eq!(serde_json::from_value::<ClusterFile>(old).unwrap().starter, Some(Starter::ClusterStart));
    }

    #[test]
    fn config_yaml_is_the_distributions_on_loopback_with_the_given_ports() {
        let y = config_yaml(40001, 40002, 3, Path::new("/x/observe"), &[("heartbeat.timeout".into(), "2000 ms".into())]);
        for line in [
            "jobmanager.rpc.port: 40001",
            "rest.port: 40002",
            "rest.bind-address: 127.0.0.1",
            "taskmanager.numberOfTaskSlots: 3",
            "heartbeat.timeout: 2000 ms",
            "jobmanager.execution.failover-strategy: region",
        ] {
            assert!(y.lines().any(|l| l == line), "no `{line}` in\n{y}");
        }
        assert!(!y.contains("localhost"), "{y}");
    }

    #[test]
    fn the_classpath_puts_flink_dist_last_as_config_sh_does() {
        let d = tempfile::tempdir().unwrap();
        for j in ["flink-dist-2.3.0.jar", "a.jar", "log4j-api.jar", "notes.txt"] {
            std::fs::write(d.path().join(j), b"").unwrap();
        }
        let cp = flink_classpath(d.path()).unwrap();
        let names: Vec<&str> = cp.split(':').map(|p| p.rsplit('/').next().unwrap()).collect();
        assert_eq!(names, ["a.jar", "log4j-api.jar", "flink-dist-2.3.0.jar"]);
    }

    #[test]
    fn a_pid_is_the_clusters_only_while_its_command_line_names_the_conf_dir() {
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id();
        // Until its execve has replaced the image, /proc/PID/cmdline may still be empty.
        let deadline = Instant::now() + Duration::from_secs(10);
        while proc_state(pid, Path::new("30")) != ProcState::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc_state(pid, Path::new("30")), ProcState::Running);
        // A live process whose command line does not name the conf directory is not the cluster's.
        assert_eq!(proc_state(pid, Path::new("/nonexistent/ckptlab-conf")), ProcState::Gone);
        signal(pid, libc::SIGSTOP);
        // The stop takes effect when the process next runs: on a loaded machine, not at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while proc_state(pid, Path::new("30")) != ProcState::Stopped && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc_state(pid, Path::new("30")), ProcState::Stopped);
        signal(pid, libc::SIGKILL);
        let _ = sleeper.wait();
        assert_eq!(proc_state(pid, Path::new("30")), ProcState::Gone);
    }
}
