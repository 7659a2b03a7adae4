//! Exactly-once Kafka sink: two-phase commit across checkpoints.
//!
//! Each sink subtask owns three transactional ids, stable across attempts
//! of the job so a restarted subtask fences its zombie. Transaction `k` runs
//! on id `k mod 3`. At barrier `n` the sink flushes transaction `k` (every
//! record acknowledged by the broker, so no record after the barrier lands
//! before one of `k` in a partition) and opens `k + 1` on the next id, so
//! input flows on; the producer session holding `k` is read from the broker
//! in a task of its own meanwhile, and checkpoint `n`'s state, naming `k`
//! and that session, is ready once it is known. The sink commits `k` when
//! `n` (or a later checkpoint) completes. Once committed, `k`'s id takes no new transaction
//! until a checkpoint whose barrier came after that commit completes: until
//! then the job may restart from a checkpoint naming `k`, and recovery must
//! find on that id `k` itself or nothing newer. In a steady run each
//! checkpoint completes before the next barrier and the third id is free
//! when needed, so the sink never waits. Otherwise (a slow checkpoint) a
//! barrier that comes while `k` still waits pre-commits `k + 1` as well, and
//! the checkpoint records both; with no id free the sink takes no input
//! until a completion frees one, or until the newest transaction's
//! checkpoints are abandoned (the sink then goes on writing into it, and the
//! next checkpoint covers it whole). After a failure, the transactions open
//! on the ids the restored checkpoint names are exactly those it covers:
//! recovery commits them, after checking the broker names the producer
//! sessions the checkpoint recorded, before anything else touches those ids.

use super::deliveries::{self, Deliveries, SinkProducer};
use super::transaction_calls::TransactionCalls;
use super::{client_config, kafka_err, topic_limits, with_limit};
use crate::error::{Result, WorkerError};
use crate::record::{Failure, Record};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use rdkafka::producer::Producer;
use sluice_common::kafka_txn::{
    self, DEFAULT_TRANSACTION_TIMEOUT_MS, InDoubt, ProducerIdentity, TRANSACTION_TIMEOUT,
    TRANSACTIONAL_IDS, TransactionalSinkState,
};
use sluice_common::spec::KafkaSinkSpec;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest one call opening a producer session waits, so that a stop
/// is seen soon (see [`init_unless_cancelled`]).
const INIT_STEP: Duration = Duration::from_millis(250);

/// The producer session holding a transaction flushed at its barrier, read
/// from the broker while records flow on, shared by the checkpoints whose
/// state names it (`None`: it held no records), or why it cannot commit.
type Flushed =
    Shared<BoxFuture<'static, std::result::Result<Option<ProducerIdentity>, Arc<WorkerError>>>>;

pub struct TransactionalKafkaSink {
    producers: [super::DetachedDrop<Arc<SinkProducer>>; TRANSACTIONAL_IDS],
    ids: [String; TRANSACTIONAL_IDS],
    /// The transaction records go into; `None` while no id is free.
    open: Option<Txn>,
    /// Pre-committed at a barrier and not yet committed, oldest first; at
    /// most two.
    pre_committed: VecDeque<PreCommitted>,
    /// Ids of committed transactions that take no new one yet: `(index,
    /// until)`, free once a checkpoint after `until` (the latest barrier
    /// when it committed, or the restored checkpoint) completes.
    cooling: VecDeque<(usize, u64)>,
    /// The checkpoint of the latest barrier.
    last_barrier: u64,
    /// The number the next transaction opened gets.
    next_txn: u64,
    brokers: String,
    deliveries: Deliveries,
}

/// A transaction of the sink.
#[derive(Debug, Clone, Copy)]
struct Txn {
    /// It runs on transactional id `number mod 3`.
    number: u64,
    /// Records written into it.
    records: u64,
    /// When its first record was written: the broker's transaction timeout
    /// runs from about then.
    opened_at: Option<SystemTime>,
}

