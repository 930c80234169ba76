//! Checkpoints from the JobManager's side: triggering, carrying out a completion's plan (shared
//! files, offsets, retention, subsumption: the coordinator decides it), failing, and the
//! acknowledgements nobody takes.

use super::*;

impl JobManager {
    /// An acknowledgement no pending checkpoint takes (it expired, was subsumed or failed, or its
    /// attempt was cancelled): its snapshot's files are deleted, as Flink discards the state of
    /// late and unknown acks. Files a retained checkpoint references are never touched.
    pub(super) fn discard_unknown_ack(&mut self, checkpoint: u64, task: TaskId, state: TaskState) {
        let TaskState::Keyed { handle, .. } = state else { return };
        if !self.coord.is_retained(checkpoint) && !self.coord.is_pending(checkpoint) {
            // The checkpoint is neither complete nor running: its whole directory is garbage.
            off_worker(|| self.storage.discard(checkpoint));
            // A failed savepoint's directory was deleted already; a late write may have made it
            // again (RocksDB's upload creates its directory): without `_metadata` it goes.
            let written = match &handle {
                crate::state::StateHandle::File { path, .. } | crate::state::StateHandle::Canonical { path, .. } => Some(path.clone()),
                crate::state::StateHandle::RocksDb { dir, .. } => Some(dir.clone()),
                crate::state::StateHandle::Memory { .. } => None,
            };
            let root = self.storage.savepoint_dir.clone();
            let savepoint = written.and_then(|p| p.strip_prefix(&root).ok().and_then(|r| r.components().next()).map(|c| root.join(c)));
            if let Some(dir) = savepoint.filter(|d| !d.join(crate::state::storage::METADATA).exists()) {
                off_worker(|| {
                    let _ = crate::workdir::remove_tree_under(&root, &dir);
                });
            }
        }
        off_worker(|| self.shared.discard_unregistered(std::slice::from_ref(&handle)));
        self.events.publish(Event::CheckpointAckDiscarded { checkpoint, task: task.to_string() });
    }

    /// [`Command::KillBeforeCommit`]: refused as a kill is when the task manager does not run;
    /// otherwise armed for the next completed checkpoint (see `carry_out`).
    pub(super) fn arm_kill_before_commit(&mut self, name: String) {
        if let Err(e) = crate::cluster::taskmanager::parse_name(&name) {
            return self.refuse(Refusable::Kill, e.to_string());
        }
        if self.running_tm(&name).is_none() {
            let known = self.tms.iter().any(|t| t.name == name);
            let why = if known { format!("{name} is not running") } else { format!("no task manager {name}") };
            return self.refuse(Refusable::Kill, why);
        }
        if self.cfg.checkpointing.interval.is_none() {
            return self.refuse(Refusable::Kill, format!("{name} would be killed before a checkpoint's commit, and checkpointing is off"));
        }
        self.kill_before_commit = Some(name);
    }

    /// The index of the task manager `name` runs as, if it runs.
    pub(super) fn running_tm(&self, name: &str) -> Option<usize> {
        self.tms.iter().position(|t| t.name == name && t.runs() && !t.lost)
    }

    /// Checkpoints allowed in flight at once (a min-pause forces one).
    pub(super) fn max_concurrent(&self) -> usize {
        let configured = CheckpointCoordinator::max_concurrent(self.cfg.checkpointing.max_concurrent, self.cfg.checkpointing.min_pause);
        // Flink does not run unaligned checkpoints concurrently: one at a time.
        if self.cfg.checkpointing.unaligned {
            1
        } else {
            configured
        }
    }

    /// A stop-with-savepoint is under way (its savepoint pending, or the job waiting for its
    /// tasks to finish): the periodic scheduler is stopped meanwhile, as Flink's
    /// SchedulerBase.stopWithSavepoint stops it before the savepoint (SchedulerBase.java:1099).
    pub(super) fn stop_in_progress(&self) -> bool {
        self.stopping.is_some() || self.savepoints.values().any(|stop| *stop)
    }

