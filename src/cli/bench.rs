//! `ckptlab bench`: throughput per checkpointing mode, recovery time, and the `--state`,
//! `--source`, `--audit` and `--memory` comparisons. The library's `bench` measures and reports
//! (`Progress` as it goes, a `Report` at the end); this file prints.

use std::process::ExitCode;

use ckptlab::bench::{BenchOptions, FlinkRow, Measure, Progress, Report};
use ckptlab::flink::bench::Preparing;
use ckptlab::duration::format_size;
use ckptlab::table::{Column, TextTable};

use super::{base_layers, outln, Global};

// `ckptlab bench`'s flags: which benchmark (the first given of --flink, --state, --source, --sinks,
// --memory, --verdict wins, as `options` reads them) and how much. (A doc comment here would
// replace the subcommand's help line in main.rs.)
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Records pre-filled into the topic for each throughput run (default: scaled so that a run
    /// of checkpointing off lasts --seconds, from the warm-up run's rate on this machine).
    #[arg(long)]
    pub records: Option<u64>,
    /// How long each throughput run should last when --records is not given (the warm-up run
    /// measures this machine's rate; records are scaled to it). A quick look: --seconds 2.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Rounds: every mode runs once per round, with and without the auditor, in an order rotated
    /// from round to round; the table shows the median and the spread (min-max) over the rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// The verdict's cost instead: the default job over --verdict-keys keys, auditor on; the
    /// time of the first verdict, of the next one after a few keys changed (what a frame pays),
    /// and of a whole per-key table.
    #[arg(long)]
    pub verdict: bool,
    /// Keys of --verdict.
    #[arg(long, default_value_t = 100_000)]
    pub verdict_keys: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Compare state backends instead: throughput of rocksdb against fs (hashmap + filesystem),
    /// and checkpoint duration and size, full against incremental, and restore time, at 10,000
    /// and 1,000,000 keys.
    #[arg(long)]
    pub state: bool,
    /// Records per throughput run of --state (RocksDB is slower than the heap: fewer than --records).
    #[arg(long, default_value_t = 2_000_000)]
    pub state_records: u64,
    /// Compare sources instead: the embedded topic against Kafka through librdkafka's mock
    /// cluster, records/s through the default job and latency from produce to the output line.
    #[arg(long)]
    pub source: bool,
    /// Records per throughput run of --source (librdkafka's mock cluster keeps at most 100,000
    /// records per partition: more are capped to that).
    #[arg(long, default_value_t = 180_000)]
    pub source_records: u64,
    /// Compare sinks instead (issue 23): records/s of the whole job with the print sink and the
    /// Kafka sink per delivery guarantee (none, at-least-once, exactly-once), EXACTLY_ONCE
    /// checkpoints every 1 s, on the embedded topic and broker and on librdkafka's mock cluster;
    /// --rounds rotated rounds, the median and the spread. Records: --source-records.
    #[arg(long)]
    pub sinks: bool,
    /// Only the auditor's table: each mode with the ground truth on next to off (the default
    /// table has both columns too; this skips recovery).
    #[arg(long)]
    pub audit: bool,
    /// The auditor's memory and cost over long runs instead: the same run shape (EXACTLY_ONCE 1s,
    /// auditor on, retention checkpointed, records produced while the job runs) at 10 M and at
    /// --memory-records records, each in its own process: peak RSS, bytes per record, checkpoint
    /// durations early and late in the run, and the verdict's time at --keys keys.
    #[arg(long)]
    pub memory: bool,
    /// The long run of --memory.
    #[arg(long, default_value_t = 100_000_000)]
    pub memory_records: u64,
    /// The same job on Apache Flink 2.3's MiniCluster beside ckptlab (needs Java 17+; the first
    /// use installs Flink's jars from PyPI, ~350 MB): per mode (no checkpoints, EXACTLY_ONCE and
    /// AT_LEAST_ONCE 1s, unaligned 1s, RocksDB full and incremental with --state-records
    /// records), Flink's records/s and ckptlab's with the auditor off and on, --rounds rotated
    /// rounds, one JVM per Flink run.
    #[arg(long)]
    pub flink: bool,
    /// (internal) one --memory run of this many records in this process, reported as JSON.
    #[arg(long, hide = true)]
    pub memory_child: Option<u64>,
}