/// A transaction flushed at a barrier, waiting for a checkpoint covering it
/// to complete.
#[derive(Clone)]
struct PreCommitted {
    txn: Txn,
    /// The checkpoint of that barrier: its completion, or any later one's,
    /// commits the transaction.
    checkpoint: u64,
    /// The latest checkpoint whose state names it: only once that one is
    /// abandoned may more records go into it.
    named_until: u64,
    /// The producer session holding it, read from the broker when it held
    /// records.
    flushed: Flushed,
    /// Stops reading the session when the transaction takes records again.
    flush_task: tokio::task::AbortHandle,
}

impl TransactionalKafkaSink {
    /// `ids` are the subtask's transactional ids
    /// ([`kafka_txn::transactional_ids`]); `restored` is its state in
    /// checkpoint `restored_checkpoint`, which the job restarts from.
    pub async fn build(
        spec: &KafkaSinkSpec,
        ids: [String; TRANSACTIONAL_IDS],
        restored: Option<TransactionalSinkState>,
        restored_checkpoint: u64,
    ) -> Result<Self> {
        // Set when this build is dropped (its subtask cancelled): blocking
        // recovery work still under way must then leave the ids alone.
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let next_txn = restored.as_ref().map_or(1, |s| s.txn + 1);
        let named = restored
            .iter()
            .flat_map(TransactionalSinkState::transactions)
            .collect::<Vec<_>>();
        for state in named.iter().cloned() {
            let Some(id) = ids.get(state.id_index()).cloned() else {
                continue;
            };
            let brokers = spec.brokers.clone();
            let flag = cancelled.clone();
            let (txn, records) = (state.txn, state.records);
            let outcome = tokio::task::spawn_blocking(move || {
                kafka_txn::commit_checkpointed(&brokers, &id, &state, CALL_TIMEOUT, &flag)
            })
            .await
            .map_err(|e| WorkerError::InDoubt {
                ids: ids.join(", "),
                reason: e.to_string(),
            })?
            .map_err(|source| WorkerError::Transaction {
                ids: ids.join(", "),
                source,
            })?;
            tracing::info!(
                txn,
                records,
                ?outcome,
                "in-doubt transaction of the restored checkpoint settled"
            );
            fail::fail_point!("sink-recovery-after-in-doubt", |_| {
                std::process::abort();
            });
            if outcome == InDoubt::Committed {
                tracing::warn!(
                    txn,
                    "committed a transaction left open by a failure after its checkpoint completed"
                );
            }
        }
        let timeout = DEFAULT_TRANSACTION_TIMEOUT_MS.to_string();
        let limits = topic_limits(&spec.brokers, &spec.properties, &spec.topic).await;
        let properties = with_limit(&spec.properties, &limits.max_message_bytes.to_string());
        let make = |id: &str| -> Result<Arc<SinkProducer>> {
            let config = client_config(
                &spec.brokers,
                &[
                    ("transactional.id", id),
                    (TRANSACTION_TIMEOUT, &timeout),
                    ("linger.ms", "5"),
                    ("allow.auto.create.topics", "false"),
                    // Records after a barrier must not land before those
                    // before it, so it waits for all that is queued.
                    ("queue.buffering.max.messages", deliveries::QUEUED_MESSAGES),
                ],
                &properties,
            );
            deliveries::create(
                &config,
                &format!("create transactional producer `{id}`"),
                &spec.brokers,
            )
        };
        let producers = [
            super::DetachedDrop::new(make(&ids[0])?),
            super::DetachedDrop::new(make(&ids[1])?),
            super::DetachedDrop::new(make(&ids[2])?),
        ];
        // Fences older attempts' producers and aborts whatever they left
        // open; the three producers do so together, each a round trip to
        // the transaction coordinator, so a job starts and restarts sooner.
        let ready = producers.iter().zip(&ids).map(|(producer, id)| {
            let p = Arc::clone(producer);
            let flag = cancelled.clone();
            let call_id = id.clone();
            async move {
                // A session an earlier attempt was opening here, abandoned,
                // must not reach the broker after this one.
                TransactionCalls::settled(std::slice::from_ref(&call_id)).await;
                blocking(move || {
                    let call = TransactionCalls::begin(&call_id);
                    let opened = init_unless_cancelled(&p, &flag);
                    if opened.is_err() && flag.load(Ordering::SeqCst) {
                        // librdkafka goes on opening the session in the
                        // background after a call timed out: the call counts
                        // as under way until the producer is destroyed.
                        destroy_when_last(p);
                    }
                    drop(call);
                    opened
                })
                .await
                .map_err(kafka_err(
                    format!("init transactions of `{id}`"),
                    &spec.brokers,
                ))?;
                deliveries::learn_topic(producer, &spec.topic, &spec.brokers).await
            }
        });
        futures::future::try_join_all(ready).await?;
        // The restored checkpoint's transactions are committed now, and their
        // ids wait like any committed one's: the job may restart from that
        // checkpoint again.
        let cooling: VecDeque<(usize, u64)> = named
            .iter()
            .map(|s| (s.id_index(), restored_checkpoint))
            .collect();
        let next_txn = first_free(next_txn, &cooling);
        let mut sink = Self {
            producers,
            ids,
            open: None,
            pre_committed: VecDeque::new(),
            cooling,
            last_barrier: restored_checkpoint,
            next_txn,
            brokers: spec.brokers.clone(),
            deliveries: Deliveries::new(spec, limits.compacted),
        };
        sink.begin()?;
        Ok(sink)
    }

