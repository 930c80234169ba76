//! Scenarios: a TOML file of timed steps (produce, kill, start, checkpoint, set, wait, await,
//! expect) run headless against the engine, judged by the auditor.
//!
//! ```toml
//! name = "exactly-once"
//! description = "kill a task manager, produce while it is down, start it again"
//! [config.execution.checkpointing]
//! interval = "1s"
//! [[steps]]
//! produce = ["a", "b", "c"]
//! [[steps]]
//! kill = "tm-1"
//! [[steps]]
//! await = "caught-up"
//! [[steps]]
//! expect = { lost = 0, overcounted = 0 }
//! ```
//!
//! One concept per file: `file.rs` reads and checks a scenario file, `step.rs` is the step
//! vocabulary, `expect.rs` the figures an `expect` judges, `player.rs` plays steps on an engine.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoEnumIterator, IntoStaticStr, VariantNames};
use tokio::time::Instant;

use crate::audit::{KeyVerdict, Verdict};
use crate::cluster::taskmanager;
use crate::cluster::view::JobStatus;
use crate::cluster::{Command, Engine, Refusable};
use crate::config::{changes_at_runtime, line_of, line_of_key, Config, ConfigError, ConfigLayers};
use crate::connectors::generator::{GeneratorSpec, MAX_GENERATOR_RATE};
use crate::duration::{format_duration, parse_duration, MAX_DURATION};
use crate::events::Event;

mod expect;
mod failure;
mod file;
mod player;
mod step;

use expect::figure;
pub use expect::{Comparison, Figure, Op, FIGURES};
pub use failure::{Failure, FailureKind};
pub use file::{Scenario, ScenarioError};
pub use player::{await_condition, report_table, run, verdict_table, CheckpointSummary, Flow, Player, RunReport};
pub use player::SavepointError;
pub use step::{parse_step, Action, AwaitCondition, Step, StepError};

/// An await with no `timeout` gives up after this long.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Partitions a topic can have (`source.partitions` allows 1 to 64).
const MAX_PARTITIONS: u32 = 64;

