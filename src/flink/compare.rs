//! Whether ckptlab and Flink agree: both engines' figures side by side, and the rule that says
//! AGREE or DISAGREE.
//!
//! Counts differ from run to run where timing differs (which record overtook which barrier,
//! when a checkpoint happened to trigger), so the rule judges outcomes, and counts only within a
//! stated tolerance:
//! - the counting outcome is one class on both: exact, lost, overcounted, lost and overcounted,
//!   or not caught up (the job had not processed its input when the run ended, so what looks
//!   lost may only be late: lost is then not judged at all);
//! - the recovery is one class on both: no restart, recovers (restarted, then running and caught
//!   up), keeps failing (restarted and not caught up at the end: a restart loop), FAILED;
//! - lost and overcounted are 0 on both or > 0 on both;
//! - restarts and completed checkpoints are 0 on both or > 0 on both, and no further apart than
//!   [`COUNT_SLACK`] or [`COUNT_RATIO`] of the larger;
//! - expired checkpoints (`CHECKPOINT_EXPIRED`) on both or on neither;
//! - the median checkpoint duration (the lower middle one of an even count) within
//!   [`DURATION_RATIO`] times or [`DURATION_SLACK_MS`].
//!
//! Other failure reasons are shown, not judged: the failover that a kill causes aborts the
//! checkpoint in flight under names that depend on which of its effects the coordinator sees
//! first (a task failure, a region failover, a suspended coordinator). Flink's checkpoints that
//! failed before they were triggered (pre-flight: `NOT_ALL_REQUIRED_TASKS_RUNNING` while a task
//! deploys) are counted in its statistics; ckptlab's coordinator skips them without counting, so
//! they are shown apart and not judged.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Two counts agree when they are no further apart than this ...
pub const COUNT_SLACK: u64 = 2;
/// ... or than this share of the larger.
pub const COUNT_RATIO: f64 = 0.5;
/// Two median checkpoint durations agree within this factor ...
pub const DURATION_RATIO: f64 = 3.0;
/// ... or this many milliseconds apart.
pub const DURATION_SLACK_MS: u64 = 250;
/// The reason whose presence on one side only is a different outcome.
pub const EXPIRED: &str = "CHECKPOINT_EXPIRED";

/// One engine's figures at the end of the run, as the comparison reads them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Records lost; `None`: not judged (the job had not caught up, so unprocessed records would
    /// read as lost).
    pub lost: Option<u64>,
    pub overcounted: u64,
    /// Running, every task running, the whole input read and processed.
    pub caught_up: bool,
    /// Records of the input not yet reflected in the state (only while not caught up).
    pub unprocessed: u64,
    pub checkpoints_completed: u64,
    /// Checkpoints that were triggered and failed, by Flink's `CheckpointFailureReason` name
    /// (`UNKNOWN`: a failure whose reason was not recorded).
    pub checkpoints_failed: BTreeMap<String, u64>,
    /// Checkpoints that failed before they were triggered (Flink's pre-flight failures).
    pub not_triggered: u64,
    pub restarts: u64,
    /// The median end-to-end duration of the completed checkpoints (`None`: none completed).
    pub median_checkpoint_ms: Option<u64>,
    /// The same median over the aligned and over the unaligned checkpoints apart: under
    /// backpressure an aligned checkpoint waits for the queue ahead of its barrier, an unaligned
    /// one overtakes it (a run that switches between them has a median of neither).
    #[serde(default)]
    pub median_aligned_ms: Option<u64>,
    #[serde(default)]
    pub median_unaligned_ms: Option<u64>,
    /// Jobs submitted in the run. ckptlab changes a running job's configuration live; Flink
    /// applies it at submission, so each `set` there is a stop-with-savepoint and a new job
    /// (restarts and checkpoints are summed over them). 0: not counted.
    #[serde(default)]
    pub jobs: u64,
    /// The job's status at the end (`RUNNING`, `RESTARTING`, `FAILED`, ...).
    pub status: String,
}

impl Side {
    pub fn failed_total(&self) -> u64 {
        self.checkpoints_failed.values().sum()
    }

    fn failed(&self, reason: &str) -> u64 {
        self.checkpoints_failed.get(reason).copied().unwrap_or(0)
    }
}

/// The median of some durations: the lower of the middle two for an even count, so that with
/// two checkpoints one slow outlier (Flink's first checkpoint in a fresh JVM: class loading and
/// JIT, 600 ms where the next takes 50) does not make the figure.
pub fn median(durations: impl IntoIterator<Item = u64>) -> Option<u64> {
    let mut d: Vec<u64> = durations.into_iter().collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(d[(d.len() - 1) / 2])
}

