//! The coordinator's durable state: jobs, their tasks and assignments. Every
//! change is a [`Command`] applied through a [`MetaStore`], so the store can
//! become a replicated log without the services changing.

pub use events::{EventKind, JobEvent};

use serde::{Deserialize, Serialize};
use sluice_common::spec::SourceSpec;
use sluice_common::{Fault, JobId, JobSpec, TaskId, WorkerId};
use sluice_proto::{JobState, StateHandle, TaskState};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub stage: u32,
    pub index: u32,
    pub worker: WorkerId,
    pub partitions: Vec<i32>,
    #[serde(with = "codec::task_state")]
    pub state: TaskState,
    pub error: Option<String>,
    /// Whose fault `error` is; a spec fault fails the job without restarts.
    #[serde(default)]
    pub fault: Option<Fault>,
    /// The chain of errors under `error`, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// The highest `seq` of the task's offset resets recorded as events.
    #[serde(default)]
    pub resets_recorded: u64,
}

/// Where a subtask's keyed state snapshot lies in the checkpoint store, and
/// the key groups it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRef {
    /// The full snapshot.
    pub key: String,
    pub first_group: u32,
    pub last_group: u32,
    /// The deltas after it, in order: the subtask's state is the full
    /// snapshot with each delta applied.
    #[serde(default)]
    pub deltas: Vec<String>,
}

impl From<StateHandle> for StateRef {
    fn from(h: StateHandle) -> Self {
        Self {
            key: h.key,
            first_group: h.first_group,
            last_group: h.last_group,
            deltas: h.deltas,
        }
    }
}

impl From<&StateRef> for StateHandle {
    fn from(r: &StateRef) -> Self {
        Self {
            key: r.key.clone(),
            first_group: r.first_group,
            last_group: r.last_group,
            deltas: r.deltas.clone(),
        }
    }
}

/// A checkpoint every subtask of the job acknowledged: what recovery restores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletedCheckpoint {
    pub id: u64,
    pub attempt: u32,
    pub completed_at_ms: i64,
    pub duration_ms: u64,
    /// Next offset of each source partition.
    pub source_offsets: BTreeMap<i32, i64>,
    /// What each sink subtask (by index) needs to finish its commit.
    pub sink_states: BTreeMap<u32, String>,
    /// Keyed state snapshots in the checkpoint store, by stage.
    pub state_handles: BTreeMap<u32, Vec<StateRef>>,
    /// Bytes of keyed state the subtasks uploaded for it (full snapshots or
    /// deltas); 0 for a job without keyed state.
    #[serde(default)]
    pub size_bytes: u64,
    /// The longest barrier alignment of a subtask in it, in microseconds
    /// (from the first to the last of its inputs delivering the barrier).
    #[serde(default)]
    pub alignment_us: u64,
}

impl CompletedCheckpoint {
    /// Every object of the checkpoint store this checkpoint refers to.
    pub fn state_keys(&self) -> impl Iterator<Item = &str> {
        self.state_handles.values().flatten().flat_map(|h| {
            std::iter::once(h.key.as_str()).chain(h.deltas.iter().map(String::as_str))
        })
    }
}

/// A checkpoint kept until deleted, to start a job from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Savepoint {
    pub id: String,
    pub job: JobId,
    pub job_name: String,
    /// The source topic its offsets belong to.
    pub topic: String,
    pub parallelism: u32,
    /// Its sinks committed before the savepoint was recorded as resumable
    /// (a stop), or commit with the job's next checkpoint as usual.
    pub checkpoint: CompletedCheckpoint,
}

