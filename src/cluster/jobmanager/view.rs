//! What the JobManager publishes after every turn: a [`JmSnapshot`] for the engine's view.

use super::*;

impl JobManager {
    pub(super) fn publish(&self) {
        let d = self.deployment.as_ref();
        // Lost incarnations that a newer one replaced are not shown; a task placed on one is
        // shown on the row of its name.
        let visible: Vec<usize> = (0..self.tms.len()).filter(|&i| !self.tms[i].superseded).collect();
        let shown_at = |tm: usize| {
            visible
                .iter()
                .position(|&v| v == tm)
                .or_else(|| visible.iter().rposition(|&v| self.tms[v].name == self.tms[tm].name))
                .unwrap_or(0)
        };
        let now = Instant::now();
        let pending = self
            .coord
            .pending()
            .map(|p| {
                crate::cluster::view::PendingCheckpointView {
                    id: p.id,
                    mode: p.mode,
                    acks: p.acks.len(),
                    total: p.expected.len(),
                    missing: p.missing().iter().map(|t| t.to_string()).collect(),
                    // Filled in live by the view: alignment changes without the JobManager hearing of it.
                    aligning: Vec::new(),
                    persisting: Vec::new(),
                    elapsed_ms: now.duration_since(p.triggered).as_millis() as u64,
                }
            })
            .collect();
        let snap = JmSnapshot {
            status: self.status,
            attempt: self.attempt,
            restarts: self.restarts,
            failure: self.failure.clone(),
            restore_failure: self.restore_failure.clone(),
            missing_slots: self.missing_slots,
            restart_at: self.restart_at,
            tms: visible
                .iter()
                .map(|&i| {
                    let t = &self.tms[i];
                    TaskManagerRow { name: t.name.clone(), silence: t.silence, lost: t.lost, slots: t.slots, loss: self.loss_of(i) }
                })
                .collect(),
            tasks: d
                .map(|d| {
                    d.tasks
                        .iter()
                        .map(|t| TaskRow {
                            task: t.task,
                            tm: shown_at(t.tm),
                            // A hung TM's tasks are frozen: deployed, not running.
                            running: t.handle.is_some() && d.running.contains(&t.task) && self.tms[t.tm].answers(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            channels: d.map(|d| d.channels.clone()).unwrap_or_default(),
            keyed_views: d.map(|d| d.keyed_views.clone()).unwrap_or_default(),
            sink_view: d.map(|d| d.sink_view.clone()),
            progress: d.map(|d| d.progress.clone()).or_else(|| self.last_progress.clone()),
            pending,
            pending_triggered: self.coord.pending().map(|p| p.triggered).collect(),
            history: self.coord.history().cloned().collect(),
            counts: self.coord.counts(),
            config: self.cfg.clone(),
            heartbeat_timeout: self.cfg.heartbeat_timeout,
            heartbeat: Some(self.heartbeat),
        };
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fixture;
    use crate::cluster::heartbeat::Detection;

    fn rows(f: &Fixture) -> Vec<(String, bool, bool)> {
        let snap = f.jm.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        snap.tms.iter().map(|t| (t.name.clone(), t.silence.is_some(), t.lost)).collect()
    }

    /// Catches: a view that shows a lost incarnation beside the newer one of its name (two
    /// rows for one TM), or hides a dead TM before the JobManager declared it lost.
    #[test]
    fn a_lost_incarnation_replaced_by_a_newer_one_is_not_shown() {
        let mut f = Fixture::new(&[]);
        let others: Vec<(String, bool, bool)> = f.jm.tms.iter().skip(1).map(|t| (t.name.clone(), false, false)).collect();
        f.jm.kill("tm-1");
        f.jm.start_tm(Some("tm-1".into()));
        f.jm.publish();
        let mut expected = vec![("tm-1".to_string(), true, false)];
        expected.extend(others.iter().cloned());
        expected.push(("tm-1".to_string(), false, false));
        assert_eq!(rows(&f), expected, "undetected: the dead one is still shown");
        f.jm.tm_lost(0, Detection::RpcFailures { threshold: 2 });
        f.jm.publish();
        let mut expected = others;
        expected.push(("tm-1".to_string(), false, false));
        assert_eq!(rows(&f), expected);
    }

    /// Catches: a countdown shown for a TM the JobManager already declared lost, or none for
    /// one it has not.
    #[test]
    fn only_a_silent_undetected_tm_has_a_loss_countdown() {
        let mut f = Fixture::new(&[]);
        f.jm.hang("tm-1");
        f.jm.publish();
        let loss = |f: &Fixture| f.jm.snapshot.lock().unwrap_or_else(|e| e.into_inner()).tms.iter().map(|t| t.loss.is_some()).collect::<Vec<_>>();
        assert_eq!(loss(&f)[0], true);
        assert!(loss(&f)[1..].iter().all(|l| !l));
        f.jm.tm_lost(0, Detection::HeartbeatTimeout);
        f.jm.publish();
        assert_eq!(loss(&f)[0], false);
    }
}
