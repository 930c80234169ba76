//! Every shipped scenario runs with its expects (under the paused clock: seconds of model time
//! cost milliseconds).

mod common;

use ckptlab::cluster::Engine;
use ckptlab::config::ConfigLayers;
use ckptlab::events::EventBus;
use ckptlab::scenario::{self, Scenario};

fn run_file(path: &std::path::Path) -> scenario::RunReport {
    let s = Scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    common::paused(async {
        let mut layers = ConfigLayers::builtin();
        s.apply_config(&mut layers).unwrap();
        let engine = Engine::start(layers, EventBus::new(tokio::time::Instant::now())).unwrap();
        let report = scenario::run(&s, &engine, |_| {}).await;
        engine.shutdown().await;
        report
    })
}

#[test]
fn every_shipped_scenario_meets_its_expects() {
    let mut files: Vec<_> = std::fs::read_dir("assets/scenarios").unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 5, "the seed's three experiments and the overcount scenarios ship");
    for f in files {
        let r = run_file(&f);
        assert!(r.passed, "{}: {:?}\n{}", f.display(), r.failures, scenario::verdict_table(&r.verdict));
        assert!(r.verdict.consistent, "{}: operator state and auditor disagree", f.display());
    }
}

#[test]
fn at_least_once_scenario_overcounts_on_every_run() {
    for _ in 0..5 {
        let r = run_file(std::path::Path::new("assets/scenarios/at-least-once-overcounts.toml"));
        assert!(r.passed && r.verdict.overcounted > 0, "{:?}", r.failures);
        assert_eq!(r.verdict.lost, 0);
    }
}

#[test]
fn checkpoints_disabled_scenario_loses_what_was_produced_while_down() {
    let r = run_file(std::path::Path::new("assets/scenarios/seed-checkpoints-disabled.toml"));
    assert!(r.passed, "{:?}", r.failures);
    // a b c forgotten by the restart from nothing, d e f skipped by auto.offset.reset = latest.
    assert_eq!(r.verdict.lost, 6);
    assert_eq!(r.verdict.keys["1"].state, 1);
}
