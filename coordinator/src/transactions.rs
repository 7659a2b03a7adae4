//! Settles the Kafka transactions of exactly-once jobs that ended for good
//! (cancelled, or failed with no restart left), so no `read_committed`
//! consumer of their output waits on them until the broker's transaction
//! timeout. Nothing of such a job ever commits again, and its workers may be
//! gone, so the leader does it, for every sink subtask's transactional
//! ids (see `sluice_common::kafka_txn`):
//!
//! 1. If the job's latest completed checkpoint holds the subtask's sink
//!    state with transaction `k`, whatever is open on id `k mod 3` is that
//!    checkpoint's transaction, in doubt (its sink may have died before its
//!    commit): it is committed, as recovery would, after checking the broker
//!    names the producer the checkpoint recorded. So is the earlier
//!    transaction the state names, first, on the other id.
//! 2. Then every id is fenced: a new producer session on each aborts what
//!    was open (a transaction no completed checkpoint covers) and leaves the
//!    old producers unable to write or commit.
//!
//! Races, and why they are safe:
//! * A checkpoint completes only while its job runs, and both its completion
//!   and the cancel go through the Raft log: a checkpoint recorded before the
//!   cancel is the latest one here and its transaction is committed, never
//!   aborted; one whose last ack came after the cancel is not recorded, so
//!   its transaction is aborted and its offsets are not kept either.
//! * A sink that heard of that completion may be committing the same
//!   transaction at the same time: both commits name the same producer
//!   session, and a repeated commit succeeds. The fence comes after the
//!   commit, and waits (CONCURRENT_TRANSACTIONS) until the commit is done.
//! * The job is settled once no task of it is live, so no sink builds a new
//!   producer session after the fence; a task whose worker never reports
//!   again is waited for one heartbeat timeout, after which its worker has
//!   stopped it on its own. A producer that outlived its task (a paused
//!   worker) is fenced: it can neither write nor commit.
//! * Every step is idempotent, and the job is marked settled through the
//!   Raft log only when all are done: a new leader settles again whatever an
//!   old one may have left half done.
//!
//! A stopped job is left alone: its sinks committed the stop savepoint's
//! transactions and aborted the empty ones opened since, and a rescale
//! resumes it under the same transactional ids.

use crate::meta::{Command, MetaStore};
use crate::state::Shared;
use sluice_common::JobId;
use sluice_common::kafka_txn::{
    self, Fenced, InDoubt, TransactionalSinkState, TxnError, transactional_ids,
};
use sluice_common::spec::SinkSpec;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const TICK: Duration = Duration::from_millis(250);
/// How long one call to the broker is retried.
const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Between two tries of a job whose settling failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// What settling one job needs, read from its record.
#[derive(Debug, Clone)]
struct Ended {
    job: JobId,
    brokers: String,
    uid: String,
    /// The sink stage.
    stage: u32,
    parallelism: u32,
    /// Sink states of the latest completed checkpoint, by subtask index.
    sink_states: BTreeMap<u32, String>,
}

/// On the leader, every [`TICK`]: settles each ended job whose transactions
/// wait for it, one blocking task per job, and records it settled; a job
/// whose settling failed is tried again after [`RETRY_AFTER`].
pub async fn run<S: MetaStore>(state: Shared<S>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut settling: JoinSet<(JobId, Result<(), String>)> = JoinSet::new();
    // Jobs being settled (`None`), or to be tried again from the time given.
    let mut busy: HashMap<JobId, Option<Instant>> = HashMap::new();
    // When this leader term first saw each job ended with a task still live.
    let mut first_seen: HashMap<JobId, Instant> = HashMap::new();
    let mut term_began = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = settling.join_next() => {
                if let Ok((job, outcome)) = done {
                    finished(&state, &mut busy, job, outcome).await;
                }
                continue;
            }
        }
        let Some(since) = state.enter_term() else {
            continue;
        };
        if term_began != Some(since) {
            term_began = Some(since);
            first_seen.clear();
        }
        if state.store.check_leader().is_err() {
            continue;
        }
        busy.retain(|_, retry_at| retry_at.is_none_or(|t| t > Instant::now()));
        for ended in due(&state, &mut first_seen, &busy) {
            busy.insert(ended.job.clone(), None);
            let job = ended.job.clone();
            settling.spawn(async move {
                let outcome = match tokio::task::spawn_blocking(move || settle(&ended)).await {
                    Ok(settled) => settled.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (job, outcome)
            });
        }
    }
}

