//! Lessons: every shipped lesson played headless (`ckptlab lesson NAME --auto`) does what its text
//! says, and a bad lesson file is refused with its line.

use crate::common;

use ckptlab::lesson::{Lesson, SHIPPED};

fn auto(name: &str) {
    let out = common::binary().args(["lesson", name, "--auto"]).output().expect("ckptlab runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lesson {name} --auto failed ({:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("PASSED: lesson {name}")), "{stdout}");
    // Every step was narrated, and every prediction answered.
    let lesson = Lesson::find(name).expect("shipped lesson parses");
    assert_eq!(stdout.matches("── step ").count(), lesson.steps.len(), "{stdout}");
    assert_eq!(stdout.matches("<- the lesson's answer").count(), lesson.steps.iter().filter(|s| s.predict.is_some()).count());
}

#[test]
fn lesson_checkpoints_disabled_auto() {
    auto("checkpoints-disabled");
}

#[test]
fn lesson_exactly_once_auto() {
    auto("exactly-once");
}

#[test]
fn lesson_at_least_once_one_channel_auto() {
    auto("at-least-once-one-channel");
}

#[test]
fn lesson_at_least_once_overcounts_auto() {
    auto("at-least-once-overcounts");
}

#[test]
fn lesson_alignment_and_unaligned_auto() {
    auto("alignment-and-unaligned");
}

#[test]
fn lesson_expiring_checkpoints_auto() {
    auto("expiring-checkpoints");
}

#[test]
fn lesson_state_is_not_output_auto() {
    auto("state-is-not-output");
}

#[test]
fn lesson_state_backends_auto() {
    auto("state-backends");
}

#[test]
fn lesson_failure_and_restart_auto() {
    auto("failure-and-restart");
}

#[test]
fn lesson_exactly_once_to_the_end_auto() {
    auto("exactly-once-to-the-end");
}

#[test]
fn every_shipped_lesson_has_a_test_above_and_teaches_with_predictions() {
    let source = include_str!("lesson.rs");
    for (name, text) in SHIPPED {
        assert!(source.contains(&format!("auto(\"{name}\")")), "lesson {name} has no --auto test");
        let l = Lesson::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
        assert!(l.steps.iter().any(|s| s.predict.is_some()), "{name} asks no prediction");
        assert!(l.steps.iter().any(|s| s.await_user.is_some()), "{name} never waits for the learner");
        assert!(
            l.steps.iter().any(|s| matches!(s.action.as_ref().map(|a| &a.action), Some(ckptlab::scenario::Action::Expect { .. }))),
            "{name} checks nothing"
        );
        assert!(text.contains("Flink 1.2"), "{name} does not say where the seed's Flink 1.2 differed");
    }
}

fn err(text: &str) -> String {
    Lesson::parse(text, "bad.toml").expect_err("refused").to_string()
}

#[test]
fn a_bad_lesson_names_its_line_and_what_is_allowed() {
    let head = "title = \"t\"\n";
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\nhighlight = [\"nowhere\"]\n"));
    assert!(e.contains("bad.toml:2") && e.contains("graph") && e.contains("checkpoints"), "{e}");
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\n\n[[steps]]\nsay = \"y\"\nawait-user = {{ event = \"task_manager_killed\" }}\n"));
    assert!(e.contains("bad.toml:5") && e.contains("the action `n` does"), "{e}");
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\nkill = \"tm-1\"\nawait-user = {{ event = \"tm_exploded\" }}\n"));
    assert!(e.contains("bad.toml:2") && e.contains("not an engine event"), "{e}");
    let e = err(&format!(
        "{head}[[steps]]\nsay = \"x\"\npredict = {{ question = \"q\", choices = [\"a\", \"b\"], answer = 3, explain = \"e\" }}\n"
    ));
    assert!(e.contains("bad.toml:2") && e.contains("1 to 2"), "{e}");
    let e = err(&format!("{head}[[steps]]\ntodo = \"x\"\n"));
    assert!(e.contains("bad.toml:2") && e.contains("say"), "{e}");
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\nexplode = 1\n"));
    assert!(e.contains("bad.toml:2") && e.contains("allowed") && e.contains("await-user"), "{e}");
    let e = err("[[steps]]\nsay = \"x\"\n");
    assert!(e.contains("title"), "{e}");
}

#[test]
fn an_await_user_filter_matches_the_engines_events() {
    let l = Lesson::parse(
        "title = \"t\"\n[[steps]]\nsay = \"x\"\nkill = \"tm-1\"\nawait-user = { event = \"task-manager-killed\", tm = \"tm-1\" }\n",
        "t.toml",
    )
    .expect("parses");
    let want = l.steps[0].await_user.clone().expect("await-user");
    use ckptlab::events::Event;
    assert!(want.matches(&Event::TaskManagerKilled { tm: "tm-1".into(), tasks: vec![] }));
    assert!(!want.matches(&Event::TaskManagerKilled { tm: "tm-2".into(), tasks: vec![] }));
    assert!(!want.matches(&Event::TaskManagerStarted { tm: "tm-1".into(), slots: 1 }));
    // Numbers in the file match numbers in the event.
    let l = Lesson::parse(
        "title = \"t\"\n[[steps]]\nsay = \"x\"\nproduce = \"a\"\nawait-user = { event = \"record_produced\", partition = 1 }\n",
        "t.toml",
    )
    .expect("parses");
    let want = l.steps[0].await_user.clone().expect("await-user");
    assert!(want.matches(&Event::RecordProduced { partition: 1, offset: 0, value: "a".into() }));
    assert!(!want.matches(&Event::RecordProduced { partition: 0, offset: 0, value: "a".into() }));
}

/// Issue 21 §1: a step's panes are the workbench's pane enum (the status line among them), and
/// an event kind is told known or not by serde's typed answer, never by its message's words.
#[test]
fn highlight_names_the_screens_panes_and_await_user_knows_the_engines_events() {
    use ckptlab::lesson::Pane;
    let head = "title = \"t\"\n";
    let l = Lesson::parse(&format!("{head}[[steps]]\nsay = \"x\"\nhighlight = [\"status\", \"graph\"]\n"), "ok.toml").expect("parses");
    assert_eq!(l.steps[0].highlight, [Pane::Status, Pane::Graph]);
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\nhighlight = [\"footer\"]\n"));
    assert!(e.contains("graph, state, checkpoints, output, events, input, status"), "{e}");
    // An unknown kind lists the kinds there are; a known one with no fields given is fine.
    let e = err(&format!("{head}[[steps]]\nsay = \"x\"\nkill = \"tm-1\"\nawait-user = {{ event = \"tm_exploded\" }}\n"));
    assert!(e.contains("`tm_exploded` is not an engine event; allowed:") && e.contains("task_manager_killed"), "{e}");
    Lesson::parse(
        &format!("{head}[[steps]]\nsay = \"x\"\nkill = \"tm-1\"\nawait-user = {{ event = \"checkpoint-completed\" }}\n"),
        "ok.toml",
    )
    .expect("a known kind, fields left to match");
}