    fn producer(&self, txn: u64) -> &Arc<SinkProducer> {
        &self.producers[slot(txn)]
    }

    fn id(&self, txn: u64) -> &str {
        &self.ids[slot(txn)]
    }

    /// Opens the next transaction if none is open, fewer than two wait for
    /// their checkpoint (a checkpoint's state names two at most), and its id
    /// is free: no transaction waits or cools on it. With two transactions
    /// at most open or waiting, a completion always frees an id.
    fn begin(&mut self) -> Result<()> {
        let number = self.next_txn;
        if self.open.is_some() || self.pre_committed.len() >= 2 {
            return Ok(());
        }
        let taken = self
            .pre_committed
            .iter()
            .map(|p| slot(p.txn.number))
            .chain(self.cooling.iter().map(|(index, _)| *index))
            .any(|index| index == slot(number));
        if taken {
            return Ok(());
        }
        self.producer(number)
            .begin_transaction()
            .map_err(kafka_err("begin transaction", &self.brokers))?;
        self.next_txn += 1;
        self.open = Some(Txn {
            number,
            records: 0,
            opened_at: None,
        });
        Ok(())
    }

    /// `true` while no id is free for a transaction: the sink takes no
    /// records until a checkpoint completes or the newest barrier's is
    /// abandoned.
    pub fn blocked(&self) -> bool {
        self.open.is_none()
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        self.check_flushes()?;
        let Some(open) = self.open else {
            return Err(WorkerError::InDoubt {
                ids: self.ids.join(", "),
                reason:
                    "records came while both transactional ids held a pre-committed transaction"
                        .into(),
            });
        };
        let producer = Arc::clone(self.producer(open.number));
        let sent_at = SystemTime::now();
        let failures = self.deliveries.send(&producer, &batch).await?;
        // A record the broker refused fails the whole transaction: the job
        // restarts from its checkpoint. librdkafka refuses an oversized
        // record before sending (the limit is the topic's), so the broker
        // has little left to refuse a record for.
        let refused = self.deliveries.refused(&producer)?;
        self.refuse_doomed(open.number, &refused)?;
        if let Some(open) = &mut self.open {
            open.records += (batch.len() - failures.len()) as u64;
            if open.records > 0 {
                open.opened_at.get_or_insert(sent_at);
            }
        }
        Ok(failures)
    }

    /// Since when the oldest transaction not yet committed has held records
    /// (`None`: none holds any, so the broker has begun none).
    pub fn open_transaction_since(&self) -> Option<SystemTime> {
        self.pre_committed
            .iter()
            .map(|p| p.txn)
            .chain(self.open)
            .filter_map(|t| t.opened_at)
            .min()
    }

