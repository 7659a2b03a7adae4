//! Exactly-once Kafka sink: two-phase commit across checkpoints.
//!
//! Each sink subtask owns two transactional ids, stable across attempts of
//! the job so a restarted subtask fences its zombie. Transaction `k` runs on
//! id `k mod 2`. At barrier `n` the sink flushes transaction `k` (pre-commit),
//! records `k` in the checkpoint and takes no more input until checkpoint `n`
//! completes (it then commits `k` and opens `k + 1` on the other id) or is
//! abandoned (it then goes on writing into `k`). So at most one transaction is
//! open per id, and after a failure the one open on id `k mod 2`, where `k` is
//! what the restored checkpoint recorded, is exactly the transaction that
//! checkpoint covers: recovery commits it before anything else touches that id.

use super::deliveries::Deliveries;
use super::in_doubt::{InDoubt, commit_open_transaction};
use super::{client_config, kafka_err, message_limit, with_limit};
use crate::error::{Result, WorkerError};
use crate::record::{Failure, Record};
use rdkafka::producer::{FutureProducer, Producer};
use serde::{Deserialize, Serialize};
use sluice_common::spec::KafkaSinkSpec;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longer than any recovery should take: a transaction open longer is
/// aborted by the broker. Brokers must allow it (`transaction.max.timeout.ms`,
/// 15 minutes by default).
const TRANSACTION_TIMEOUT: &str = "900000";
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The sink's part of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// The transaction pre-committed at the checkpoint's barrier.
    pub txn: u64,
    /// Records written into it, so recovery can tell an empty transaction
    /// from one the broker aborted.
    #[serde(default)]
    pub records: u64,
}

pub struct TransactionalKafkaSink {
    producers: [super::DetachedDrop<FutureProducer>; 2],
    ids: [String; 2],
    /// The open transaction.
    txn: u64,
    /// Records written into it.
    txn_records: u64,
    brokers: String,
    deliveries: Deliveries,
}

impl TransactionalKafkaSink {
    /// `id_prefix` names the subtask (`sluice-<job>-s<stage>-<index>`);
    /// `restored` is its state in the checkpoint the job restarts from.
    pub async fn build(
        spec: &KafkaSinkSpec,
        id_prefix: &str,
        restored: Option<SinkState>,
    ) -> Result<Self> {
        let ids = [format!("{id_prefix}-0"), format!("{id_prefix}-1")];
        // Set when this build is dropped (its subtask cancelled): blocking
        // recovery work still under way must then leave the ids alone.
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        if let Some(state) = restored {
            let id = ids[(state.txn % 2) as usize].clone();
            let brokers = spec.brokers.clone();
            let flag = cancelled.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                commit_open_transaction(&brokers, &id, CALL_TIMEOUT, &flag)
            })
            .await
            .map_err(|e| in_doubt_err(&ids, e.to_string()))?
            .map_err(|e| in_doubt_err(&ids, e))?;
            tracing::info!(
                txn = state.txn,
                ?outcome,
                "in-doubt transaction of the restored checkpoint settled"
            );
            fail::fail_point!("sink-recovery-after-in-doubt", |_| {
                std::process::abort();
            });
            if let InDoubt::NothingOpen(why) = &outcome
                && why.contains("CompleteAbort")
                && state.records > 0
            {
                return Err(in_doubt_err(
                    &ids,
                    format!(
                        "transaction {} of the restored checkpoint, holding {} records, was aborted by the broker \
                         (open past transaction.timeout.ms?): its records are lost",
                        state.txn, state.records
                    ),
                ));
            }
            if outcome == InDoubt::Committed {
                tracing::warn!(
                    txn = state.txn,
                    "committed a transaction left open by a failure after its checkpoint completed"
                );
            }
        }
        let limit = message_limit(&spec.brokers, &spec.properties, &spec.topic)
            .await
            .to_string();
        let properties = with_limit(&spec.properties, &limit);
        let make = |id: &str| -> Result<FutureProducer> {
            client_config(
                &spec.brokers,
                &[
                    ("transactional.id", id),
                    ("transaction.timeout.ms", TRANSACTION_TIMEOUT),
                    ("linger.ms", "5"),
                ],
                &properties,
            )
            .create()
            .map_err(kafka_err(
                format!("create transactional producer `{id}`"),
                &spec.brokers,
            ))
        };
        let producers = [
            super::DetachedDrop::new(make(&ids[0])?),
            super::DetachedDrop::new(make(&ids[1])?),
        ];
        // Fences older attempts' producers and aborts whatever they left open.
        for (p, id) in producers.iter().zip(&ids) {
            let p = FutureProducer::clone(p);
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
            brokers: spec.brokers.clone(),
            deliveries: Deliveries::new(&spec.topic, &spec.brokers, spec.key_field.clone()),
        };
        sink.current()
            .begin_transaction()
            .map_err(kafka_err("begin transaction", &sink.brokers))?;
        Ok(sink)
    }

    fn current(&self) -> &FutureProducer {
        &self.producers[(self.txn % 2) as usize]
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let producer = FutureProducer::clone(&self.producers[(self.txn % 2) as usize]);
        let failures = self.deliveries.send(&producer, &batch).await?;
        self.txn_records += (batch.len() - failures.len()) as u64;
        Ok(failures)
    }

    /// Flushes the open transaction; its number goes into the checkpoint.
    pub async fn pre_commit(&mut self) -> Result<SinkState> {
        self.deliveries.drain().await?;
        Ok(SinkState {
            txn: self.txn,
            records: self.txn_records,
        })
    }

    /// The checkpoint holding the pre-committed transaction completed: commit
    /// it and open the next one on the other transactional id.
    pub async fn commit(&mut self) -> Result<()> {
        fail::fail_point!("sink-before-commit", |_| {
            std::process::abort();
        });
        let p = FutureProducer::clone(self.current());
        blocking(move || p.commit_transaction(CALL_TIMEOUT))
            .await
            .map_err(kafka_err(
                format!(
                    "commit transaction on `{}`",
                    self.ids[(self.txn % 2) as usize]
                ),
                &self.brokers,
            ))?;
        fail::fail_point!("sink-after-commit", |_| {
            std::process::abort();
        });
        self.txn += 1;
        self.txn_records = 0;
        self.current()
            .begin_transaction()
            .map_err(kafka_err("begin transaction", &self.brokers))
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn in_doubt_err(ids: &[String; 2], reason: String) -> WorkerError {
    WorkerError::InDoubt {
        ids: ids.join(", "),
        reason,
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
