//! `ckptlab run FILE --report FILE.html`: one self-contained page of a run, for a ticket or a
//! projector. No network, no script: the timeline and the charts are inline SVG, the styles inline.
//!
//! What it holds, top to bottom:
//! - the verdict's totals and the run's outcome (expects passed or failed, with their lines);
//! - the timeline: per subtask, for every checkpoint, its start delay, alignment, synchronous and
//!   asynchronous parts as bars (from Flink's SubtaskCheckpointStatistics as the anatomy popup
//!   shows them), with the kills, hangs, losses, restarts and restores as vertical marks;
//! - charts over time: checkpoint duration, start delay and alignment; checkpointed and full size;
//!   persisted in-flight bytes; records/s per subtask and the share of samples it was
//!   backpressured (sampled from the cluster's view, [`Sampler`]);
//! - the Kafka sink's output verdict at both isolation levels, when the job writes to Kafka;
//! - the events (per-record ones counted, not listed);
//! - the verdict per key, every lost or overcounted key with its explanation (the workbench's
//!   Enter on a key).
//!
//! [`page`] is a pure function of [`ReportData`], which `ckptlab run` gathers while it plays.

use std::fmt::Write as _;

use crate::audit::{KeyVerdict, Verdict};
use crate::cluster::coordinator::{CheckpointStats, CheckpointStatus};
use crate::cluster::view::ClusterView;
use crate::events::{Event, Stamped};
use crate::scenario::RunReport;

/// How often [`Sampler`] reads the cluster's view.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Keys whose explanation the page carries; the rest are counted.
pub const EXPLAINED_KEYS: usize = 200;
/// Rows of the per-key table; the rest are counted (keys with a problem come first).
pub const KEY_ROWS: usize = 1000;
/// Events listed; the rest are counted.
pub const EVENT_ROWS: usize = 2000;

/// The colours the page draws with (the end-to-end test finds them in Chromium's screenshot).
pub mod colour {
    pub const START_DELAY: &str = "#b0b0b0";
    pub const ALIGNMENT: &str = "#e08a1e";
    pub const SYNC: &str = "#c0392b";
    pub const ASYNC: &str = "#2e86c1";
    pub const FAILED: &str = "#7d3c98";
    pub const MARK: &str = "#222222";
    pub const ROW_OK: &str = "#e3f4e3";
    pub const ROW_BAD: &str = "#f9d3d0";
    /// Series colours, in order.
    pub const SERIES: [&str; 6] = ["#2e86c1", "#e08a1e", "#27ae60", "#c0392b", "#7d3c98", "#16a085"];
}

/// One reading of the cluster: per task, records sent so far on its output channels (the sink:
/// received), and whether one of its output channels was backpressured.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub t_ms: u64,
    pub tasks: Vec<TaskSample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskSample {
    pub task: String,
    pub records: u64,
    pub backpressured: bool,
}

impl Sample {
    /// What the view shows of each task's traffic now.
    pub fn of(view: &ClusterView) -> Sample {
        let mut tasks: Vec<TaskSample> =
            view.tasks.iter().map(|t| TaskSample { task: t.task.to_string(), records: 0, backpressured: false }).collect();
        for c in &view.channels {
            let (from, to) = (c.from.to_string(), c.to.to_string());
            if let Some(t) = tasks.iter_mut().find(|t| t.task == from) {
                t.records += c.records_sent;
                t.backpressured |= c.backpressured;
            }
            if to == crate::types::TaskId::Sink.to_string() {
                if let Some(t) = tasks.iter_mut().find(|t| t.task == to) {
                    t.records += c.records_sent;
                }
            }
        }
        Sample { t_ms: view.time_ms, tasks }
    }
}

/// Events the page counts but does not list: one per record or per barrier and channel.
pub fn per_record(e: &Event) -> bool {
    matches!(
        e,
        Event::RecordProduced { .. }
            | Event::SinkEmitted { .. }
            | Event::BarrierInjected { .. }
            | Event::BarrierReceived { .. }
            | Event::AlignmentStarted { .. }
            | Event::AlignmentFinished { .. }
            | Event::SnapshotTaken { .. }
            | Event::ChannelStatePersisted { .. }
    )
}

