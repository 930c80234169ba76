//! Task managers as the JobManager sees them: started, killed, declared lost at the heartbeat
//! timeout; slots offered to a deployment until then.

use super::*;

/// One task manager process. A TM started again under the name of one that died and is not yet
/// declared lost is a new process (a new incarnation) beside the old one: the JobManager still
/// counts the old one's slots until its heartbeat times out.
pub(crate) struct TaskManagerState {
    pub name: String,
    /// 1 for the first process of this name, then one more for each start.
    pub incarnation: u32,
    pub alive: bool,
    pub killed_at: Option<Instant>,
    /// The JobManager noticed it is gone (heartbeat timeout): its slots are no longer offered.
    pub lost: bool,
    /// Lost, and a newer incarnation carries its name: no longer shown.
    pub superseded: bool,
    pub slots: usize,
}

impl TaskManagerState {
    pub(super) fn new(name: String, incarnation: u32, slots: usize) -> Self {
        TaskManagerState { name, incarnation, alive: true, killed_at: None, lost: false, superseded: false, slots }
    }

    /// Dead, and the JobManager does not know yet: its slots are still offered to a restart.
    pub(super) fn dead_undetected(&self) -> bool {
        !self.alive && !self.lost && self.killed_at.is_some()
    }
}

impl JobManager {
    pub(super) fn kill(&mut self, name: &str) {
        if let Err(e) = crate::cluster::taskmanager::parse_name(name) {
            return self.refuse(Refusable::Kill, e);
        }
        let Some(i) = self.tms.iter().position(|t| t.name == name && t.alive) else {
            if self.tms.iter().any(|t| t.name == name) {
                return self.refuse(Refusable::Kill, format!("{name} is not running"));
            }
            let mut known: Vec<&str> = self.tms.iter().map(|t| t.name.as_str()).collect();
            known.dedup();
            return self.refuse(Refusable::Kill, format!("no task manager {name}; known: {}", known.join(", ")));
        };
        let tm = &mut self.tms[i];
        tm.alive = false;
        tm.killed_at = Some(Instant::now());
        let tasks = self.deployment.as_mut().map(|d| d.abort_on(i)).unwrap_or_default();
        // The disk of a dead machine is gone: RocksDB instances are rebuilt from the checkpoint.
        // `name` passed parse_name: a plain `tm-N` below the TM root, checked again on delete.
        let _ = off_worker(|| crate::workdir::remove_tree_under(&self.tm_root, &self.tm_root.join(name)));
        let hosted = !tasks.is_empty();
        self.events.publish(Event::TaskManagerKilled { tm: name.to_string(), tasks });
        // Its peers' network connections to it break: a task on another, living task manager
        // fails at once and the job fails over without waiting for the heartbeat timeout. (With
        // no such peer, only the heartbeat timeout tells.)
        let peer = self
            .deployment
            .as_ref()
            .and_then(|d| d.tasks.iter().find(|t| t.tm != i && t.handle.is_some() && self.tms[t.tm].alive).map(|t| t.task));
        if let (true, Some(task)) = (hosted, peer) {
            self.failover(FailureCause::ConnectionLost { tm: name.to_string(), task });
        }
    }

    pub(super) fn start_tm(&mut self, name: Option<String>) {
        if let Some(Err(e)) = name.as_deref().map(crate::cluster::taskmanager::parse_name) {
            return self.refuse(Refusable::Start, e);
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
        if self.tms.iter().any(|t| t.name == name && t.alive) {
            return self.refuse(Refusable::Start, format!("{name} is already running"));
        }
        let slots = self.cfg.slots_per_tm;
        match self.tms.iter().rposition(|t| t.name == name) {
            // Declared lost: the name's entry takes the new process.
            Some(i) if self.tms[i].lost => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms[i] = TaskManagerState::new(name.clone(), incarnation, slots);
            }
            // Dead and not yet detected: a new process beside the old one, whose slots the
            // JobManager still offers until the heartbeat timeout (starting it detects nothing).
            Some(i) => {
                let incarnation = self.tms[i].incarnation + 1;
                self.tms.push(TaskManagerState::new(name.clone(), incarnation, slots));
            }
            None => self.tms.push(TaskManagerState::new(name.clone(), 1, slots)),
        }
        self.events.publish(Event::TaskManagerStarted { tm: name, slots });
        if self.status == JobStatus::WaitingForResources {
            self.try_deploy();
        }
    }

    /// The heartbeat timeout: the JobManager learns that the task manager itself, and its slots,
    /// are gone. Its tasks' peers usually failed the job long before (see `kill`); only a job
    /// whose tasks all ran there, or a deployment to it, still fails over now.
    pub(super) fn tm_lost(&mut self, i: usize) {
        let after_ms = self.tms[i].killed_at.map_or(0, |k| k.elapsed().as_millis() as u64);
        self.tms[i].lost = true;
        let name = self.tms[i].name.clone();
        self.tms[i].superseded =
            self.tms.iter().enumerate().any(|(j, t)| j != i && t.name == name && t.incarnation > self.tms[i].incarnation);
        self.events.publish(Event::TaskManagerLost { tm: name.clone(), after_ms });
        let hosts_tasks = self.deployment.as_ref().is_some_and(|d| d.tasks.iter().any(|t| t.tm == i));
        if hosts_tasks {
            self.failover(FailureCause::TaskManagerLost { tm: name, heartbeat_timeout: self.cfg.heartbeat_timeout });
        }
    }
}
