//! Fuzzing, kept: every text a user can hand ckptlab (scenario files, config files and `--set`
//! assignments, `conf/keys.toml`, records typed into the input pane) goes through its parser and
//! validation under random and mutated input, and must come back as `Ok` or as an error: never a
//! panic, an abort or an allocation out of proportion.
//!
//! CI runs a few thousand cases per target. The long run (>= 1,000,000 executions per target):
//! `CKPTLAB_FUZZ_CASES=1000000 cargo test --release --test it fuzz::`. Inputs that once broke ckptlab
//! are kept in `tests/it/fuzz/corpus/` and replayed on every run.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use ckptlab::config::ConfigLayers;
use ckptlab::connectors::{EmbeddedTopic, Topic};
use ckptlab::events::EventBus;
use ckptlab::scenario::Scenario;
use ckptlab::tui::keymap::{Key, Keymap};

/// Cases per target: a few thousand in CI, as many as asked for in a long run.
fn cases() -> u32 {
    std::env::var("CKPTLAB_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

/// Everything a scenario or config can say, and the values that broke ckptlab before.
fn corpus() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fuzz/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("the corpus").flatten().map(|e| e.path()).collect();
    for shipped in ["assets/scenarios", "conf"] {
        files.extend(std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped)).unwrap().flatten().map(|e| e.path()));
    }
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect()
}

/// The fragments mutations splice in: keys, actions, values at the edges of every range.
const TOKENS: &[&str] = &[
    "[[steps]]\n",
    "[config]\n",
    "[config.execution.checkpointing]\n",
    "[config.ckptlab.delays]\n",
    "[config.taskmanager]\n",
    "produce = [\"a\"]\n",
    "kill = \"tm-1\"\n",
    "kill = \"/\"\n",
    "start = true\n",
    "start = \"..\"\n",
    "checkpoint = true\n",
    "resubmit = true\n",
    "wait = \"1ms\"\n",
    "await = \"caught-up\"\n",
    "timeout = \"1ms\"\n",
    "expect = { lost = 0 }\n",
    "generate = { rate = 1, duration = \"1ms\" }\n",
    "set = { \"execution.checkpointing.mode\" = \"AT_LEAST_ONCE\" }\n",
    "partition = 63\n",
    "note = \"n\"\n",
    "interval = \"off\"\n",
    "count = 64\n",
    "parallelism = 64\n",
    "\"source[*]->counter[*]\" = \"1ms\"\n",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "nan",
    "inf",
    "-0.0",
    "\"\"",
    "\"\\u0000\"",
    "\"🙂\"",
    "{",
    "}",
    "[",
    "]",
    "=",
    "\"",
    "'",
    "\n",
    ".",
    "..",
    "/",
    "tm-",
    "tm-64",
    "tm-65",
    "99999999999h",
    "0ms",
    "30d",
    "31d",
    "> 0",
    ">= ",
    "!= ",
    "\"> x\"",
    "key = \"a\"",
    "true",
    "false",
    "#",
    "\\",
    "mode",
    "dir = \"/\"",
];

