//! The job's deployment: one attempt's tasks on their slots, their control channels, and the
//! failover that ends an attempt and schedules the next.

use super::*;
use crate::cluster::channel::{channel_with, Credits};
use crate::cluster::failure::RpcFailure;
use crate::cluster::task::TaskEnd;
use crate::cluster::taskmanager::freezable;
use crate::connectors::sink::{RestoredSinkState, SinkSnapshot};

/// Flink's `pekko.ask.timeout` (10 s in Flink 2.3, RpcOptions.java): an RPC to a *hung* task
/// manager (a task's submission or cancellation) gets no answer and fails after this long. An RPC
/// to a killed one fails at once (RecipientUnreachableException, DeadLettersActor.java:46-65).
pub(crate) const RPC_ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// A cancellation is sent up to this many times, each waiting `pekko.ask.timeout`, before the
/// task counts as failed (Execution.java:1475-1495: `FutureUtils.retry` with 3 retries of
/// `NUM_CANCEL_CALL_TRIES` = 3, so 4 calls; FutureUtils.java:170-192).
const CANCEL_CALLS: u32 = 4;

/// How long an RPC to a killed task manager takes to fail: "at once", but as an answer that comes
/// back (the dead letters' reply), so one tick of Flink's millisecond clock after the call. A
/// deployment that failed in the very instant of its restart would be, for the exponential-delay
/// strategy, part of the failover that scheduled it (`now <= nextRestartTimestamp`,
/// ExponentialDelayRestartBackoffTimeStrategy.java:112-119: merged, backoff 0), and under the paused clock
/// restart and failure would then repeat at one instant forever, the kill never detected.
const UNREACHABLE_RPC: Duration = Duration::from_millis(1);

pub(super) struct DeployedTask {
    pub(super) task: TaskId,
    pub(super) tm: usize,
    pub(super) handle: Option<JoinHandle<()>>,
    /// Whether the task's end closes its operators: not when its TaskManager is gone.
    pub(super) end: TaskEnd,
}

pub(crate) struct Deployment {
    pub attempt: u64,
    pub(super) tasks: Vec<DeployedTask>,
    pub running: HashSet<TaskId>,
    /// One control channel per task (sources first, then counters, then the sink).
    pub(super) control: Vec<(TaskId, mpsc::UnboundedSender<TaskControl>)>,
    pub channels: Vec<Arc<ChannelStats>>,
    pub keyed_views: Vec<Arc<Mutex<TaskRunView>>>,
    pub sink_view: Arc<Mutex<TaskRunView>>,
    pub progress: Arc<AttemptProgress>,
}

impl Deployment {
    /// The tasks of task manager `tm` end with its process (killed, or a hung one released with
    /// its slots): nothing of them runs, their operators are not closed.
    pub(super) fn abort_on(&mut self, tm: usize) -> Vec<String> {
        let mut names = Vec::new();
        for t in self.tasks.iter_mut().filter(|t| t.tm == tm) {
            if let Some(h) = t.handle.take() {
                t.end.process_gone();
                h.abort();
                names.push(t.task.to_string());
            }
            self.running.remove(&t.task);
        }
        names
    }

    /// Cancels every task: those on answering task managers close their operators on the way out
    /// (the sink's writer aborts its open transaction), those on silent ones (hung, or killed and
    /// not yet aborted) cannot. Returns the cancelled tasks, to wait for their end.
    pub(super) fn abort_all(&mut self, answers: impl Fn(usize) -> bool) -> Vec<JoinHandle<()>> {
        let mut cancelled = Vec::new();
        for t in &mut self.tasks {
            if let Some(h) = t.handle.take() {
                if !answers(t.tm) {
                    t.end.process_gone();
                }
                h.abort();
                cancelled.push(h);
            }
        }
        self.running.clear();
        cancelled
    }

    pub(super) fn expected_tasks(&self) -> Vec<TaskId> {
        self.tasks.iter().map(|t| t.task).collect()
    }

    /// Sends a control message to every task (a task on a dead task manager hears nothing).
    pub(super) fn tell_all(&self, c: TaskControl) {
        for (_, ctl) in &self.control {
            let _ = ctl.send(c);
        }
    }

    /// Sends a control message to every task except those on task manager `tm`.
    pub(super) fn tell_all_but(&self, c: TaskControl, tm: usize) {
        for (task, ctl) in &self.control {
            if self.tasks.iter().any(|t| t.task == *task && t.tm == tm) {
                continue;
            }
            let _ = ctl.send(c);
        }
    }