/// How often an await looks at the engine.
const POLL: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::player::Refused;
    use super::step::StepKind;
    use super::*;

    #[test]
    fn comparisons_parse() {
        let c = Comparison::parse(&toml::Value::String("> 0".into())).unwrap();
        assert!(c.holds(1) && !c.holds(0));
        let c = Comparison::parse(&toml::Value::Integer(0)).unwrap();
        assert!(c.holds(0));
        assert!(Comparison::parse(&toml::Value::String("lots".into())).is_err());
    }

    #[test]
    fn bad_step_names_its_line() {
        let text = "name = \"x\"\n[[steps]]\nproduce = [\"a\"]\n[[steps]]\nexplode = true\n";
        let e = Scenario::parse(text, "bad.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.to_string().starts_with("bad.toml:4:"), "{e}");
        assert!(e.message.contains("allowed: produce"), "{e}");
    }

    #[test]
    fn bad_await_and_figure_are_explained() {
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nawait = \"done\"\n", "f.toml").unwrap_err();
        assert!(e.message.contains("caught-up") && e.line == 2, "{e}");
        let e = Scenario::parse("name = \"x\"\n\n[[steps]]\nexpect = { lots = 0 }\n", "f.toml").unwrap_err();
        assert!(e.message.contains("overcounted") && e.line == 3, "{e}");
    }

    #[test]
    fn bad_config_in_scenario_names_file_and_key() {
        let e = Scenario::parse("name = \"x\"\n[config.execution.checkpointing]\nmode = \"TWICE\"\n", "c.toml").unwrap_err();
        assert!(
            e.to_string().contains("c.toml") && e.message.contains("execution.checkpointing.mode") && e.message.contains("AT_LEAST_ONCE"),
            "{e}"
        );
    }

    #[test]
    fn bad_config_points_at_the_key_and_names_the_file_once() {
        let text = "name = \"x\"\n[config.execution.checkpointing]\ninterval = \"1s\"\nmode = \"TWICE\"\n";
        let e = Scenario::parse(text, "c.toml").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert_eq!(e.to_string().matches("c.toml").count(), 1, "{e}");
        let text = "name = \"x\"\n[config.ckptlab.delays]\n\"source[1]->counter[9]\" = \"50ms\"\n";
        let e = Scenario::parse(text, "d.toml").unwrap_err();
        assert!(e.line == 3 && e.message.contains("matches no channel"), "{e}");
    }

    #[test]
    fn a_missing_partition_points_at_its_line_and_says_which_exist() {
        let text = "name = \"x\"\n\n[[steps]]\nproduce = [\"a\"]\npartition = 7\n";
        let s = Scenario::parse(text, "p.toml").unwrap();
        let e = s.check(&ConfigLayers::builtin().build().unwrap()).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("partitions 0 and 1"), "{e}");
    }

    #[test]
    fn an_unreadable_file_has_no_line_zero() {
        let e = Scenario::load(std::path::Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/x.toml: cannot read"), "{e}");
    }

    #[test]
    fn a_channel_delay_may_change_while_the_job_runs() {
        let text = "name = \"x\"\n[[steps]]\nset = { \"ckptlab.delays.source[1]->counter[*]\" = \"300ms\" }\n";
        assert!(Scenario::parse(text, "s.toml").is_ok());
    }

    #[test]
    fn a_compare_scenario_names_sides_by_mode_and_rejects_a_side_it_does_not_run() {
        let text = "name = \"x\"\n[compare]\nmodes = [\"EXACTLY_ONCE\", \"at-least-once\"]\n[[steps]]\nexpect = { side = \"right\", overcounted = \"> 0\" }\n";
        let s = Scenario::parse(text, "c.toml").unwrap();
        assert_eq!(s.compare, Some(crate::compare::Sides::Modes(vec![crate::compare::SideMode::ExactlyOnce, crate::compare::SideMode::AtLeastOnce])));
        assert!(matches!(&s.steps[0].action, Action::Expect { side: Some(m), .. } if m == "AT_LEAST_ONCE"));
        let bad = text.replace("\"right\"", "\"off\"");
        let e = Scenario::parse(&bad, "c.toml").unwrap_err();
        assert!(e.line == 4 && e.message.contains("EXACTLY_ONCE, AT_LEAST_ONCE"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nexpect = { side = \"off\", lost = 0 }\n", "c.toml").unwrap_err();
        assert!(e.line == 2 && e.message.contains("[compare]"), "{e}");
        let e = Scenario::parse("name = \"x\"\n[compare]\nmodes = [\"off\"]\n", "c.toml").unwrap_err();
        assert!(e.line >= 2 && e.message.contains("two or three"), "{e}");
    }

    // Catches a savepoint `format` that is ignored, defaulted on a typo, or refused without its
    // file, line, key and the allowed values.
    #[test]
    fn a_savepoint_step_takes_a_format_and_names_a_bad_one() {
        let ok = "name = \"x\"\n[[steps]]\nsavepoint = true\n[[steps]]\nstop-with-savepoint = true\nformat = \"native\"\n";
        let s = Scenario::parse(ok, "sp.toml").unwrap();
        let formats: Vec<_> = s.steps.iter().map(|st| st.action.clone()).collect();
        assert_eq!(
            formats,
            [
                Action::Savepoint { stop: false, format: crate::state::SavepointFormat::Canonical },
                Action::Savepoint { stop: true, format: crate::state::SavepointFormat::Native }
            ]
        );
        let bad = "name = \"x\"\n[[steps]]\nsavepoint = true\nnote = \"n\"\nformat = \"natve\"\n";
        let e = Scenario::parse(bad, "sp.toml").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("sp.toml", 5), "{e}");
        assert!(e.message.contains("`format = \"natve\"`") && e.message.ends_with("allowed: \"canonical\", \"native\""), "{e}");
        let e = Scenario::parse("name = \"x\"\n[[steps]]\ncheckpoint = true\nformat = \"native\"\n", "c.toml").unwrap_err();
        assert!(e.message.contains("unknown key `format`"), "format belongs to savepoint steps only: {e}");
    }

    #[test]
    fn toml_syntax_error_names_line() {
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nproduce = [\"a\"\n", "s.toml").unwrap_err();
        assert!(e.line >= 3, "{e}");
    }

    /// Catches: an allowed list read from an enum that drifts from the file's names or order (the
    /// error messages name them as they did when they were lists kept beside the enums).
    #[test]
    fn allowed_steps_figures_and_conditions_keep_their_names_and_order() {
        let steps = "produce, generate, kill, hang, start, checkpoint, savepoint, stop-with-savepoint, set, wait, await, expect, resubmit, switch-backend, stop-generators";
        assert_eq!(StepKind::VARIANTS.join(", "), steps);
        assert_eq!(
            FIGURES.join(", "),
            "produced, expected, state, lost, overcounted, repeated_output, in_flight, restarts, checkpoints_completed, checkpoints_failed, last_checkpoint_ms, last_alignment_ms, last_start_delay_ms, last_async_ms, last_persisted_bytes, committed_output_gaps, committed_repeated_output, uncommitted_repeated_output, output_lost_by_timeout"
        );
        let per_key: Vec<&str> = Figure::iter().filter(|f| f.per_key()).map(Figure::name).collect();
        let output = ["committed_output_gaps", "committed_repeated_output", "uncommitted_repeated_output", "output_lost_by_timeout"];
        assert_eq!(per_key, [["expected", "state", "lost", "overcounted"].as_slice(), &output].concat());
        assert_eq!(AwaitCondition::VARIANTS.join(", "), "checkpoint-completed, running, caught-up, failed, finished");
        let e = Scenario::parse("name = \"x\"\n[[steps]]\nexpect = { key = \"a\", restarts = 0 }\n", "f.toml").unwrap_err();
        assert!(e.message.ends_with("allowed: expected, state, lost, overcounted, committed_output_gaps, committed_repeated_output, uncommitted_repeated_output, output_lost_by_timeout"), "{e}");
    }

    /// Catches: a refusal the engine names one way and the step that gave the command listens for
    /// another (a refused kill would then pass its step silently).
    #[test]
    fn a_refusal_names_the_command_a_step_listens_for() {
        for (action, command) in [
            (Action::Kill("tm-1".into()), Refusable::Kill),
            (Action::Hang("tm-1".into()), Refusable::Hang),
            (Action::Start(None), Refusable::Start),
            (Action::Resubmit, Refusable::Resubmit),
            (Action::SwitchBackend(crate::config::SeedBackend::Fs), Refusable::Backend),
            (Action::Checkpoint, Refusable::Checkpoint),
        ] {
            let name: &str = command.into();
            assert_eq!(action.command_keys(), vec![Refused::of_key(name.to_string())], "{name}");
        }
        let key = "execution.checkpointing.interval";
        assert_eq!(Refused::of_key(key.into()), Refused::Option(key.into()));
        assert_eq!(Refused::of_key("kill".into()).to_string(), "kill");
    }
}