/// A shipped or corpus file with random edits: splices of tokens, deleted and duplicated spans.
fn mutated() -> impl Strategy<Value = String> {
    let seeds = corpus();
    let n = seeds.len();
    (0..n, prop::collection::vec((any::<u16>(), 0..4u8, 0..TOKENS.len(), any::<u8>()), 1..8)).prop_map(move |(i, edits)| {
        let mut text: Vec<u8> = seeds[i].1.clone().into_bytes();
        for (at, kind, token, len) in edits {
            let at = usize::from(at) % (text.len() + 1);
            match kind {
                0 => {
                    text.splice(at..at, TOKENS[token].bytes());
                }
                1 => {
                    let end = (at + usize::from(len)).min(text.len());
                    text.drain(at..end);
                }
                2 => {
                    let end = (at + usize::from(len)).min(text.len());
                    let span: Vec<u8> = text[at..end].to_vec();
                    text.splice(at..at, span);
                }
                _ => {
                    if at < text.len() {
                        text[at] = len;
                    }
                }
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Free-form text built from the tokens and arbitrary characters.
fn assembled() -> impl Strategy<Value = String> {
    prop::collection::vec(prop_oneof![(0..TOKENS.len()).prop_map(|i| TOKENS[i].to_string()), any::<char>().prop_map(String::from)], 0..40)
        .prop_map(|parts| format!("name = \"f\"\n{}", parts.concat()))
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![3 => mutated(), 1 => assembled(), 1 => ".{0,200}"]
}

/// Every parser a scenario file meets, in the order `ckptlab run` uses them.
fn scenario_pipeline(text: &str) {
    let Ok(s) = Scenario::parse(text, "fuzz.toml") else { return };
    let mut layers = ConfigLayers::builtin();
    if s.apply_config(&mut layers).is_err() {
        return;
    }
    if let Ok(cfg) = layers.build() {
        let _ = s.check(&cfg);
    }
}

fn config_pipeline(text: &str) {
    let mut layers = ConfigLayers::builtin();
    if layers.merge_str(text, "fuzz.toml").is_ok() {
        let _ = layers.build();
    }
    // The same text as `--set` assignments, one per line.
    let mut layers = ConfigLayers::builtin();
    for line in text.lines() {
        let _ = layers.set(line, "--set");
    }
    let _ = layers.build();
}

fn keymap_pipeline(text: &str) {
    let _ = Keymap::default().apply(text, "keys.toml");
    for word in text.split_whitespace() {
        let _ = Key::parse(word);
    }
}

#[test]
fn the_corpus_replays_without_a_panic() {
    let corpus = corpus();
    assert!(corpus.len() >= 20, "the corpus and the shipped files: {}", corpus.len());
    for (_, text) in &corpus {
        scenario_pipeline(text);
        config_pipeline(text);
        keymap_pipeline(text);
    }
}

#[test]
fn known_bad_inputs_are_errors_not_runs() {
    // Each of these ran, hung, aborted or did nothing before; now the parser or the check says no.
    for name in [
        "victim-path",
        "dotdot",
        "huge-rate",
        "rate-1e8",
        "no-such-tm",
        "static-set",
        "partition-5",
        "start-filesystem",
        "zero-tms",
        "too-few-slots",
        "nan-multiplier",
        "inf-multiplier",
        "saturating-duration",
        "mutated-step",
        "negative-partition",
        "huge-await",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/it/fuzz/corpus/{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let refused = match Scenario::parse(&text, name) {
            Err(_) => true,
            Ok(s) => {
                let mut layers = ConfigLayers::builtin();
                s.apply_config(&mut layers).is_err() || layers.build().map(|cfg| s.check(&cfg).is_err()).unwrap_or(true)
            }
        };
        assert!(refused, "{name} must be refused before it runs");
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn scenario_files_never_panic(text in any_text()) {
        scenario_pipeline(&text);
    }

    #[test]
    fn config_files_and_set_assignments_never_panic(text in any_text()) {
        config_pipeline(&text);
    }

    #[test]
    fn key_files_never_panic(text in any_text()) {
        keymap_pipeline(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 10, ..config() })]

    /// Records typed into the input pane (any Unicode, empty, control characters) are produced
    /// and read back unchanged, each distinct value its own key.
    #[test]
    fn typed_records_round_trip_through_the_topic(values in prop::collection::vec(".{0,40}", 1..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let topic = EmbeddedTopic::new("input-topic", 2, EventBus::new(tokio::time::Instant::now()));
            for v in &values {
                topic.produce(v, Some(0)).unwrap();
            }
            let mut out: Vec<Arc<str>> = Vec::new();
            topic.read(0, 0, values.len(), &mut out);
            let back: Vec<String> = out.iter().map(|s| s.to_string()).collect();
            assert_eq!(back, values);
            for v in &values {
                assert!(ckptlab::keygroup::key_group(v) < 128);
            }
        });
    }
}