impl BenchArgs {
    /// The library's options: the measurement the flags chose, and its sizes.
    fn options(&self) -> BenchOptions {
        let measure = if self.flink {
            Measure::Flink
        } else if self.state {
            Measure::State
        } else if self.source {
            Measure::Source
        } else if self.sinks {
            Measure::Sinks
        } else if let Some(records) = self.memory_child {
            Measure::MemoryChild(records)
        } else if self.memory {
            Measure::Memory
        } else if self.verdict {
            Measure::Verdict
        } else {
            Measure::Modes { audit_only: self.audit }
        };
        BenchOptions {
            measure,
            records: self.records,
            seconds: self.seconds,
            keys: self.keys,
            rounds: self.rounds,
            verdict_keys: self.verdict_keys,
            state_records: self.state_records,
            source_records: self.source_records,
            memory_records: self.memory_records,
        }
    }
}

pub async fn exec(cli: &Global, args: &BenchArgs) -> ExitCode {
    // With --json only the report is printed, as one object.
    let mut progress = |p: Progress| {
        if !args.json {
            print_progress(&p);
        }
    };
    let base = match base_layers(cli, None) {
        Ok(base) => base,
        Err(e) => return failed(e),
    };
    let report = match ckptlab::bench::run(base, &args.options(), &mut progress).await {
        Ok(report) => report,
        Err(e) => return failed(e),
    };
    match print_report(&report, args.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(e),
    }
}

/// Every error ends the benchmark the same way: its reason, exit 2.
fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("ckptlab bench: {e}");
    ExitCode::from(2)
}

