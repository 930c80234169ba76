//! `ckptlab run FILE`: a scenario headless, narrated, then the verdict table (or one JSON
//! object); with `[compare]` every step on each side and the verdicts side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use ckptlab::cluster::Engine;
use ckptlab::compare::{CompareReport, Lineup, Sides};
use ckptlab::events::EventBus;
use ckptlab::scenario::{self, RunReport, Scenario};
use ckptlab::table::{Column, TextTable};

use super::{base_layers, out, outln, CliError, EventsFile, Global, LayerArgs};

#[derive(clap::Args)]
pub struct RunArgs {
    /// A scenario file, or a shipped scenario's name from any directory (seed-exactly-once,
    /// checkpoint-expired, ...: the files of assets/scenarios/, embedded in the binary).
    file: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Do not narrate the steps.
    #[arg(long, short)]
    quiet: bool,
    /// Also write one self-contained HTML page of the run (timeline, charts, events, the verdict
    /// with every wrong key explained): for a ticket or a projector. Docs: docs/report.md
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
}

/// Distinct checkpoint failure reasons `ckptlab run` prints under its table.
const FAILURE_REASONS_SHOWN: usize = 3;

/// Exit 0: every expect held, 1: one failed, 2: bad file or option.
pub async fn exec(cli: &Global, args: &RunArgs) -> ExitCode {
    let scenario = match ckptlab::shipped::load(&args.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ckptlab: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(compared) = scenario.compare.clone() {
        if args.report.is_some() {
            eprintln!("ckptlab: --report writes one run's page; {} is a [compare] scenario (each side has its own timeline): run one side as its own scenario, or drop --report", args.file.display());
            return ExitCode::from(2);
        }
        return match run_compared(cli, &scenario, &compared, args.json, args.quiet).await {
            Ok(report) => ExitCode::from(if report.passed { 0 } else { 1 }),
            Err(e) => {
                eprintln!("ckptlab: {e}");
                ExitCode::from(2)
            }
        };
    }
    match run_one_reported(cli, &scenario, args.json, args.quiet, args.report.as_deref()).await {
        Ok(report) => ExitCode::from(if report.passed { 0 } else { 1 }),
        Err(e) => {
            eprintln!("ckptlab: {e}");
            ExitCode::from(2)
        }
    }
}

pub async fn run_one(cli: &Global, scenario: &Scenario, json: bool, quiet: bool) -> Result<RunReport, CliError> {
    run_one_reported(cli, scenario, json, quiet, None).await
}

/// [`run_one`], and with `report` the run's page written there ([`ckptlab::report`]).
pub async fn run_one_reported(
    cli: &Global,
    scenario: &Scenario,
    json: bool,
    quiet: bool,
    report_to: Option<&std::path::Path>,
) -> Result<RunReport, CliError> {
    // Refuse an unwritable page before the run, not after it.
    if let Some(path) = report_to {
        std::fs::write(path, "").map_err(|source| CliError::ReportFile { path: path.to_path_buf(), source })?;
    }
    let layers = base_layers(cli, Some(scenario))?;
    scenario.check(&layers.build()?)?;
    let effective = layers.effective();
    let bus = EventBus::new(tokio::time::Instant::now());
    let events_file = EventsFile::start(cli, &bus)?;
    let collector = report_to.map(|_| ckptlab::report::Collector::start(&bus));
    let engine = Engine::start(layers, bus)?;
    let cfg = engine.config();
    let settings = format!(
        "{} | {} | restart-strategy {} | heartbeat timeout {}",
        cfg.checkpointing_label(),
        cfg.backend_label(),
        ckptlab::cluster::restart::strategy_name(cfg.restart.effective(cfg.checkpointing.interval.is_some())),
        ckptlab::duration::format_duration(cfg.heartbeat_timeout)
    );
    if !json && !quiet {
        print_header(scenario, "");
        outln!("   {settings}");
        let view = engine.view(false);
        if view.source.topic != ckptlab::cluster::view::TopicKind::Embedded {
            outln!("   source: {}", view.source.description);
        }
        if let Some(problem) = &view.topic_status {
            outln!("   WARNING {problem}");
        }
    }
    let narrate_on = !json && !quiet;
    // With --report, the view is sampled while the steps play (records/s, backpressure).
    let played = tokio::sync::Notify::new();
    let mut samples = Vec::new();
    let play = async {
        let report = scenario::run(scenario, &engine, |line| {
            if narrate_on {
                outln!("{line}");
            }
        })
        .await;
        played.notify_one();
        report
    };
    let sample = async {
        if report_to.is_none() {
            return;
        }
        loop {
            samples.push(ckptlab::report::Sample::of(&engine.view(false)));
            tokio::select! {
                _ = tokio::time::sleep(ckptlab::report::SAMPLE_EVERY) => {}
                _ = played.notified() => break,
            }
        }
    };
    let (report, ()) = tokio::join!(play, sample);
    // What is wrong with the topic at the end (a broker that came back empty ...) closes the report.
    let topic_status = engine.view(false).topic_status;
    // The Kafka sink's output topic, read at both isolation levels before the broker goes.
    let output = match ckptlab::connectors::kafka_sink::verdict::of_engine(&engine, &report.verdict) {
        Some(Ok(o)) => Some(o),
        Some(Err(e)) => {
            eprintln!("WARNING the output topic could not be read: {e}");
            None
        }
        None => None,
    };
    // What the page needs of the engine, before it goes: every checkpoint row, the explanations.
    let page_parts = report_to.map(|_| {
        samples.push(ckptlab::report::Sample::of(&engine.view(false)));
        let (keys, unexplained) = ckptlab::report::keys_to_explain(&report.verdict);
        let explained =
            keys.into_iter().map(|key| ckptlab::report::Explained { lines: engine.explain(&key).lines(), key }).collect::<Vec<_>>();
        (engine.view(false).checkpoint_history, explained, unexplained)
    });
    let output_json = output.as_ref().and_then(|o| serde_json::to_value(o).ok());
    engine.shutdown().await;
    if let Some(f) = events_file {
        f.finish().await;
    }
    print(&WithOutput { report: &report, output }, json, topic_status.as_deref(), Some(&effective))?;
    if let (Some(path), Some(collector), Some((checkpoints, explained, unexplained))) = (report_to, collector, page_parts) {
        let (events, events_counted) = collector.finish().await;
        let data = ckptlab::report::ReportData {
            report: report.clone(),
            checkpoints,
            events,
            events_counted,
            samples,
            explained,
            unexplained,
            output: output_json,
            settings,
        };
        std::fs::write(path, ckptlab::report::page(&data)).map_err(|source| CliError::ReportFile { path: path.to_path_buf(), source })?;
        if json {
            eprintln!("report: {}", path.display());
        } else {
            outln!("report: {}", path.display());
        }
    }
    Ok(report)
}

/// A run's report with the Kafka sink's output verdict, which `--json` carries as
/// `verdict.output_isolation.read_committed` / `.read_uncommitted` (read by checks outside the
/// suite; issue 23).
struct WithOutput<'a> {
    report: &'a RunReport,
    output: Option<ckptlab::connectors::kafka_sink::verdict::OutputVerdict>,
}