/// Marks a completed checkpoint as a savepoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavepointMark {
    pub id: String,
    /// A stop with a savepoint: the job ends once its tasks finished.
    pub stop: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: JobId,
    /// Unique across clusters and restarts; names transactional ids and the like.
    pub uid: String,
    #[serde(with = "codec::spec")]
    pub spec: JobSpec,
    pub spec_json: String,
    /// Partition count of the source topic: read at submission, raised when
    /// partition discovery finds partitions added while the job runs.
    pub source_partitions: i32,
    #[serde(with = "codec::job_state")]
    pub state: JobState,
    pub failure: Option<String>,
    pub submitted_at_ms: i64,
    pub attempt: u32,
    pub tasks: Vec<TaskRecord>,
    pub restarts: u32,
    pub last_failure: Option<String>,
    /// A restarting job is not placed before this time.
    pub not_before_ms: i64,
    /// The latest completed checkpoints, oldest first.
    pub checkpoints: Vec<CompletedCheckpoint>,
    /// Set when its stop savepoint completed; the job is stopped once its
    /// tasks finished.
    pub stopped_with: Option<String>,
    /// The savepoint the job started from, or was last rescaled from.
    pub from_savepoint: Option<String>,
    /// Checkpoint ids up to this one may have been handed out by a leader:
    /// a new leader abandons them all and goes on past it, so no id is used
    /// twice and no sink waits on a checkpoint nobody tracks any more.
    #[serde(default)]
    pub checkpoint_ids_reserved: u64,
    /// Where sources start while the job has no checkpoint: `start_from:
    /// latest` resolved once, at submission, so a restart before the first
    /// checkpoint does not skip what arrived since. Empty for `earliest`.
    #[serde(default)]
    pub start_offsets: BTreeMap<i32, i64>,
    /// Set once this ended job's Kafka transactions were settled (see
    /// `crate::transactions`): none of them is left open.
    #[serde(default)]
    pub transactions_settled: bool,
    /// What happened to the job lately, oldest first (the last [`events::MAX_EVENTS`]).
    #[serde(default)]
    pub events: Vec<JobEvent>,
    /// Source offsets the job went past unread since it was submitted.
    #[serde(default)]
    pub offsets_skipped: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ClusterMeta {
    pub jobs: BTreeMap<JobId, JobRecord>,
    pub savepoints: BTreeMap<String, Savepoint>,
    pub next_job: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    SubmitJob {
        uid: String,
        #[serde(with = "codec::boxed_spec")]
        spec: Box<JobSpec>,
        source_partitions: i32,
        submitted_at_ms: i64,
        /// Starts from this savepoint's offsets and keyed state.
        from_savepoint: Option<String>,
        /// Where sources start until a checkpoint exists (see [`JobRecord`]).
        #[serde(default)]
        start_offsets: BTreeMap<i32, i64>,
    },
    AssignTasks {
        job: JobId,
        tasks: Vec<TaskRecord>,
    },
    SetTaskState {
        job: JobId,
        task: TaskId,
        #[serde(with = "codec::task_state")]
        state: TaskState,
        error: Option<String>,
        /// Whose fault `error` is, when the worker said.
        #[serde(default)]
        fault: Option<Fault>,
        /// The chain of errors under `error`, outermost first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        causes: Vec<String>,
        /// When the leader saw it; dates a restart's backoff.
        at_ms: i64,
    },
    CheckpointCompleted {
        job: JobId,
        checkpoint: CompletedCheckpoint,
        savepoint: Option<SavepointMark>,
    },
    /// Restarts a stopped job from its stop savepoint at a new parallelism.
    Rescale {
        job: JobId,
        parallelism: u32,
    },
    /// A job waiting for task slots, none of its tasks placed, takes a new
    /// parallelism; it starts from what it would have started from.
    ResizeWaiting {
        job: JobId,
        parallelism: u32,
    },
    SetJobState {
        job: JobId,
        #[serde(with = "codec::job_state")]
        state: JobState,
        failure: Option<String>,
    },
    /// The leader may hand out checkpoint ids up to `up_to`.
    ReserveCheckpointIds {
        job: JobId,
        up_to: u64,
    },
    /// The Kafka transactions of an ended job are settled: a new leader
    /// need not settle them again.
    TransactionsSettled {
        job: JobId,
    },
    /// The source topic has `partitions` partitions now, more than the job
    /// knew: its source tasks read the new ones too (`p mod parallelism`).
    AddPartitions {
        job: JobId,
        partitions: i32,
        at_ms: i64,
    },
    /// Offset resets a source task reported, each with its `seq`; those
    /// already recorded are ignored.
    RecordOffsetResets {
        job: JobId,
        task: TaskId,
        resets: Vec<(u64, JobEvent)>,
    },
    /// Forgets a savepoint; its snapshots are deleted from the checkpoint
    /// store unless a checkpoint or another savepoint holds them.
    DeleteSavepoint {
        id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    JobCreated(JobId),
    Done,
    /// The command named a job or task that does not exist; nothing changed.
    NotFound,
    /// The command concerned an attempt the job has moved past; nothing changed.
    Stale,
}

/// Where the coordinator keeps its durable state.
pub trait MetaStore: Send + Sync + 'static {
    /// Records `cmd` durably and applies it; fails on a member that is not
    /// the leader.
    fn apply(
        &self,
        cmd: Command,
    ) -> impl std::future::Future<Output = Result<Applied, crate::error::CoordinatorError>> + Send;
    fn read<R>(&self, f: impl FnOnce(&ClusterMeta) -> R) -> R;
    /// `Ok` on a leader that may act: one a quorum acknowledged lately, whose
    /// state machine holds everything committed before its term; otherwise
    /// the error names the leader, if known.
    fn check_leader(&self) -> Result<(), crate::error::CoordinatorError>;
    /// This member's term while it is the leader, ready to act or not: what
    /// it knew of workers and checkpoints belongs to the term it learnt it in.
    fn leader_term(&self) -> Option<u64>;
}