/// What came of the counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Exact,
    Lost,
    Overcounted,
    LostAndOvercounted,
    NotCaughtUp,
}

impl Outcome {
    pub fn of(s: &Side) -> Outcome {
        match (s.caught_up, s.lost.unwrap_or(0) > 0, s.overcounted > 0) {
            (false, _, _) => Outcome::NotCaughtUp,
            (true, false, false) => Outcome::Exact,
            (true, true, false) => Outcome::Lost,
            (true, false, true) => Outcome::Overcounted,
            (true, true, true) => Outcome::LostAndOvercounted,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Exact => "exact",
            Outcome::Lost => "lost",
            Outcome::Overcounted => "overcounted",
            Outcome::LostAndOvercounted => "lost and overcounted",
            Outcome::NotCaughtUp => "not caught up",
        }
    }
}

/// What came of the failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recovery {
    NoRestart,
    Recovers,
    /// Restarted and not running and caught up at the end: a restart loop.
    KeepsFailing,
    Failed,
}

impl Recovery {
    pub fn of(s: &Side) -> Recovery {
        if s.status == "FAILED" {
            Recovery::Failed
        } else if s.restarts == 0 {
            Recovery::NoRestart
        } else if s.caught_up && s.status == "RUNNING" {
            Recovery::Recovers
        } else {
            Recovery::KeepsFailing
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Recovery::NoRestart => "no restart",
            Recovery::Recovers => "recovers",
            Recovery::KeepsFailing => "keeps failing",
            Recovery::Failed => "FAILED",
        }
    }
}

/// A row's judgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Judgement {
    Agree,
    Disagree,
    /// Shown for the reader; the rule does not judge it (the row says why).
    NotJudged,
}

impl Judgement {
    fn of(agree: bool) -> Judgement {
        if agree {
            Judgement::Agree
        } else {
            Judgement::Disagree
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Judgement::Agree => "yes",
            Judgement::Disagree => "NO",
            Judgement::NotJudged => "-",
        }
    }
}

/// One figure on both engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub figure: String,
    pub ckptlab: String,
    pub flink: String,
    pub judgement: Judgement,
    /// Why a row is not judged, or how it is.
    pub rule: String,
}

/// Both engines' figures, row by row, and the overall word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Every judged row agrees.
    pub agree: bool,
    pub rows: Vec<Row>,
    pub ckptlab: Side,
    pub flink: Side,
    /// The rule, as the output states it.
    pub rule: String,
}

/// Counts that agree: both 0, or both > 0 and within the tolerance.
pub fn counts_agree(a: u64, b: u64) -> bool {
    if (a == 0) != (b == 0) {
        return false;
    }
    let gap = a.abs_diff(b);
    gap <= COUNT_SLACK || (gap as f64) <= COUNT_RATIO * a.max(b) as f64
}

/// Durations that agree: within the ratio or the absolute bound.
pub fn durations_agree(a: u64, b: u64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    hi - lo <= DURATION_SLACK_MS || (hi as f64) <= DURATION_RATIO * lo as f64
}

/// The rule in one sentence, with its tolerances.
pub fn rule() -> String {
    format!(
        "AGREE when every judged row agrees: the outcome (exact / lost / overcounted / not caught up) and the recovery \
         (no restart / recovers / keeps failing / FAILED) are one class on both; lost and overcounted are 0 on both or > 0 on both \
         (lost is judged only once the job caught up); restarts and completed checkpoints are 0 on both or > 0 on both and at most \
         max({COUNT_SLACK}, {:.0}% of the larger) apart; {EXPIRED} on both or on neither; the median checkpoint duration within \
         x{DURATION_RATIO:.0} or {DURATION_SLACK_MS} ms. Other failure reasons and Flink's pre-flight failures are shown, not judged.",
        COUNT_RATIO * 100.0
    )
}

fn count_rule() -> String {
    format!("0 on both or > 0 on both, at most max({COUNT_SLACK}, {:.0}% of the larger) apart", COUNT_RATIO * 100.0)
}

fn ms_or_none(v: Option<u64>) -> String {
    v.map_or("none completed".into(), |m| format!("{m} ms"))
}

fn lost_cell(s: &Side) -> String {
    match s.lost {
        Some(n) => n.to_string(),
        None => format!("not caught up ({} unprocessed)", s.unprocessed),
    }
}