fn print_progress(p: &Progress) {
    match p {
        Progress::ModesStart { records, keys, parallelism, rounds, warmup_records_per_s, scaled, seconds, load } => {
            let scale = if *scaled {
                format!("scaled to {seconds} s of checkpointing off at the warm-up's {warmup_records_per_s:.0} records/s")
            } else {
                format!("warm-up {warmup_records_per_s:.0} records/s")
            };
            outln!(
                "ckptlab bench: {records} records ({scale}) over {keys} keys, parallelism {parallelism}, discarding sink, no hop delay, buffer timeout 1ms; {rounds} round(s) of every mode without and with the auditor (the ground truth), order rotated per round, after one warm-up run; load {}",
                load_text(*load)
            );
        }
        Progress::Run(r) => outln!(
            "  round {} #{:<2} {:<30} {:<11} {:>12.0} records/s ({:.2}s, {} checkpoints{}) load {}",
            r.round + 1,
            r.order + 1,
            r.mode,
            if r.audited { "auditor on" } else { "auditor off" },
            r.records_per_s,
            r.seconds,
            r.checkpoints_completed,
            r.verdict.as_ref().map_or(String::new(), |v| format!(", verdict {v} in {:.1} ms", r.verdict_ms.unwrap_or(0.0))),
            r.load.map_or("?".into(), |l| format!("{l:.2}"))
        ),
        Progress::Mode(m) => {
            if m.mode == ckptlab::bench::MODES[0].0 {
                outln!("{}", modes_table().line(&["mode (median, min-max over the rounds)", "auditor off", "x of off", "auditor on", "on / off", "verdict"], ""));
            }
            let row = [
                m.mode.clone(),
                spread(&m.records_per_s),
                format!("x{:.3}", m.ratio_to_off),
                spread(&m.audited_records_per_s),
                format!("x{:.3}", m.audited_ratio),
                format!("{} ({:.1} ms)", m.verdict, m.verdict_ms.median),
            ];
            outln!("{}", modes_table().line(&row, ""));
        }
        Progress::StateStart { records, keys, rounds } => outln!(
            "ckptlab bench --state: throughput over {records} records and {keys} keys, EXACTLY_ONCE every 1s, best of {rounds} round(s)"
        ),
        Progress::StateThroughput { backend, records_per_s, ratio_to_fs, seconds, checkpoints_completed, mean_checkpoint_ms } => outln!(
            "  {backend:<22} {records_per_s:>12.0} records/s  x{ratio_to_fs:.3} of fs  ({seconds:.2}s, {checkpoints_completed} checkpoints, mean {mean_checkpoint_ms:.1} ms)"
        ),
        Progress::StateSizeStart { keys } => {
            outln!("  {keys} keys: checkpoint 1 (all keys), checkpoint 2 (after 1% of the keys changed), restore after a kill");
            outln!("{}", sizes_table().line(&["backend", "ckpt1", "size", "ckpt2", "delta / full", "restore"], ""));
        }
        Progress::StateSize(r) => {
            let row = [
                r.backend.clone(),
                format!("{} ms", r.first_ms),
                format_size(r.first_size),
                format!("{} ms", r.second_ms),
                format!("{} / {}", format_size(r.second_delta), format_size(r.second_full)),
                format!("{:.1} ms", r.restore_ms),
            ];
            outln!("{}", sizes_table().line(&row, ""));
        }
        Progress::WriteOverlapStart { keys } => {
            outln!("  records/s out of one counter while its snapshot of {keys} keys is written (asynchronous part), against just before");
            outln!("{}", overlap_table().line(&["backend", "sync", "async", "written", "before", "during write"], ""));
        }
        Progress::WriteOverlap(r) => {
            let row = [
                r.backend.clone(),
                format!("{} ms", r.sync_ms),
                format!("{} ms", r.async_ms),
                format_size(r.bytes),
                format!("{:.0}/s", r.records_per_s_before),
                format!("{:.0}/s", r.records_per_s_during_write),
            ];
            outln!("{}", overlap_table().line(&row, &format!(" ({} records)", r.records_during_write)));
        }
        Progress::SinksStart { records, mock_records, keys, rounds } => outln!(
            "ckptlab bench --sinks: {records} records (the mock cluster: {mock_records}) over {keys} keys through the whole job, EXACTLY_ONCE every 1s, {rounds} rotated round(s) per sink and source, records/s until the job caught up (each Kafka run writes its own output topic with its own transactional-id prefix)"
        ),
        Progress::SinkRun { round, source, sink, records_per_s } => {
            outln!("  round {} {source:<20} {sink:<20} {records_per_s:>12.0} records/s", round + 1)
        }
        Progress::Sink(r) => outln!(
            "  {:<20} {:<20} median {:>10.0} records/s (min {:.0}, max {:.0})  x{:.3} of print",
            r.source,
            r.sink,
            r.median_records_per_s,
            r.min_records_per_s,
            r.max_records_per_s,
            r.ratio_to_print
        ),
        Progress::SourceStart { records, keys, rounds } => outln!(
            "ckptlab bench --source: {records} records over {keys} keys through the default job, EXACTLY_ONCE every 1s, best of {rounds} run(s) each"
        ),
        Progress::SourceThroughput { source, records_per_s, ratio_to_embedded, seconds, fill_seconds } => outln!(
            "  {source:<20} {records_per_s:>12.0} records/s  x{ratio_to_embedded:.3} of embedded  ({seconds:.2}s; filling the topic took {fill_seconds:.2}s)"
        ),
        Progress::SourceLatency(l) => {
            outln!("  latency produce -> output line, hop delay {:<5} {:<20} median {:>7.1} ms", l.hop_delay, l.source, l.median_ms)
        }
        Progress::FlinkPreparing(Preparing::Install(p)) => outln!("ckptlab bench --flink: {p}"),
        Progress::FlinkPreparing(Preparing::Ready { java_major, flink, origin, compile_ms }) => outln!(
            "ckptlab bench --flink: Java {java_major}, Flink {flink} from {origin}; classes {}",
            if *compile_ms < 1000 { "compiled before".to_string() } else { format!("compiled in {:.1}s", *compile_ms as f64 / 1000.0) }
        ),
        Progress::FlinkStart(s) => {
            let scale = if s.scaled {
                format!("scaled to {} s of ckptlab without checkpoints at its warm-up's {:.0} records/s", s.seconds, s.warmup_records_per_s)
            } else {
                format!("ckptlab's warm-up {:.0} records/s", s.warmup_records_per_s)
            };
            outln!(
                "ckptlab bench --flink: {} records ({scale}; RocksDB modes {}) over {} keys, parallelism {}, on ckptlab and on Flink {} (a MiniCluster, one JVM per run, warm-up job of up to {} records first); {} round(s), order rotated per round; load {}",
                s.records,
                s.rocksdb_records,
                s.keys,
                s.parallelism,
                s.flink_version,
                s.flink_warmup_records,
                s.rounds,
                load_text(s.load)
            );
            outln!("  {}", ckptlab::bench::FLINK_MEASURED);
        }
        Progress::FlinkRun(r) => outln!(
            "  round {} #{:<2} {:<30} {:<11} {:>12.0} records/s ({:.2}s processing; JVM {:.1}s: start -> submit {:.1}s with a {}-record warm-up, submit -> first record {:.1}s, submit -> end {:.1}s; checkpoint #{}) load {}",
            r.round + 1,
            r.order + 1,
            r.mode,
            "Flink",
            r.run.records_per_s,
            r.run.processing_s,
            r.run.jvm_s,
            r.run.jvm_start_to_submit_s,
            r.run.warmup_records,
            r.run.submit_to_first_record_s,
            r.run.submit_to_end_s,
            r.run.last_checkpoint,
            r.load.map_or("?".into(), |l| format!("{l:.2}"))
        ),
        Progress::FlinkRow(r) => {
            if r.mode == ckptlab::bench::FLINK_MODES[0].label {
                outln!("{}", flink_table().line(&FLINK_HEADER, ""));
            }
            outln!("{}", flink_table().line(&flink_cells(r), ""));
        }
        Progress::MemoryRunStart { records, keys } => {
            outln!("ckptlab bench --memory: {records} records over {keys} keys (a process of its own) ...")
        }
        Progress::MemoryRun(r) => outln!(
            "  {:>11} records: {:.1} s ({:.0}/s), peak RSS {:.0} MB, {} checkpoints (median {:.0} ms early, {:.0} ms late), verdict {} in {:.2} ms, auditor {} ranges, topic {} KB",
            r.records,
            r.seconds,
            r.records_per_s,
            r.peak_rss_mb,
            r.checkpoints,
            r.early_checkpoint_ms,
            r.late_checkpoint_ms,
            r.verdict,
            r.verdict_ms,
            r.auditor_ranges,
            r.topic_bytes / 1024
        ),
    }
}