    /// At the barrier of checkpoint `checkpoint`: flushes the open
    /// transaction, starts reading the producer session holding it, and
    /// opens the next one when an id is free. Returns the checkpoint's
    /// state, naming every transaction not yet committed with the producer
    /// session holding each one that holds records, ready once those are
    /// known; failing to read one fails the state, and the sink's next call.
    pub async fn pre_commit(
        &mut self,
        checkpoint: u64,
    ) -> Result<BoxFuture<'static, Result<TransactionalSinkState>>> {
        self.check_flushes()?;
        self.last_barrier = checkpoint;
        if let Some(open) = self.open.take() {
            let producer = Arc::clone(self.producer(open.number));
            let draining = std::time::Instant::now();
            let refused = self.deliveries.drain(&producer).await?;
            self.refuse_doomed(open.number, &refused)?;
            tracing::debug!(
                checkpoint,
                txn = open.number,
                records = open.records,
                drain_ms = draining.elapsed().as_secs_f64() * 1e3,
                "transaction flushed"
            );
            let flush = tokio::spawn(producer_session(
                self.brokers.clone(),
                self.id(open.number).to_string(),
                open,
            ));
            let flush_task = flush.abort_handle();
            let ids = self.ids.join(", ");
            let flushed = async move {
                flush.await.unwrap_or_else(|e| {
                    Err(Arc::new(WorkerError::InDoubt {
                        ids,
                        reason: if e.is_cancelled() {
                            "its checkpoint was abandoned and it takes records again".into()
                        } else {
                            format!("reading the producer session holding it failed: {e}")
                        },
                    }))
                })
            }
            .boxed()
            .shared();
            self.pre_committed.push_back(PreCommitted {
                txn: open,
                checkpoint,
                named_until: checkpoint,
                flushed,
                flush_task,
            });
            self.begin()?;
        } else {
            for p in &mut self.pre_committed {
                p.named_until = checkpoint;
            }
        }
        Ok(self.state())
    }

    /// A failed flush fails the sink: its transaction cannot commit.
    fn check_flushes(&self) -> Result<()> {
        for p in &self.pre_committed {
            if let Some(Err(e)) = p.flushed.peek() {
                return Err(WorkerError::Flush {
                    txn: p.txn.number,
                    source: Arc::clone(e),
                });
            }
        }
        Ok(())
    }

    /// What a checkpoint taken now holds, once the flushes of the
    /// transactions it names are done: the newest transaction not yet
    /// committed, and the one before it if that one waits too.
    fn state(&self) -> BoxFuture<'static, Result<TransactionalSinkState>> {
        let mut newest = self.pre_committed.iter().rev();
        let named: Vec<PreCommitted> = newest
            .next()
            .into_iter()
            .chain(newest.next())
            .cloned()
            .collect();
        let next_txn = self.next_txn;
        async move {
            let mut states = Vec::with_capacity(named.len());
            for p in named {
                let producer = p.flushed.await.map_err(|source| WorkerError::Flush {
                    txn: p.txn.number,
                    source,
                })?;
                states.push(TransactionalSinkState {
                    txn: p.txn.number,
                    ids: TRANSACTIONAL_IDS as u64,
                    records: p.txn.records,
                    producer,
                    earlier: None,
                });
            }
            let mut states = states.into_iter();
            Ok(match states.next() {
                Some(last) => TransactionalSinkState {
                    earlier: states.next().map(Box::new),
                    ..last
                },
                // Unreachable after a pre-commit; an empty state commits nothing.
                None => TransactionalSinkState {
                    txn: next_txn.saturating_sub(1),
                    ids: TRANSACTIONAL_IDS as u64,
                    records: 0,
                    producer: None,
                    earlier: None,
                },
            })
        }
        .boxed()
    }

    /// `true` while a transaction waits for its checkpoint to complete.
    pub fn uncommitted(&self) -> bool {
        !self.pre_committed.is_empty()
    }

    /// `true` when checkpoint `completed` covers a transaction still to commit.
    pub fn covers(&self, completed: u64) -> bool {
        self.pre_committed
            .front()
            .is_some_and(|p| p.checkpoint <= completed)
    }

    /// Checkpoint `completed` completed: commits, oldest first, every
    /// transaction pre-committed at its barrier or an earlier one, frees the
    /// ids no checkpoint that may be restored names any more, and opens the
    /// next transaction if the sink had none open.
    pub async fn commit(&mut self, completed: u64) -> Result<()> {
        self.cooling.retain(|(_, until)| *until >= completed);
        while let Some(p) = self.pre_committed.front().cloned() {
            if p.checkpoint > completed {
                break;
            }
            // Done already: the checkpoint was acknowledged after it.
            p.flushed.await.map_err(|source| WorkerError::Flush {
                txn: p.txn.number,
                source,
            })?;
            fail::fail_point!("sink-before-commit", |_| {
                std::process::abort();
            });
            let producer = Arc::clone(self.producer(p.txn.number));
            let committing = std::time::Instant::now();
            blocking(move || producer.commit_transaction(CALL_TIMEOUT))
                .await
                .map_err(kafka_err(
                    format!("commit transaction on `{}`", self.id(p.txn.number)),
                    &self.brokers,
                ))?;
            tracing::debug!(
                checkpoint = completed,
                txn = p.txn.number,
                commit_ms = committing.elapsed().as_secs_f64() * 1e3,
                "transaction committed"
            );
            fail::fail_point!("sink-after-commit", |_| {
                std::process::abort();
            });
            self.pre_committed.pop_front();
            self.cooling
                .push_back((slot(p.txn.number), self.last_barrier));
        }
        self.begin()
    }

    /// What the coordinator settled: the latest checkpoint `completed` and
    /// the latest `abandoned` (read before `completed`, so a checkpoint
    /// that completed before `abandoned` is at most `completed`); with
    /// `completed` `None`, checkpoint `abandoned` alone was abandoned. A sink
    /// with no open transaction whose newest one's checkpoints were
    /// abandoned goes on writing into that one (it is flushed, not ended),
    /// which the next checkpoint then covers whole: no completed checkpoint
    /// names it as it is, and none will.
    pub fn abandoned(&mut self, completed: Option<u64>, abandoned: u64) {
        if self.open.is_some() {
            return;
        }
        let gone = |newest: &PreCommitted| match completed {
            // Checkpoints settle one at a time, so one abandoned at or after
            // the newest one's settles it, and `completed` says how.
            Some(completed) => abandoned >= newest.named_until && completed < newest.checkpoint,
            // A later checkpoint abandoned says nothing about this one.
            None => abandoned == newest.named_until && newest.checkpoint == newest.named_until,
        };
        if self.pre_committed.back().is_some_and(gone)
            && let Some(newest) = self.pre_committed.pop_back()
        {
            newest.flush_task.abort();
            tracing::info!(
                txn = newest.txn.number,
                checkpoint = newest.checkpoint,
                "checkpoint abandoned: the sink writes on into its transaction"
            );
            self.open = Some(newest.txn);
        }
    }

    /// The input ended and every pre-committed transaction is committed (a
    /// stop with a savepoint): the transaction opened since holds nothing a
    /// checkpoint covers, and is aborted rather than left begun. The stop's
    /// own commit is done by then, so a failure here is only reported.
    pub async fn end(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let p = Arc::clone(self.producer(open.number));
        match blocking(move || p.abort_transaction(CALL_TIMEOUT)).await {
            Ok(()) => tracing::info!(
                txn = open.number,
                records = open.records,
                "input ended: the transaction opened after the last checkpoint is aborted"
            ),
            Err(e) => tracing::warn!(
                txn = open.number,
                records = open.records,
                transactional_id = self.id(open.number),
                error = %e,
                "input ended: the transaction opened after the last checkpoint could not be aborted"
            ),
        }
    }
}