    /// Sends a control message to the sources.
    pub(super) fn tell_sources(&self, c: TaskControl) {
        for (task, ctl) in &self.control {
            if matches!(task, TaskId::Source(_)) {
                let _ = ctl.send(c);
            }
        }
    }
}

impl JobManager {
    /// Ends the running attempt: its tasks are cancelled and its pending checkpoints fail.
    pub(super) fn cancel_attempt(&mut self, reason: CheckpointFailureReason) {
        if let Some(mut d) = self.deployment.take() {
            // The cancelled tasks end (and close) on their own; the restart does not wait for
            // the closes: a new attempt's writer fences whatever an old one still holds.
            let tms = &self.tms;
            drop(d.abort_all(|tm| tms[tm].answers()));
        }
        self.deploy_failure = None;
        // A stop-with-savepoint whose tasks had not all confirmed ends with the attempt.
        self.stop_interrupted();
        for id in self.coord.pending_ids() {
            self.fail_checkpoint(id, reason.clone());
        }
        self.next_trigger = None;
        if std::mem::take(&mut self.queued_trigger) {
            self.events.publish(Event::CheckpointTriggerRefused { reason: format!("the queued checkpoint request was dropped: {reason}") });
        }
    }

    pub(super) fn failover(&mut self, cause: FailureCause) {
        let reason = cause.to_string();
        self.events.publish(Event::JobFailing { reason: reason.clone() });
        let now = Instant::now();
        // The restart waits until every task of the failed attempt is cancelled. A cancellation
        // sent to a killed task manager fails at once, which ends it (the task counts as failed);
        // one sent to a hung task manager is never answered: it ends when its calls have all
        // timed out, or when the JobManager declares the task manager lost, whichever is first.
        let cancelled_at = self
            .deployment
            .as_ref()
            .map(|d| {
                d.tasks
                    .iter()
                    .filter(|t| self.tms[t.tm].silent_undetected() && !self.tms[t.tm].killed())
                    .filter_map(|t| self.loss_of(t.tm))
                    .map(|(_, lost_at)| lost_at.min(now + RPC_ASK_TIMEOUT * CANCEL_CALLS))
                    .fold(now, Instant::max)
            })
            .unwrap_or(now);
        self.cancel_attempt(cause.checkpoint_reason());
        let kind = self.cfg.restart.effective(self.cfg.checkpointing.interval.is_some());
        match self.restart.on_failure(&self.cfg.restart, kind, Instant::now()) {
            RestartDecision::RestartAfter(delay) => {
                self.status = JobStatus::Restarting;
                self.waiting_since = None;
                // Shown (status line, run's last lines) until an attempt runs again.
                self.failure = Some(reason.clone());
                self.restarts += 1;
                // DefaultScheduler.restartTasksWithDelay (DefaultScheduler.java:359-395): the
                // cancellation starts at once (:383) and the restart runs `delay` after the
                // failure, once the cancellation is complete (:387-393).
                let restart_at = (now + delay).max(cancelled_at);
                self.restart_at = Some(restart_at);
                self.events.publish(Event::JobRestarting {
                    attempt: self.attempt + 1,
                    delay_ms: delay.as_millis() as u64,
                    wait_ms: (restart_at - now).as_millis() as u64,
                    strategy: strategy_name(kind).into(),
                });
            }
            RestartDecision::Fail(why) => {
                self.status = JobStatus::Failed;
                self.restart_at = None;
                self.waiting_since = None;
                let msg = format!("{reason}; {why}");
                self.failure = Some(msg.clone());
                self.events.publish(Event::JobFailed { reason: msg });
            }
        }
    }