/// The moments the timeline marks, with their short label.
fn mark(e: &Event) -> Option<&'static str> {
    Some(match e {
        Event::TaskManagerKilled { .. } => "kill",
        Event::TaskManagerHung { .. } => "hang",
        Event::TaskManagerLost { .. } => "TM lost",
        Event::TaskManagerStarted { .. } => "TM started",
        Event::JobFailing { .. } => "failing",
        Event::JobRestarting { .. } => "restarting",
        Event::JobRunning { .. } => "running",
        Event::RestoredFromSnapshot { .. } => "restored",
        Event::StateRestored { checkpoint: Some(_), .. } => "restored",
        Event::JobFailed { .. } => "FAILED",
        _ => return None,
    })
}

/// A key's explanation, as the workbench's Enter on the key shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    pub key: String,
    pub lines: Vec<String>,
}

/// Everything the page is made of.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub report: RunReport,
    /// The checkpoint rows (every one the coordinator kept).
    pub checkpoints: Vec<CheckpointStats>,
    /// The events worth listing, in order.
    pub events: Vec<Stamped>,
    /// Per-record events seen but not listed.
    pub events_counted: u64,
    pub samples: Vec<Sample>,
    pub explained: Vec<Explained>,
    /// Keys with a problem that have no explanation on the page ([`EXPLAINED_KEYS`]).
    pub unexplained: usize,
    /// The Kafka sink's output verdict (`verdict.output_isolation` of `--json`).
    pub output: Option<serde_json::Value>,
    /// The configuration in force, as `ckptlab run` prints it (`checkpointing | backend | ...`).
    pub settings: String,
}

/// A key the page explains: something was lost or counted twice.
pub fn troubled(k: &KeyVerdict) -> bool {
    k.lost > 0 || k.overcounted > 0
}

/// The keys [`ReportData::explained`] should hold, at most [`EXPLAINED_KEYS`], and how many more.
pub fn keys_to_explain(verdict: &Verdict) -> (Vec<String>, usize) {
    let all: Vec<&String> = verdict.keys.iter().filter(|(_, k)| troubled(k)).map(|(key, _)| key).collect();
    let more = all.len().saturating_sub(EXPLAINED_KEYS);
    (all.into_iter().take(EXPLAINED_KEYS).cloned().collect(), more)
}

