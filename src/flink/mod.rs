//! The Flink bridge: the same experiment on real Apache Flink 2.x, verdicts side by side.
//!
//! ckptlab claims to behave as Flink does; this module turns the claim into a check. A scenario
//! runs on ckptlab with its embedded topic backed by the file log (`source.embedded.dir`), and at
//! the same time on a Flink MiniCluster (the engine a real cluster runs) in a JVM, whose job tails
//! the very same partition files with a checkpointed source of its own. Kills, starts and
//! checkpoints go to both engines at the same moment; the auditor's truth judges both.
//!
//! - [`bench`]: `ckptlab bench --flink`'s job on a MiniCluster, one JVM per run.
//! - [`install`]: finds Java 17+ and Flink's jars (`FLINK_HOME`, or the PyPI package
//!   `apache-flink-libraries`, installed into a cache on first use).
//! - [`options`]: the scenario's configuration as Flink options and the job's shape.
//! - [`harness`]: compiles the Java harness (assets/flink) and drives the JVM over a line protocol.
//! - [`verdict`]: the Flink side's verdict from its sink's output against the log's records.
//! - [`bridge`]: plays a scenario on both engines step by step.
//! - [`compare`]: both engines' figures side by side, and the rule that says AGREE or DISAGREE.
//! - [`export`]: a self-contained Flink job for a real cluster.
//! - [`cluster`]: a local standalone session cluster of JVM processes (`ckptlab flink cluster`).
//! - [`rest`]: a small client for Flink's REST API.
//! - [`session`]: the scenario's job on that cluster, through REST and process signals.
//! - [`timeline`]: kill -> failing -> lost -> running on the real cluster beside ckptlab's model.

pub mod bench;
pub mod bridge;
pub mod cluster;
pub mod compare;
pub mod export;
pub mod harness;
pub mod install;
pub mod options;
pub mod rest;
pub mod session;
pub mod timeline;
pub mod verdict;

/// The Flink version the bridge installs and is checked against.
pub const FLINK_VERSION: &str = "2.3.0";