    pub(super) fn try_deploy(&mut self) {
        let p = self.cfg.job.parallelism;
        // Every slot the JobManager knows of: answering task managers' first, then those of killed
        // or hung ones it has not yet declared lost (a deployment there fails, as in Flink).
        let offered = |silent: bool| {
            self.tms
                .iter()
                .enumerate()
                .filter(move |(_, t)| !t.lost && t.answers() != silent)
                .flat_map(|(i, t)| std::iter::repeat_n(i, t.slots))
        };
        let slots: Vec<usize> = offered(false).chain(offered(true)).collect();
        if slots.len() < p {
            let missing = p - slots.len();
            // As Flink's default scheduler: the restart has run, the job is RUNNING again, and its
            // tasks wait SCHEDULED for slots until `slot.request.timeout` (DefaultScheduler.java
            // :409-413). Checkpoints triggered meanwhile are refused (NOT_ALL_REQUIRED_TASKS_RUNNING).
            if self.waiting_since.is_none() || self.missing_slots != missing {
                self.events.publish(Event::TasksWaitingForSlots { missing_slots: missing });
            }
            if self.waiting_since.is_none() {
                self.waiting_since = Some(Instant::now());
                self.status = JobStatus::Running;
                self.trigger_base = Instant::now();
                self.schedule_next_trigger();
            }
            self.missing_slots = missing;
            return;
        }
        self.missing_slots = 0;
        self.waiting_since = None;
        // Always the latest completed checkpoint: a restore that failed is retried with it.
        let restore = self.coord.latest().map(|c| c.metadata.clone());
        // The snapshot the run was started from (`--restore`) is restored: what its counters read
        // is the verdict's baseline. Not a savepoint this job stopped with and was resubmitted
        // from (a backend change, `resubmit`): the auditor restores its shadow, over the same baseline.
        let external_restore = self.coord.latest().and_then(|c| c.external.as_ref()).is_some_and(|e| {
            self.restored_from.as_ref().is_some_and(|r| r.found.dir == e.dir)
        });
        let partitions = self.topic.partitions();
        let mut positions: Vec<u64> = (0..partitions)
            .map(|part| match self.cfg.source.offset_reset {
                OffsetReset::Latest => self.topic.end_offset(part),
                // Kafka's earliest: the log start offset (0 unless retention released records).
                OffsetReset::Earliest => self.topic.log_start(part),
            })
            .collect();
        let note;
        let mut offset_reset = None;
        if let Some(m) = &restore {
            for (part, off) in &m.offsets {
                if let Some(slot) = positions.get_mut(*part as usize) {
                    *slot = *off;
                }
            }
            self.coord.record_restore();
            note = String::new();
        } else {
            // As Flink's Kafka source: without a checkpoint, the group's committed offsets first.
            let mut from_group = 0;
            for (slot, offset) in positions.iter_mut().zip(off_worker(|| self.topic.committed())) {
                if let Some(o) = offset {
                    *slot = o;
                    from_group += 1;
                }
            }
            let reset = match self.cfg.source.offset_reset {
                OffsetReset::Latest => "auto.offset.reset = latest: records produced meanwhile are skipped",
                OffsetReset::Earliest => "auto.offset.reset = earliest: the whole topic is replayed",
            };
            if from_group < partitions {
                offset_reset = Some(self.cfg.source.offset_reset);
            }
            note = if from_group == 0 {
                reset.into()
            } else if from_group == partitions {
                "from the consumer group's committed offsets".into()
            } else {
                format!("from the consumer group's committed offsets where it has one, else {reset}")
            };
        }
        self.attempt += 1;
        let attempt = self.attempt;
        self.auditor.deploy(attempt, &positions, restore.as_ref().map(|m| m.checkpoint));
        if self.attempt > 1 || restore.is_some() {
            self.events.publish(Event::StateRestored {
                checkpoint: restore.as_ref().map(|m| m.checkpoint),
                offsets: positions.iter().enumerate().map(|(i, o)| (i as u32, *o)).collect(),
                note,
                offset_reset,
            });
        }
        let d = self.spawn(attempt, &slots[..p], &positions, restore.as_ref(), external_restore);
        // A task submitted to a killed task manager fails at once (the RPC's recipient is
        // unreachable); to a hung one, when the submission times out.
        let now = Instant::now();
        self.deploy_failure = d
            .tasks
            .iter()
            .filter(|t| !self.tms[t.tm].answers())
            .map(|t| {
                let tm = &self.tms[t.tm];
                let (at, rpc) = if tm.killed() {
                    (now + UNREACHABLE_RPC, RpcFailure::RecipientUnreachable)
                } else {
                    (now + RPC_ASK_TIMEOUT, RpcFailure::AskTimeout(RPC_ASK_TIMEOUT))
                };
                (at, FailureCause::DeploymentFailed { tm: tm.name.clone(), task: t.task, rpc })
            })
            .min_by_key(|(at, _)| *at);
        self.last_progress = Some(d.progress.clone());
        self.deployment = Some(d);
        self.status = JobStatus::Running;
        self.trigger_base = Instant::now();
        self.schedule_next_trigger();
    }