impl ClusterMeta {
    /// Deterministic: the same commands in the same order give the same state.
    pub fn apply(&mut self, cmd: Command) -> Applied {
        match cmd {
            Command::SubmitJob {
                uid,
                spec,
                source_partitions,
                submitted_at_ms,
                from_savepoint,
                start_offsets,
            } => {
                let start = match &from_savepoint {
                    Some(id) => match self.savepoints.get(id) {
                        Some(sp) => vec![sp.resumable()],
                        None => return Applied::NotFound,
                    },
                    None => Vec::new(),
                };
                self.next_job += 1;
                let id = JobId::from_seq(self.next_job);
                let spec_json = spec.to_json();
                self.jobs.insert(
                    id.clone(),
                    JobRecord {
                        id: id.clone(),
                        uid,
                        spec: *spec,
                        spec_json,
                        source_partitions,
                        state: JobState::Scheduling,
                        failure: None,
                        submitted_at_ms,
                        attempt: 0,
                        tasks: Vec::new(),
                        restarts: 0,
                        last_failure: None,
                        not_before_ms: 0,
                        checkpoints: start,
                        stopped_with: None,
                        from_savepoint,
                        checkpoint_ids_reserved: 0,
                        start_offsets,
                        transactions_settled: false,
                        events: Vec::new(),
                        offsets_skipped: 0,
                    },
                );
                Applied::JobCreated(id)
            }
            Command::AssignTasks { job, tasks } => match self.jobs.get_mut(&job) {
                // A job cancelled while it was being placed takes no tasks.
                Some(j) if j.state == JobState::Scheduling && j.tasks.is_empty() => {
                    j.tasks = tasks;
                    Applied::Done
                }
                Some(_) => Applied::Done,
                None => Applied::NotFound,
            },
            Command::SetTaskState {
                job,
                task,
                state,
                error,
                fault,
                causes,
                at_ms,
            } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return Applied::NotFound;
                };
                let Some(t) = j.tasks.iter_mut().find(|t| t.id == task) else {
                    return Applied::NotFound;
                };
                t.state = state;
                if error.is_some() {
                    t.error = error;
                    t.fault = fault;
                    t.causes = causes;
                }
                j.derive_state(at_ms);
                Applied::Done
            }
            Command::CheckpointCompleted {
                job,
                checkpoint,
                savepoint,
            } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return Applied::NotFound;
                };
                let newer = j.checkpoints.last().is_none_or(|c| c.id < checkpoint.id);
                let current = checkpoint.attempt == j.attempt && j.state == JobState::Running;
                if !(current && newer) {
                    return Applied::Stale;
                }
                if let Some(mark) = savepoint {
                    let SourceSpec::Kafka(source) = &j.spec.source;
                    self.savepoints.insert(
                        mark.id.clone(),
                        Savepoint {
                            id: mark.id.clone(),
                            job: job.clone(),
                            job_name: j.spec.name.clone(),
                            topic: source.topic.clone(),
                            parallelism: j.spec.parallelism,
                            checkpoint: checkpoint.clone(),
                        },
                    );
                    if mark.stop {
                        j.stopped_with = Some(mark.id);
                    }
                }
                j.checkpoints.push(checkpoint);
                let keep = j.spec.checkpoint.retained.max(1) as usize;
                let drop = j.checkpoints.len().saturating_sub(keep);
                j.checkpoints.drain(..drop);
                Applied::Done
            }
            Command::Rescale { job, parallelism } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return Applied::NotFound;
                };
                let savepoint = j
                    .stopped_with
                    .as_ref()
                    .filter(|_| j.state == JobState::Stopped)
                    .and_then(|id| self.savepoints.get(id));
                let Some(savepoint) = savepoint else {
                    return Applied::Stale;
                };
                j.spec.parallelism = parallelism;
                j.spec_json = j.spec.to_json();
                j.checkpoints = vec![savepoint.resumable()];
                j.from_savepoint = j.stopped_with.take();
                j.attempt += 1;
                j.tasks.clear();
                j.failure = None;
                j.state = JobState::Scheduling;
                Applied::Done
            }
            Command::ResizeWaiting { job, parallelism } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return Applied::NotFound;
                };
                if !j.waits_for_slots() {
                    return Applied::Stale;
                }
                j.spec.parallelism = parallelism;
                j.spec_json = j.spec.to_json();
                Applied::Done
            }
            Command::SetJobState {
                job,
                state,
                failure,
            } => match self.jobs.get_mut(&job) {
                Some(j) => {
                    j.state = state;
                    if failure.is_some() {
                        j.failure = failure;
                    }
                    if state == JobState::Cancelling {
                        // Tasks no worker reported running will never be
                        // deployed now: nothing is left to stop.
                        for t in j.tasks.iter_mut().filter(|t| !t.state.is_terminal()) {
                            if t.state != TaskState::Running {
                                t.state = TaskState::Cancelled;
                            }
                        }
                    }
                    j.derive_state(0);
                    Applied::Done
                }
                None => Applied::NotFound,
            },
            Command::ReserveCheckpointIds { job, up_to } => match self.jobs.get_mut(&job) {
                Some(j) => {
                    j.checkpoint_ids_reserved = j.checkpoint_ids_reserved.max(up_to);
                    Applied::Done
                }
                None => Applied::NotFound,
            },
            Command::TransactionsSettled { job } => match self.jobs.get_mut(&job) {
                Some(j) if j.ended_with_transactions() => {
                    j.transactions_settled = true;
                    Applied::Done
                }
                Some(_) => Applied::Stale,
                None => Applied::NotFound,
            },
            Command::AddPartitions {
                job,
                partitions,
                at_ms,
            } => match self.jobs.get_mut(&job) {
                Some(j) if partitions > j.source_partitions && j.wants_tasks_running() => {
                    j.add_partitions(partitions, at_ms);
                    Applied::Done
                }
                Some(_) => Applied::Stale,
                None => Applied::NotFound,
            },
            Command::RecordOffsetResets { job, task, resets } => {
                let Some(j) = self.jobs.get_mut(&job) else {
                    return Applied::NotFound;
                };
                let Some(t) = j.tasks.iter_mut().find(|t| t.id == task) else {
                    return Applied::NotFound;
                };
                let recorded = t.resets_recorded;
                t.resets_recorded = resets.iter().map(|(seq, _)| *seq).fold(recorded, u64::max);
                for (_, event) in resets.into_iter().filter(|(seq, _)| *seq > recorded) {
                    // A restart from a checkpoint taken before a skip finds
                    // the same gap again: the same records, counted once.
                    if j.events.iter().any(|e| e.kind.repeats(&event.kind)) {
                        continue;
                    }
                    j.offsets_skipped += event.kind.offsets_skipped();
                    j.events.push(event);
                }
                j.trim_events();
                Applied::Done
            }
            Command::DeleteSavepoint { id } => match self.savepoints.remove(&id) {
                Some(_) => Applied::Done,
                None => Applied::NotFound,
            },
        }
    }

    /// Every object of the checkpoint store a savepoint or a retained
    /// checkpoint of a job that may run again refers to: what must not be
    /// deleted. Jobs started from a savepoint build their snapshot chains on
    /// its objects. An ended job's checkpoints are never restored (a stopped
    /// job resumes from its savepoint), so they keep nothing.
    pub fn referenced_state_keys(&self) -> std::collections::BTreeSet<String> {
        let live = self.jobs.values().filter(|j| !j.state.is_terminal());
        self.savepoints
            .values()
            .map(|s| &s.checkpoint)
            .chain(live.flat_map(|j| &j.checkpoints))
            .flat_map(|c| c.state_keys().map(str::to_string))
            .collect()
    }
}