    pub(super) fn schedule_next_trigger(&mut self) {
        self.next_trigger = None;
        let Some(interval) = self.cfg.checkpointing.interval else { return };
        if self.status != JobStatus::Running || self.coord.in_flight() >= self.max_concurrent() || self.stop_in_progress() {
            return;
        }
        if self.queued_trigger {
            self.next_trigger = Some(Instant::now());
            return;
        }
        let mut at = self.trigger_base + interval;
        if let Some(done) = self.coord.last_completion() {
            at = at.max(done + self.cfg.checkpointing.min_pause);
        }
        self.next_trigger = Some(at);
    }

    /// Whether every task of the job runs, so that a checkpoint or savepoint may be triggered;
    /// none does while the tasks wait SCHEDULED for slots (the default scheduler's restart).
    fn check_trigger(&self) -> Result<(), CheckpointFailureReason> {
        match &self.deployment {
            Some(d) => CheckpointCoordinator::check_trigger(&d.expected_tasks(), &d.running),
            None => CheckpointCoordinator::check_trigger(&job_tasks(self.cfg.job.parallelism), &Default::default()),
        }
    }

    /// The periodic trigger's time came. It was scheduled when a place was free; a savepoint
    /// triggered since may have taken it (savepoints are forced past `max-concurrent-checkpoints`,
    /// periodic checkpoints are not: CheckpointRequestDecider). Then it waits, and the end of a
    /// pending one schedules it again (Flink's queued request runs then).
    pub(super) fn periodic_trigger(&mut self) {
        self.next_trigger = None;
        if self.coord.in_flight() >= self.max_concurrent() || self.stop_in_progress() {
            return;
        }
        self.trigger();
    }