/// Records a job settled, or schedules another try.
async fn finished<S: MetaStore>(
    state: &Shared<S>,
    busy: &mut HashMap<JobId, Option<Instant>>,
    job: JobId,
    outcome: Result<(), String>,
) {
    match outcome {
        Ok(()) => {
            match state
                .store
                .apply(Command::TransactionsSettled { job: job.clone() })
                .await
            {
                Ok(_) => tracing::info!(job = %job, "transactions of the ended job settled"),
                Err(e) => {
                    tracing::warn!(job = %job, error = %e, "settled transactions not recorded; settling again")
                }
            }
            busy.remove(&job);
        }
        Err(e) => {
            tracing::warn!(job = %job, error = %e, "transactions of the ended job not settled yet; trying again");
            busy.insert(job, Some(Instant::now() + RETRY_AFTER));
        }
    }
}

/// Ended jobs whose transactions wait to be settled and may be now.
fn due<S: MetaStore>(
    state: &Shared<S>,
    first_seen: &mut HashMap<JobId, Instant>,
    busy: &HashMap<JobId, Option<Instant>>,
) -> Vec<Ended> {
    let patience = state.timing.heartbeat_timeout;
    let now = Instant::now();
    let candidates: Vec<(Ended, bool)> = state.store.read(|m| {
        m.jobs
            .values()
            .filter(|j| j.transactions_to_settle() && !busy.contains_key(&j.id))
            .filter_map(|j| {
                let SinkSpec::Kafka(sink) = &j.spec.sink else {
                    return None;
                };
                let live = j.tasks.iter().any(|t| !t.state.is_terminal());
                let ended = Ended {
                    job: j.id.clone(),
                    brokers: sink.brokers.clone(),
                    uid: j.uid.clone(),
                    stage: j.spec.stage_count().saturating_sub(1),
                    parallelism: j.spec.parallelism,
                    sink_states: j
                        .checkpoints
                        .last()
                        .map(|c| c.sink_states.clone())
                        .unwrap_or_default(),
                };
                Some((ended, live))
            })
            .collect()
    });
    first_seen.retain(|job, _| candidates.iter().any(|(e, _)| &e.job == job));
    candidates
        .into_iter()
        .filter(|(ended, live)| {
            !live
                || now.duration_since(*first_seen.entry(ended.job.clone()).or_insert(now))
                    > patience
        })
        .map(|(ended, _)| ended)
        .collect()
}

/// Commits each sink subtask's in-doubt transaction and fences all its
/// transactional ids. Blocking.
fn settle(ended: &Ended) -> Result<(), TxnError> {
    let never = AtomicBool::new(false);
    let (mut committed, mut fenced) = (Vec::new(), Vec::new());
    for index in 0..ended.parallelism {
        let ids = transactional_ids(&ended.uid, ended.stage, index);
        if let Some(text) = ended.sink_states.get(&index) {
            match serde_json::from_str::<TransactionalSinkState>(text) {
                Ok(state) => {
                    for sink in state.transactions() {
                        let Some(id) = ids.get(sink.id_index()) else {
                            continue;
                        };
                        match kafka_txn::commit_checkpointed(
                            &ended.brokers,
                            id,
                            &sink,
                            CALL_DEADLINE,
                            &never,
                        ) {
                            Ok(InDoubt::Committed) => {
                                tracing::warn!(job = %ended.job, transactional_id = %id, txn = sink.txn, records = sink.records, "committed the in-doubt transaction of the ended job's last checkpoint");
                                committed.push(id.clone());
                            }
                            Ok(InDoubt::NothingOpen(_)) => {}
                            // Nothing to commit can come of retrying: the
                            // checkpoint's transaction is gone, and whatever is
                            // open is aborted below.
                            Err(
                                e @ (TxnError::NotOurs { .. } | TxnError::AbortedByBroker { .. }),
                            ) => {
                                tracing::error!(job = %ended.job, transactional_id = %id, error = %e, "in-doubt transaction of the ended job's last checkpoint not committed");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(job = %ended.job, index, error = %e, "sink state of the last checkpoint does not parse; its transactions are only aborted");
                }
            }
        }
        for id in &ids {
            if let Fenced::Fenced(_) = kafka_txn::fence(&ended.brokers, id, CALL_DEADLINE, &never)?
            {
                fenced.push(id.clone());
            }
        }
    }
    tracing::info!(job = %ended.job, ?committed, ?fenced, "in-doubt transactions committed, the rest aborted and their ids fenced");
    Ok(())
}
