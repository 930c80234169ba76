//! `ckptlab bench --flink`'s Flink side: the benchmark's job shape (sequence source -> keyBy ->
//! a ValueState count per key -> a discarding sink, bounded) on a Flink MiniCluster, one JVM
//! per run (assets/flink/src/ckptlab/flink/Bench.java, compiled with the harness). The JVM
//! measures itself and prints one JSON line: [`FlinkRun`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::harness::{self, HarnessError};
use super::install::{self, FlinkJars, InstallError, InstallProgress, Java};

/// Why the Flink side could not run.
#[derive(Debug, Error)]
pub enum FlinkBenchError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("cannot {what} {path}: {error}")]
    Io { what: &'static str, path: String, error: std::io::Error },
    #[error("the Flink benchmark JVM exited with {status}; its output and Flink's log are in {dir}:\n{tail}")]
    Failed { status: std::process::ExitStatus, dir: String, tail: String },
    #[error("the Flink benchmark JVM printed {line:?}, not its figures: {error}")]
    Output { line: String, error: serde_json::Error },
}

/// What the Flink side hears while it gets ready (the first use installs Flink's jars).
#[derive(Debug, Clone, PartialEq)]
pub enum Preparing {
    Install(InstallProgress),
    /// Java and Flink's jars were found (where from) and the classes compiled (ms; 0 when cached).
    Ready { java_major: u32, flink: String, origin: String, compile_ms: u64 },
}

/// Java, Flink's jars and the compiled classes, ready for runs.
#[derive(Debug, Clone)]
pub struct FlinkBench {
    java: Java,
    jars: FlinkJars,
    harness_dir: PathBuf,
}

/// One measured run, as Bench.java prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlinkRun {
    pub records: u64,
    pub keys: u64,
    pub parallelism: u32,
    /// From the first record at a sink subtask to the last sink subtask's end of input.
    pub processing_s: f64,
    /// `records / processing_s`.
    pub records_per_s: f64,
    /// Job submission (a MiniCluster starts per job) to the first record at a sink.
    pub submit_to_first_record_s: f64,
    /// Job submission to `execute()` returning (with the final checkpoint and the shutdown).
    pub submit_to_end_s: f64,
    /// Flink's JobExecutionResult.getNetRuntime().
    pub net_runtime_ms: u64,
    /// The JVM's start to the measured job's submission (JVM, warm-up job).
    pub jvm_start_to_submit_s: f64,
    pub warmup_records: u64,
    pub warmup_s: f64,
    /// The highest checkpoint id a counter subtask was told completed (0: none).
    pub last_checkpoint: u64,
    /// The whole JVM, start to exit, as timed from here.
    #[serde(default)]
    pub jvm_s: f64,
}

impl FlinkBench {
    /// Finds Java 17+, Flink's jars (installing them on first use) and compiles the classes.
    pub fn prepare(progress: &mut dyn FnMut(Preparing)) -> Result<FlinkBench, FlinkBenchError> {
        let java = install::find_java()?;
        let jars = install::find_or_install_flink(&mut |p| progress(Preparing::Install(p)))?;
        let cache = install::cache_dir();
        std::fs::create_dir_all(&cache).map_err(|error| FlinkBenchError::Io { what: "create", path: cache.display().to_string(), error })?;
        let t = Instant::now();
        let harness_dir = harness::compiled(&java, &jars, &cache)?;
        progress(Preparing::Ready {
            java_major: java.major,
            flink: jars.version.clone(),
            origin: jars.origin.clone(),
            compile_ms: t.elapsed().as_millis() as u64,
        });
        Ok(FlinkBench { java, jars, harness_dir })
    }

    /// The Flink version the runs use.
    pub fn version(&self) -> &str {
        &self.jars.version
    }

    /// Where the jars came from (FLINK_HOME, the cache, installed now).
    pub fn origin(&self) -> &str {
        &self.jars.origin
    }

    /// One JVM: a warm-up job of `warmup` records, then the measured job of `records`, with
    /// `options` as Flink options; `dir` holds its output and Flink's log (the caller removes it).
    /// Blocks until the JVM exits.
    pub fn run(
        &self,
        dir: &Path,
        records: u64,
        keys: u64,
        parallelism: usize,
        warmup: u64,
        options: &[(String, String)],
    ) -> Result<FlinkRun, FlinkBenchError> {
        std::fs::create_dir_all(dir).map_err(|error| FlinkBenchError::Io { what: "create", path: dir.display().to_string(), error })?;
        let stderr_path = dir.join(harness::OUTPUT_FILE);
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|error| FlinkBenchError::Io { what: "create", path: stderr_path.display().to_string(), error })?;
        let t = Instant::now();
        let out = harness::java_main(&self.java, &self.jars, &self.harness_dir, dir, "ckptlab.flink.Bench")
            .args(args(records, keys, parallelism, warmup, options))
            .stdin(Stdio::null())
            .stderr(Stdio::from(stderr))
            .output()
            .map_err(|e| HarnessError::Spawn { java: self.java.java.display().to_string(), problem: e.to_string() })?;
        let jvm_s = t.elapsed().as_secs_f64();
        if !out.status.success() {
            let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(FlinkBenchError::Failed { status: out.status, dir: dir.display().to_string(), tail });
        }
        let mut run = parse_figures(&String::from_utf8_lossy(&out.stdout))?;
        run.jvm_s = jvm_s;
        Ok(run)
    }
}

/// Bench.java's arguments: `key=value`, Flink's options as `flink.KEY=VALUE`.
pub fn args(records: u64, keys: u64, parallelism: usize, warmup: u64, options: &[(String, String)]) -> Vec<String> {
    let mut a = vec![format!("records={records}"), format!("keys={keys}"), format!("parallelism={parallelism}"), format!("warmup={warmup}")];
    a.extend(options.iter().map(|(k, v)| format!("flink.{k}={v}")));
    a
}

/// The figures: the last line of the JVM's stdout (Flink may print before it).
pub fn parse_figures(stdout: &str) -> Result<FlinkRun, FlinkBenchError> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line).map_err(|error| FlinkBenchError::Output { line: line.to_string(), error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_options_are_passed_with_their_prefix() {
        let a = args(20, 3, 2, 5, &[("execution.checkpointing.interval".into(), "1s".into())]);
        assert_eq!(a, ["records=20", "keys=3", "parallelism=2", "warmup=5", "flink.execution.checkpointing.interval=1s"]);
    }

    #[test]
    fn the_figures_are_the_last_line() {
        let out = "some log line\n{\"records\":4,\"keys\":2,\"parallelism\":2,\"processing_s\":2.0,\"records_per_s\":2.0,\"submit_to_first_record_s\":1.0,\"submit_to_end_s\":3.5,\"net_runtime_ms\":3100,\"jvm_start_to_submit_s\":9.0,\"warmup_records\":1,\"warmup_s\":4.0,\"last_checkpoint\":3}\n";
        let r = parse_figures(out).unwrap();
        assert_eq!((r.records, r.records_per_s, r.last_checkpoint, r.jvm_s), (4, 2.0, 3, 0.0));
        assert!(matches!(parse_figures("Exception in thread main"), Err(FlinkBenchError::Output { .. })));
    }
}
