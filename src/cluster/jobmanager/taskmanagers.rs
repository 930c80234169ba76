//! Task managers as the JobManager sees them: started, killed or hung, declared lost by one of
//! the two detections of [`crate::cluster::heartbeat`]; slots offered to a deployment until then.

use super::*;
use crate::cluster::heartbeat::{Detection, Silence};

/// One task manager process. A TM started again under the name of one that died and is not yet
/// declared lost is a new process (a new incarnation) beside the old one: the JobManager still
/// counts the old one's slots until it finds out.
pub(crate) struct TaskManagerState {
    pub name: String,
    /// 1 for the first process of this name, then one more for each start.
    pub incarnation: u32,
    /// Why it stopped answering, if it did (a hung TM killed later is killed).
    pub silence: Option<Silence>,
    /// When it first stopped answering: the zero of the countdown and of the loss event.
    pub silent_since: Option<Instant>,
    /// When it registered: its heartbeat timeout runs from here until it answers a request.
    pub registered_at: Instant,
    /// Its last answer to a heartbeat request, once it stopped answering.
    pub last_answer: Option<Instant>,
    /// The JobManager noticed it is gone: its slots are no longer offered.
    pub lost: bool,
    /// Lost, and a newer incarnation carries its name: no longer shown.
    pub superseded: bool,
    pub slots: usize,
    /// True while it hangs: its tasks are frozen where they are ([`crate::cluster::taskmanager::freezable`]).
    pub hung: tokio::sync::watch::Sender<bool>,
}

impl TaskManagerState {
    pub(super) fn new(name: String, incarnation: u32, slots: usize) -> Self {
        TaskManagerState {
            name,
            incarnation,
            silence: None,
            silent_since: None,
            registered_at: Instant::now(),
            last_answer: None,
            lost: false,
            superseded: false,
            slots,
            hung: tokio::sync::watch::channel(false).0,
        }
    }

    /// Answers RPCs: its tasks run and a deployment to it succeeds.
    pub(super) fn answers(&self) -> bool {
        self.silence.is_none()
    }

    /// Its process still runs (answering, or hung).
    pub(super) fn runs(&self) -> bool {
        !matches!(self.silence, Some(Silence::Killed { .. }))
    }

    /// Its process is gone: an RPC to it fails at once.
    pub(super) fn killed(&self) -> bool {
        matches!(self.silence, Some(Silence::Killed { .. }))
    }

    /// Silent, and the JobManager does not know yet: its slots are still offered to a restart.
    pub(super) fn silent_undetected(&self) -> bool {
        self.silence.is_some() && !self.lost
    }

    /// It stops answering at `now` (`silence`): its last answer is the last heartbeat request
    /// before (or its registration); a hung TM killed later keeps the answer it gave before the hang.
    fn fall_silent(&mut self, silence: Silence, schedule: &crate::cluster::heartbeat::Schedule) {
        if self.silence.is_none() {
            let at = silence.at();
            self.last_answer = Some(schedule.last_at_or_before(at).max(self.registered_at));
            self.silent_since = Some(at);
        }
        self.silence = Some(silence);
    }
}

impl JobManager {
    pub(super) fn kill(&mut self, name: &str) {
        if let Err(e) = crate::cluster::taskmanager::parse_name(name) {
            return self.refuse(Refusable::Kill, e.to_string());
        }
        // A hung process can be killed too: its connections close then.
        let Some(i) = self.tms.iter().position(|t| t.name == name && t.runs() && !t.lost) else {
            return self.refuse(Refusable::Kill, self.not_running(name));
        };
        let schedule = self.heartbeat;
        self.tms[i].fall_silent(Silence::Killed { at: Instant::now() }, &schedule);
        let tasks = self.deployment.as_mut().map(|d| d.abort_on(i)).unwrap_or_default();
        // The disk of a dead machine is gone: RocksDB instances are rebuilt from the checkpoint.
        // `name` passed parse_name: a plain `tm-N` below the TM root, checked again on delete.
        let _ = off_worker(|| crate::workdir::remove_tree_under(&self.tm_root, &self.tm_root.join(name)));
        let hosted = !tasks.is_empty();
        self.events.publish(Event::TaskManagerKilled { tm: name.to_string(), tasks });
        // Its peers' network connections to it break: a task on another, answering task manager
        // fails at once and the job fails over without waiting for the JobManager to notice.
        // (With no such peer, only the heartbeats tell: failed RPCs, see `heartbeat`.)
        let peer = self
            .deployment
            .as_ref()
            .and_then(|d| d.tasks.iter().find(|t| t.tm != i && t.handle.is_some() && self.tms[t.tm].answers()).map(|t| t.task));
        if let (true, Some(task)) = (hosted, peer) {
            self.failover(FailureCause::ConnectionLost { tm: name.to_string(), task });
        }
    }