    /// Builds channels and tasks of one attempt; tasks placed on a killed or hung task manager
    /// never start (the submission does not arrive), the others run frozen while theirs hangs.
    pub(super) fn spawn(
        &mut self,
        attempt: u64,
        slots: &[usize],
        positions: &[u64],
        restore: Option<&crate::state::storage::CheckpointMetadata>,
        external_restore: bool,
    ) -> Deployment {
        let cfg = &self.cfg;
        let p = cfg.job.parallelism;
        let net = cfg.lab.network;
        let progress = Arc::new(AttemptProgress { positions: Mutex::new(positions.to_vec()), ..AttemptProgress::default() });
        let ctx = |task: TaskId, end: &TaskEnd| TaskContext {
            attempt,
            task,
            reports: self.reports_tx.clone(),
            events: self.events.clone(),
            auditor: self.auditor.clone(),
            progress: progress.clone(),
            knobs: self.knobs.clone(),
            buffer_records: net.buffer_records,
            storage: self.storage.clone(),
            output: self.output.clone(),
            end: end.clone(),
        };
        let tms = &self.tms;
        let spawn_on = |tm: usize| tms[tm].answers().then(|| tms[tm].hung.subscribe());
        let mut tasks = Vec::new();
        let mut channels = Vec::new();
        let mut control = Vec::new();
        let cost = |op: &str, i: usize| cfg.record_cost((op, i));
        let sink_tm = slots[0];
        // counter[j] -> sink[0]
        let mut counter_outputs = Vec::new();
        let mut sink_inputs = Vec::new();
        // Flink's credits, or one fixed capacity per channel (`ckptlab.channel-capacity`).
        let link = |stats, gate: &Arc<_>, partition: &Arc<_>| match net.channel_capacity {
            Some(capacity) => channel(stats, capacity, self.knobs.clone()),
            None => channel_with(stats, Credits::of(&net, gate, partition), self.knobs.clone()),
        };
        let sink_gate = Credits::gate_pool(&net);
        for j in 0..p {
            let stats = ChannelStats::new(TaskId::Counter(j), TaskId::Sink, cfg.extra_delay(("counter", j), ("sink", 0)));
            channels.push(stats.clone());
            let (out, input) = link(stats, &sink_gate, &Credits::partition_pool(&net, 1));
            counter_outputs.push(out);
            sink_inputs.push(input);
        }
        // source[i] -> counter[j]: a hash shuffle, one channel per pair.
        let mut source_outputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
        let mut counter_inputs: Vec<Vec<_>> = (0..p).map(|_| Vec::new()).collect();
        let counter_gates: Vec<_> = (0..p).map(|_| Credits::gate_pool(&net)).collect();
        for (i, outs) in source_outputs.iter_mut().enumerate() {
            let partition = Credits::partition_pool(&net, p);
            for (j, ins) in counter_inputs.iter_mut().enumerate() {
                let stats =
                    ChannelStats::new(TaskId::Source(i), TaskId::Counter(j), cfg.extra_delay(("source", i), ("counter", j)));
                channels.push(stats.clone());
                let (out, input) = link(stats, &counter_gates[j], &partition);
                outs.push(out);
                ins.push(input);
            }
        }
        let channel_state = restore.map(|m| rescale_channel_state(m, p)).unwrap_or_default();
        let replay = |task: TaskId| -> Vec<PersistedRecord> {
            channel_state.iter().find(|c| c.task == task).map(|c| c.records.clone()).unwrap_or_default()
        };
        let audit_scope = self.audit_baseline.clone().map(|baseline| AuditScope { baseline, records_baseline: external_restore });
        // Sources.
        for (i, outputs) in source_outputs.into_iter().enumerate() {
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            control.push((TaskId::Source(i), ctl_tx));
            let assigned: Vec<(u32, u64)> =
                (0..self.topic.partitions()).filter(|part| *part as usize % p == i).map(|part| (part, positions[part as usize])).collect();
            let reader = self.topic.clone().reader(&assigned);
            let end = TaskEnd::default();
            let task = SourceTask {
                ctx: ctx(TaskId::Source(i), &end),
                index: i,
                positions: assigned,
                reader,
                topic: self.topic.clone(),
                control: ctl_rx,
                outputs,
                key_by: cfg.job.key_by,
                replay: replay(TaskId::Source(i)),
                stopped_for: None,
                awaiting: None,
            };
            let handle = spawn_on(slots[i]).map(|hung| spawn_frozen_while_hung(task.run(), hung));
            tasks.push(DeployedTask { task: TaskId::Source(i), tm: slots[i], handle, end });
        }
        // Counters.
        let mut keyed_views = Vec::new();
        for (j, (inputs, output)) in counter_inputs.into_iter().zip(counter_outputs).enumerate() {
            let tm_name = &self.tms[slots[j]].name;
            let local =
                self.tm_root.join(tm_name).join(format!("job_{}_counter_{j}_attempt_{attempt}", &self.job_id[..8.min(self.job_id.len())]));
            let backend = create_backend(cfg, local);
            let view = Arc::new(Mutex::new(TaskRunView::default()));
            keyed_views.push(view.clone());
            let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
            let id = TaskId::Counter(j);
            control.push((id, ctl_tx));
            let end = TaskEnd::default();
            let runner = OperatorRunner {
                ctx: ctx(id, &end),
                op: Counter::new(j, key_group_range(j, p), backend, restore.map(|m| (m.checkpoint, m.keyed.clone())))
                    .with_audit_scope(audit_scope.clone()),
                gate: InputGate::new(inputs, self.knobs.clone()),
                output: Some(output),
                control: ctl_rx,
                record_cost: cost("counter", j),
                replay: replay(id),
                view,
            };
            let handle = spawn_on(slots[j]).map(|hung| spawn_frozen_while_hung(runner.run(), hung));
            tasks.push(DeployedTask { task: id, tm: slots[j], handle, end });
        }
        // Sink.
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        control.push((TaskId::Sink, ctl_tx));
        let sink_view = Arc::new(Mutex::new(TaskRunView::default()));
        let end = TaskEnd::default();
        let runner = OperatorRunner {
            ctx: ctx(TaskId::Sink, &end),
            op: SinkOperator::new(
                crate::connectors::create_sink(cfg.job.sink, &cfg.job.kafka_sink, self.topic.as_ref(), &self.events),
                RestoredSinkState {
                    checkpoint: restore.map(|m| m.checkpoint),
                    snapshot: SinkSnapshot {
                        staged: restore.map(|m| m.staged_output.clone()).unwrap_or_default(),
                        kafka: restore.and_then(|m| m.kafka_sink.clone()),
                    },
                },
                self.committed.clone(),
                CommitLog::of(&self.job_id),
            ),
            gate: InputGate::new(sink_inputs, self.knobs.clone()),
            output: None,
            control: ctl_rx,
            record_cost: cost("sink", 0),
            replay: replay(TaskId::Sink),
            view: sink_view.clone(),
        };
        let handle = spawn_on(sink_tm).map(|hung| spawn_frozen_while_hung(runner.run(), hung));
        tasks.push(DeployedTask { task: TaskId::Sink, tm: sink_tm, handle, end });
        Deployment { attempt, tasks, running: HashSet::new(), control, channels, keyed_views, sink_view, progress }
    }
}