/// records/s as `median (min-max)`, in millions.
fn spread(s: &ckptlab::bench::Spread) -> String {
    format!("{:.2}M ({:.2}-{:.2})", s.median / 1e6, s.min / 1e6, s.max / 1e6)
}

fn load_text(load: Option<[f64; 3]>) -> String {
    load.map_or("?".into(), |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]))
}

/// The modes' table, a row per mode once every round is done.
fn modes_table() -> TextTable {
    let r = |w| Column::right().min(w).gap(" ");
    TextTable::new(vec![Column::left().min(38), r(20), r(8), r(20), r(8), Column::left().min(10).gap("  ")]).indent("  ")
}

/// `--flink`'s table's header.
const FLINK_HEADER: [&str; 7] = ["mode (median, min-max over the rounds)", "records", "Flink", "ckptlab off", "ckptlab on", "on / Flink", "target"];

/// `--flink`'s table, a row per mode once every round is done.
fn flink_table() -> TextTable {
    let r = |w| Column::right().min(w).gap(" ");
    TextTable::new(vec![Column::left().min(38), r(10), r(20), r(20), r(20), r(10), Column::left().min(12).gap("  ")]).indent("  ")
}

/// One mode's cells: records/s in millions, the ratio of medians, the target met or not.
fn flink_cells(r: &FlinkRow) -> [String; 7] {
    let target = match (r.target, r.met) {
        (Some(t), Some(true)) => format!(">= {t}x met"),
        (Some(t), _) => format!(">= {t}x NOT met"),
        (None, _) => "-".into(),
    };
    [r.mode.clone(), r.records.to_string(), spread(&r.flink), spread(&r.ckptlab_off), spread(&r.ckptlab_on), format!("{:.2}x", r.on_over_flink), target]
}

