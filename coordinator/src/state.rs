//! What both gRPC services share: the durable store, the worker registry and
//! the timing settings.

use crate::checkpoints::CheckpointCoordinator;
use crate::meta::{Command, JobRecord, MetaStore};
use crate::registry::WorkerRegistry;
use crate::subscribers::Subscribers;
use sluice_common::kafka_txn;
use sluice_common::spec::{Delivery, SinkSpec};
use sluice_common::store::CheckpointStore;
use sluice_common::{JobId, TaskId};
use sluice_proto::{JobState, JobStatus, SourcePartitionLag, TaskState, TaskStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
}

pub struct Coordinator<S> {
    pub store: S,
    pub workers: WorkerRegistry,
    pub timing: Timing,
    pub subscribers: Subscribers,
    pub checkpoints: CheckpointCoordinator,
    /// Where workers upload state snapshots; old ones are deleted from here.
    pub checkpoint_store: CheckpointStore,
    /// The jobs whose snapshots of abandoned checkpoints are being deleted.
    pub snapshot_sweeps: crate::snapshot_gc::Sweeps,
    /// How far each stopped job is behind its source partitions.
    pub stopped_lag: crate::stopped_lag::StoppedLag,
    /// Wakes the periodic placement of waiting jobs at once, so a submitted
    /// job does not wait for the next tick.
    pub placement: tokio::sync::Notify,
    /// The leader term what this member knows of workers, their command
    /// streams and checkpoints in flight belongs to, and when it began.
    term: Mutex<Option<(u64, Instant)>>,
}

pub type Shared<S> = Arc<Coordinator<S>>;

/// Events a job's status carries; `ListJobEvents` gives them all.
const RECENT_EVENTS: usize = 5;

impl<S: MetaStore> Coordinator<S> {
    pub fn new(store: S, timing: Timing, checkpoint_store: CheckpointStore) -> Shared<S> {
        Arc::new(Self {
            store,
            workers: WorkerRegistry::default(),
            timing,
            subscribers: Subscribers::default(),
            checkpoints: CheckpointCoordinator::default(),
            checkpoint_store,
            snapshot_sweeps: Default::default(),
            stopped_lag: Default::default(),
            placement: tokio::sync::Notify::new(),
            term: Mutex::new(None),
        })
    }