impl serde::Serialize for WithOutput<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(self.report).map_err(serde::ser::Error::custom)?;
        if let (Some(o), Some(verdict)) = (&self.output, v.get_mut("verdict").and_then(|v| v.as_object_mut())) {
            verdict.insert("output_isolation".into(), serde_json::to_value(o).map_err(serde::ser::Error::custom)?);
        }
        v.serialize(s)
    }
}

impl Report for WithOutput<'_> {
    fn print_text(&self) {
        print_report(self.report);
        if let Some(o) = &self.output {
            outln!("{}", o.summary_line());
            for cause in &o.causes {
                outln!("{cause}");
            }
        }
    }
}

/// What `ckptlab run` reports: one engine's run, or every side's of a comparison. Both go
/// through [`print`], so the JSON and the text summary have one printer.
trait Report: serde::Serialize {
    /// The text summary under the narration: the verdict table, the figures, PASSED or FAILED.
    fn print_text(&self);
}

/// The one report printer of `ckptlab run`: one JSON object, or the text summary; then what is
/// wrong with the topic at the end (a broker that came back empty ...), which closes the report
/// (on stderr under `--json`, so that stdout stays one object).
fn print(
    report: &impl Report,
    json: bool,
    topic_status: Option<&str>,
    effective_config: Option<&[ckptlab::config::EffectiveOption]>,
) -> Result<(), CliError> {
    if json {
        let versioned = Versioned { schema_version: SCHEMA_VERSION, effective_config, report };
        outln!("{}", serde_json::to_string_pretty(&versioned)?);
        if let Some(problem) = topic_status {
            eprintln!("WARNING {problem}");
        }
    } else {
        outln!();
        report.print_text();
        if let Some(problem) = topic_status {
            outln!("WARNING {problem}");
        }
    }
    Ok(())
}