/// Spawns a task that stops (unpolled, holding its channels) while its task manager hangs.
fn spawn_frozen_while_hung(
    task: impl std::future::Future<Output = ()> + Send + 'static,
    hung: tokio::sync::watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(freezable(task, hung))
}

/// A checkpoint's channel state for a job of parallelism `p`: as it is when the parallelism is
/// the one it was taken with; otherwise each counter's in-flight records go to the subtask that
/// now owns their key group (Flink redistributes unaligned channel state on rescaling too), in
/// their order, and the sink's stay the sink's.
pub(super) fn rescale_channel_state(
    m: &crate::state::storage::CheckpointMetadata,
    p: usize,
) -> Vec<crate::state::storage::TaskChannelState> {
    use crate::state::storage::TaskChannelState;
    let taken_with = m.job.as_ref().map_or(m.keyed.len(), |j| j.parallelism);
    if taken_with == p || m.channel_state.is_empty() {
        return m.channel_state.clone();
    }
    let mut counters: Vec<TaskChannelState> = (0..p).map(|j| TaskChannelState { task: TaskId::Counter(j), records: Vec::new() }).collect();
    let mut out = Vec::new();
    let mut old: Vec<&TaskChannelState> = m.channel_state.iter().collect();
    old.sort_by_key(|c| c.task);
    for c in old {
        match c.task {
            TaskId::Counter(_) => {
                for r in &c.records {
                    let owner = crate::keygroup::operator_index(crate::keygroup::key_group(&r.record.key), p);
                    let mut r = r.clone();
                    r.channel = r.channel.min(p - 1);
                    counters[owner].records.push(r);
                }
            }
            // A source's output channel state is sent again by a source of the new job, which
            // routes each record by its key.
            TaskId::Source(i) => {
                let to = TaskId::Source(i % p);
                match out.iter_mut().find(|o: &&mut TaskChannelState| o.task == to) {
                    Some(o) => o.records.extend(c.records.iter().cloned()),
                    None => out.push(TaskChannelState { task: to, records: c.records.clone() }),
                }
            }
            _ => out.push(c.clone()),
        }
    }
    out.extend(counters.into_iter().filter(|c| !c.records.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::storage::{CheckpointMetadata, TaskChannelState};
    use crate::state::StateHandle;
    use crate::types::{ChannelEnd, Origin, PersistedRecord, Record};

    fn record(key: &str, offset: u64, channel: usize) -> PersistedRecord {
        PersistedRecord {
            channel,
            record: Record { key: key.into(), value: key.into(), origin: Origin { partition: 0, offset }, count: 0 },
            end: ChannelEnd::Input,
        }
    }

    /// Channel state of a job at parallelism 2 (no job shape: the parallelism is its handles').
    fn taken_at_two(channel_state: Vec<TaskChannelState>) -> CheckpointMetadata {
        CheckpointMetadata {
            job_id: "j".into(),
            checkpoint: 1,
            kind: Default::default(),
            format: None,
            completed_at_ms: 0,
            job: None,
            mode: crate::config::CheckpointMode::ExactlyOnce,
            offsets: Vec::new(),
            keyed: vec![StateHandle::Memory { bytes: Arc::default(), size: 0 }; 2],
            staged_output: Vec::new(),
            kafka_sink: None,
            channel_state,
        }
    }

    fn offsets(c: &TaskChannelState) -> Vec<u64> {
        c.records.iter().map(|r| r.record.origin.offset).collect()
    }

    /// Catches: channel state moved although the parallelism did not change (a record would
    /// be replayed into a subtask that does not own its key).
    #[test]
    fn channel_state_at_the_same_parallelism_stays_where_it_was() {
        let m = taken_at_two(vec![
            TaskChannelState { task: TaskId::Counter(1), records: vec![record("a", 1, 0), record("b", 2, 1)] },
            TaskChannelState { task: TaskId::Sink, records: vec![record("c", 3, 0)] },
        ]);
        assert_eq!(rescale_channel_state(&m, 2), m.channel_state);
    }

    /// Catches: a counter's in-flight records left at their old subtask after rescaling, or
    /// reordered, or kept on an input channel the new subtask does not have; a source's dropped
    /// when its index is gone; the sink's moved.
    #[test]
    fn rescaled_channel_state_goes_to_the_owners_of_its_key_groups_in_order() {
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let m = taken_at_two(vec![
            TaskChannelState { task: TaskId::Source(0), records: vec![record("s0", 100, 0)] },
            TaskChannelState { task: TaskId::Source(1), records: vec![record("s1", 101, 1)] },
            TaskChannelState { task: TaskId::Counter(0), records: keys[..4].iter().zip(0..).map(|(k, o)| record(k, o, 1)).collect() },
            TaskChannelState { task: TaskId::Counter(1), records: keys[4..].iter().zip(4..).map(|(k, o)| record(k, o, 1)).collect() },
            TaskChannelState { task: TaskId::Sink, records: vec![record("x", 200, 0)] },
        ]);
        let one = rescale_channel_state(&m, 1);
        let tasks: Vec<TaskId> = one.iter().map(|c| c.task).collect();
        assert_eq!(tasks, [TaskId::Source(0), TaskId::Sink, TaskId::Counter(0)]);
        assert_eq!(offsets(&one[0]), [100, 101], "both sources' output, source 0's first");
        assert_eq!(offsets(&one[1]), [200]);
        assert_eq!(offsets(&one[2]), (0..8).collect::<Vec<u64>>(), "every counter record, in order");
        assert!(one[2].records.iter().all(|r| r.channel == 0), "subtask 0 has one input channel per source: 0");

        let three = rescale_channel_state(&m, 3);
        for c in three.iter().filter(|c| matches!(c.task, TaskId::Counter(_))) {
            let TaskId::Counter(j) = c.task else { unreachable!() };
            for r in &c.records {
                assert_eq!(crate::keygroup::operator_index(crate::keygroup::key_group(&r.record.key), 3), j, "{} at counter {j}", r.record.key);
            }
            assert!(offsets(c).windows(2).all(|w| w[0] < w[1]), "in their order");
        }
        let counted: usize = three.iter().filter(|c| matches!(c.task, TaskId::Counter(_))).map(|c| c.records.len()).sum();
        assert_eq!(counted, keys.len(), "none lost");
    }
}
