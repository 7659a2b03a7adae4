//! The checkpoint coordinator: per running job, triggers checkpoint `n` on the
//! source subtasks at the job's interval, collects every subtask's ack, and
//! records the checkpoint as completed once all acked. At most one checkpoint
//! per job is in flight; one not complete within the job's timeout is
//! abandoned. In-flight checkpoints are not durable: a new leader abandons
//! every id an earlier leader may have handed out (they are reserved through
//! the Raft log in blocks) and goes on past them.

use crate::meta::{
    Applied, Command, CompletedCheckpoint, MetaStore, Savepoint, SavepointMark, StateRef,
};
use crate::state::Shared;
use sluice_common::{JobId, TaskId, WorkerId};
use sluice_proto::worker_command::Kind;
use sluice_proto::{
    CheckpointAck, CheckpointDone, CheckpointTrigger, JobState, TaskState, WorkerCommand,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const TICK: Duration = Duration::from_millis(20);
/// Checkpoint ids reserved through the log at a time: one log entry per this
/// many checkpoints, and at most this big a jump in ids at a failover.
const ID_BLOCK: u64 = 100;

struct Pending {
    id: u64,
    attempt: u32,
    started: Instant,
    awaiting: BTreeSet<TaskId>,
    source_offsets: BTreeMap<i32, i64>,
    sink_states: BTreeMap<u32, String>,
    state_handles: BTreeMap<u32, Vec<StateRef>>,
    /// Bytes of keyed state uploaded for it so far.
    size_bytes: u64,
    /// The longest alignment a subtask acknowledged so far, in microseconds.
    alignment_us: u64,
    savepoint: Option<Requested>,
}

/// What a savepoint's requesters learn: the savepoint, or why there is none.
pub type SavepointReply = Result<Savepoint, String>;

/// A savepoint asked for and not yet taken or finished.
struct Requested {
    mark: SavepointMark,
    waiters: Vec<oneshot::Sender<SavepointReply>>,
}

impl Requested {
    fn answer(self, reply: &SavepointReply) {
        for w in self.waiters {
            let _ = w.send(reply.clone());
        }
    }
}

#[derive(Default)]
struct JobProgress {
    pending: Option<Pending>,
    last_trigger: Option<Instant>,
    /// The latest id handed out; `None` until this leader set its floor.
    last_id: Option<u64>,
    failed: u64,
    /// Why the latest of `failed` was abandoned.
    last_failure: String,
    /// The latest abandoned checkpoint and its attempt, repeated in heartbeats.
    last_abandoned: Option<(u32, u64)>,
    /// A savepoint to take as the next checkpoint, without waiting for the interval.
    requested: Option<(bool, Vec<oneshot::Sender<SavepointReply>>)>,
}

#[derive(Default)]
pub struct CheckpointCoordinator {
    jobs: Mutex<HashMap<JobId, JobProgress>>,
}

impl CheckpointCoordinator {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, JobProgress>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checkpoints abandoned since this coordinator started.
    pub fn failed(&self, job: &JobId) -> u64 {
        self.lock().get(job).map_or(0, |p| p.failed)
    }

    /// Why the latest checkpoint of `job` abandoned since this coordinator
    /// started failed (timed out, or declined by a subtask); empty if none.
    pub fn last_failure(&self, job: &JobId) -> String {
        self.lock()
            .get(job)
            .map(|p| p.last_failure.clone())
            .unwrap_or_default()
    }

    /// Asks for a savepoint of a running job as its next checkpoint; with
    /// `stop`, the job's sources end once it completed. The answer comes
    /// when it completed or failed.
    pub fn request_savepoint(&self, job: &JobId, stop: bool) -> oneshot::Receiver<SavepointReply> {
        let (tx, rx) = oneshot::channel();
        let mut jobs = self.lock();
        let progress = jobs.entry(job.clone()).or_default();
        match &mut progress.requested {
            Some((s, waiters)) => {
                *s |= stop;
                waiters.push(tx);
            }
            None => progress.requested = Some((stop, vec![tx])),
        }
        rx
    }

    /// Forgets every job's progress when the leader term changes; waiting
    /// savepoint requests are answered with a failure.
    pub fn clear(&self) {
        let reply: SavepointReply =
            Err("this coordinator lost the lead; ask the new leader".into());
        for (_, progress) in self.lock().drain() {
            if let Some((_, waiters)) = progress.requested {
                for w in waiters {
                    let _ = w.send(reply.clone());
                }
            }
            if let Some(sp) = progress.pending.and_then(|p| p.savepoint) {
                sp.answer(&reply);
            }
        }
    }

    /// The latest abandoned checkpoint of `job`, as (attempt, checkpoint).
    pub fn last_abandoned(&self, job: &JobId) -> Option<(u32, u64)> {
        self.lock().get(job).and_then(|p| p.last_abandoned)
    }
}

pub async fn run<S: MetaStore>(state: Shared<S>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.enter_term().is_none() || state.store.check_leader().is_err() {
            continue;
        }
        for (job, up_to) in step(&state) {
            if let Err(e) = state
                .store
                .apply(Command::ReserveCheckpointIds {
                    job: job.clone(),
                    up_to,
                })
                .await
            {
                tracing::warn!(job = %job, error = %e, "checkpoint ids not reserved");
            }
        }
    }
}

