//! The subtasks this worker runs, their state and how to stop them.

use super::subtask::{AckParts, Acker, TaskCommand};
use super::{Metrics, RuntimeContext, run_subtask};
use crate::connectors::kafka::TransactionCalls;
use crate::error::WorkerError;
use futures::FutureExt;
use sluice_common::TaskId;
use sluice_common::kafka_txn::transactional_ids;
use sluice_proto::{CheckpointAck, Fault, TaskDeployment, TaskReport, TaskState};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long an ended task stays in heartbeats, so its end is seen even if the
/// immediate report was lost.
const KEEP_ENDED: Duration = Duration::from_secs(60);

struct Entry {
    /// The registration the task was deployed under.
    session: u64,
    job_id: String,
    attempt: u32,
    stage: u32,
    status: Arc<Mutex<Status>>,
    metrics: Arc<Metrics>,
    cancel: Option<oneshot::Sender<()>>,
    commands: mpsc::UnboundedSender<TaskCommand>,
    /// The Kafka partitions a source task reads, as it was last told.
    partitions: Vec<i32>,
}

/// The text a panic was raised with (`panic!("...")` gives a `&str` or a
/// `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// What tasks tell the coordinator without waiting for a heartbeat.
#[derive(Debug)]
pub enum Outbound {
    Report(TaskReport),
    Ack(CheckpointAck),
}

#[derive(Clone)]
struct Status {
    state: TaskState,
    error: String,
    causes: Vec<String>,
    fault: Fault,
    ended_at: Option<Instant>,
}

pub struct TaskManager {
    tasks: Mutex<HashMap<TaskId, Entry>>,
    /// Bumped at each registration: tasks of an older one are not reported.
    session: std::sync::atomic::AtomicU64,
    ctx: Arc<RuntimeContext>,
    /// State changes and checkpoint acks, for the coordinator at once.
    outbound: mpsc::UnboundedSender<Outbound>,
}

impl TaskManager {
    pub fn new(ctx: Arc<RuntimeContext>, outbound: mpsc::UnboundedSender<Outbound>) -> Arc<Self> {
        Arc::new(Self {
            tasks: Mutex::new(HashMap::new()),
            session: std::sync::atomic::AtomicU64::new(0),
            ctx,
            outbound,
        })
    }

    /// Hands a checkpoint command to the subtasks of the job's attempt it
    /// concerns: triggers go to sources, completions to every subtask.
    pub fn command(&self, job_id: &str, attempt: u32, command: TaskCommand) {
        for entry in self.lock().values() {
            let concerned = entry.job_id == job_id
                && entry.attempt == attempt
                && (entry.stage == 0 || !matches!(command, TaskCommand::Trigger { .. }));
            if concerned {
                let _ = entry.commands.send(command.clone());
            }
        }
    }

