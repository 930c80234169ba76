//! `ckptlab compare` headless: a `[compare]` scenario plays every step on each side, on one topic,
//! and judges each side; `ckptlab run --json` reports every side.

use crate::common;

use ckptlab::compare::{self, Lineup, SideMode, Sides};
use ckptlab::config::ConfigLayers;
use ckptlab::events::EventBus;
use ckptlab::scenario::Scenario;

const SHIPPED: &str = "assets/scenarios/compare-modes.toml";

fn lineup(s: &Scenario, sides: &Sides) -> Lineup {
    Lineup::for_scenario(s, &ConfigLayers::builtin(), sides, || EventBus::new(tokio::time::Instant::now())).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_same_records_and_the_same_kill_overcount_only_at_least_once() {
    let s = Scenario::load(std::path::Path::new(SHIPPED)).unwrap_or_else(|e| panic!("{e}"));
    let modes = s.compare.clone().expect("a [compare] scenario");
    let r = common::paused(async {
        let l = lineup(&s, &modes);
        let r = compare::run(&s, &l, |_| {}).await;
        l.shutdown().await;
        r
    });
    assert!(r.passed, "{:#?}", r.sides.iter().map(|s| &s.report.failures).collect::<Vec<_>>());
    let [eo, alo] = &r.sides[..] else { panic!("two sides: {:?}", r.sides.len()) };
    assert_eq!((eo.mode, alo.mode), (SideMode::ExactlyOnce, SideMode::AtLeastOnce));
    assert_eq!((eo.side.as_str(), alo.side.as_str()), ("left", "right"));
    // One topic: both sides were judged against the same records.
    assert_eq!(eo.report.verdict.produced, alo.report.verdict.produced);
    assert_eq!(eo.report.verdict.expected, alo.report.verdict.expected);
    assert_eq!((eo.report.verdict.lost, eo.report.verdict.overcounted), (0, 0));
    assert!(
        alo.report.verdict.overcounted > 0,
        "{}",
        compare::side_by_side_table(&["EO", "ALO"], &[&eo.report.verdict, &alo.report.verdict])
    );
    // One kill: both restarted.
    assert!(eo.report.restarts >= 1 && alo.report.restarts >= 1);
}

#[test]
fn an_expect_on_one_side_is_judged_there_only() {
    let text = r#"
name = "one side"
[compare]
modes = ["EXACTLY_ONCE", "off"]
[config.ckptlab]
hop-delay = "0ms"
[[steps]]
produce = ["a", "b", "a"]
[[steps]]
await = "caught-up"
timeout = "10s"
[[steps]]
expect = { side = "off", state = 4 }
"#;
    let s = Scenario::parse(text, "one.toml").unwrap_or_else(|e| panic!("{e}"));
    let r = common::paused(async {
        let l = lineup(&s, s.compare.as_ref().unwrap());
        let r = compare::run(&s, &l, |_| {}).await;
        l.shutdown().await;
        r
    });
    assert!(!r.passed);
    assert!(r.sides[0].report.passed, "the EXACTLY_ONCE side has no expect: {:?}", r.sides[0].report.failures);
    assert!(r.sides[1].report.failures.iter().any(|f| f.contains("expected state = 4, got 3")), "{:?}", r.sides[1].report.failures);
    assert_eq!(r.sides[0].report.verdict.state, 3, "each side counted the shared records once");
}

#[test]
fn run_json_reports_every_side_and_exits_zero() {
    let out = common::binary().args(["run", SHIPPED, "--json"]).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert_eq!(j["passed"], true);
    let sides = j["sides"].as_array().expect("sides");
    assert_eq!(sides.len(), 2);
    assert_eq!(sides[0]["mode"], "EXACTLY_ONCE");
    assert_eq!(sides[1]["mode"], "AT_LEAST_ONCE");
    for s in sides {
        assert!(s["report"]["verdict"]["overcounted"].is_u64() && s["report"]["checkpoints"]["history"].is_array());
    }
}

/// A compared run's JSON has the schema version of a single run's, and a side's failure is an
/// object naming the step's line and its kind.
#[test]
fn run_json_of_a_failed_side_names_the_line_and_kind_under_a_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.toml");
    std::fs::write(
        &file,
        "name = \"one side\"\n[compare]\nmodes = [\"EXACTLY_ONCE\", \"off\"]\n[config.ckptlab]\nhop-delay = \"0ms\"\n\
         [[steps]]\nproduce = [\"a\", \"b\", \"a\"]\n[[steps]]\nawait = \"caught-up\"\ntimeout = \"10s\"\n\
         [[steps]]\nexpect = { side = \"off\", state = 4 }\n",
    )
    .unwrap();
    let out = common::binary().args(["run", &file.display().to_string(), "--json"]).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    assert_eq!(j["schema_version"], 1, "{text}");
    assert_eq!(j["sides"][0]["report"]["failures"], serde_json::json!([]), "{text}");
    assert_eq!(
        j["sides"][1]["report"]["failures"],
        serde_json::json!([{ "line": 11, "kind": "expectation", "message": "expected state = 4, got 3" }]),
        "{text}"
    );
}

#[test]
fn run_prints_the_verdicts_side_by_side() {
    let out = common::binary().args(["run", SHIPPED, "--quiet"]).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.lines().any(|l| l.contains("EXACTLY_ONCE") && l.contains("AT_LEAST_ONCE")), "{text}");
    assert!(text.contains("TOTAL") && text.contains("PASSED"), "{text}");
}

#[test]
fn a_side_set_for_a_side_that_is_not_there_is_an_error() {
    let out = common::binary()
        .args(["run", SHIPPED, "--set", "middle.ckptlab.hop-delay=1ms"])
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the sides are left, right"));
}