/// What a trigger needs to know of a running job.
struct Running {
    job: JobId,
    uid: String,
    attempt: u32,
    interval: Duration,
    timeout: Duration,
    last_completed: u64,
    reserved: u64,
    tasks: BTreeSet<TaskId>,
    source_workers: BTreeSet<WorkerId>,
    workers: BTreeSet<WorkerId>,
}

/// Triggers, abandons and times out checkpoints; returns the jobs that need
/// more checkpoint ids reserved before their next trigger, with how far.
fn step<S: MetaStore>(state: &Shared<S>) -> Vec<(JobId, u64)> {
    let (running, live): (Vec<Running>, BTreeSet<JobId>) = state.store.read(|m| {
        let live = m
            .jobs
            .values()
            .filter(|j| j.wants_tasks_running())
            .map(|j| j.id.clone())
            .collect();
        let running = m
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running && j.spec.checkpoint.enabled)
            .filter(|j| {
                !j.tasks.is_empty() && j.tasks.iter().all(|t| t.state == TaskState::Running)
            })
            .map(|j| Running {
                job: j.id.clone(),
                uid: j.uid.clone(),
                attempt: j.attempt,
                interval: j.spec.checkpoint.interval,
                timeout: j.spec.checkpoint.timeout,
                last_completed: j.checkpoints.last().map_or(0, |c| c.id),
                reserved: j.checkpoint_ids_reserved,
                tasks: j.tasks.iter().map(|t| t.id.clone()).collect(),
                source_workers: j
                    .tasks
                    .iter()
                    .filter(|t| t.stage == 0)
                    .map(|t| t.worker.clone())
                    .collect(),
                workers: j.tasks.iter().map(|t| t.worker.clone()).collect(),
            })
            .collect();
        (running, live)
    });
    let now = Instant::now();
    let mut triggers = Vec::new();
    let mut abandoned = Vec::new();
    let mut reservations = Vec::new();
    {
        let mut jobs = state.checkpoints.lock();
        // A restarting job keeps its ids; an ended one is forgotten.
        jobs.retain(|id, _| live.contains(id));
        // Savepoints asked of a job that is not running get no checkpoint.
        for (id, progress) in jobs.iter_mut() {
            if !running.iter().any(|r| &r.job == id) {
                progress.requested = None;
                progress.pending = None;
            }
        }
        for r in running {
            let progress = jobs.entry(r.job.clone()).or_default();
            if progress.last_id.is_none() {
                // New to this leader: every id an earlier leader may have
                // handed out is abandoned, so sinks holding one go on (the
                // heartbeats repeat it), and new ids start past them.
                let floor = r.reserved.max(r.last_completed);
                progress.last_id = Some(floor);
                if floor > r.last_completed {
                    progress.last_abandoned = Some((r.attempt, floor));
                }
            }
            if let Some(p) = &mut progress.pending {
                let stale = p.attempt != r.attempt;
                if stale || now.duration_since(p.started) > r.timeout {
                    if !stale {
                        tracing::warn!(job = %r.job, checkpoint = p.id, awaiting = p.awaiting.len(), "checkpoint timed out");
                        abandoned.push((r.job.clone(), p.attempt, p.id, r.workers.clone()));
                        progress.last_abandoned = Some((p.attempt, p.id));
                        progress.last_failure =
                            format!("checkpoint {} timed out after {:?}", p.id, r.timeout);
                    }
                    if let Some(sp) = p.savepoint.take() {
                        sp.answer(&Err(if stale {
                            format!("the job restarted while savepoint checkpoint {} ran", p.id)
                        } else {
                            format!(
                                "savepoint checkpoint {} timed out after {:?}",
                                p.id, r.timeout
                            )
                        }));
                    }
                    progress.failed += u64::from(!stale);
                    progress.pending = None;
                } else {
                    continue;
                }
            }
            let due = progress.requested.is_some()
                || progress
                    .last_trigger
                    .is_none_or(|t| now.duration_since(t) >= r.interval);
            if !due {
                continue;
            }
            let id = progress.last_id.unwrap_or(0).max(r.last_completed) + 1;
            if id > r.reserved {
                reservations.push((r.job.clone(), id - 1 + ID_BLOCK));
                continue;
            }
            // Commands reach a worker only over its stream: after a
            // failover, wait until every worker of the job subscribed again.
            if !r.workers.iter().all(|w| state.subscribers.is_open(w)) {
                continue;
            }
            progress.last_id = Some(id);
            progress.last_trigger = Some(now);
            let savepoint = progress.requested.take().map(|(stop, waiters)| Requested {
                mark: SavepointMark {
                    id: format!("sp-{}-{id}", &r.uid[..r.uid.len().min(8)]),
                    stop,
                },
                waiters,
            });
            let stop = savepoint.as_ref().is_some_and(|s| s.mark.stop);
            progress.pending = Some(Pending {
                id,
                attempt: r.attempt,
                started: now,
                awaiting: r.tasks,
                source_offsets: BTreeMap::new(),
                sink_states: BTreeMap::new(),
                state_handles: BTreeMap::new(),
                size_bytes: 0,
                alignment_us: 0,
                savepoint,
            });
            triggers.push((r.job, r.attempt, id, stop, r.source_workers, r.workers));
        }
    }
    // Sinks holding a pre-committed transaction for an abandoned checkpoint go on with it.
    for (job, attempt, id, workers) in abandoned {
        let done = CheckpointDone {
            job_id: job.to_string(),
            attempt,
            checkpoint_id: id,
        };
        send_all(state, &workers, Kind::Abandoned(done));
    }
    for (job, attempt, id, stop, workers, all_workers) in triggers {
        tracing::debug!(job = %job, checkpoint = id, stop, "triggering checkpoint");
        let trigger = CheckpointTrigger {
            job_id: job.to_string(),
            attempt,
            checkpoint_id: id,
            stop,
        };
        let delivered = send_all(state, &workers, Kind::Trigger(trigger));
        if !delivered {
            // A source that never got the trigger would hold the checkpoint
            // until its timeout: abandon it now, so sources that did take it
            // and their sinks go on, and trigger again next interval.
            tracing::debug!(job = %job, checkpoint = id, "trigger not delivered to every source worker");
            if let Some(p) = state.checkpoints.lock().get_mut(&job) {
                // A savepoint asked for is taken with the next trigger instead.
                if let Some(sp) = p.pending.take().and_then(|p| p.savepoint) {
                    p.requested = Some((sp.mark.stop, sp.waiters));
                }
                p.last_abandoned = Some((attempt, id));
            }
            let done = CheckpointDone {
                job_id: job.to_string(),
                attempt,
                checkpoint_id: id,
            };
            send_all(state, &all_workers, Kind::Abandoned(done));
        }
    }
    reservations
}