    pub(super) fn trigger(&mut self) {
        self.queued_trigger = false;
        let now = Instant::now();
        if let Err(reason) = self.check_trigger() {
            // Pre-flight: nothing is triggered and nothing fails; the next one comes an interval later.
            self.trigger_base = now;
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("{} ({})", reason, reason.flink_name()) });
            self.schedule_next_trigger();
            return;
        }
        let Some(d) = &self.deployment else { return };
        let mode = self.cfg.checkpointing.mode;
        let id = self.coord.begin(mode, now, self.now_ms(), d.expected_tasks());
        self.trigger_base = now;
        if let Err(e) = self.storage.prepare(id) {
            self.fail_checkpoint(id, CheckpointFailureReason::IoException { message: e.to_string() });
            self.schedule_next_trigger();
            return;
        }
        self.events.publish(Event::CheckpointTriggered { checkpoint: id, mode: mode.flink_name().into() });
        let barrier = Barrier { checkpoint: id, options: self.cfg.checkpointing.options(), triggered_at: now };
        if let Some(d) = &self.deployment {
            // A source on a killed task manager cannot take it: the checkpoint will not complete.
            d.tell_sources(TaskControl::TriggerCheckpoint(barrier));
        }
        self.schedule_next_trigger();
    }

    /// Takes a savepoint in `format` (Flink's `--type`, canonical by default) through the same
    /// barriers as a checkpoint, always aligned, as Flink's savepoints; works with periodic
    /// checkpointing off too. Returns its id when it was triggered.
    pub(super) fn trigger_savepoint(&mut self, stop: bool, format: SavepointFormat) -> Option<u64> {
        if let Err(reason) = self.savepoint_refusal(stop) {
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("savepoint: {reason}") });
            return None;
        }
        if stop {
            self.stop_checkpoint_scheduler();
        }
        let d = self.deployment.as_ref()?;
        let mode = self.cfg.checkpointing.mode;
        let id = self.coord.begin_savepoint(mode, Instant::now(), self.now_ms(), d.expected_tasks());
        match off_worker(|| self.storage.begin_savepoint(id, &self.job_id, format)) {
            Ok(dir) => {
                self.savepoints.insert(id, stop);
                self.events.publish(Event::SavepointTriggered { checkpoint: id, path: dir.display().to_string(), stop });
            }
            Err(e) => {
                self.fail_checkpoint(id, CheckpointFailureReason::IoException { message: e.to_string() });
                return None;
            }
        }
        let barrier = Barrier { checkpoint: id, options: CheckpointOptions::new(mode), triggered_at: Instant::now() };
        if let Some(d) = &self.deployment {
            d.tell_sources(if stop { TaskControl::StopWithSavepoint(barrier) } else { TaskControl::TriggerCheckpoint(barrier) });
        }
        // Periodic checkpoints wait for a free place (this savepoint may have taken the last),
        // and none comes while the job stops.
        self.schedule_next_trigger();
        Some(id)
    }

    /// Before a stop-with-savepoint: no periodic trigger any more, and the checkpoints pending
    /// or queued are aborted (CHECKPOINT_COORDINATOR_SUSPEND), as Flink's
    /// CheckpointCoordinator.stopCheckpointScheduler (CheckpointCoordinator.java:2057-2066). No
    /// checkpoint of the stopping job can then overtake the savepoint's barriers or commit
    /// anything after it.
    fn stop_checkpoint_scheduler(&mut self) {
        self.next_trigger = None;
        let why = "the checkpoint scheduler stopped for a stop-with-savepoint".to_string();
        if std::mem::take(&mut self.queued_trigger) {
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("the queued checkpoint request was dropped: {why}") });
        }
        for id in self.coord.pending_ids() {
            self.fail_checkpoint(id, CheckpointFailureReason::CoordinatorSuspend { why: why.clone() });
        }
    }

    /// The stop-with-savepoint failed on the JobManager's side: the periodic scheduler starts
    /// again (StopWithSavepointTerminationHandlerImpl.java:191-193, `startCheckpointScheduler`),
    /// until the failover its stopped sources cause. Flink's `startCheckpointScheduler` puts the
    /// first trigger after a random delay in [min-pause, interval] (CheckpointCoordinator
    /// .getRandomInitDelay); ckptlab counts a whole interval from here, as it does after every
    /// (re)start of the scheduler (simplified: the first checkpoint after a start or restart
    /// comes at most that much later than Flink's).
    fn start_checkpoint_scheduler(&mut self) {
        self.trigger_base = Instant::now();
        self.schedule_next_trigger();
    }

    /// The attempt ended while a completed stop-with-savepoint waited for its tasks to finish:
    /// some task did not (it failed, its task manager died). Flink fails the job over instead of
    /// ending it FINISHED (StopWithSavepointTerminationHandlerImpl.java:169-181); the savepoint
    /// stays where it was written, and the failover restores the latest checkpoint (a savepoint is
    /// never in the completed checkpoint store: CheckpointCoordinator.completePendingCheckpoint).
    pub(super) fn stop_interrupted(&mut self) {
        let Some(stopping) = self.stopping.take() else { return };
        let (id, path) = (stopping.savepoint, stopping.path);
        self.events.publish(Event::StopWithSavepointInterrupted { checkpoint: id, path: path.clone() });
        if let Some(c) = self.backend_change.take_if(|c| c.savepoint == id) {
            self.refuse(
                Refusable::Backend,
                format!("savepoint {id} ({path}) was taken, but the job did not finish: it fails over on {} and the switch to {} is abandoned", c.from, c.to),
            );
        }
    }

    /// Why a savepoint cannot be triggered now, if it cannot.
    pub(super) fn savepoint_refusal(&self, stop: bool) -> Result<(), SavepointRefusal> {
        if self.status != JobStatus::Running || self.stopping.is_some() {
            let status = if self.stopping.is_some() { "stopping" } else { self.status.label() };
            return Err(SavepointRefusal::NotRunning(status));
        }
        if stop && self.savepoints.values().any(|s| *s) {
            return Err(SavepointRefusal::StopInProgress);
        }
        self.check_trigger().map_err(SavepointRefusal::Trigger)
    }

    /// Every task acknowledged a savepoint: `_metadata` went beside its files, and that is all.
    /// Flink 2 neither recovers from a savepoint it took nor commits side effects for one
    /// (FLIP-193), except a stop-with-savepoint, after which the job ends FINISHED.
    pub(super) fn savepoint_completed(&mut self, id: u64, stats: CheckpointStats) {
        let stop = self.savepoints.remove(&id).unwrap_or(false);
        let dir = self.storage.savepoint_location(id);
        self.storage.end_savepoint(id, false);
        let bytes = stats.full_size;
        if let Some(change) = self.backend_change.as_mut().filter(|c| c.savepoint == id) {
            // The new submission restores it: the auditor keeps what its state holds.
            change.dir = dir.clone();
            self.auditor.checkpoint_completed(id);
        }
        let path = dir.map(|d| d.display().to_string()).unwrap_or_default();
        self.events.publish(Event::SavepointCompleted { checkpoint: id, path: path.clone(), bytes });
        if stop {
            // Each task handles the notification (a sink commits), then confirms; the job is
            // FINISHED when all have (StopWithSavepointTerminationHandlerImpl), not at a deadline.
            if let Some(d) = &self.deployment {
                d.tell_all(TaskControl::NotifyCheckpointComplete(id));
                d.tell_all(TaskControl::Finish);
            }
            self.next_trigger = None;
            self.stopping = Some(Stopping { savepoint: id, path, finished: Default::default() });
        } else {
            // Its place is free again (CheckpointCoordinator.completePendingCheckpoint ends with
            // scheduleTriggerRequest): a periodic checkpoint that waited for it runs.
            self.schedule_next_trigger();
        }
    }

    /// The last acknowledgement came: the coordinator completes the checkpoint in one call,
    /// finalizing it through the step given here (Flink's FINALIZE_CHECKPOINT_FAILURE when a
    /// shared file the snapshots reuse is gone or `_metadata` cannot be written), and the plan it
    /// returns is carried out.
    pub(super) fn complete(&mut self, id: u64) {
        let now = Instant::now();
        let job = crate::state::storage::JobShape::of(&self.cfg, self.topic.partitions());
        let storage = &self.storage;
        let format = self.storage.savepoint_format(id);
        // The auditor's record goes beside `_metadata`, before it (a snapshot that has
        // `_metadata` has its record, if it has one): where the snapshot has a directory.
        let record = self.storage.location(id).and_then(|_| self.auditor.record_of(id));
        let mut record_failed = None;
        let finalize = |m: &mut CheckpointMetadata| {
            m.job = Some(job);
            m.format = format;
            if m.kind == SnapshotKind::Checkpoint {
                CheckpointStorage::check_shared_files(&m.keyed).map_err(FinalizeError::SharedFileMissing)?;
            }
            if let Some(r) = &record {
                if let Err(e) = off_worker(|| storage.write_side_file(m.checkpoint, crate::audit::RECORD_FILE, &r.to_bytes())) {
                    record_failed = Some(e.to_string());
                }
            }
            off_worker(|| storage.write_metadata(m)).map(|_| ()).map_err(FinalizeError::WriteMetadata)
        };
        let plan = self.coord.complete_pending(id, &self.job_id, now, self.cfg.checkpointing.num_retained, finalize);
        if let Some(reason) = record_failed {
            self.events.publish(Event::AuditRecordNotWritten { checkpoint: id, reason });
        }
        let Some(plan) = plan else {
            return;
        };
        match plan {
            CompletionPlan::Checkpoint(plan) => self.carry_out(plan),
            CompletionPlan::Savepoint { stats } => self.savepoint_completed(id, stats),
            // A failed savepoint is still in `savepoints`: `after_failure` ends it as a savepoint.
            CompletionPlan::FinalizeFailed { handles, reason } => self.after_failure(id, &handles, reason),
        }
    }

    /// A completed checkpoint's plan, in Flink's order: register its shared files before older
    /// checkpoints release theirs, commit its offsets, drop what is no longer retained, notify
    /// the tasks, fail what it subsumes.
    fn carry_out(&mut self, plan: CheckpointPlan) {
        let id = plan.checkpoint;
        self.shared.register(&plan.register);
        self.storage.completed(id);
        // Kafka: the checkpointed offsets go to the consumer group, for monitoring (as Flink).
        off_worker(|| self.topic.commit(&plan.commit_offsets));
        // An older savepoint still pending is not subsumed: its snapshot parts stay.
        let savepoints: Vec<u64> = self.savepoints.keys().copied().collect();
        self.auditor.checkpoint_completed_beside(id, &savepoints);
        for old in &plan.drop {
            self.drop_checkpoint(old);
        }
        if self.cfg.source.retention == crate::connectors::topic::Retention::Checkpointed && self.cfg.source.kafka.is_none() {
            self.release_topic(&plan.commit_offsets, &plan.oldest_retained_offsets);
        }
        let (duration_ms, bytes) = (plan.stats.duration_ms, plan.stats.checkpointed_size);
        self.events.publish(Event::CheckpointCompleted { checkpoint: id, duration_ms, bytes, offsets: plan.commit_offsets });
        // A kill armed for this moment (`kill = "tm-N"`, `when = "before-commit"`): the checkpoint
        // is complete (`_metadata` written, the store holds it), and the notification, an RPC per
        // task in Flink (CheckpointCoordinator.completePendingCheckpoint -> sendAcknowledgeMessages,
        // CheckpointCoordinator.java:1409-1437), reaches every task but the doomed task manager's.
        // Its sink dies holding a pre-committed transaction that this checkpoint keeps; the
        // restore commits it (CommitterOperator.initializeState, KafkaCommitter.commit).
        let doomed = self.kill_before_commit.take().and_then(|name| self.running_tm(&name).map(|i| (name, i)));
        match (&self.deployment, doomed) {
            (Some(d), Some((name, i))) => {
                d.tell_all_but(TaskControl::NotifyCheckpointComplete(id), i);
                self.kill(&name);
            }
            (Some(d), None) => d.tell_all(TaskControl::NotifyCheckpointComplete(id)),
            (None, _) => {}
        }
        for p in plan.subsume {
            self.fail_checkpoint(p, CheckpointFailureReason::Subsumed { by: id });
        }
        self.schedule_next_trigger();
    }

    /// `source.embedded.retention = checkpointed`: free the records below the oldest retained
    /// checkpoint's offsets that no source and no verdict needs any more.
    pub(super) fn release_topic(&self, latest: &[(u32, u64)], oldest: &[(u32, u64)]) {
        let positions = self.auditor.positions();
        for &(p, off) in latest {
            let mut floor = off.min(self.auditor.retain_floor(p));
            if let Some(o) = oldest.iter().find(|(q, _)| *q == p) {
                floor = floor.min(o.1);
            }
            if self.auditor.enabled() {
                if let Some(&pos) = positions.get(p as usize) {
                    floor = floor.min(pos);
                }
            }
            self.topic.release(p, floor);
        }
    }

    /// A retained checkpoint is no longer needed: its exclusive files go, its shared ones lose a
    /// reference. A snapshot the job was restored from goes only when the job claimed it (CLAIM);
    /// its files in the other job's `shared/` stay (ckptlab deletes only below its own).
    pub(super) fn drop_checkpoint(&mut self, c: &CompletedCheckpoint) {
        let m = &c.metadata;
        match &c.external {
            None => off_worker(|| {
                self.storage.discard(m.checkpoint);
                self.shared.unregister(&m.keyed);
            }),
            Some(ExternalSnapshot { dir, owned: true }) => {
                // Claimed: the job owns it wherever it lies (a savepoint too, as Flink's CLAIM
                // treats a restored snapshot like one of its own checkpoints). Its handles were
                // resolved below its own directory when it was read, so only its files go.
                let gone = off_worker(|| {
                    // Its adopted shared files (in this job's `shared/`) lose its reference.
                    self.shared.unregister(&m.keyed);
                    CheckpointStorage::discard_claimed(dir, m)
                });
                if !gone {
                    tracing::warn!(dir = %dir.display(), "claimed snapshot subsumed: its directory holds other files and stays");
                }
            }
            Some(ExternalSnapshot { owned: false, .. }) => {}
        }
        self.auditor.checkpoint_discarded(m.checkpoint);
    }

    pub(super) fn fail_checkpoint(&mut self, id: u64, reason: CheckpointFailureReason) {
        // Where each subtask that never acknowledged was (the failed checkpoint's anatomy).
        let progress = self.deployment.as_ref().map_or_else(Vec::new, |d| {
            let views: Vec<(TaskId, &Mutex<TaskRunView>)> = (d.keyed_views.iter().enumerate())
                .map(|(j, v)| (TaskId::Counter(j), &**v))
                .chain([(TaskId::Sink, &*d.sink_view)])
                .collect();
            crate::cluster::runner::progress_of(id, &views, &d.channels)
        });
        if let Some((_, handles)) = self.coord.fail_with_progress(id, &reason, Instant::now(), &progress) {
            self.after_failure(id, &handles, reason);
        }
    }

    /// What a failed savepoint leaves, as Flink 2.3. A plain savepoint's failure leaves the job
    /// as it was, unless a task declined it past the tolerable failures. A failed
    /// stop-with-savepoint fails the job over, whatever failed it. Declined by a task: the
    /// JobManager fails the job at once (CheckpointFailureManager.java:187-189, `failJob`).
    /// Failed on the JobManager's side (expired, not finalized): its abort reaches the tasks, and
    /// a task that took the savepoint's snapshot (a source always has: it stopped for good)
    /// fails with "Stop-with-savepoint failed." (StreamTask.java:1575-1576); that task failure is
    /// the failover. Either way the checkpoint scheduler starts again
    /// (StopWithSavepointTerminationHandlerImpl.java:191-193) and the restart restores the latest
    /// checkpoint. An attempt that is ending already (the failover that aborted it) adds nothing.
    fn savepoint_failed(&mut self, id: u64, stop: bool, reason: CheckpointFailureReason) {
        let declined_by_task = matches!(
            reason,
            CheckpointFailureReason::AsyncException { .. } | CheckpointFailureReason::Declined { .. } | CheckpointFailureReason::DeclinedSubsumed { .. }
        );
        let running = self.deployment.is_some();
        let note = match (stop, running, declined_by_task) {
            (false, _, _) => "",
            (true, false, _) => "; the attempt ended with it",
            (true, true, true) => "; a stop-with-savepoint a task declines fails the job over (CheckpointFailureManager)",
            (true, true, false) => {
                "; its sources had stopped for it and fail on the abort (\"Stop-with-savepoint failed.\"): the job fails over to its latest checkpoint"
            }
        };
        self.events.publish(Event::SavepointFailed { checkpoint: id, reason: format!("{reason}{note}") });
        self.backend_change_failed(id, &reason.to_string());
        match (stop, running, declined_by_task) {
            (true, true, true) => self.failover(FailureCause::StopWithSavepointDeclined { savepoint: id, reason }),
            (true, true, false) => self.start_checkpoint_scheduler(),
            // A plain savepoint a task declined counts as a checkpoint's failure does, and is
            // checked against the limit (CheckpointFailureManager.java:191-193).
            (false, true, true) => {
                let tolerable = self.cfg.checkpointing.tolerable_failed;
                match self.coord.take_intolerable(tolerable) {
                    Some(failed) => self.failover(FailureCause::TolerableCheckpointFailuresExceeded { failed, tolerable, last: reason }),
                    None => self.schedule_next_trigger(),
                }
            }
            _ => self.schedule_next_trigger(),
        }
    }

    pub(super) fn after_failure(&mut self, id: u64, handles: &[crate::state::StateHandle], reason: CheckpointFailureReason) {
        if let Some(d) = &self.deployment {
            d.tell_all(TaskControl::NotifyCheckpointAborted(id));
        }
        if let Some(stop) = self.savepoints.remove(&id) {
            // A failed savepoint's directory goes; what else it leaves: `savepoint_failed`.
            off_worker(|| self.storage.end_savepoint(id, true));
            self.auditor.checkpoint_discarded(id);
            self.events.publish(Event::CheckpointFailed { checkpoint: id, reason: reason.to_string() });
            return self.savepoint_failed(id, stop, reason);
        }
        off_worker(|| {
            self.storage.discard(id);
            self.shared.discard_unregistered(handles);
        });
        self.auditor.checkpoint_discarded(id);
        self.events.publish(Event::CheckpointFailed { checkpoint: id, reason: reason.to_string() });
        if reason.counts_toward_tolerable() && self.deployment.is_some() {
            let tolerable = self.cfg.checkpointing.tolerable_failed;
            if let Some(failed) = self.coord.take_intolerable(tolerable) {
                self.failover(FailureCause::TolerableCheckpointFailuresExceeded { failed, tolerable, last: reason });
                return;
            }
        }
        self.schedule_next_trigger();
    }
}