/// `--state`'s checkpoints at one state size, printed a row per backend as measured.
fn sizes_table() -> TextTable {
    let r = |w| Column::right().min(w).gap(" ");
    TextTable::new(vec![Column::left().min(22), r(9), r(10), r(9), r(20), r(11)]).indent("    ")
}

/// `--state`'s records/s while a snapshot is written, a row per backend.
fn overlap_table() -> TextTable {
    let r = |w| Column::right().min(w).gap(" ");
    TextTable::new(vec![Column::left().min(22), r(8), r(9), r(10), r(14), r(14)]).indent("    ")
}

/// What closes a run: with `--json` the one object, otherwise the lines after the tables.
fn print_report(report: &Report, json: bool) -> Result<(), serde_json::Error> {
    match report {
        Report::Modes(r) | Report::Audit(r) if json => outln!("{}", pretty(r)?),
        Report::Modes(r) | Report::Audit(r) => {
            if !r.recovery_note.is_empty() {
                outln!("  recovery: {:.1} ms ({})", r.recovery_ms, r.recovery_note);
            }
            outln!("  load before {}, after {}", load_text(r.load_before), load_text(r.load_after));
            if let Some(rss) = r.peak_rss_mb {
                outln!("  peak RSS: {rss:.0} MB");
            }
        }
        Report::Verdict(v) if json => outln!("{}", pretty(v)?),
        Report::Verdict(v) => {
            let ms = |s: &ckptlab::bench::Spread| format!("{:.3} ms ({:.3}-{:.3})", s.median, s.min, s.max);
            outln!("ckptlab bench --verdict: {} keys, {} records, auditor on, verdict {}", v.keys, v.records, v.verdict);
            outln!("  first verdict (every key changed):      {:.3} ms", v.first_ms);
            outln!("  next verdict, nothing changed:          {} over {} samples", ms(&v.unchanged_ms), v.samples);
            outln!("  next verdict after {} keys changed:    {}", v.changed, ms(&v.changed_ms));
            outln!("  a whole per-key table (Auditor::verdict): {}", ms(&v.full_table_ms));
        }
        Report::State { throughput, state, during_async_write, .. } if json => {
            let throughput: Vec<_> = throughput.iter().map(|(b, r)| serde_json::json!({"backend": b, "records_per_s": r})).collect();
            let json = serde_json::json!({ "throughput": throughput, "state": state, "during_async_write": during_async_write });
            outln!("{}", pretty(&json)?);
        }
        Report::State { peak_rss_mb, .. } => {
            if let Some(rss) = peak_rss_mb {
                outln!("  peak RSS: {rss:.0} MB");
            }
        }
        Report::Source { records, embedded_records_per_s, kafka_mock_records_per_s, latency } if json => {
            let lat: Vec<_> = latency
                .iter()
                .map(|l| serde_json::json!({"hop_delay": l.hop_delay, "source": l.source, "median_ms": l.median_ms}))
                .collect();
            let json = serde_json::json!({"records": records, "embedded_records_per_s": embedded_records_per_s, "kafka_mock_records_per_s": kafka_mock_records_per_s, "ratio": kafka_mock_records_per_s / embedded_records_per_s, "latency": lat});
            outln!("{}", pretty(&json)?);
        }
        Report::Source { .. } => {}
        Report::Sinks { records, rows } if json => outln!("{}", pretty(&serde_json::json!({ "records": records, "sinks": rows }))?),
        Report::Sinks { .. } => {}
        Report::Memory(results) => {
            if let [short, long] = &results[..] {
                let growth = (long.peak_rss_mb - short.peak_rss_mb) * 1024.0 * 1024.0 / (long.records - short.records).max(1) as f64;
                if json {
                    outln!("{}", pretty(results)?);
                } else {
                    outln!(
                        "  peak RSS long/short x{:.3}; {:.3} bytes per extra record; checkpoint late/early x{:.2} (long run)",
                        long.peak_rss_mb / short.peak_rss_mb,
                        growth,
                        long.late_checkpoint_ms / long.early_checkpoint_ms.max(1.0)
                    );
                }
            }
        }
        Report::Flink(r) if json => outln!("{}", pretty(r)?),
        Report::Flink(r) => outln!("  load before {}, after {}", load_text(r.start.load), load_text(r.load_after)),
        // The parent process reads the last line of stdout: compact, whatever --json says.
        Report::MemoryChild(r) => outln!("{}", serde_json::to_string(r)?),
    }
    Ok(())
}