impl Savepoint {
    /// The checkpoint a job starts from: offsets and keyed state. Its sinks'
    /// transactions are not resumed: a stop commits them before the job
    /// ends, and a savepoint taken while the job ran commits with it.
    pub fn resumable(&self) -> CompletedCheckpoint {
        CompletedCheckpoint {
            sink_states: BTreeMap::new(),
            ..self.checkpoint.clone()
        }
    }
}

impl JobRecord {
    fn push_event(&mut self, at_ms: i64, kind: EventKind) {
        self.events.push(JobEvent {
            at_ms,
            attempt: self.attempt,
            kind,
        });
        self.trim_events();
    }

    fn trim_events(&mut self) {
        let drop = self.events.len().saturating_sub(events::MAX_EVENTS);
        self.events.drain(..drop);
    }

    /// The source topic grew to `partitions`: the running attempt's source
    /// tasks take the new ones as placement would have given them.
    fn add_partitions(&mut self, partitions: i32, at_ms: i64) {
        let SourceSpec::Kafka(source) = &self.spec.source;
        let kind = EventKind::PartitionsAdded {
            topic: source.topic.clone(),
            from: self.source_partitions,
            to: partitions,
        };
        self.push_event(at_ms, kind);
        self.source_partitions = partitions;
        let parallelism = self.spec.parallelism;
        for t in self.tasks.iter_mut().filter(|t| t.stage == 0) {
            t.partitions = crate::scheduler::source_partitions(t.index, parallelism, partitions);
        }
    }