/// Every subtask of the job graph at parallelism `p`: sources, counters, the sink.
fn job_tasks(p: usize) -> Vec<TaskId> {
    (0..p).map(TaskId::Source).chain((0..p).map(TaskId::Counter)).chain([TaskId::Sink]).collect()
}

/// Why a savepoint cannot be triggered now (shown in the refusal event and `b`'s refusal).
#[derive(Debug, thiserror::Error)]
pub(super) enum SavepointRefusal {
    #[error("the job is {0}")]
    NotRunning(&'static str),
    #[error("a stop-with-savepoint is already in progress")]
    StopInProgress,
    #[error("{0} ({name})", name = .0.flink_name())]
    Trigger(CheckpointFailureReason),
}

#[cfg(test)]
mod tests {
    use super::super::tests::Fixture;
    use super::*;

    /// Catches: a pre-flight check that forgets the sink or a subtask (a checkpoint triggered
    /// while it waits for its slot would never complete).
    #[test]
    fn the_job_graph_is_every_source_and_counter_and_the_sink() {
        assert_eq!(
            job_tasks(2),
            [TaskId::Source(0), TaskId::Source(1), TaskId::Counter(0), TaskId::Counter(1), TaskId::Sink]
        );
    }

    /// Catches: unaligned checkpoints or a min-pause run concurrently (Flink runs one at a time
    /// for either).
    #[test]
    fn unaligned_checkpoints_and_a_min_pause_allow_one_in_flight() {
        let free = "execution.checkpointing.max-concurrent-checkpoints=3";
        assert_eq!(Fixture::new(&[free]).jm.max_concurrent(), 3);
        assert_eq!(Fixture::new(&[free, "execution.checkpointing.unaligned.enabled=true"]).jm.max_concurrent(), 1);
        assert_eq!(Fixture::new(&[free, "execution.checkpointing.min-pause=100ms"]).jm.max_concurrent(), 1);
    }