/// Compares the two sides.
pub fn compare(ck: &Side, fl: &Side) -> Comparison {
    let mut rows = Vec::new();
    let mut row = |figure: &str, c: String, f: String, judgement: Judgement, rule: String| {
        rows.push(Row { figure: figure.to_string(), ckptlab: c, flink: f, judgement, rule });
    };
    let (oc, of) = (Outcome::of(ck), Outcome::of(fl));
    row("outcome", oc.label().into(), of.label().into(), Judgement::of(oc == of), "one class on both".into());
    let lost = match (ck.lost, fl.lost) {
        (Some(a), Some(b)) => Judgement::of((a > 0) == (b > 0)),
        _ => Judgement::NotJudged,
    };
    let lost_rule = if lost == Judgement::NotJudged {
        "not judged: a side had not caught up, so records not yet processed would read as lost".to_string()
    } else {
        "0 on both or > 0 on both".to_string()
    };
    row("lost", lost_cell(ck), lost_cell(fl), lost, lost_rule);
    row(
        "overcounted",
        ck.overcounted.to_string(),
        fl.overcounted.to_string(),
        Judgement::of((ck.overcounted > 0) == (fl.overcounted > 0)),
        "0 on both or > 0 on both".into(),
    );
    let (rc, rf) = (Recovery::of(ck), Recovery::of(fl));
    row("recovery", rc.label().into(), rf.label().into(), Judgement::of(rc == rf), "one class on both".into());
    row("restarts", ck.restarts.to_string(), fl.restarts.to_string(), Judgement::of(counts_agree(ck.restarts, fl.restarts)), count_rule());
    row(
        "checkpoints completed",
        ck.checkpoints_completed.to_string(),
        fl.checkpoints_completed.to_string(),
        Judgement::of(counts_agree(ck.checkpoints_completed, fl.checkpoints_completed)),
        count_rule(),
    );
    row(
        "checkpoints failed",
        ck.failed_total().to_string(),
        fl.failed_total().to_string(),
        Judgement::NotJudged,
        "the total: by reason below".into(),
    );
    let reasons: BTreeSet<&String> =
        ck.checkpoints_failed.keys().chain(fl.checkpoints_failed.keys()).filter(|r| r.as_str() != EXPIRED).collect();
    let (ec, ef) = (ck.failed(EXPIRED), fl.failed(EXPIRED));
    row(
        &format!("  {EXPIRED}"),
        ec.to_string(),
        ef.to_string(),
        Judgement::of((ec > 0) == (ef > 0)),
        "expiries on both or on neither".into(),
    );
    for r in reasons {
        row(
            &format!("  {r}"),
            ck.failed(r).to_string(),
            fl.failed(r).to_string(),
            Judgement::NotJudged,
            "not judged: a failover aborts a checkpoint under names that depend on what the coordinator sees first".into(),
        );
    }
    if ck.not_triggered > 0 || fl.not_triggered > 0 {
        row(
            "  not triggered (pre-flight)",
            ck.not_triggered.to_string(),
            fl.not_triggered.to_string(),
            Judgement::NotJudged,
            "not judged: Flink counts a checkpoint it could not trigger (a task not running) as failed; ckptlab skips it".into(),
        );
    }
    let duration = match (ck.median_checkpoint_ms, fl.median_checkpoint_ms) {
        (Some(a), Some(b)) => Judgement::of(durations_agree(a, b)),
        _ => Judgement::NotJudged,
    };
    let duration_rule = if duration == Judgement::NotJudged {
        "not judged: no checkpoint completed on a side (the completed row judges that)".to_string()
    } else {
        format!("within x{DURATION_RATIO:.0} or {DURATION_SLACK_MS} ms")
    };
    row(
        "median checkpoint duration",
        ms_or_none(ck.median_checkpoint_ms),
        ms_or_none(fl.median_checkpoint_ms),
        duration,
        duration_rule,
    );
    let split = [ck.median_aligned_ms, ck.median_unaligned_ms, fl.median_aligned_ms, fl.median_unaligned_ms];
    if ck.median_unaligned_ms.is_some() || fl.median_unaligned_ms.is_some() {
        for (figure, c, f) in [("  aligned", split[0], split[2]), ("  unaligned", split[1], split[3])] {
            let (judgement, rule) = match (c, f) {
                (Some(a), Some(b)) => (Judgement::of(durations_agree(a, b)), format!("within x{DURATION_RATIO:.0} or {DURATION_SLACK_MS} ms")),
                _ => (Judgement::NotJudged, "not judged: no such checkpoint completed on a side".to_string()),
            };
            row(figure, ms_or_none(c), ms_or_none(f), judgement, rule);
        }
    }
    if ck.jobs > 1 || fl.jobs > 1 {
        row(
            "jobs submitted",
            ck.jobs.to_string(),
            fl.jobs.to_string(),
            Judgement::NotJudged,
            "not judged: ckptlab changes configuration live, Flink submits a new job from a stop-with-savepoint (restarts and checkpoints summed over its jobs)".into(),
        );
    }
    let agree = rows.iter().all(|r| r.judgement != Judgement::Disagree);
    Comparison { agree, rows, ckptlab: ck.clone(), flink: fl.clone(), rule: rule() }
}

