//! Exactly-once Kafka sink: two-phase commit across checkpoints.
//!
//! Each sink subtask owns two transactional ids, stable across attempts of
//! the job so a restarted subtask fences its zombie. Transaction `k` runs on
//! id `k mod 2`. At barrier `n` the sink flushes transaction `k` (pre-commit),
//! records `k` and the producer session holding it in the checkpoint, and
//! takes no more input until checkpoint `n` completes (it then commits `k`
//! and opens `k + 1` on the other id) or is abandoned (it then goes on
//! writing into `k`, which the next checkpoint covers whole). So at most one
//! transaction is open per id, and after a failure the one open on id
//! `k mod 2`, where `k` is what the restored checkpoint recorded, is exactly
//! the transaction that checkpoint covers: recovery commits it, after
//! checking the broker names the producer session the checkpoint recorded,
//! before anything else touches that id.

use super::deliveries::{self, Deliveries, SinkProducer};
use super::{client_config, kafka_err, topic_limits, with_limit};
use crate::error::{Result, WorkerError};
use crate::record::{Failure, Record};
use rdkafka::producer::Producer;
use sluice_common::kafka_txn::{
    self, DEFAULT_TRANSACTION_TIMEOUT_MS, InDoubt, TRANSACTION_TIMEOUT, TransactionalSinkState,
};
use sluice_common::spec::KafkaSinkSpec;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct TransactionalKafkaSink {
    producers: [super::DetachedDrop<Arc<SinkProducer>>; 2],
    ids: [String; 2],
    /// The open transaction.
    txn: u64,
    /// Records written into it.
    txn_records: u64,
    /// When its first record was written: the broker's transaction timeout
    /// runs from about then.
    txn_opened_at: Option<SystemTime>,
    brokers: String,
    deliveries: Deliveries,
}