/// Text for HTML: `<`, `>`, `&` and quotes escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
th{background:#f0f0f0}td.l,th.l{text-align:left}.pass{color:#1e7b34;font-weight:bold}.fail{color:#b02a1e;font-weight:bold}\
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}\
pre{background:#f7f7f7;padding:6px;margin:4px 0;white-space:pre-wrap}svg{background:#fff;border:1px solid #ddd}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#666}";

/// The whole page.
pub fn page(d: &ReportData) -> String {
    let r = &d.report;
    let v = &r.verdict;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ckptlab: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&r.scenario)
    );
    let outcome = if r.passed { "<span class=\"pass\">PASSED</span>" } else { "<span class=\"fail\">FAILED</span>" };
    let _ = writeln!(h, "<h1>{} — {outcome}</h1>", esc(&r.scenario));
    if !r.description.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(r.description.trim()));
    }
    let _ = writeln!(
        h,
        "<p>{} · job {} · status {} · {} restart(s) · {} ms · checkpoints {} triggered, {} completed, {} failed, {} restored</p>",
        esc(&d.settings),
        esc(&r.job_id),
        esc(&r.status),
        r.restarts,
        r.duration_ms,
        r.checkpoints.triggered,
        r.checkpoints.completed,
        r.checkpoints.failed,
        r.checkpoints.restored
    );
    for f in &r.failures {
        let _ = writeln!(h, "<p class=\"fail\">{}</p>", esc(&f.to_string()));
    }
    totals(&mut h, v);
    let _ = writeln!(h, "<h2 id=\"timeline\">Timeline</h2>");
    timeline(&mut h, d);
    let _ = writeln!(h, "<h2 id=\"charts\">Charts</h2><div class=\"charts\">");
    charts(&mut h, d);
    let _ = writeln!(h, "</div>");
    if let Some(o) = &d.output {
        output(&mut h, o);
    }
    events(&mut h, d);
    keys(&mut h, d);
    let _ = writeln!(
        h,
        "<p class=\"muted\">Written by ckptlab {} (a model of Flink 2's checkpoints; see its docs for what it simplifies).</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

fn totals(h: &mut String, v: &Verdict) {
    let exact = v.lost == 0 && v.overcounted == 0;
    let _ = writeln!(
        h,
        "<h2 id=\"verdict\">Verdict</h2><table><tr><th>produced</th><th>expected</th><th>state</th><th>lost</th><th>of them: no checkpoint</th><th>by restore</th><th>by broker</th><th>overcounted</th><th>in flight</th><th>repeated output</th><th>output gaps</th><th class=\"l\">verdict</th></tr>"
    );
    let _ = writeln!(
        h,
        "<tr style=\"background:{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr></table>",
        if exact { colour::ROW_OK } else { colour::ROW_BAD },
        v.produced,
        v.expected,
        v.state,
        v.lost,
        v.lost_no_checkpoint,
        v.lost_by_restore,
        v.lost_by_broker,
        v.overcounted,
        v.in_flight,
        v.repeated_output,
        v.output_gaps,
        if exact { "exact: every record counted once" } else { "NOT exact" }
    );
    if !v.consistent {
        let _ = writeln!(h, "<p class=\"fail\">The operator's state and the auditor's shadow disagree, or the topic no longer holds what was read: this verdict cannot be trusted.</p>");
    }
}

/// The x axis of the timeline and the time charts: 0 .. the run's last moment.
fn run_end(d: &ReportData) -> u64 {
    let last_event = d.events.last().map_or(0, |e| e.t_ms);
    let last_sample = d.samples.last().map_or(0, |s| s.t_ms);
    let last_checkpoint = d.checkpoints.iter().map(|c| c.trigger_ms + c.duration_ms).max().unwrap_or(0);
    last_event.max(last_sample).max(last_checkpoint).max(d.report.duration_ms).max(1)
}

const TL_WIDTH: f64 = 1300.0;
const TL_LEFT: f64 = 110.0;
const TL_ROW: f64 = 22.0;

fn timeline(h: &mut String, d: &ReportData) {
    let mut tasks: Vec<String> = Vec::new();
    for c in &d.checkpoints {
        for s in &c.subtasks {
            if !tasks.contains(&s.task) {
                tasks.push(s.task.clone());
            }
        }
    }
    if let Some(s) = d.samples.last() {
        for t in &s.tasks {
            if !tasks.contains(&t.task) {
                tasks.push(t.task.clone());
            }
        }
    }
    let end = run_end(d) as f64;
    let x = |t: f64| TL_LEFT + (t / end) * (TL_WIDTH - TL_LEFT - 10.0);
    let marks: Vec<(u64, &'static str, String)> =
        d.events.iter().filter_map(|e| mark(&e.event).map(|m| (e.t_ms, m, e.event.describe()))).collect();
    let top = 34.0;
    let height = top + TL_ROW * (tasks.len().max(1) as f64) + 44.0;
    let _ = writeln!(
        h,
        "<p class=\"legend\">per subtask and checkpoint:<span style=\"background:{}\"></span>start delay<span style=\"background:{}\"></span>alignment<span style=\"background:{}\"></span>sync<span style=\"background:{}\"></span>async<span style=\"background:{}\"></span>never acknowledged (failed checkpoint) · vertical lines: kills, losses, restarts, restores (hover for the event)</p>",
        colour::START_DELAY,
        colour::ALIGNMENT,
        colour::SYNC,
        colour::ASYNC,
        colour::FAILED
    );
    let _ = writeln!(h, "<svg id=\"timeline-svg\" width=\"{TL_WIDTH}\" height=\"{height}\" viewBox=\"0 0 {TL_WIDTH} {height}\">");
    for (i, t) in tasks.iter().enumerate() {
        let y = top + TL_ROW * i as f64;
        let _ = writeln!(h, "<text x=\"4\" y=\"{:.1}\" font-size=\"12\">{}</text>", y + 14.0, esc(t));
        let _ = writeln!(h, "<line x1=\"{TL_LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>", TL_WIDTH - 10.0, y + TL_ROW, y + TL_ROW);
    }
    // The checkpoints' triggers, as ticks with their ids along the top.
    for c in &d.checkpoints {
        let cx = x(c.trigger_ms as f64);
        let failed = c.status == CheckpointStatus::Failed;
        let _ = writeln!(
            h,
            "<g><title>checkpoint {} {:?}: {} ms{}</title><line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"14\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"{cx:.1}\" y=\"12\" font-size=\"10\" fill=\"{}\">{}</text></g>",
            c.id,
            c.status,
            c.duration_ms,
            c.failure.as_deref().map(|f| format!(" ({})", esc(f))).unwrap_or_default(),
            height - 30.0,
            if failed { colour::FAILED } else { "#555" },
            c.id
        );
        for s in &c.subtasks {
            let Some(row) = tasks.iter().position(|t| *t == s.task) else { continue };
            let y = top + TL_ROW * row as f64 + 4.0;
            let t0 = c.trigger_ms as f64;
            let Some(delay) = s.start_delay_ms else {
                // The barrier never reached it: the whole wait, in the failed colour.
                let w = (x(t0 + c.duration_ms as f64) - x(t0)).max(2.0);
                let _ = writeln!(
                    h,
                    "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"{}\"><title>{} chk {}: never acknowledged</title></rect>",
                    x(t0),
                    colour::FAILED,
                    esc(&s.task),
                    c.id
                );
                continue;
            };
            let mut at = t0;
            for (len, fill, what) in [
                (delay, colour::START_DELAY, "start delay"),
                (s.alignment_ms, colour::ALIGNMENT, "alignment"),
                (s.sync_ms, colour::SYNC, "sync"),
                (s.async_ms, colour::ASYNC, "async"),
            ] {
                let w = (x(at + len as f64) - x(at)).max(if len > 0 { 1.5 } else { 0.0 });
                if w > 0.0 {
                    let _ = writeln!(
                        h,
                        "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"14\" fill=\"{fill}\"><title>{} chk {}: {what} {len} ms</title></rect>",
                        x(at),
                        esc(&s.task),
                        c.id
                    );
                }
                at += len as f64;
            }
            if s.ack_ms.is_none() {
                let _ = writeln!(h, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"4\" height=\"14\" fill=\"{}\"/>", x(at), y, colour::FAILED);
            }
        }
    }
    for (i, (t, m, text)) in marks.iter().enumerate() {
        let mx = x(*t as f64);
        // Labels of marks close together go on three lines.
        let label_y = height - 22.0 + 9.0 * (i % 3) as f64;
        let _ = writeln!(
            h,
            "<g><title>{} ms: {}</title><line x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\" stroke-dasharray=\"4 2\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text></g>",
            t,
            esc(text),
            top - 4.0,
            height - 30.0,
            colour::MARK,
            mx + 2.0,
            label_y,
            m
        );
    }
    let _ = writeln!(h, "<text x=\"4\" y=\"12\" font-size=\"10\">checkpoint</text><text x=\"4\" y=\"26\" font-size=\"10\">0 .. {} ms</text></svg>", end as u64);
    if d.checkpoints.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">No checkpoint was triggered (checkpointing off, or the run ended first).</p>");
    }
}