    /// Tells a source task which partitions it reads now, when that changed.
    pub fn assign_partitions(&self, task: &TaskId, partitions: Vec<i32>) {
        let mut tasks = self.lock();
        let Some(entry) = tasks.get_mut(task) else {
            return;
        };
        if entry.stage == 0 && entry.partitions != partitions {
            tracing::info!(task = %task, partitions = ?partitions, "source partitions changed");
            entry.partitions = partitions.clone();
            let _ = entry.commands.send(TaskCommand::Partitions(partitions));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Entry>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a subtask unless it already runs here.
    pub fn deploy(&self, dep: TaskDeployment) {
        let id = TaskId::new(dep.task_id.clone());
        let mut tasks = self.lock();
        let session = self.session.load(std::sync::atomic::Ordering::Relaxed);
        if tasks.get(&id).is_some_and(|e| e.session == session) {
            return;
        }
        let status = Arc::new(Mutex::new(Status {
            state: TaskState::Deploying,
            error: String::new(),
            causes: Vec::new(),
            fault: Fault::Unspecified,
            ended_at: None,
        }));
        let metrics = Arc::new(Metrics::default());
        let (cancel_tx, cancel_rx) = oneshot::channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        tasks.insert(
            id.clone(),
            Entry {
                session: self.session.load(std::sync::atomic::Ordering::Relaxed),
                job_id: dep.job_id.clone(),
                attempt: dep.attempt,
                stage: dep.stage,
                status: status.clone(),
                metrics: metrics.clone(),
                cancel: Some(cancel_tx),
                commands: commands_tx,
                partitions: dep.partitions.clone(),
            },
        );
        drop(tasks);
        tracing::info!(task = %id, stage = dep.stage, index = dep.index, "deploying subtask");
        // The transactional ids an exactly-once Kafka sink of this subtask
        // would use: its end is reported once no call on them is under way.
        let transactional_ids = transactional_ids(&dep.job_uid, dep.stage, dep.index).to_vec();
        let ctx = self.ctx.clone();
        let changes = self.outbound.clone();
        let job_id = dep.job_id.clone();
        let panicked_task = id.clone();
        let ack: Acker = {
            let outbound = self.outbound.clone();
            let (job_id, task_id, attempt) = (dep.job_id.clone(), id.to_string(), dep.attempt);
            Arc::new(move |parts: AckParts| {
                let declined = !parts.declined.is_empty();
                let _ = outbound.send(Outbound::Ack(CheckpointAck {
                    worker_id: String::new(),
                    job_id: job_id.clone(),
                    attempt,
                    task_id: task_id.clone(),
                    checkpoint_id: parts.checkpoint,
                    source_offsets: parts.source_offsets.into_iter().collect(),
                    sink_state: parts.sink_state,
                    state: parts.state,
                    state_bytes: parts.state_bytes,
                    alignment_us: u64::try_from(parts.alignment.as_micros()).unwrap_or(u64::MAX),
                    declined: parts.declined,
                }));
                if !declined {
                    fail::fail_point!("after-checkpoint-ack", |_| {
                        std::process::abort();
                    });
                }
            })
        };
        let report = move |state: TaskState,
                           error: String,
                           causes: Vec<String>,
                           unreachable_peer: String,
                           fault: Fault,
                           metrics: &Metrics| {
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
            s.state = state;
            s.error = error.clone();
            s.causes = causes.clone();
            s.fault = fault;
            if state.is_terminal() {
                s.ended_at = Some(Instant::now());
            }
            let _ = changes.send(Outbound::Report(TaskReport {
                worker_id: String::new(),
                task_id: id.to_string(),
                state: state as i32,
                error,
                metrics: Some(metrics.snapshot()),
                job_id: job_id.clone(),
                unreachable_peer,
                fault: fault as i32,
                offset_resets: metrics.offset_resets(),
                causes,
            }));
        };
        tokio::spawn(async move {
            let running = {
                let report = report.clone();
                let metrics = metrics.clone();
                move || {
                    report(
                        TaskState::Running,
                        String::new(),
                        Vec::new(),
                        String::new(),
                        Fault::Unspecified,
                        &metrics,
                    )
                }
            };
            // A panic ends the subtask like an error, so the coordinator
            // hears of it and restarts the job instead of waiting on a task
            // that no longer runs.
            let run = AssertUnwindSafe(run_subtask(
                dep,
                ctx,
                metrics.clone(),
                running,
                commands_rx,
                ack,
            ))
            .catch_unwind();
            let outcome = tokio::select! {
                r = run => match r {
                    Ok(r) => r.map(|()| TaskState::Finished),
                    Err(panic) => Err(WorkerError::Panicked {
                        task: panicked_task.clone(),
                        message: panic_message(panic.as_ref()),
                    }),
                },
                _ = cancel_rx => Ok(TaskState::Cancelled),
            };
            // The coordinator places the job's next attempt once this one's
            // tasks ended: a session this subtask was still opening must not
            // reach the broker after that attempt's (see TransactionCalls).
            TransactionCalls::settled(&transactional_ids).await;
            match outcome {
                Ok(state) => report(
                    state,
                    String::new(),
                    Vec::new(),
                    String::new(),
                    Fault::Unspecified,
                    &metrics,
                ),
                Err(e) => {
                    let fault = e.fault();
                    tracing::error!(error = %e, fault = fault.as_str(), "subtask failed");
                    let peer = e.unreachable_peer().unwrap_or_default().to_string();
                    report(
                        TaskState::Failed,
                        e.to_string(),
                        e.causes(),
                        peer,
                        fault.into(),
                        &metrics,
                    );
                }
            }
        });
    }

    /// A new registration: what ran under the old one is the old worker's.
    pub fn new_session(&self) {
        self.session
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn cancel(&self, task: &TaskId) {
        let cancel = self.lock().get_mut(task).and_then(|e| e.cancel.take());
        if let Some(cancel) = cancel {
            tracing::info!(task = %task, "cancelling subtask");
            let _ = cancel.send(());
        }
    }

    pub fn cancel_all(&self) {
        let ids: Vec<TaskId> = self.lock().keys().cloned().collect();
        for id in ids {
            self.cancel(&id);
        }
    }

    /// The metrics of every subtask of the current registration not ended.
    pub fn running_metrics(&self) -> Vec<Arc<Metrics>> {
        let session = self.session.load(std::sync::atomic::Ordering::Relaxed);
        self.lock()
            .values()
            .filter(|e| e.session == session)
            .filter(|e| {
                let s = e.status.lock().unwrap_or_else(|p| p.into_inner());
                s.ended_at.is_none()
            })
            .map(|e| e.metrics.clone())
            .collect()
    }

    /// Every task for a heartbeat; ended tasks are dropped after a while.
    pub fn reports(&self, worker_id: &str) -> Vec<TaskReport> {
        let mut tasks = self.lock();
        tasks.retain(|_, e| {
            let s = e.status.lock().unwrap_or_else(|p| p.into_inner());
            s.ended_at.is_none_or(|t| t.elapsed() < KEEP_ENDED)
        });
        let session = self.session.load(std::sync::atomic::Ordering::Relaxed);
        tasks
            .iter()
            .filter(|(_, e)| e.session == session)
            .map(|(id, e)| {
                let s = e.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
                TaskReport {
                    worker_id: worker_id.to_string(),
                    task_id: id.to_string(),
                    state: s.state as i32,
                    error: s.error,
                    metrics: Some(e.metrics.snapshot()),
                    job_id: e.job_id.clone(),
                    unreachable_peer: String::new(),
                    fault: s.fault as i32,
                    offset_resets: e.metrics.offset_resets(),
                    causes: s.causes,
                }
            })
            .collect()
    }
}