    /// Asks `workers` to heartbeat at once over their command streams, so
    /// tasks placed on them, or to be stopped there, do not wait for their
    /// next heartbeat. A worker without an open stream learns at its next
    /// heartbeat anyway.
    pub fn heartbeat_now<'a>(
        &self,
        workers: impl IntoIterator<Item = &'a sluice_common::WorkerId>,
    ) {
        let workers: std::collections::BTreeSet<_> = workers.into_iter().collect();
        for worker in workers {
            self.subscribers.send(
                worker,
                sluice_proto::WorkerCommand {
                    kind: Some(sluice_proto::worker_command::Kind::HeartbeatNow(
                        sluice_proto::HeartbeatNow {},
                    )),
                },
            );
        }
    }

    /// The workers running tasks of `job` now.
    pub fn workers_of(&self, job: &JobId) -> Vec<sluice_common::WorkerId> {
        self.store.read(|m| {
            m.jobs
                .get(job)
                .map(|j| j.tasks.iter().map(|t| t.worker.clone()).collect())
                .unwrap_or_default()
        })
    }

    /// Workers the scheduler places tasks on: alive, and heard from within
    /// two heartbeat intervals.
    pub fn placeable_workers(&self) -> Vec<crate::registry::WorkerEntry> {
        self.workers
            .placeable(self.timing.heartbeat_interval * 2 + Duration::from_millis(100))
    }

    /// Called by every periodic loop before it acts. When this member's
    /// leader term changed, what it knew of workers, their command streams
    /// and checkpoints in flight is dropped: workers register and subscribe
    /// again with whichever member leads, and a member that leads again
    /// starts as any new leader does. Returns when the current term began,
    /// while this member leads.
    pub fn enter_term(&self) -> Option<Instant> {
        let term = self.store.leader_term();
        let mut current = self.term.lock().unwrap_or_else(|p| p.into_inner());
        if current.map(|(t, _)| t) != term {
            if let Some((from, _)) = *current {
                tracing::warn!(from, to = ?term, "leader term changed: forgetting workers, their command streams and checkpoints in flight");
                self.workers.clear();
                self.subscribers.clear();
                self.checkpoints.clear();
            }
            *current = term.map(|t| (t, Instant::now()));
        }
        current.map(|(_, since)| since)
    }

    pub fn job_status(&self, job: &JobRecord) -> JobStatus {
        let tasks: Vec<TaskStatus> = job
            .tasks
            .iter()
            .map(|t| TaskStatus {
                task_id: t.id.to_string(),
                stage: t.stage,
                index: t.index,
                worker_id: t.worker.to_string(),
                state: t.state as i32,
                partitions: t.partitions.clone(),
                error: t.error.clone().unwrap_or_default(),
                metrics: self.workers.metrics(&t.id),
                fault: t.fault.map_or(sluice_proto::Fault::Unspecified, Into::into) as i32,
                causes: t.causes.clone(),
            })
            .collect();
        // Each partition once: a source subtask that just took over a
        // partition and the one that read it before may both report it.
        let live: Vec<SourcePartitionLag> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Running as i32)
            .flat_map(|t| t.metrics.iter().flat_map(|m| m.partition_lag.iter()))
            .map(|l| ((l.topic.clone(), l.partition), l.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect();
        let partition_lag = match job.state {
            JobState::Stopped => self.stopped_lag.of(&job.id),
            _ => live,
        };
        let last_checkpoint_age_ms = job
            .checkpoints
            .last()
            .map(|c| (crate::job_service::now_ms() - c.completed_at_ms).max(0) as u64);
        JobStatus {
            job_id: job.id.to_string(),
            name: job.spec.name.clone(),
            state: job.state as i32,
            parallelism: job.spec.parallelism,
            warnings: transaction_warnings(job, &tasks, last_checkpoint_age_ms),
            tasks,
            failure: job.failure.clone().unwrap_or_default(),
            submitted_at_ms: job.submitted_at_ms,
            spec_json: job.spec_json.clone(),
            attempt: job.attempt,
            restarts: job.restarts,
            last_failure: job.last_failure.clone().unwrap_or_default(),
            last_checkpoint_id: job.checkpoints.last().map_or(0, |c| c.id),
            last_checkpoint_age_ms: last_checkpoint_age_ms.unwrap_or(0),
            stopped_with_savepoint: job.stopped_with.clone().unwrap_or_default(),
            from_savepoint: job.from_savepoint.clone().unwrap_or_default(),
            recent_events: job.events[job.events.len().saturating_sub(RECENT_EVENTS)..]
                .iter()
                .map(|e| e.to_proto())
                .collect(),
            offsets_skipped: job.offsets_skipped,
            partition_lag,
        }
    }

    pub async fn set_task_state(
        &self,
        job: &JobId,
        task: &TaskId,
        state: TaskState,
        error: Option<String>,
        fault: Option<sluice_common::Fault>,
        causes: Vec<String>,
    ) {
        let job_state = |m: &crate::meta::ClusterMeta| m.jobs.get(job).map(|j| j.state);
        let changed = self.store.read(|m| {
            m.jobs
                .get(job)
                .and_then(|j| j.tasks.iter().find(|t| &t.id == task))
                .is_some_and(|t| t.state != state && !t.state.is_terminal())
        });
        if !changed {
            return;
        }
        tracing::info!(job = %job, task = %task, state = state.name(), error = error.as_deref().unwrap_or(""), "task state");
        let before = self.store.read(job_state);
        let workers = self.workers_of(job);
        let recorded = self
            .store
            .apply(Command::SetTaskState {
                job: job.clone(),
                task: task.clone(),
                state,
                error,
                fault,
                causes,
                at_ms: crate::job_service::now_ms(),
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(job = %job, task = %task, error = %e, "task state not recorded");
            return;
        }
        let (after, failure) = self
            .store
            .read(|m| m.jobs.get(job).map(|j| (j.state, j.failure.clone())))
            .unwrap_or((JobState::Unspecified, None));
        if before != Some(after) {
            tracing::info!(job = %job, state = after.name(), failure = failure.as_deref().unwrap_or(""), "job state");
            // A restart or the job's end stops its other tasks: their
            // workers hear it now rather than at their next heartbeat.
            self.heartbeat_now(&workers);
        }
    }
}

/// One warning per sink subtask of a running exactly-once Kafka job whose
/// open transaction has held records for over half its
/// `transaction.timeout.ms`: checkpoints stall, and the broker aborts the
/// transaction at the timeout.
fn transaction_warnings(
    job: &JobRecord,
    tasks: &[TaskStatus],
    last_checkpoint_age_ms: Option<u64>,
) -> Vec<String> {
    let SinkSpec::Kafka(sink) = &job.spec.sink else {
        return Vec::new();
    };
    if job.spec.delivery != Delivery::ExactlyOnce || !job.wants_tasks_running() {
        return Vec::new();
    }
    let timeout_ms = kafka_txn::transaction_timeout_ms(&sink.properties)
        .unwrap_or(kafka_txn::DEFAULT_TRANSACTION_TIMEOUT_MS);
    tasks
        .iter()
        .filter_map(|t| {
            let age_ms = t.metrics.as_ref()?.open_transaction_age_ms;
            transaction_warning(t.index, age_ms, timeout_ms, last_checkpoint_age_ms)
        })
        .collect()
}

fn transaction_warning(
    index: u32,
    age_ms: u64,
    timeout_ms: u64,
    last_checkpoint_age_ms: Option<u64>,
) -> Option<String> {
    if age_ms <= timeout_ms / 2 {
        return None;
    }
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let last = last_checkpoint_age_ms.map_or_else(
        || "none completed yet".to_string(),
        |ms| format!("the last completed {:.1}s ago", seconds(ms)),
    );
    Some(format!(
        "sink subtask {index}: its Kafka transaction has held records for {:.1}s, over half its \
         transaction.timeout.ms ({:.1}s), while checkpoints stall ({last}); the broker aborts it at \
         the timeout, and if its checkpoint completes after that, its records are lost",
        seconds(age_ms),
        seconds(timeout_ms),
    ))
}

#[cfg(test)]
mod tests {
    use super::transaction_warning;

    #[test]
    fn warns_past_half_the_transaction_timeout() {
        assert_eq!(transaction_warning(0, 0, 10_000, Some(100)), None);
        assert_eq!(transaction_warning(0, 5_000, 10_000, Some(100)), None);
        let warning = transaction_warning(1, 6_200, 10_000, Some(7_000)).expect("a warning");
        assert!(
            warning.starts_with("sink subtask 1: its Kafka transaction has held records for 6.2s"),
            "{warning}"
        );
        assert!(
            warning.contains("transaction.timeout.ms (10.0s)"),
            "{warning}"
        );
        assert!(warning.contains("the last completed 7.0s ago"), "{warning}");
        let first = transaction_warning(0, 9_000, 10_000, None).expect("a warning");
        assert!(first.contains("none completed yet"), "{first}");
    }
}