/// A series of a chart: its name and its points (x in ms, y in the chart's unit).
struct Series<'a> {
    name: &'a str,
    points: Vec<(f64, f64)>,
}

fn chart(h: &mut String, id: &str, title: &str, unit: &str, end: f64, series: &[Series]) {
    const W: f64 = 640.0;
    const HT: f64 = 200.0;
    const L: f64 = 60.0;
    const B: f64 = 24.0;
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0_f64, f64::max).max(1.0);
    let x = |t: f64| L + (t / end.max(1.0)) * (W - L - 10.0);
    let y = |v: f64| 24.0 + (1.0 - v / max) * (HT - 24.0 - B);
    let _ = writeln!(h, "<svg id=\"{id}\" width=\"{W}\" height=\"{HT}\" viewBox=\"0 0 {W} {HT}\">");
    let _ = writeln!(h, "<text x=\"{L}\" y=\"14\" font-size=\"13\" font-weight=\"bold\">{}</text>", esc(title));
    let _ = writeln!(
        h,
        "<text x=\"4\" y=\"{:.1}\" font-size=\"10\">{}</text><text x=\"4\" y=\"{:.1}\" font-size=\"10\">0</text>",
        y(max) + 4.0,
        esc(&format!("{max:.0} {unit}")),
        y(0.0)
    );
    let _ = writeln!(h, "<line x1=\"{L}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>", W - 10.0, y(0.0), y(0.0));
    let _ = writeln!(h, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{} ms</text>", W - 10.0, HT - 6.0, end as u64);
    for (i, s) in series.iter().enumerate() {
        let c = colour::SERIES[i % colour::SERIES.len()];
        let pts: Vec<String> = s.points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
        if pts.len() > 1 {
            let _ = writeln!(h, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\" points=\"{}\"/>", pts.join(" "));
        }
        for (t, v) in &s.points {
            let _ = writeln!(h, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\" fill=\"{c}\"><title>{}: {v:.0} {unit} at {t:.0} ms</title></circle>", x(*t), y(*v), esc(s.name));
        }
        let _ = writeln!(h, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{c}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>", L + 10.0 + 130.0 * i as f64, HT - 16.0, L + 24.0 + 130.0 * i as f64, HT - 7.0, esc(s.name));
    }
    if series.iter().all(|s| s.points.is_empty()) {
        let _ = writeln!(h, "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#888\">no data in this run</text>", L + 20.0, HT / 2.0);
    }
    let _ = writeln!(h, "</svg>");
}

fn charts(h: &mut String, d: &ReportData) {
    let end = run_end(d) as f64;
    let at = |c: &CheckpointStats| c.trigger_ms as f64;
    let of = |f: fn(&CheckpointStats) -> u64| d.checkpoints.iter().map(|c| (at(c), f(c) as f64)).collect::<Vec<_>>();
    chart(
        h,
        "chart-duration",
        "Checkpoint duration, start delay, alignment",
        "ms",
        end,
        &[
            Series { name: "duration", points: of(|c| c.duration_ms) },
            Series { name: "start delay (max)", points: of(|c| c.start_delay_ms) },
            Series { name: "alignment", points: of(|c| c.alignment_ms) },
        ],
    );
    chart(
        h,
        "chart-size",
        "Checkpoint size (KB)",
        "KB",
        end,
        &[
            Series { name: "checkpointed", points: of(|c| c.checkpointed_size / 1024) },
            Series { name: "full", points: of(|c| c.full_size / 1024) },
            Series { name: "persisted in-flight", points: of(|c| c.persisted_size / 1024) },
        ],
    );
    // Records/s per task: the difference of two samples' counters over their distance (a restart
    // resets a task's channels: a falling counter counts as 0 for that step).
    let mut names: Vec<String> = Vec::new();
    for s in &d.samples {
        for t in &s.tasks {
            if !names.contains(&t.task) {
                names.push(t.task.clone());
            }
        }
    }
    let rate: Vec<Series> = names
        .iter()
        .map(|n| {
            let mut pts = Vec::new();
            for w in d.samples.windows(2) {
                let get = |s: &Sample| s.tasks.iter().find(|t| &t.task == n).map(|t| t.records);
                let dt = (w[1].t_ms.saturating_sub(w[0].t_ms)) as f64 / 1000.0;
                if dt <= 0.0 {
                    continue;
                }
                // A task not deployed (its TM killed, the job restarting) sends nothing.
                let rate = match (get(&w[0]), get(&w[1])) {
                    (Some(a), Some(b)) => b.saturating_sub(a) as f64 / dt,
                    _ => 0.0,
                };
                pts.push((w[1].t_ms as f64, rate));
            }
            Series { name: n, points: pts }
        })
        .collect();
    let _ = writeln!(
        h,
        "<p class=\"muted\" style=\"width:100%\">Checkpoint figures per checkpoint (x: its trigger); records/s and backpressure from {} samples of the cluster's view, {} ms apart.</p>",
        d.samples.len(),
        SAMPLE_EVERY.as_millis()
    );
    chart(h, "chart-rate", "Records/s per subtask (sent; the sink: received)", "rec/s", end, &rate);
    // Backpressure: per task, the share of samples in a moving window of 8 where an output
    // channel was backpressured.
    let bp: Vec<Series> = names
        .iter()
        .filter(|n| n.as_str() != crate::types::TaskId::Sink.to_string())
        .map(|n| {
            let flags: Vec<(u64, bool)> = d
                .samples
                .iter()
                .filter_map(|s| s.tasks.iter().find(|t| &t.task == n).map(|t| (s.t_ms, t.backpressured)))
                .collect();
            let pts = flags
                .iter()
                .enumerate()
                .map(|(i, (t, _))| {
                    let from = i.saturating_sub(7);
                    let w = &flags[from..=i];
                    (*t as f64, 100.0 * w.iter().filter(|f| f.1).count() as f64 / w.len() as f64)
                })
                .collect();
            Series { name: n, points: pts }
        })
        .collect();
    chart(h, "chart-backpressure", "Backpressured (% of the last 8 samples, 250 ms apart)", "%", end, &bp);
}

fn output(h: &mut String, o: &serde_json::Value) {
    let _ = writeln!(h, "<h2 id=\"output\">Output topic ({})</h2>", esc(o.get("topic").and_then(|t| t.as_str()).unwrap_or("?")));
    let _ = writeln!(h, "<table><tr><th class=\"l\">isolation.level</th><th>lines</th><th>gaps</th><th>repeated</th><th>aborted but seen</th><th>lost by timeout</th></tr>");
    for level in ["read_committed", "read_uncommitted"] {
        let Some(l) = o.get(level) else { continue };
        let n = |k: &str| l.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let bad = n("gaps") + n("repeated") + n("aborted_seen") + n("lost_by_timeout") > 0;
        let _ = writeln!(
            h,
            "<tr style=\"background:{}\"><td class=\"l\">{level}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if bad { colour::ROW_BAD } else { colour::ROW_OK },
            n("lines"),
            n("gaps"),
            n("repeated"),
            n("aborted_seen"),
            n("lost_by_timeout")
        );
    }
    let _ = writeln!(h, "</table>");
    for c in o.get("causes").and_then(|c| c.as_array()).into_iter().flatten() {
        if let Some(c) = c.as_str() {
            let _ = writeln!(h, "<p class=\"fail\">{}</p>", esc(c));
        }
    }
}

fn events(h: &mut String, d: &ReportData) {
    let _ = writeln!(
        h,
        "<h2 id=\"events\">Events</h2><p class=\"muted\">{} listed{}; {} per-record, per-barrier and per-channel events counted, not listed.</p><table><tr><th>t (ms)</th><th class=\"l\">event</th></tr>",
        d.events.len().min(EVENT_ROWS),
        if d.events.len() > EVENT_ROWS { format!(" (the first {EVENT_ROWS} of {})", d.events.len()) } else { String::new() },
        d.events_counted
    );
    for e in d.events.iter().take(EVENT_ROWS) {
        let strong = mark(&e.event).is_some();
        let text = esc(&e.event.describe());
        let _ = writeln!(h, "<tr><td>{}</td><td class=\"l\">{}</td></tr>", e.t_ms, if strong { format!("<b>{text}</b>") } else { text });
    }
    let _ = writeln!(h, "</table>");
}

fn keys(h: &mut String, d: &ReportData) {
    let v = &d.report.verdict;
    let _ = writeln!(h, "<h2 id=\"keys\">Per key</h2>");
    let mut rows: Vec<(&String, &KeyVerdict)> = v.keys.iter().collect();
    // Keys with a problem first, then by key.
    rows.sort_by_key(|(k, kv)| (!troubled(kv), (*k).clone()));
    let _ = writeln!(
        h,
        "<table><tr><th class=\"l\">key</th><th>subtask</th><th>expected</th><th>state</th><th>lost</th><th>overcounted</th><th>repeated output</th><th>output gaps</th></tr>"
    );
    for (k, kv) in rows.iter().take(KEY_ROWS) {
        let _ = writeln!(
            h,
            "<tr style=\"background:{}\"><td class=\"l\">{}</td><td>counter[{}]</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if troubled(kv) { colour::ROW_BAD } else { colour::ROW_OK },
            esc(k),
            kv.subtask,
            kv.expected,
            kv.state,
            kv.lost,
            kv.overcounted,
            kv.repeated_output,
            kv.output_gaps
        );
    }
    let _ = writeln!(h, "</table>");
    if rows.len() > KEY_ROWS {
        let _ = writeln!(h, "<p class=\"muted\">{} more keys, every one exact or past the first {KEY_ROWS} rows.</p>", rows.len() - KEY_ROWS);
    }
    if v.keys.len() < v.key_count {
        let _ = writeln!(h, "<p class=\"muted\">The verdict held {} of {} keys.</p>", v.keys.len(), v.key_count);
    }
    if d.explained.is_empty() {
        let _ = writeln!(h, "<p>No key lost a record or counted one twice.</p>");
        return;
    }
    let _ = writeln!(h, "<h2 id=\"explanations\">Why each key is wrong</h2>");
    for e in &d.explained {
        let _ = writeln!(h, "<p><b>{}</b></p><pre>{}</pre>", esc(&e.key), esc(&e.lines.join("\n")));
    }
    if d.unexplained > 0 {
        let _ = writeln!(h, "<p class=\"muted\">{} more keys lost or overcounted records; the first {EXPLAINED_KEYS} are explained.</p>", d.unexplained);
    }
}

/// Collects what the page needs while a run plays: the events worth listing (and a count of
/// the others) from the bus, and a [`Sample`] of the view every [`SAMPLE_EVERY`].
pub struct Collector {
    events: std::sync::Arc<std::sync::Mutex<(Vec<Stamped>, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Subscribes to the bus (before the engine starts, to hear its first events).
    pub fn start(bus: &crate::events::EventBus) -> Collector {
        let mut rx = bus.subscribe();
        let events = std::sync::Arc::new(std::sync::Mutex::new((Vec::new(), 0u64)));
        let sink = events.clone();
        let task = tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let mut g = sink.lock().unwrap_or_else(|p| p.into_inner());
                if per_record(&e.event) {
                    g.1 += 1;
                } else {
                    g.0.push(e);
                }
            }
        });
        Collector { events, task }
    }

    /// The events heard so far, after the bus's queue has drained (the engine shut down).
    pub async fn finish(self) -> (Vec<Stamped>, u64) {
        // The engine is down: what is queued is all there is. Give the task a moment to drain
        // it, then take what it has.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        self.task.abort();
        let g = self.events.lock().unwrap_or_else(|p| p.into_inner());
        (g.0.clone(), g.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::coordinator::SubtaskCheckpointStats;

    fn stats(id: u64, trigger_ms: u64, tasks: &[(&str, Option<u64>)]) -> CheckpointStats {
        CheckpointStats {
            id,
            status: if tasks.iter().all(|t| t.1.is_some()) { CheckpointStatus::Completed } else { CheckpointStatus::Failed },
            mode: crate::types::CheckpointMode::ExactlyOnce,
            trigger_ms,
            duration_ms: 40,
            start_delay_ms: 5,
            alignment_ms: 7,
            checkpointed_size: 2048,
            full_size: 4096,
            offsets: vec![],
            failure: None,
            failure_reason: None,
            persisted_size: 0,
            sync_ms: 3,
            async_ms: 20,
            unaligned: false,
            subtasks: tasks
                .iter()
                .map(|(t, delay)| SubtaskCheckpointStats {
                    task: t.to_string(),
                    ack_ms: delay.map(|d| d + 30),
                    start_delay_ms: *delay,
                    alignment_ms: 7,
                    sync_ms: 3,
                    async_ms: 20,
                    checkpointed_size: 1024,
                    persisted_size: 0,
                    output_size: 0,
                    unaligned: false,
                    offsets: vec![],
                    unacknowledged: None,
                })
                .collect(),
        }
    }

    fn data() -> ReportData {
        let mut verdict = Verdict::default();
        verdict.produced = 10;
        verdict.expected = 10;
        verdict.state = 12;
        verdict.overcounted = 2;
        verdict.keys.insert("a".into(), KeyVerdict { expected: 6, state: 8, overcounted: 2, ..Default::default() });
        verdict.keys.insert("<b>".into(), KeyVerdict { expected: 4, state: 4, ..Default::default() });
        verdict.key_count = 2;
        let report = RunReport {
            scenario: "demo".into(),
            description: "a demo".into(),
            passed: true,
            failures: vec![],
            verdict,
            checkpoints: crate::scenario::CheckpointSummary { triggered: 2, completed: 1, failed: 1, restored: 1, history: vec![] },
            restarts: 1,
            status: "RUNNING".into(),
            duration_ms: 3000,
            savepoints: vec![],
            job_id: "j".into(),
            restored_from: None,
            restore_failure: None,
        };
        ReportData {
            report,
            checkpoints: vec![stats(1, 500, &[("source[0]", Some(0)), ("counter[0]", Some(5))]), stats(2, 1500, &[("source[0]", Some(0)), ("counter[0]", None)])],
            events: vec![
                Stamped { t_ms: 1000, event: Event::TaskManagerKilled { tm: "tm-2".into(), tasks: vec!["counter[0]".into()] } },
                Stamped { t_ms: 1200, event: Event::JobRunning { attempt: 2 } },
            ],
            events_counted: 42,
            samples: vec![
                Sample { t_ms: 0, tasks: vec![TaskSample { task: "source[0]".into(), records: 0, backpressured: false }] },
                Sample { t_ms: 250, tasks: vec![TaskSample { task: "source[0]".into(), records: 50, backpressured: true }] },
            ],
            explained: vec![Explained { key: "a".into(), lines: vec!["a: 2 records counted twice <after restore>".into()] }],
            unexplained: 0,
            output: None,
            settings: "EXACTLY_ONCE every 1s".into(),
        }
    }

    /// The page needs nothing from outside: no address, no script, no stylesheet link. Catches a
    /// page that loads a chart library or a font.
    #[test]
    fn the_page_is_self_contained() {
        let p = page(&data());
        for bad in ["http://", "https://", "<script", "<link", "src=", "@import", "url("] {
            assert!(!p.contains(bad), "the page holds {bad}");
        }
        assert!(p.starts_with("<!DOCTYPE html>") && p.trim_end().ends_with("</html>"));
    }

    /// Every subtask has a row of the timeline with its checkpoints' parts, a kill is a mark, a
    /// never-acknowledged subtask is drawn as such. Catches a timeline that drops the subtasks'
    /// parts, the marks or the failed checkpoint's waiting subtask.
    #[test]
    fn the_timeline_has_a_row_per_subtask_with_its_parts_and_the_kill() {
        let p = page(&data());
        let tl = &p[p.find("timeline-svg").expect("a timeline")..];
        let tl = &tl[..tl.find("</svg>").unwrap()];
        for t in ["source[0]", "counter[0]"] {
            assert!(tl.contains(&format!(">{t}</text>")), "row {t}");
        }
        assert!(tl.contains("counter[0] chk 1: alignment 7 ms"), "{tl}");
        assert!(tl.contains("counter[0] chk 1: async 20 ms"));
        assert!(tl.contains("counter[0] chk 2: never acknowledged"));
        assert!(tl.contains("1000 ms: TM tm-2 killed, with counter[0]"));
        assert!(tl.contains(">kill</text>"));
        assert!(tl.contains(&format!("fill=\"{}\"", colour::ALIGNMENT)));
    }

    /// The verdict's totals, the keys (the troubled first, escaped) and every explanation.
    /// Catches a page without explanations, or with keys as raw HTML.
    #[test]
    fn the_verdict_lists_the_keys_and_explains_the_wrong_ones() {
        let p = page(&data());
        assert!(p.contains("NOT exact"));
        assert!(p.contains("&lt;b&gt;") && !p.contains("<td class=\"l\"><b></td>"));
        let a = p.find("<td class=\"l\">a</td>").expect("key a");
        let b = p.find("<td class=\"l\">&lt;b&gt;</td>").expect("key <b>");
        assert!(a < b, "troubled keys first");
        assert!(p.contains("a: 2 records counted twice &lt;after restore&gt;"));
        assert!(p.contains("42 per-record"));
    }

    /// Records/s is the counters' difference over the samples' distance: 50 records in 250 ms
    /// is 200 rec/s; a backpressured sample shows as a share.
    #[test]
    fn rates_come_from_the_samples_differences() {
        let p = page(&data());
        assert!(p.contains("source[0]: 200 rec/s at 250 ms"), "rate chart: {p}");
        assert!(p.contains("source[0]: 50 % at 250 ms"));
    }

    #[test]
    fn keys_to_explain_are_the_troubled_ones_capped() {
        let mut v = Verdict::default();
        for i in 0..(EXPLAINED_KEYS + 5) {
            v.keys.insert(format!("k{i:04}"), KeyVerdict { lost: 1, ..Default::default() });
        }
        v.keys.insert("ok".into(), KeyVerdict { expected: 1, state: 1, ..Default::default() });
        let (keys, more) = keys_to_explain(&v);
        assert_eq!(keys.len(), EXPLAINED_KEYS);
        assert_eq!(more, 5);
        assert!(!keys.contains(&"ok".to_string()));
    }
}
