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