impl TransactionalKafkaSink {
    /// `ids` are the subtask's two transactional ids
    /// ([`kafka_txn::transactional_ids`]); `restored` is its state in the
    /// checkpoint the job restarts from.
    pub async fn build(
        spec: &KafkaSinkSpec,
        ids: [String; 2],
        restored: Option<TransactionalSinkState>,
    ) -> Result<Self> {
        // Set when this build is dropped (its subtask cancelled): blocking
        // recovery work still under way must then leave the ids alone.
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        if let Some(state) = restored {
            let id = ids[(state.txn % 2) as usize].clone();
            let brokers = spec.brokers.clone();
            let flag = cancelled.clone();
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
                txn = state.txn,
                ?outcome,
                "in-doubt transaction of the restored checkpoint settled"
            );
            fail::fail_point!("sink-recovery-after-in-doubt", |_| {
                std::process::abort();
            });
            if outcome == InDoubt::Committed {
                tracing::warn!(
                    txn = state.txn,
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
        ];
        // Fences older attempts' producers and aborts whatever they left open.
        for (p, id) in producers.iter().zip(&ids) {
            let p = Arc::clone(p);
            let flag = cancelled.clone();
            blocking(move || {
                if flag.load(Ordering::SeqCst) {
                    return Err(rdkafka::error::KafkaError::Canceled);
                }
                p.init_transactions(CALL_TIMEOUT)
            })
            .await
            .map_err(kafka_err(
                format!("init transactions of `{id}`"),
                &spec.brokers,
            ))?;
        }
        let txn = restored.map_or(1, |s| s.txn + 1);
        let sink = Self {
            producers,
            ids,
            txn,
            txn_records: 0,
            txn_opened_at: None,
            brokers: spec.brokers.clone(),
            deliveries: Deliveries::new(spec, limits.compacted),
        };
        sink.current()
            .begin_transaction()
            .map_err(kafka_err("begin transaction", &sink.brokers))?;
        Ok(sink)
    }

    fn current(&self) -> &Arc<SinkProducer> {
        &self.producers[(self.txn % 2) as usize]
    }

    fn current_id(&self) -> &str {
        &self.ids[(self.txn % 2) as usize]
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let producer = Arc::clone(self.current());
        let sent_at = SystemTime::now();
        let failures = self.deliveries.send(&producer, &batch).await?;
        // A record the broker refused fails the whole transaction: the job
        // restarts from its checkpoint. librdkafka refuses an oversized
        // record before sending (the limit is the topic's), so the broker
        // has little left to refuse a record for.
        let refused = self.deliveries.refused(&producer)?;
        self.refuse_doomed(&refused)?;
        self.txn_records += (batch.len() - failures.len()) as u64;
        if self.txn_records > 0 {
            self.txn_opened_at.get_or_insert(sent_at);
        }
        Ok(failures)
    }

    /// Since when the open transaction has held records (`None`: it holds
    /// none, so the broker has not begun it).
    pub fn open_transaction_since(&self) -> Option<SystemTime> {
        self.txn_opened_at
    }

    /// Flushes the open transaction; its number, and the producer session
    /// holding it when it holds records, go into the checkpoint.
    pub async fn pre_commit(&mut self) -> Result<TransactionalSinkState> {
        let producer = Arc::clone(self.current());
        let refused = self.deliveries.drain(&producer).await?;
        self.refuse_doomed(&refused)?;
        let producer = if self.txn_records > 0 {
            let (brokers, id) = (self.brokers.clone(), self.current_id().to_string());
            let identity = tokio::task::spawn_blocking(move || {
                kafka_txn::open_producer(&brokers, &id, CALL_TIMEOUT, &AtomicBool::new(false))
            })
            .await
            .map_err(|e| WorkerError::InDoubt {
                ids: self.ids.join(", "),
                reason: e.to_string(),
            })?
            .map_err(|source| WorkerError::Transaction {
                ids: self.ids.join(", "),
                source,
            })?;
            Some(identity)
        } else {
            None
        };
        Ok(TransactionalSinkState {
            txn: self.txn,
            records: self.txn_records,
            producer,
        })
    }

    /// The checkpoint holding the pre-committed transaction completed: commit
    /// it and open the next one on the other transactional id.
    pub async fn commit(&mut self) -> Result<()> {
        fail::fail_point!("sink-before-commit", |_| {
            std::process::abort();
        });
        let p = Arc::clone(self.current());
        blocking(move || p.commit_transaction(CALL_TIMEOUT))
            .await
            .map_err(kafka_err(
                format!("commit transaction on `{}`", self.current_id()),
                &self.brokers,
            ))?;
        fail::fail_point!("sink-after-commit", |_| {
            std::process::abort();
        });
        self.txn += 1;
        self.txn_records = 0;
        self.txn_opened_at = None;
        self.current()
            .begin_transaction()
            .map_err(kafka_err("begin transaction", &self.brokers))
    }

    /// The input ended after the last checkpoint committed (a stop with a
    /// savepoint): the transaction opened since holds nothing a checkpoint
    /// covers, and is aborted rather than left begun. The stop's own commit
    /// is done by then, so a failure here is only reported.
    pub async fn end(&mut self) {
        let p = Arc::clone(self.current());
        let records = self.txn_records;
        match blocking(move || p.abort_transaction(CALL_TIMEOUT)).await {
            Ok(()) => tracing::info!(
                txn = self.txn,
                records,
                "input ended: the transaction opened after the last checkpoint is aborted"
            ),
            Err(e) => tracing::warn!(
                txn = self.txn,
                records,
                transactional_id = self.current_id(),
                error = %e,
                "input ended: the transaction opened after the last checkpoint could not be aborted"
            ),
        }
        self.txn_records = 0;
        self.txn_opened_at = None;
    }
}

impl TransactionalKafkaSink {
    /// Records the broker refused after they were sent cannot be taken out
    /// of the transaction, which then cannot commit.
    fn refuse_doomed(&self, refused: &[Failure]) -> Result<()> {
        match refused.first() {
            Some(f) => Err(WorkerError::InDoubt {
                ids: self.ids.join(", "),
                reason: format!(
                    "transaction {} cannot commit: {} (record {}/{}/{})",
                    self.txn, f.error, f.origin.topic, f.origin.partition, f.origin.offset
                ),
            }),
            None => Ok(()),
        }
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rdkafka::error::KafkaResult<T> + Send + 'static,
) -> rdkafka::error::KafkaResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(rdkafka::error::KafkaError::Canceled))
}
