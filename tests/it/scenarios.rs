//! Every shipped scenario runs with its expects (under the paused clock: seconds of model time
//! cost milliseconds).

use crate::common;

use ckptlab::cluster::Engine;
use ckptlab::config::ConfigLayers;
use ckptlab::events::EventBus;
use ckptlab::scenario::{self, Scenario};

fn run_file(path: &std::path::Path) -> scenario::RunReport {
    run_file_with(path, &[])
}

/// A scenario file with `extra` options set over its own.
fn run_file_with(path: &std::path::Path, extra: &[(&str, &str)]) -> scenario::RunReport {
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    run(&s, extra)
}

fn run(s: &Scenario, extra: &[(&str, &str)]) -> scenario::RunReport {
    common::paused(async {
        let mut layers = ConfigLayers::builtin();
        s.apply_config(&mut layers).unwrap();
        for (k, v) in extra {
            layers.set_value(k, ckptlab::config::parse_loose_value(v), "test").unwrap_or_else(|e| panic!("{e}"));
        }
        let engine = Engine::start(layers, EventBus::new(tokio::time::Instant::now())).unwrap();
        let report = scenario::run(s, &engine, |_| {}).await;
        engine.shutdown().await;
        report
    })
}

/// A `[compare]` scenario on one cluster per mode, all reading one topic.
fn run_compared(s: &Scenario, modes: &ckptlab::compare::Sides) -> ckptlab::compare::CompareReport {
    common::paused(async {
        let lineup = ckptlab::compare::Lineup::for_scenario(s, &ConfigLayers::builtin(), modes, || EventBus::new(tokio::time::Instant::now()))
            .unwrap_or_else(|e| panic!("{e}"));
        let report = ckptlab::compare::run(s, &lineup, |_| {}).await;
        lineup.shutdown().await;
        report
    })
}

#[test]
fn every_shipped_scenario_meets_its_expects() {
    let mut files: Vec<_> = std::fs::read_dir("assets/scenarios").unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5, "the seed's three experiments and the overcount scenarios ship");
    for f in files {
        let s = Scenario::load(&f).unwrap_or_else(|e| panic!("{e}"));
        if let Some(modes) = s.compare.clone() {
            // A comparison: every side meets its expects (tests/it/compare.rs looks closer).
            let r = run_compared(&s, &modes);
            for side in &r.sides {
                assert!(side.report.passed, "{} side {}: {:?}", f.display(), side.label, side.report.failures);
                assert!(side.report.verdict.consistent, "{} side {}: operator state and auditor disagree", f.display(), side.label);
            }
            continue;
        }
        let r = run_file(&f);
        assert!(r.passed, "{}: {:?}\n{}", f.display(), r.failures, scenario::verdict_table(&r.verdict));
        assert!(r.verdict.consistent, "{}: operator state and auditor disagree", f.display());
    }
}

/// The simulation is deterministic under the paused clock, so running one file five times would
/// be one run. Instead the overcount must survive changes of timing around the built schedule:
/// other hop delays, a slow counter, three partitions. (Each variant still overcounts: the late
/// channel from source[1] is what makes records overtake the checkpoint.)
#[test]
fn at_least_once_scenario_overcounts_under_varied_timing() {
    let path = std::path::Path::new("assets/scenarios/at-least-once-overcounts.toml");
    let variants: &[&[(&str, &str)]] = &[
        &[],
        &[("ckptlab.hop-delay", "2ms")],
        &[("ckptlab.hop-delay", "7ms")],
        &[("ckptlab.record-cost.counter[0]", "1ms")],
        &[("source.partitions", "3")],
    ];
    for extra in variants {
        let r = run_file_with(path, extra);
        assert!(r.passed && r.verdict.overcounted > 0, "{extra:?}: {:?}\n{}", r.failures, scenario::verdict_table(&r.verdict));
        assert_eq!(r.verdict.lost, 0, "{extra:?}");
        assert!(r.restarts >= 1, "{extra:?}: the kill restarted the job");
    }
}

/// Same schedule, same verdict: a run under the paused clock replays exactly (which is why the
/// test above varies the timing instead of repeating the run).
#[test]
fn a_scenario_under_the_paused_clock_is_deterministic() {
    let path = std::path::Path::new("assets/scenarios/at-least-once-overcounts.toml");
    let a = run_file(path);
    let b = run_file(path);
    assert_eq!(a.verdict, b.verdict);
}

/// With the auditor off there is no ground truth: an `expect` on a verdict figure fails instead
/// of reading the empty verdict as "ok".
#[test]
fn expect_fails_when_the_auditor_is_off() {
    let text = "name = \"no truth\"\n[config.ckptlab]\naudit = false\n\n[[steps]]\nproduce = [\"a\"]\n\n[[steps]]\nawait = \"caught-up\"\n\n[[steps]]\nexpect = { lost = 0, overcounted = 0 }\n";
    let s = Scenario::parse(text, "off.toml").unwrap_or_else(|e| panic!("{e}"));
    let r = run(&s, &[]);
    assert!(!r.passed, "an expect without an auditor passed: {r:?}");
    assert!(r.failures.iter().any(|f| f.contains("line 11") && f.contains("the auditor is off")), "{:?}", r.failures);
    // Figures the auditor does not make still work.
    let text = "name = \"no truth\"\n[config.ckptlab]\naudit = false\n\n[[steps]]\nexpect = { restarts = 0 }\n";
    let r = run(&Scenario::parse(text, "off.toml").unwrap(), &[]);
    assert!(r.passed, "{:?}", r.failures);
}

#[test]
fn checkpoints_disabled_scenario_loses_what_was_produced_while_down() {
    let r = run_file(std::path::Path::new("assets/scenarios/seed-checkpoints-disabled.toml"));
    assert!(r.passed, "{:?}", r.failures);
    // a b c forgotten by the restart from nothing, d e f skipped by auto.offset.reset = latest.
    assert_eq!(r.verdict.lost, 6);
    assert_eq!(r.verdict.keys["1"].state, 1);
}