/// Two compared sides with Kafka sinks naming the same output topic (the default) and prefix:
/// each writes its own topic (`output-topic-left`, `output-topic-right`) with its own prefix, so
/// neither fences the other and each side's committed output is exact. Catches a broker that
/// hands every side the first side's output topic (one topic with both sides' lines: each
/// side's verdict sees the other's lines as repeats, or a fenced producer fails a side).
#[test]
fn compared_kafka_sinks_write_their_own_output_topics() {
    let text = r#"
name = "two kafka sinks"
[compare]
modes = ["EXACTLY_ONCE", "AT_LEAST_ONCE"]
[config.job]
sink = "kafka"
[config.sink]
delivery-guarantee = "exactly-once"
transactional-id-prefix = "ck"
[config.sink.properties]
"transaction.timeout.ms" = "600000"
[config.execution.checkpointing]
interval = "200ms"
[config.ckptlab]
hop-delay = "0ms"
[[steps]]
produce = ["a", "b", "a", "c"]
[[steps]]
await = "caught-up"
timeout = "10s"
[[steps]]
await = "checkpoint-completed"
timeout = "10s"
[[steps]]
await = "checkpoint-completed"
timeout = "10s"
[[steps]]
expect = { side = "EXACTLY_ONCE", committed_output_gaps = 0, committed_repeated_output = 0 }
[[steps]]
expect = { side = "AT_LEAST_ONCE", committed_output_gaps = 0, committed_repeated_output = 0 }
"#;
    let s = Scenario::parse(text, "kafka-sides.toml").unwrap_or_else(|e| panic!("{e}"));
    let modes = s.compare.clone().expect("a [compare] scenario");
    let (r, topics) = common::paused(async {
        let l = lineup(&s, &modes);
        let r = compare::run(&s, &l, |_| {}).await;
        let topics: Vec<Option<String>> = l.sides.iter().map(|side| side.engine.view(false).output_readers.map(|o| o.topic)).collect();
        l.shutdown().await;
        (r, topics)
    });
    assert_eq!(topics, vec![Some("output-topic-left".to_string()), Some("output-topic-right".to_string())]);
    assert!(r.passed, "{:#?}", r.sides.iter().map(|s| &s.report.failures).collect::<Vec<_>>());
    for side in &r.sides {
        assert_eq!(side.report.status, "RUNNING", "side {}: {:?}", side.side, side.report.failures);
    }
}

/// Issue 23: the same job with three sinks side by side (`[compare] vary = "job.sink"`), through
/// the real binary: each side named by its sink, the Kafka side's output judged at both isolation
/// levels, the print side's repeats beside the transactional sink's none. Catches sides named by
/// the mode they share, a vary that leaves every side on the default sink (no side has an output
/// topic, or every side repeats), and a compared run that drops the output verdict.
#[test]
fn compare_sinks_puts_print_transactional_and_kafka_side_by_side() {
    let out = common::binary().args(["run", "compare-sinks", "--json"]).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    let sides = j["sides"].as_array().expect("sides");
    let labels: Vec<&str> = sides.iter().map(|s| s["label"].as_str().unwrap_or("?")).collect();
    assert_eq!(labels, ["print", "transactional", "kafka"], "{text}");
    assert!(sides.iter().all(|s| s["mode"] == "EXACTLY_ONCE"), "one mode on every side: {text}");
    assert!(sides[0]["output"].is_null() && sides[1]["output"].is_null(), "only the Kafka sink has an output topic: {text}");
    let kafka = &sides[2]["output"];
    assert_eq!(kafka["read_committed"]["gaps"], 0, "{text}");
    assert_eq!(kafka["read_committed"]["repeated"], 0, "{text}");
    assert!(kafka["read_uncommitted"]["repeated"].as_u64().is_some_and(|n| n > 0), "the aborted attempt's lines at read_uncommitted: {text}");
    assert!(sides[0]["report"]["verdict"]["repeated_output"].as_u64().is_some_and(|n| n > 0), "{text}");
    assert_eq!(sides[1]["report"]["verdict"]["repeated_output"], 0, "{text}");
    // As text: a column per sink, and a line per side saying what its reader sees.
    let out = common::binary().args(["run", "compare-sinks", "--quiet"]).output().expect("binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("print") && l.contains("transactional") && l.contains("kafka")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("kafka") && l.contains("read_committed ok")), "{text}");
    assert!(text.lines().any(|l| l.starts_with("print") && l.contains("output: repeated lines")), "{text}");
}

/// `--vary` on the command line: a bad one is refused before anything starts (even headless),
/// naming what is wrong; one mode with it is fine, two are not.
#[test]
fn compare_vary_errors_name_the_key_the_value_and_the_shape() {
    for (args, want) in [
        (vec!["compare", "--vary", "job.sink=print"], "two or three sides, not 1"),
        (vec!["compare", "--vary", "job.sink=print,print"], "the value print is named twice"),
        (vec!["compare", "--vary", "job.sink=print,printer"], "printer"),
        (vec!["compare", "--vary", "job.sink"], "KEY=a,b[,c]"),
        (vec!["compare", "--modes", "EXACTLY_ONCE,off", "--vary", "job.sink=print,kafka"], "name one mode, or drop --vary"),
    ] {
        let out = common::binary().args(&args).output().expect("binary runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--vary") && err.contains(want), "{args:?}: {err}");
    }
    // A good --vary gets as far as the terminal check.
    let out = common::binary().args(["compare", "--modes", "AT_LEAST_ONCE", "--vary", "job.sink=print,kafka"]).output().expect("binary runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a terminal"), "{}", String::from_utf8_lossy(&out.stderr));
}