    /// Moves the job along once its tasks say so: running when all run,
    /// restarting (or failed, once its restarts are used up) when one failed,
    /// cancelled once a cancelling job has no live task.
    fn derive_state(&mut self, at_ms: i64) {
        if self.tasks.is_empty() {
            if self.state == JobState::Cancelling {
                self.state = JobState::Cancelled;
            }
            return;
        }
        match self.state {
            JobState::Scheduling | JobState::Running => {
                // A task its worker stopped on its own (shutdown, lost contact)
                // is as gone as a failed one.
                let gone = self
                    .tasks
                    .iter()
                    .find(|t| matches!(t.state, TaskState::Failed | TaskState::Cancelled));
                if let Some(failed) = gone {
                    let failure = EventKind::TaskFailed {
                        task: failed.id.clone(),
                        worker: failed.worker.clone(),
                        error: match failed.state {
                            TaskState::Cancelled => "stopped by its worker".into(),
                            _ => failed.error.clone().unwrap_or_default(),
                        },
                        fault: failed.fault,
                        causes: failed.causes.clone(),
                    };
                    let reason = match failed.state {
                        TaskState::Cancelled => format!(
                            "task {} on {} was stopped by its worker",
                            failed.id, failed.worker
                        ),
                        _ => format!(
                            "task {} on {} failed: {}",
                            failed.id,
                            failed.worker,
                            failed.error.as_deref().unwrap_or("no reason given")
                        ),
                    };
                    let fault = failed.fault;
                    self.push_event(at_ms, failure);
                    if !fault.is_none_or(Fault::retriable) {
                        // Restarting into the same spec cannot help.
                        self.state = JobState::Failed;
                        self.failure = Some(format!(
                            "{reason} ({}: not restarted)",
                            fault.unwrap_or(Fault::Spec)
                        ));
                    } else if self.restarts < self.spec.restart.max_attempts {
                        self.restart(reason, at_ms);
                    } else {
                        self.state = JobState::Failed;
                        self.failure = Some(if self.restarts == 0 {
                            reason
                        } else {
                            format!("{reason} (after {} restarts)", self.restarts)
                        });
                    }
                    if self.state == JobState::Failed {
                        let reason = self.failure.clone().unwrap_or_default();
                        self.push_event(at_ms, EventKind::JobFailed { reason });
                    }
                } else if self.tasks.iter().all(|t| t.state == TaskState::Running) {
                    self.state = JobState::Running;
                } else if self.tasks.iter().all(|t| t.state == TaskState::Finished) {
                    self.state = if self.stopped_with.is_some() {
                        JobState::Stopped
                    } else {
                        JobState::Finished
                    };
                }
            }
            JobState::Cancelling if self.tasks.iter().all(|t| t.state.is_terminal()) => {
                self.state = JobState::Cancelled;
            }
            _ => {}
        }
    }