fn pretty<T: serde::Serialize>(v: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckptlab::bench::Spread;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchOptions {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).expect("parses").bench.options()
    }

    #[test]
    fn flink_chooses_the_flink_benchmark_over_the_others_and_keeps_the_sizes() {
        let o = parse(&["--flink", "--records", "200000", "--rounds", "1", "--state-records", "5000"]);
        assert_eq!(o.measure, Measure::Flink);
        assert_eq!((o.records, o.rounds, o.state_records), (Some(200_000), 1, 5000));
        assert_eq!(parse(&["--state", "--flink"]).measure, Measure::Flink);
        assert_eq!(parse(&[]).measure, Measure::Modes { audit_only: false });
        assert!(Cli::try_parse_from(["bench", "--flink", "--rounds", "x"]).is_err());
    }

    #[test]
    fn a_flink_row_reads_as_millions_with_its_ratio_and_target() {
        let s = |m: f64| Spread { median: m * 1e6, min: m * 1e6 - 1e5, max: m * 1e6 + 1e5 };
        let mut row = FlinkRow {
            mode: "EXACTLY_ONCE aligned 1s".into(),
            records: 20_000_000,
            flink: s(3.0),
            ckptlab_off: s(9.0),
            ckptlab_on: s(4.5),
            off_over_flink: 3.0,
            on_over_flink: 1.5,
            target: Some(3.0),
            met: Some(false),
            verdict: "ok".into(),
            flink_checkpoints: Spread::default(),
            ckptlab_checkpoints: Spread::default(),
        };
        assert_eq!(
            flink_cells(&row),
            ["EXACTLY_ONCE aligned 1s", "20000000", "3.00M (2.90-3.10)", "9.00M (8.90-9.10)", "4.50M (4.40-4.60)", "1.50x", ">= 3x NOT met"]
        );
        row.met = Some(true);
        assert_eq!(flink_cells(&row)[6], ">= 3x met");
        row.target = None;
        assert_eq!(flink_cells(&row)[6], "-");
        let line = flink_table().line(&flink_cells(&row), "");
        assert!(line.contains("3.00M (2.90-3.10)") && line.contains("1.50x"), "{line}");
    }
}