    /// The task manager stops answering but its process and connections stay: its tasks freeze
    /// where they are, its peers see no broken connection and wait (backpressure, no input), RPCs
    /// to it get no answer. Only the heartbeat timeout finds it.
    pub(super) fn hang(&mut self, name: &str) {
        if let Err(e) = crate::cluster::taskmanager::parse_name(name) {
            return self.refuse(Refusable::Hang, e.to_string());
        }
        let Some(i) = self.tms.iter().position(|t| t.name == name && t.answers() && !t.lost) else {
            if self.tms.iter().any(|t| t.name == name && t.runs() && !t.lost) {
                return self.refuse(Refusable::Hang, format!("{name} hangs already"));
            }
            return self.refuse(Refusable::Hang, self.not_running(name));
        };
        let schedule = self.heartbeat;
        self.tms[i].fall_silent(Silence::Hung { since: Instant::now() }, &schedule);
        self.tms[i].hung.send_replace(true);
        let tasks: Vec<String> = self
            .deployment
            .as_ref()
            .map(|d| d.tasks.iter().filter(|t| t.tm == i && t.handle.is_some()).map(|t| t.task.to_string()).collect())
            .unwrap_or_default();
        self.events.publish(Event::TaskManagerHung { tm: name.to_string(), tasks });
    }

    /// Why `name` cannot be killed or hung: it is not running, or there is no such TM.
    fn not_running(&self, name: &str) -> String {
        if self.tms.iter().any(|t| t.name == name) {
            return format!("{name} is not running");
        }
        let mut known: Vec<&str> = self.tms.iter().map(|t| t.name.as_str()).collect();
        known.dedup();
        format!("no task manager {name}; known: {}", known.join(", "))
    }

    /// When the JobManager declares task manager `i` lost, and by which detection, while it is
    /// silent and not yet declared lost.
    pub(super) fn loss_of(&self, i: usize) -> Option<(Detection, Instant)> {
        let tm = &self.tms[i];
        if !tm.silent_undetected() {
            return None;
        }
        let (silence, last) = (tm.silence?, tm.last_answer?);
        Some(self.heartbeat_options().loss(&self.heartbeat, last, silence))
    }