    /// Drops the failed attempt's tasks; the scheduler places a new attempt,
    /// restored from the latest completed checkpoint, once the backoff passed.
    fn restart(&mut self, reason: String, at_ms: i64) {
        let backoff = self.spec.restart.backoff_for(self.restarts + 1);
        self.push_event(
            at_ms,
            EventKind::Restarted {
                attempt: self.attempt + 1,
                backoff_ms: backoff.as_millis() as u64,
            },
        );
        self.restarts += 1;
        self.attempt += 1;
        // A stop interrupted by a failure: the job runs on from its latest
        // checkpoint, and the stop must be asked again.
        self.stopped_with = None;
        self.last_failure = Some(reason);
        self.tasks.clear();
        self.state = JobState::Scheduling;
        self.not_before_ms = at_ms + backoff.as_millis() as i64;
    }

    /// Whether workers should be running this job's tasks.
    /// Scheduling with none of its tasks placed: the scheduler places it
    /// once enough task slots are free.
    pub fn waits_for_slots(&self) -> bool {
        self.state == JobState::Scheduling && self.tasks.is_empty()
    }

    pub fn wants_tasks_running(&self) -> bool {
        matches!(self.state, JobState::Scheduling | JobState::Running)
    }

    /// An exactly-once job into Kafka that ended for good, cancelled or
    /// failed, so nothing of it will ever commit its transactions again.
    /// (A stopped job committed before it stopped, and a rescale resumes
    /// it under the same transactional ids: it is left alone.)
    fn ended_with_transactions(&self) -> bool {
        matches!(self.state, JobState::Cancelled | JobState::Failed)
            && self.spec.delivery == sluice_common::spec::Delivery::ExactlyOnce
            && matches!(self.spec.sink, sluice_common::spec::SinkSpec::Kafka(_))
    }

    /// Whether this job's Kafka transactions wait to be settled.
    pub fn transactions_to_settle(&self) -> bool {
        self.ended_with_transactions() && !self.transactions_settled
    }
}

mod codec;
mod events;
#[cfg(test)]
mod tests;
