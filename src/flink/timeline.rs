//! What happened after each kill (or hang), on the real cluster and in ckptlab's model, side by
//! side: the model's own fidelity check. On Flink (the local cluster of processes) the moments
//! come from REST: the first failure the job's failover recorded (`/jobs/:id/exceptions`, at
//! Flink's timestamp), the job's state changes (`/jobs/:id` `timestamps`) and status, and the
//! TaskManager's registration (`/taskmanagers`: lost when the ResourceManager drops it, back when
//! a new process registers). In ckptlab they are its engine's events (`job_failing`,
//! `task_manager_lost`, `job_restarting`, `task_manager_started`, `job_running`). Each is in ms
//! after the kill on its own side; a moment differs when the two are further apart than
//! [`TOLERANCE_MS`] plus [`TOLERANCE_SHARE`] of the later one (the REST poll, JVM pauses and
//! RPC round trips are noise the model leaves out).

use serde::{Deserialize, Serialize};

use super::harness::{FlinkEvent, Timed};
use crate::events::{Event, Stamped};
use crate::table::{Column, TextTable};

/// Absolute slack of a comparison (REST is polled every 100-200 ms; RPCs and GC add more).
pub const TOLERANCE_MS: u64 = 500;
/// Relative slack, of the later of the two moments.
pub const TOLERANCE_SHARE: f64 = 0.25;

/// One moment after a kill, on both sides.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Moment {
    pub what: String,
    pub ckptlab_ms: Option<u64>,
    pub flink_ms: Option<u64>,
    pub ckptlab_detail: String,
    pub flink_detail: String,
    /// Further apart than the tolerance (None: a side never got there).
    pub differs: Option<bool>,
}

/// The moments after one kill or hang.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Timeline {
    /// `kill tm-1`, `hang tm-2`.
    pub after: String,
    pub moments: Vec<Moment>,
}

pub fn rule() -> String {
    format!("a moment differs when the two sides are more than {TOLERANCE_MS} ms + {:.0}% of the later one apart", TOLERANCE_SHARE * 100.0)
}

fn differs(a: Option<u64>, b: Option<u64>) -> Option<bool> {
    let (a, b) = (a?, b?);
    let slack = TOLERANCE_MS as f64 + TOLERANCE_SHARE * a.max(b) as f64;
    Some(a.abs_diff(b) as f64 > slack)
}