impl TransactionalKafkaSink {
    /// Records the broker refused after they were sent cannot be taken out
    /// of the transaction, which then cannot commit.
    fn refuse_doomed(&self, txn: u64, refused: &[Failure]) -> Result<()> {
        match refused.first() {
            Some(f) => Err(WorkerError::InDoubt {
                ids: self.ids.join(", "),
                reason: format!(
                    "transaction {txn} cannot commit: {} (record {}/{}/{})",
                    f.error, f.origin.topic, f.origin.partition, f.origin.offset
                ),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for TransactionalKafkaSink {
    fn drop(&mut self) {
        for p in &self.pre_committed {
            p.flush_task.abort();
        }
    }
}

/// The producer session holding transaction `txn`, flushed on
/// transactional id `id`, read from the broker; `None` when it holds no
/// records (the broker never saw it).
async fn producer_session(
    brokers: String,
    id: String,
    txn: Txn,
) -> std::result::Result<Option<ProducerIdentity>, Arc<WorkerError>> {
    if txn.records == 0 {
        return Ok(None);
    }
    let describing = id.clone();
    let identity = tokio::task::spawn_blocking(move || {
        kafka_txn::open_producer(&brokers, &describing, CALL_TIMEOUT, &AtomicBool::new(false))
    })
    .await
    .map_err(|e| WorkerError::InDoubt {
        ids: id.clone(),
        reason: e.to_string(),
    })?
    .map_err(|source| WorkerError::Transaction { ids: id, source })?;
    Ok(Some(identity))
}

/// The first transaction number from `next` on whose id no transaction
/// cools: states of sinks with two ids name ids that numbers of three may
/// map to. Numbers need not be consecutive; states name their own.
fn first_free(mut next: u64, cooling: &VecDeque<(usize, u64)>) -> u64 {
    while cooling.iter().any(|(index, _)| *index == slot(next)) {
        next += 1;
    }
    next
}

/// The index of the transactional id transaction `txn` runs on.
fn slot(txn: u64) -> usize {
    (txn % TRANSACTIONAL_IDS as u64) as usize
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Opens `producer`'s session on its transactional id, aborting what the
/// id had open, in calls of [`INIT_STEP`] at most until [`CALL_TIMEOUT`]:
/// between them it looks whether the subtask was stopped, and then opens
/// nothing. One long call would go on after the stop and could abort a
/// transaction of the job's next attempt on the same id.
fn init_unless_cancelled(
    producer: &SinkProducer,
    cancelled: &AtomicBool,
) -> rdkafka::error::KafkaResult<()> {
    let deadline = std::time::Instant::now() + CALL_TIMEOUT;
    loop {
        // A slow transaction coordinator, for the tests of a stop during it.
        fail::fail_point!("sink-before-init-transactions", |_| Err(
            rdkafka::error::KafkaError::Canceled
        ));
        if cancelled.load(Ordering::SeqCst) {
            return Err(rdkafka::error::KafkaError::Canceled);
        }
        match producer.init_transactions(INIT_STEP) {
            Err(rdkafka::error::KafkaError::Transaction(e))
                if e.is_retriable() && std::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "opening the producer session goes on");
            }
            done => return done,
        }
    }
}

/// Waits (blocking, [`CALL_TIMEOUT`] at most) until `producer` is its last
/// holder, the stopped start having dropped its own, then destroys it here.
fn destroy_when_last(producer: Arc<SinkProducer>) {
    let deadline = std::time::Instant::now() + CALL_TIMEOUT;
    while Arc::strong_count(&producer) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(producer);
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> rdkafka::error::KafkaResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_sink_opens_its_next_transaction_on_a_free_id() {
        for k in 1..=12_u64 {
            // A state of a sink with two ids: transaction k ran on id k mod 2.
            let old = TransactionalSinkState {
                txn: k,
                ids: 2,
                records: 1,
                producer: None,
                earlier: None,
            };
            let cooling: VecDeque<(usize, u64)> = old
                .transactions()
                .iter()
                .map(|s| (s.id_index(), 7))
                .collect();
            let next = first_free(k + 1, &cooling);
            assert!(next > k);
            assert_ne!(slot(next), old.id_index(), "txn {k}: next {next}");
            // A state of three ids naming two transactions leaves k + 1 free.
            let new = TransactionalSinkState {
                txn: k + 1,
                ids: 3,
                records: 1,
                producer: None,
                earlier: Some(Box::new(TransactionalSinkState {
                    txn: k,
                    ids: 3,
                    records: 1,
                    producer: None,
                    earlier: None,
                })),
            };
            let cooling: VecDeque<(usize, u64)> = new
                .transactions()
                .iter()
                .map(|s| (s.id_index(), 7))
                .collect();
            assert_eq!(first_free(k + 2, &cooling), k + 2);
        }
    }
}