    pub(super) fn start_tm(&mut self, name: Option<String>) {
        if let Some(Err(e)) = name.as_deref().map(crate::cluster::taskmanager::parse_name) {
            return self.refuse(Refusable::Start, e.to_string());
        }
        let known = |s: &Self, n: &str| s.tms.iter().any(|t| t.name == n);
        let names = {
            let mut n: Vec<&str> = self.tms.iter().map(|t| t.name.as_str()).collect();
            n.sort_unstable();
            n.dedup();
            n.len()
        };
        if names >= crate::config::MAX_TASK_MANAGERS && !name.as_deref().is_some_and(|n| known(self, n)) {
            return self.refuse(Refusable::Start, format!("the cluster has {names} task managers, the most it can have"));
        }
        // The lowest free number: names stay within tm-1 .. tm-64.
        let name = name.unwrap_or_else(|| {
            crate::cluster::taskmanager::name((1..).find(|n| !known(self, &crate::cluster::taskmanager::name(*n))).unwrap_or(1))
        });
        if let Some(t) = self.tms.iter().find(|t| t.name == name && t.runs() && !t.lost) {
            let why = if t.answers() {
                format!("{name} is already running")
            } else {
                format!("{name} hangs: its process still runs, answering nothing; kill it first (k), or wait until the JobManager declares it lost")
            };
            return self.refuse(Refusable::Start, why);
        }
        let slots = self.cfg.slots_per_tm;
        match self.tms.iter().rposition(|t| t.name == name) {
            // Declared lost: the name's entry takes the new process.
            Some(i) if self.tms[i].lost => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms[i] = TaskManagerState::new(name.clone(), incarnation, slots);
            }
            // Dead and not yet detected: a new process beside the old one, whose slots the
            // JobManager still offers until it finds out (starting it detects nothing).
            Some(i) => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms.push(TaskManagerState::new(name.clone(), incarnation, slots));
            }
            None => self.tms.push(TaskManagerState::new(name.clone(), 1, slots)),
        }
        self.events.publish(Event::TaskManagerStarted { tm: name, slots });
        if self.waiting_since.is_some() {
            self.try_deploy();
        }
    }

    /// The JobManager learns that the task manager itself, and its slots, are gone: it disconnects
    /// it (JobMaster.java:1658-1681: both detections end in `handleTaskManagerConnectionLoss`). A
    /// killed TM's peers usually failed the job long before (see `kill`); a job whose tasks all
    /// ran there, a hung TM's job, or a deployment to it fails over now.
    pub(super) fn tm_lost(&mut self, i: usize, detection: Detection) {
        let after_ms = self.tms[i].silent_since.map_or(0, |k| k.elapsed().as_millis() as u64);
        self.tms[i].lost = true;
        let name = self.tms[i].name.clone();
        self.tms[i].superseded =
            self.tms.iter().enumerate().any(|(j, t)| j != i && t.name == name && t.incarnation > self.tms[i].incarnation);
        // A hung TM's frozen tasks are released with its slots.
        if let Some(d) = self.deployment.as_mut() {
            d.abort_on(i);
        }
        self.events.publish(Event::TaskManagerLost { tm: name.clone(), after_ms, detection });
        let hosts_tasks = self.deployment.as_ref().is_some_and(|d| d.tasks.iter().any(|t| t.tm == i));
        if hosts_tasks {
            self.failover(FailureCause::TaskManagerLost { tm: name, detection, options: self.heartbeat_options() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fixture;
    use super::*;
    use crate::cluster::heartbeat::Schedule;

    fn incarnations(jm: &JobManager, name: &str) -> Vec<(u32, bool, bool)> {
        jm.tms.iter().filter(|t| t.name == name).map(|t| (t.incarnation, t.answers(), t.lost)).collect()
    }

    /// Catches: a restart of a dead TM's name that replaces its entry before the JobManager
    /// noticed the death (its slots would vanish from the offers before detection, unlike Flink's).
    #[test]
    fn a_tm_started_before_its_loss_is_detected_runs_beside_the_dead_one() {
        let mut f = Fixture::new(&[]);
        let before = f.jm.tms.len();
        f.jm.kill("tm-1");
        assert!(f.jm.tms[0].killed() && f.jm.tms[0].silent_undetected());
        f.jm.start_tm(Some("tm-1".into()));
        assert_eq!(f.jm.tms.len(), before + 1);
        assert_eq!(incarnations(&f.jm, "tm-1"), [(1, false, false), (2, true, false)]);
    }

    /// Catches: a start after the loss that adds a second entry (the lost one would be counted
    /// and shown forever) or keeps the old incarnation number.
    #[test]
    fn a_tm_started_after_its_loss_takes_over_its_entry() {
        let mut f = Fixture::new(&[]);
        let before = f.jm.tms.len();
        f.jm.kill("tm-1");
        f.jm.tm_lost(0, Detection::HeartbeatTimeout);
        assert_eq!(incarnations(&f.jm, "tm-1"), [(1, false, true)]);
        f.jm.start_tm(Some("tm-1".into()));
        assert_eq!(f.jm.tms.len(), before);
        assert_eq!(incarnations(&f.jm, "tm-1"), [(2, true, false)]);
    }

    /// Catches: a new TM given a taken name or a number above the lowest free one (names must
    /// stay within tm-1 .. tm-64).
    #[test]
    fn a_new_tm_takes_the_lowest_free_number() {
        let mut f = Fixture::new(&[]);
        let n = f.jm.tms.len();
        f.jm.start_tm(None);
        assert_eq!(f.jm.tms.last().map(|t| t.name.clone()), Some(crate::cluster::taskmanager::name(n + 1)));
    }

    /// Catches: a kill, hang or start that acts on a TM it cannot act on instead of refusing
    /// with the reason (a scenario step would then pass silently).
    #[test]
    fn kill_hang_and_start_refuse_what_they_cannot_do() {
        let mut f = Fixture::new(&[]);
        f.jm.start_tm(Some("tm-1".into()));
        assert_eq!(f.refusals(Refusable::Start), ["tm-1 is already running"]);
        f.jm.hang("tm-1");
        f.jm.hang("tm-1");
        assert_eq!(f.refusals(Refusable::Hang), ["tm-1 hangs already"]);
        f.jm.start_tm(Some("tm-1".into()));
        assert!(f.refusals(Refusable::Start)[0].starts_with("tm-1 hangs: "));
        f.jm.kill("tm-1");
        f.jm.kill("tm-1");
        assert_eq!(f.refusals(Refusable::Kill), ["tm-1 is not running"]);
        let known: Vec<String> = f.jm.tms.iter().map(|t| t.name.clone()).collect();
        f.jm.kill("tm-9");
        assert_eq!(f.refusals(Refusable::Kill), [format!("no task manager tm-9; known: {}", known.join(", "))]);
    }

    /// Catches: a hung TM killed later whose silence is counted from the kill (its last answer
    /// was before the hang: the heartbeat timeout runs from there).
    #[test]
    fn a_hung_tm_killed_later_keeps_the_answer_it_gave_before_the_hang() {
        let start = Instant::now();
        let schedule = Schedule { start, interval: Duration::from_millis(100) };
        let mut tm = TaskManagerState::new("tm-1".into(), 1, 1);
        tm.registered_at = start;
        let hung_at = start + Duration::from_millis(250);
        tm.fall_silent(Silence::Hung { since: hung_at }, &schedule);
        assert_eq!(tm.last_answer, Some(start + Duration::from_millis(200)), "the last request before the hang");
        tm.fall_silent(Silence::Killed { at: start + Duration::from_millis(900) }, &schedule);
        assert_eq!(tm.last_answer, Some(start + Duration::from_millis(200)));
        assert_eq!(tm.silent_since, Some(hung_at));
        assert!(tm.killed() && !tm.runs() && !tm.answers());
    }
}