impl Comparison {
    /// The table: figure, ckptlab, Flink, agree?, and the rule of each row that disagrees or is not judged.
    pub fn table(&self) -> String {
        let header = ["", "ckptlab", "Flink", "agree?"];
        let mut cells: Vec<[String; 4]> = vec![header.map(String::from)];
        for r in &self.rows {
            cells.push([r.figure.clone(), r.ckptlab.clone(), r.flink.clone(), r.judgement.label().to_string()]);
        }
        let widths: Vec<usize> = (0..4).map(|c| cells.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (i, r) in cells.iter().enumerate() {
            let line = format!("{:<w0$}  {:>w1$}  {:>w2$}  {:<w3$}", r[0], r[1], r[2], r[3], w0 = widths[0], w1 = widths[1], w2 = widths[2], w3 = widths[3]);
            out.push_str(line.trim_end());
            if i > 0 && self.rows[i - 1].judgement == Judgement::Disagree {
                out.push_str(&format!("  ({})", self.rows[i - 1].rule));
            }
            out.push('\n');
            if i == 0 {
                out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 6));
                out.push('\n');
            }
        }
        out
    }

    /// `AGREE` or `DISAGREE (figures ...)`, one line.
    pub fn headline(&self) -> String {
        if self.agree {
            "AGREE: every judged figure agrees".to_string()
        } else {
            let names: Vec<&str> =
                self.rows.iter().filter(|r| r.judgement == Judgement::Disagree).map(|r| r.figure.trim()).collect();
            format!("DISAGREE on {}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that restarted once after a kill, caught up, counted exactly.
    fn recovered() -> Side {
        Side {
            lost: Some(0),
            overcounted: 0,
            caught_up: true,
            unprocessed: 0,
            checkpoints_completed: 6,
            checkpoints_failed: BTreeMap::from([("TASK_FAILURE".to_string(), 1)]),
            not_triggered: 0,
            restarts: 1,
            median_checkpoint_ms: Some(40),
            median_aligned_ms: Some(40),
            median_unaligned_ms: None,
            jobs: 1,
            status: "RUNNING".into(),
        }
    }

    fn judgement(c: &Comparison, figure: &str) -> Judgement {
        c.rows.iter().find(|r| r.figure.trim() == figure).unwrap_or_else(|| panic!("no row {figure}: {c:?}")).judgement
    }

    #[test]
    fn the_same_outcome_with_counts_and_durations_within_tolerance_agrees() {
        let ck = recovered();
        let mut fl = recovered();
        fl.checkpoints_completed = 8;
        fl.median_checkpoint_ms = Some(95);
        fl.checkpoints_failed = BTreeMap::from([("CHECKPOINT_COORDINATOR_SUSPEND".to_string(), 1)]);
        fl.not_triggered = 3;
        let c = compare(&ck, &fl);
        assert!(c.agree, "{}", c.table());
        assert_eq!(judgement(&c, "median checkpoint duration"), Judgement::Agree);
        assert_eq!(judgement(&c, "CHECKPOINT_COORDINATOR_SUSPEND"), Judgement::NotJudged);
        assert_eq!(judgement(&c, "not triggered (pre-flight)"), Judgement::NotJudged);
        assert!(c.headline().starts_with("AGREE"));
    }

    /// The measured case of issue 22: ckptlab's checkpoints expired and the job looped through
    /// restarts (2 completed, 5 restarts); Flink completed 50 and never restarted.
    #[test]
    fn one_side_in_a_restart_loop_and_the_other_recovering_disagrees() {
        let ck = Side {
            lost: Some(0),
            caught_up: false,
            unprocessed: 1657,
            checkpoints_completed: 2,
            checkpoints_failed: BTreeMap::from([(EXPIRED.to_string(), 5)]),
            restarts: 5,
            median_checkpoint_ms: Some(1900),
            status: "RESTARTING".into(),
            ..Side::default()
        };
        let fl = Side {
            lost: Some(0),
            caught_up: true,
            checkpoints_completed: 50,
            restarts: 0,
            median_checkpoint_ms: Some(30),
            status: "RUNNING".into(),
            ..Side::default()
        };
        let c = compare(&ck, &fl);
        assert!(!c.agree, "{}", c.table());
        for figure in ["outcome", "recovery", "restarts", "checkpoints completed", EXPIRED, "median checkpoint duration"] {
            assert_eq!(judgement(&c, figure), Judgement::Disagree, "{figure}\n{}", c.table());
        }
        assert!(c.headline().starts_with("DISAGREE on outcome, "), "{}", c.headline());
        assert!(c.table().contains("keeps failing"), "{}", c.table());
    }

    #[test]
    fn restarts_on_both_sides_but_a_loop_on_one_disagrees() {
        let ck = recovered();
        let mut fl = recovered();
        fl.caught_up = false;
        fl.lost = None;
        fl.unprocessed = 40;
        fl.status = "RESTARTING".into();
        let c = compare(&ck, &fl);
        assert_eq!(judgement(&c, "recovery"), Judgement::Disagree);
        assert_eq!(judgement(&c, "restarts"), Judgement::Agree);
        assert!(!c.agree);
    }

    #[test]
    fn an_expiry_on_one_side_only_disagrees() {
        let ck = recovered();
        let mut fl = recovered();
        fl.checkpoints_failed.insert(EXPIRED.to_string(), 1);
        let c = compare(&ck, &fl);
        assert_eq!(judgement(&c, EXPIRED), Judgement::Disagree, "{}", c.table());
        assert!(!c.agree);
        assert_eq!(c.headline(), format!("DISAGREE on {EXPIRED}"));
        // Expiries on both, in different numbers: the same outcome.
        let mut ck2 = recovered();
        ck2.checkpoints_failed.insert(EXPIRED.to_string(), 4);
        assert!(compare(&ck2, &fl).agree);
    }

    #[test]
    fn lost_before_catching_up_is_not_judged_and_not_a_number() {
        let ck = recovered();
        let mut fl = recovered();
        fl.lost = None;
        fl.unprocessed = 1657;
        let c = compare(&ck, &fl);
        assert_eq!(judgement(&c, "lost"), Judgement::NotJudged);
        let row = c.rows.iter().find(|r| r.figure == "lost").unwrap();
        assert_eq!(row.flink, "not caught up (1657 unprocessed)");
        // Not caught up is an outcome of its own: the counting outcome differs.
        fl.caught_up = false;
        assert_eq!(judgement(&compare(&ck, &fl), "outcome"), Judgement::Disagree);
    }

    #[test]
    fn durations_agree_within_the_ratio_or_the_bound() {
        assert!(durations_agree(10, 250));
        assert!(durations_agree(1000, 2900));
        assert!(!durations_agree(30, 1900));
        assert!(!durations_agree(1000, 3300));
        let mut fl = recovered();
        fl.median_checkpoint_ms = Some(1900);
        assert_eq!(judgement(&compare(&recovered(), &fl), "median checkpoint duration"), Judgement::Disagree);
        fl.median_checkpoint_ms = None;
        fl.checkpoints_completed = 0;
        let c = compare(&recovered(), &fl);
        assert_eq!(judgement(&c, "median checkpoint duration"), Judgement::NotJudged);
        assert_eq!(judgement(&c, "checkpoints completed"), Judgement::Disagree);
    }

    #[test]
    fn counts_agree_within_the_slack_or_the_ratio_and_never_across_zero() {
        assert!(counts_agree(0, 0));
        assert!(!counts_agree(0, 1));
        assert!(counts_agree(1, 3));
        assert!(counts_agree(10, 18));
        assert!(!counts_agree(2, 50));
        assert!(!counts_agree(1, 4));
    }

    #[test]
    fn the_median_is_the_middle_one() {
        assert_eq!(median([]), None);
        assert_eq!(median([30, 10, 20]), Some(20));
        assert_eq!(median([40, 10, 20, 30]), Some(20));
        assert_eq!(median([642, 53]), Some(53));
    }

    #[test]
    fn the_table_names_each_figure_and_says_why_a_row_disagrees() {
        let mut fl = recovered();
        fl.restarts = 0;
        let t = compare(&recovered(), &fl).table();
        for figure in ["outcome", "lost", "overcounted", "recovery", "restarts", "checkpoints completed", "checkpoints failed", EXPIRED, "median checkpoint duration"] {
            assert!(t.contains(figure), "{figure}\n{t}");
        }
        assert!(t.lines().any(|l| l.starts_with("restarts") && l.contains("NO") && l.contains("0 on both or > 0 on both")), "{t}");
    }
}
