//! The sink subtask (parallelism 1). `print` writes each line at once, as the seed's `.print()`:
//! after a recovery, replayed records print again even under exactly-once (state is exactly-once,
//! output is not). `transactional` stages lines per checkpoint and makes them visible when the
//! checkpoint completes (two-phase commit). `discard` drops them (benchmarks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::aligner::{Aligner, GateOutput};
use super::channel::{ChannelStats, Input};
use super::element::{Record, StreamMessage};
use super::task::{OutputLine, SinkControl, SnapshotStats, TaskContext, TaskReport, TaskState, OUTPUT_KEEP};
use crate::config::SinkKind;
use crate::events::Event;
use crate::state::storage::StagedLine;

pub struct SinkTask {
    pub ctx: TaskContext,
    pub kind: SinkKind,
    pub input: mpsc::Receiver<Input>,
    pub channels: Vec<Arc<ChannelStats>>,
    pub control: mpsc::UnboundedReceiver<SinkControl>,
    /// Lines of a restored checkpoint whose commit may not have happened (transactional).
    pub recommit: Option<(u64, Vec<StagedLine>)>,
    /// The last checkpoint whose lines were committed (outlives attempts, so a commit is never repeated).
    pub committed: Arc<AtomicU64>,
}

impl SinkTask {
    pub async fn run(mut self) {
        let ctx = self.ctx.clone();
        ctx.report(TaskReport::Running { attempt: ctx.attempt, task: ctx.task });
        let mut gate = Aligner::new(self.channels.clone());
        let mut outq = Vec::new();
        let mut pending: Vec<StagedLine> = Vec::new();
        let mut staged: BTreeMap<u64, Vec<StagedLine>> = BTreeMap::new();
        if let Some((id, lines)) = self.recommit.take() {
            self.commit(id, lines);
        }
        loop {
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(SinkControl::NotifyCheckpointComplete(id)) => {
                        let rest = staged.split_off(&(id + 1));
                        for (cid, lines) in std::mem::replace(&mut staged, rest) {
                            self.commit(cid, lines);
                        }
                    }
                    None => return,
                },
                msg = self.input.recv() => {
                    let Some((ch, elements)) = msg else { return std::future::pending().await };
                    self.channels[ch].taken(&elements);
                    let records = elements.iter().filter(|e| matches!(e, StreamMessage::Record(_))).count();
                    ctx.progress.sink_received.fetch_add(records as u64, Ordering::Relaxed);
                    for e in elements {
                        // Fast path: a record on an open channel needs nothing from the aligner.
                        let e = match e {
                            StreamMessage::Record(r) if !gate.is_blocked(ch) => {
                                self.receive(r, &mut pending);
                                continue;
                            }
                            other => other,
                        };
                        gate.push(ch, e, &mut outq);
                        for o in outq.drain(..) {
                        match o {
                            GateOutput::Record(r) => self.receive(r, &mut pending),
                            GateOutput::Checkpoint { barrier, alignment, buffered } => {
                                let id = barrier.checkpoint;
                                let lines = std::mem::take(&mut pending);
                                if self.kind == SinkKind::Transactional {
                                    staged.insert(id, lines.clone());
                                }
                                ctx.report(TaskReport::Ack {
                                    attempt: ctx.attempt,
                                    checkpoint: id,
                                    task: ctx.task,
                                    state: TaskState::Sink { staged: lines },
                                    stats: SnapshotStats { alignment_ms: alignment.as_millis() as u64, buffered, ..SnapshotStats::default() },
                                });
                            }
                            GateOutput::BarrierReceived { checkpoint, channel } => {
                                if ctx.events.active() {
                                    ctx.events.publish(Event::BarrierReceived { checkpoint, task: ctx.name(), channel: self.channels[channel].name() });
                                }
                            }
                            GateOutput::AlignmentStarted { checkpoint } => {
                                ctx.events.publish(Event::AlignmentStarted { checkpoint, task: ctx.name() });
                            }
                        }
                        }
                    }
                }
            }
        }
    }

    fn receive(&self, r: Record, pending: &mut Vec<StagedLine>) {
        match self.kind {
            SinkKind::Print => self.emit(&StagedLine { value: r.value.to_string(), count: r.count, origin: r.origin }),
            SinkKind::Transactional => pending.push(StagedLine { value: r.value.to_string(), count: r.count, origin: r.origin }),
            SinkKind::Discard => {}
        }
    }

    fn commit(&self, checkpoint: u64, lines: Vec<StagedLine>) {
        if self.committed.fetch_max(checkpoint, Ordering::AcqRel) >= checkpoint {
            return;
        }
        for line in &lines {
            self.emit(line);
        }
        self.ctx.events.publish(Event::TransactionCommitted { checkpoint, lines: lines.len() });
    }

    /// Makes a line visible, as the seed prints it: `2017-03-17T08:21:51.249: (a,1)`.
    fn emit(&self, line: &StagedLine) {
        let ctx = &self.ctx;
        let repeat = ctx.auditor.emitted(line.origin);
        let text = format!("{}: ({},{})", chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f"), line.value, line.count);
        ctx.events.publish(Event::SinkEmitted { line: text.clone(), repeat, partition: line.origin.partition, offset: line.origin.offset });
        let mut out = ctx.output.lock().unwrap_or_else(|e| e.into_inner());
        if out.len() >= OUTPUT_KEEP {
            out.pop_front();
        }
        out.push_back(OutputLine { text, repeat, partition: line.origin.partition, offset: line.origin.offset });
    }
}