/// Records a subtask's ack; completes the checkpoint when it was the last.
pub async fn ack<S: MetaStore>(state: &Shared<S>, ack: CheckpointAck) {
    let job = JobId::new(ack.job_id.clone());
    let task = TaskId::new(ack.task_id.clone());
    let (index, stage) = state
        .store
        .read(|m| {
            m.jobs
                .get(&job)
                .and_then(|j| j.tasks.iter().find(|t| t.id == task))
                .map(|t| (Some(t.index), t.stage))
        })
        .unwrap_or((None, 0));
    let completed = {
        let mut jobs = state.checkpoints.lock();
        let Some(progress) = jobs.get_mut(&job) else {
            return;
        };
        let Some(p) = progress.pending.as_mut() else {
            return;
        };
        if p.id != ack.checkpoint_id || p.attempt != ack.attempt {
            return;
        }
        if !ack.declined.is_empty() {
            let reason = format!(
                "checkpoint {} declined by task {task}: {}",
                p.id, ack.declined
            );
            tracing::warn!(job = %job, checkpoint = p.id, task = %task, reason = %ack.declined, "checkpoint declined");
            let (id, attempt) = (p.id, p.attempt);
            if let Some(sp) = progress.pending.take().and_then(|p| p.savepoint) {
                sp.answer(&Err(reason.clone()));
            }
            progress.failed += 1;
            progress.last_abandoned = Some((attempt, id));
            progress.last_failure = reason;
            drop(jobs);
            // Sinks holding a pre-committed transaction for it go on with
            // it, and the next checkpoint is triggered at the next interval.
            let done = CheckpointDone {
                job_id: job.to_string(),
                attempt,
                checkpoint_id: id,
            };
            send_all(state, &job_workers(state, &job), Kind::Abandoned(done));
            return;
        }
        p.awaiting.remove(&task);
        p.source_offsets.extend(ack.source_offsets);
        p.size_bytes += ack.state_bytes;
        p.alignment_us = p.alignment_us.max(ack.alignment_us);
        if let Some(index) = index.filter(|_| !ack.sink_state.is_empty()) {
            p.sink_states.insert(index, ack.sink_state);
        }
        if let Some(handle) = ack.state {
            p.state_handles
                .entry(stage)
                .or_default()
                .push(handle.into());
        }
        if !p.awaiting.is_empty() {
            return;
        }
        progress.pending.take()
    };
    let Some(p) = completed else {
        return;
    };
    let duration_ms = p.started.elapsed().as_millis() as u64;
    let retained_before = retained_checkpoints(state, &job);
    let applied = state
        .store
        .apply(Command::CheckpointCompleted {
            job: job.clone(),
            checkpoint: CompletedCheckpoint {
                id: p.id,
                attempt: p.attempt,
                completed_at_ms: crate::job_service::now_ms(),
                duration_ms,
                source_offsets: p.source_offsets,
                sink_states: p.sink_states,
                state_handles: p.state_handles,
                size_bytes: p.size_bytes,
                alignment_us: p.alignment_us,
            },
            savepoint: p.savepoint.as_ref().map(|s| s.mark.clone()),
        })
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(job = %job, checkpoint = p.id, error = %e, "checkpoint not recorded");
            Applied::Stale
        });
    if applied != Applied::Done {
        // The job restarted while the last acks were on their way: the
        // checkpoint is not durable, and its sinks must not commit.
        tracing::info!(job = %job, checkpoint = p.id, "checkpoint of a superseded attempt ignored");
        if let Some(sp) = p.savepoint {
            sp.answer(&Err(format!(
                "the job restarted before savepoint checkpoint {} was recorded",
                p.id
            )));
        }
        return;
    }
    tracing::info!(job = %job, checkpoint = p.id, duration_ms, savepoint = p.savepoint.as_ref().map(|s| s.mark.id.as_str()), "checkpoint completed");
    if let Some(sp) = p.savepoint {
        let recorded = state.store.read(|m| m.savepoints.get(&sp.mark.id).cloned());
        sp.answer(&recorded.ok_or_else(|| "savepoint was not recorded".to_string()));
    }
    crate::snapshot_gc::after_completion(state, &job, &retained_before, p.attempt, p.id);
    let done = CheckpointDone {
        job_id: job.to_string(),
        attempt: p.attempt,
        checkpoint_id: p.id,
    };
    send_all(state, &job_workers(state, &job), Kind::Completed(done));
}

/// The workers running tasks of `job`.
fn job_workers<S: MetaStore>(state: &Shared<S>, job: &JobId) -> BTreeSet<WorkerId> {
    state.store.read(|m| {
        m.jobs
            .get(job)
            .map(|j| j.tasks.iter().map(|t| t.worker.clone()).collect())
            .unwrap_or_default()
    })
}

fn retained_checkpoints<S: MetaStore>(state: &Shared<S>, job: &JobId) -> Vec<CompletedCheckpoint> {
    state.store.read(|m| {
        m.jobs
            .get(job)
            .map(|j| j.checkpoints.clone())
            .unwrap_or_default()
    })
}

/// Sends one command to each of `workers`; `true` when every one was queued.
fn send_all<S: MetaStore>(state: &Shared<S>, workers: &BTreeSet<WorkerId>, kind: Kind) -> bool {
    let mut all = true;
    for w in workers {
        all &= state.subscribers.send(
            w,
            WorkerCommand {
                kind: Some(kind.clone()),
            },
        );
    }
    all
}