    /// Catches: a savepoint triggered of a job that is not running, or a second
    /// stop-with-savepoint while one is under way (two stops of one job).
    #[test]
    fn a_savepoint_needs_a_running_job_and_one_stop_at_a_time() {
        let mut f = Fixture::new(&[]);
        assert!(matches!(f.jm.savepoint_refusal(false), Err(SavepointRefusal::NotRunning("CREATED"))));
        f.jm.status = JobStatus::Running;
        f.jm.savepoints.insert(7, true);
        assert!(matches!(f.jm.savepoint_refusal(true), Err(SavepointRefusal::StopInProgress)));
        assert!(f.jm.stop_in_progress());
        // A savepoint without stop may go beside it; no task runs yet, so the pre-flight refuses.
        assert!(matches!(f.jm.savepoint_refusal(false), Err(SavepointRefusal::Trigger(_))));
    }

    /// Catches: a kill armed for the next checkpoint's commit when checkpointing is off (it
    /// would never fire and the step would wait forever), or armed for a TM that is not running.
    #[test]
    fn a_kill_before_commit_is_armed_only_when_a_commit_can_come() {
        let mut f = Fixture::new(&["execution.checkpointing.interval=off"]);
        f.jm.arm_kill_before_commit("tm-1".into());
        assert_eq!(f.refusals(Refusable::Kill), ["tm-1 would be killed before a checkpoint's commit, and checkpointing is off"]);
        let mut f = Fixture::new(&[]);
        f.jm.arm_kill_before_commit("tm-9".into());
        assert_eq!(f.refusals(Refusable::Kill), ["no task manager tm-9"]);
        assert_eq!(f.jm.kill_before_commit, None);
        f.jm.arm_kill_before_commit("tm-1".into());
        assert_eq!(f.jm.kill_before_commit.as_deref(), Some("tm-1"));
    }
}