/// The version of `ckptlab run --json`'s object (docs/scenarios.md): raised when a field is
/// removed, renamed or changes its type, so that a tool reading it can refuse what it does not know.
/// 1: the first with a version; `failures` are objects (`line`, `kind`, `message`), not strings;
/// a single run's `effective_config` lists every option it started with and the layer it came from.
pub const SCHEMA_VERSION: u32 = 1;

/// `ckptlab run --json`: the report's fields, with the schema version first.
#[derive(serde::Serialize)]
struct Versioned<'a, R: Report> {
    schema_version: u32,
    /// Every option the run started with: key, value, layer (`default`, `conf_file`, `scenario`,
    /// `command_line`, `live`) and origin; a comparison's sides each have their own, not listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_config: Option<&'a [ckptlab::config::EffectiveOption]>,
    #[serde(flatten)]
    report: &'a R,
}

/// The scenario's name, file and description, above the narration.
fn print_header(scenario: &Scenario, suffix: &str) {
    outln!("== {} ({}){suffix}", scenario.name, scenario.file);
    for line in scenario.description.lines() {
        outln!("   {line}");
    }
}

/// `FAILED [side: ]reason`, one line per failure.
fn print_failures<T: std::fmt::Display>(side: Option<&str>, failures: &[T]) {
    let side = side.map(|s| format!("{s}: ")).unwrap_or_default();
    for f in failures {
        outln!("FAILED {side}{f}");
    }
}

impl Report for RunReport {
    fn print_text(&self) {
        print_report(self);
    }
}

impl Report for CompareReport {
    fn print_text(&self) {
        print_compared(self);
    }
}

fn print_report(r: &RunReport) {
    out!("{}", scenario::report_table(r));
    outln!(
        "produced {}  repeated output lines {}  checkpoints: {} completed, {} failed, {} restored  restarts {}  job {}",
        r.verdict.produced,
        r.verdict.repeated_output,
        r.checkpoints.completed,
        r.checkpoints.failed,
        r.checkpoints.restored,
        r.restarts,
        r.status
    );
    if let Some(last) = r.checkpoints.history.iter().rev().find(|c| c.failure.is_none()) {
        let size = if last.checkpointed_size == last.full_size {
            ckptlab::duration::format_size(last.full_size)
        } else {
            format!(
                "{} uploaded of {} (incremental)",
                ckptlab::duration::format_size(last.checkpointed_size),
                ckptlab::duration::format_size(last.full_size)
            )
        };
        let persisted = if last.unaligned {
            format!(", {} in-flight persisted", ckptlab::duration::format_size(last.persisted_size))
        } else {
            String::new()
        };
        outln!(
            "last checkpoint: {} in {} ms (start delay {} ms, alignment {} ms, sync {} ms, async {} ms), {size}{persisted}",
            last.id,
            last.duration_ms,
            last.start_delay_ms,
            last.alignment_ms,
            last.sync_ms,
            last.async_ms
        );
    }
    // Why checkpoints failed: the last few distinct reasons, newest last.
    let mut reasons: Vec<(u64, &str)> = Vec::new();
    for c in r.checkpoints.history.iter().rev() {
        if let Some(reason) = c.failure.as_deref() {
            if !reasons.iter().any(|(_, seen)| *seen == reason) {
                reasons.push((c.id, reason));
            }
        }
        if reasons.len() == FAILURE_REASONS_SHOWN {
            break;
        }
    }
    for (id, reason) in reasons.into_iter().rev() {
        outln!("checkpoint {id} failed: {reason}");
    }
    if r.passed {
        outln!("PASSED: every expect held ({:.1}s)", r.duration_ms as f64 / 1000.0);
    } else {
        print_failures(None, &r.failures);
    }
}