/// The timelines after every kill and hang: the n-th on ckptlab's side beside the n-th on Flink's.
pub fn timelines(ckptlab: &[Stamped], flink: &[Timed]) -> Vec<Timeline> {
    let ck_kills: Vec<(usize, String, String)> = ckptlab
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.event {
            Event::TaskManagerKilled { tm, .. } => Some((i, "kill".to_string(), tm.clone())),
            Event::TaskManagerHung { tm, .. } => Some((i, "hang".to_string(), tm.clone())),
            _ => None,
        })
        .collect();
    let fl_kills: Vec<(usize, String)> = flink
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match &t.event {
            FlinkEvent::TmKilled { tm, .. } | FlinkEvent::TmHung { tm, .. } => Some((i, tm.clone())),
            _ => None,
        })
        .collect();
    ck_kills
        .iter()
        .zip(fl_kills.iter())
        .map(|((ci, how, tm), (fi, _))| {
            let ck0 = ckptlab[*ci].t_ms;
            let fl0 = flink[*fi].at_ms;
            let ck_after = |f: &dyn Fn(&Event) -> Option<String>| {
                ckptlab[*ci + 1..].iter().find_map(|s| f(&s.event).map(|d| (s.t_ms.saturating_sub(ck0), d)))
            };
            // Flink's failure timestamps can sit a few ms before the kill was recorded.
            let fl_after = |f: &dyn Fn(&FlinkEvent) -> Option<String>| {
                flink.iter().filter(|t| t.at_ms + 50 >= fl0 && !matches!(t.event, FlinkEvent::TmKilled { .. } | FlinkEvent::TmHung { .. })).find_map(|t| f(&t.event).map(|d| (t.at_ms.saturating_sub(fl0), d)))
            };
            let rows: Vec<(&str, Option<(u64, String)>, Option<(u64, String)>)> = vec![
                (
                    "job failing",
                    ck_after(&|e| match e {
                        Event::JobFailing { reason } => Some(reason.clone()),
                        _ => None,
                    }),
                    fl_after(&|e| match e {
                        FlinkEvent::Failure { exception, task, .. } => Some(format!(
                            "{}{}",
                            exception.rsplit('.').next().unwrap_or(exception),
                            task.as_deref().map(|t| format!(" in {t}")).unwrap_or_default()
                        )),
                        _ => None,
                    }),
                ),
                (
                    "TM lost",
                    ck_after(&|e| match e {
                        Event::TaskManagerLost { tm: t, detection, .. } if t == tm => Some(detection.summary()),
                        _ => None,
                    }),
                    fl_after(&|e| match e {
                        FlinkEvent::TmLost { tm: t, resource_id } if t == tm => Some(format!("{resource_id} gone from /taskmanagers")),
                        _ => None,
                    }),
                ),
                (
                    "restarting",
                    ck_after(&|e| match e {
                        Event::JobRestarting { attempt, wait_ms, strategy, .. } => Some(format!("attempt {attempt}, {strategy} after {wait_ms} ms")),
                        _ => None,
                    }),
                    fl_after(&|e| match e {
                        FlinkEvent::StateEntered { status } if status == "RESTARTING" => Some("job RESTARTING (its timestamp)".to_string()),
                        _ => None,
                    }),
                ),
                (
                    "TM back",
                    ck_after(&|e| match e {
                        Event::TaskManagerStarted { tm: t, slots } if t == tm => Some(format!("started, {slots} slot(s)")),
                        _ => None,
                    }),
                    fl_after(&|e| match e {
                        FlinkEvent::TmRegistered { tm: t, resource_id } if t == tm => Some(format!("a new JVM registered as {resource_id}")),
                        _ => None,
                    }),
                ),
                (
                    "running again",
                    ck_after(&|e| match e {
                        Event::JobRunning { attempt } => Some(format!("every task running (attempt {attempt})")),
                        _ => None,
                    }),
                    fl_after(&|e| match e {
                        FlinkEvent::Status { all_running: true, .. } => Some("job RUNNING, every task running".to_string()),
                        _ => None,
                    }),
                ),
            ];
            Timeline {
                after: format!("{how} {tm}"),
                moments: rows
                    .into_iter()
                    .map(|(what, c, f)| Moment {
                        what: what.to_string(),
                        differs: differs(c.as_ref().map(|x| x.0), f.as_ref().map(|x| x.0)),
                        ckptlab_ms: c.as_ref().map(|x| x.0),
                        flink_ms: f.as_ref().map(|x| x.0),
                        ckptlab_detail: c.map(|x| x.1).unwrap_or_else(|| "never".into()),
                        flink_detail: f.map(|x| x.1).unwrap_or_else(|| "never".into()),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The timelines as text: one table per kill.
pub fn table(ts: &[Timeline]) -> String {
    let mut out = String::new();
    let ms = |m: Option<u64>| m.map(|v| format!("+{v} ms")).unwrap_or_else(|| "never".into());
    // Fixed widths, a row at a time: a long cell pushes its own row only.
    let table = TextTable::new(vec![
        Column::left().min(14),
        Column::right().min(10).gap(" "),
        Column::right().min(10).gap(" "),
        Column::left().min(9),
        Column::left().gap(" "),
    ]);
    for t in ts {
        out.push_str(&format!("after `{}` (ms after it on each side)\n", t.after));
        out.push_str(&table.line(&["moment", "ckptlab", "Flink", "differs?", "what (ckptlab | Flink)"], ""));
        out.push('\n');
        for m in &t.moments {
            let d = match m.differs {
                Some(true) => "DIFFERS",
                Some(false) => "no",
                None => "-",
            };
            let row = [m.what.clone(), ms(m.ckptlab_ms), ms(m.flink_ms), d.to_string(), format!("{} | {}", m.ckptlab_detail, m.flink_detail)];
            out.push_str(&table.line(&row, ""));
            out.push('\n');
        }
    }
    if !ts.is_empty() {
        out.push_str(&format!("rule: {}\n", rule()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::heartbeat::Detection;

    fn ck(t_ms: u64, event: Event) -> Stamped {
        Stamped { t_ms, event }
    }

    fn fl(at_ms: u64, event: FlinkEvent) -> Timed {
        Timed { at_ms, event }
    }

    #[test]
    fn moments_count_from_each_sides_kill_and_a_far_one_differs() {
        let ckptlab = [
            ck(900, Event::JobRunning { attempt: 0 }),
            ck(1000, Event::TaskManagerKilled { tm: "tm-1".into(), tasks: vec![] }),
            ck(1010, Event::JobFailing { reason: "task failed".into() }),
            ck(2000, Event::TaskManagerLost { tm: "tm-1".into(), after_ms: 1000, detection: Detection::RpcFailures { threshold: 2 } }),
            ck(1100, Event::JobRestarting { attempt: 1, delay_ms: 1000, wait_ms: 1000, strategy: "exponential-delay".into() }),
            ck(4000, Event::JobRunning { attempt: 1 }),
        ];
        let flink = [
            fl(100, FlinkEvent::Status { status: "RUNNING".into(), all_running: true }),
            fl(5000, FlinkEvent::TmKilled { tm: "tm-1".into(), pid: 7 }),
            fl(4990, FlinkEvent::Failure { exception: "org.apache.flink.runtime.io.network.netty.exception.RemoteTransportException".into(), message: String::new(), task: Some("counter (1/2)".into()), tm: None }),
            fl(5100, FlinkEvent::Status { status: "RESTARTING".into(), all_running: false }),
            fl(5050, FlinkEvent::StateEntered { status: "RESTARTING".into() }),
            fl(25000, FlinkEvent::TmLost { tm: "tm-1".into(), resource_id: "127.0.0.1:1-ab".into() }),
            fl(27900, FlinkEvent::Status { status: "RUNNING".into(), all_running: true }),
        ];
        let t = &timelines(&ckptlab, &flink)[0];
        assert_eq!(t.after, "kill tm-1");
        let row = |w: &str| t.moments.iter().find(|m| m.what == w).unwrap().clone();
        assert_eq!((row("job failing").ckptlab_ms, row("job failing").flink_ms, row("job failing").differs), (Some(10), Some(0), Some(false)));
        assert!(row("job failing").flink_detail.starts_with("RemoteTransportException in counter"));
        // The model finds the TM after 1 s, Flink after 20 s: beyond any noise.
        assert_eq!((row("TM lost").ckptlab_ms, row("TM lost").flink_ms, row("TM lost").differs), (Some(1000), Some(20000), Some(true)));
        assert_eq!(row("restarting").differs, Some(false));
        // The first all-running after the kill, not the one before it.
        assert_eq!((row("running again").ckptlab_ms, row("running again").flink_ms), (Some(3000), Some(22900)));
        assert!(table(&[t.clone()]).contains("DIFFERS"));
    }

    #[test]
    fn the_table_keeps_fixed_columns_and_a_long_cell_pushes_its_row_only() {
        let moment = |what: &str, c: Option<u64>, f: Option<u64>, differs| Moment {
            what: what.into(),
            differs,
            ckptlab_ms: c,
            flink_ms: f,
            ckptlab_detail: "a".into(),
            flink_detail: "b".into(),
        };
        let t = Timeline {
            after: "kill tm-1".into(),
            moments: vec![moment("TM lost", Some(1000), Some(20000), Some(true)), moment("a moment longer than 14", None, Some(12345678901), None)],
        };
        let text = table(&[t]);
        let lines: Vec<&str> = text.lines().collect();
        // As the table was written by hand before TextTable.
        let fixed = |cells: [&str; 5]| format!("{:<14} {:>10} {:>10}  {:<9} {}", cells[0], cells[1], cells[2], cells[3], cells[4]);
        assert_eq!(lines[1], fixed(["moment", "ckptlab", "Flink", "differs?", "what (ckptlab | Flink)"]));
        assert_eq!(lines[2], fixed(["TM lost", "+1000 ms", "+20000 ms", "DIFFERS", "a | b"]));
        assert_eq!(lines[3], fixed(["a moment longer than 14", "never", "+12345678901 ms", "-", "a | b"]));
    }
}