/// `ckptlab run` on a scenario with `[compare]`: every step on each side, verdicts side by side.
async fn run_compared(cli: &Global, scenario: &Scenario, compared: &Sides, json: bool, quiet: bool) -> Result<CompareReport, CliError> {
    let sides = super::compare::sides(&LayerArgs::of(cli, false), Some(scenario), compared)?;
    super::compare::warn_no_events(cli);
    let lineup = Lineup::start(sides, || EventBus::new(tokio::time::Instant::now()))?;
    let narrate_on = !json && !quiet;
    if narrate_on {
        print_header(scenario, ", compared");
        for side in &lineup.sides {
            let cfg = side.engine.config();
            outln!("   {:<6} {:<13} {} | {} | sink {}", side.name, side.label, cfg.checkpointing_label(), cfg.backend_label(), cfg.sink_label());
        }
    }
    let report = ckptlab::compare::run(scenario, &lineup, |line| {
        if narrate_on {
            outln!("{line}");
        }
    })
    .await;
    lineup.shutdown().await;
    print(&report, json, None, None)?;
    Ok(report)
}

fn print_compared(r: &CompareReport) {
    let labels: Vec<&str> = r.sides.iter().map(|s| s.label.as_str()).collect();
    let verdicts: Vec<&ckptlab::audit::Verdict> = r.sides.iter().map(|s| &s.report.verdict).collect();
    out!("{}", ckptlab::compare::side_by_side_table(&labels, &verdicts));
    if ckptlab::compare::key_rows(&verdicts).iter().any(|r| r.differs()) {
        outln!("(* the sides differ)");
    }
    // A line per side: label, verdict, checkpoints, as columns.
    let mut per_side = TextTable::new(vec![Column::left().min(13), Column::left().min(15).gap(" "), Column::left().gap(" ")]);
    for s in &r.sides {
        let p = &s.report;
        per_side.row([
            s.label.clone(),
            p.verdict.summary(),
            format!(
                "checkpoints: {} completed, {} failed  restarts {}  job {}",
                p.checkpoints.completed, p.checkpoints.failed, p.restarts, p.status
            ),
        ]);
    }
    out!("{}", per_side.render());
    // What a reader of each side's output sees: the Kafka sink's topic at both isolation levels,
    // other sinks' repeated lines.
    let mut outputs = TextTable::new(vec![Column::left().min(13), Column::left().gap(" ")]);
    for s in &r.sides {
        let seen = match &s.output {
            Some(o) => o.summary_line(),
            None => format!("output: repeated lines {}", s.report.verdict.repeated_output),
        };
        outputs.row([s.label.clone(), seen]);
    }
    out!("{}", outputs.render());
    for s in &r.sides {
        for cause in s.output.iter().flat_map(|o| &o.causes) {
            outln!("{}: {cause}", s.label);
        }
        print_failures(Some(&s.label), &s.report.failures);
    }
    if r.passed {
        let ms = r.sides.iter().map(|s| s.report.duration_ms).max().unwrap_or(0);
        outln!("PASSED: every expect held on every side ({:.1}s)", ms as f64 / 1000.0);
    }
}
