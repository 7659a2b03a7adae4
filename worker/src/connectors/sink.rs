use super::blackhole::BlackholeSink;
use super::cassandra::CassandraSink;
use super::kafka::{KafkaSink, TransactionalKafkaSink};
use super::s3::S3Sink;
use crate::error::{Result, WorkerError};
use crate::record::{Failure, Record};
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use sluice_common::kafka_txn::{TransactionalSinkState, transactional_ids};
use sluice_common::spec::{Delivery, SinkSpec};
use std::time::SystemTime;

/// The sink of a job's last stage.
pub enum SinkWriter {
    Kafka(KafkaSink),
    TransactionalKafka(Box<TransactionalKafkaSink>),
    Cassandra(Box<CassandraSink>),
    Blackhole(BlackholeSink),
    S3(Box<S3Sink>),
}

/// What a checkpoint holds of a sink when something of it waits for the
/// checkpoint to complete before it commits (JSON).
pub enum SinkState {
    /// Known at the barrier.
    Ready(String),
    /// Known once the sink learnt from the outside what it records (the
    /// producer session holding a transaction), which it does while
    /// records after the barrier flow; an error means the checkpoint cannot
    /// be acknowledged, and the sink fails.
    Flushing(BoxFuture<'static, Result<String>>),
}

impl SinkState {
    /// The state, once known.
    pub async fn resolve(self) -> Result<String> {
        match self {
            Self::Ready(state) => Ok(state),
            Self::Flushing(flushing) => flushing.await,
        }
    }
}

/// What a sink's pre-commit at a barrier gives.
#[derive(Default)]
pub struct PreCommit {
    /// The sink's part of the checkpoint, if any.
    pub state: Option<SinkState>,
    /// Records the output refused since the last batch, for the dead-letter topic.
    pub failures: Vec<Failure>,
}

/// Which sink subtask of which job attempt a sink is.
pub struct SinkIdentity<'a> {
    pub job_uid: &'a str,
    pub stage: u32,
    pub index: u32,
    pub attempt: u32,
}

impl SinkWriter {
    /// `restored` is the subtask's state in checkpoint `restored_checkpoint`,
    /// which the job restarts from (JSON, may be empty; 0: none);
    /// `timezone` is the job's, for zone-less times.
    pub async fn build(
        spec: &SinkSpec,
        delivery: &Delivery,
        timezone: chrono_tz::Tz,
        id: &SinkIdentity<'_>,
        restored: &str,
        restored_checkpoint: u64,
    ) -> Result<Self> {
        Ok(match spec {
            SinkSpec::Kafka(k) if *delivery == Delivery::ExactlyOnce => {
                let ids = transactional_ids(id.job_uid, id.stage, id.index);
                let restored = (!restored.is_empty())
                    .then(|| serde_json::from_str::<TransactionalSinkState>(restored))
                    .transpose()
                    .map_err(|e| WorkerError::InDoubt {
                        ids: ids.join(", "),
                        reason: format!("restored sink state {restored:?} does not parse: {e}"),
                    })?;
                Self::TransactionalKafka(Box::new(
                    TransactionalKafkaSink::build(k, ids, restored, restored_checkpoint).await?,
                ))
            }
            SinkSpec::Kafka(k) => Self::Kafka(KafkaSink::build(k).await?),
            // Writes in flight are awaited at each barrier; replays are upserts.
            SinkSpec::Cassandra(c) => {
                Self::Cassandra(Box::new(CassandraSink::build(c, timezone).await?))
            }
            SinkSpec::Blackhole(b) => Self::Blackhole(BlackholeSink::build(b)),
            SinkSpec::S3(s) => Self::S3(Box::new(S3Sink::build(s, timezone, id, restored).await?)),
        })
    }

    /// Writes a batch durably; returns the records the sink could not take.
    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        match self {
            Self::Kafka(s) => s.write(batch).await,
            Self::TransactionalKafka(s) => s.write(batch).await,
            Self::Cassandra(s) => s.write(batch).await,
            Self::Blackhole(s) => Ok(s.write(batch).await),
            Self::S3(s) => s.write(batch).await,
        }
    }

    /// At the barrier of checkpoint `checkpoint`: pre-commits everything
    /// written before it. Input goes on at once, into the next transaction.
    pub async fn pre_commit(&mut self, checkpoint: u64) -> Result<PreCommit> {
        match self {
            Self::TransactionalKafka(s) => {
                let flushing = s.pre_commit(checkpoint).await?;
                Ok(PreCommit {
                    state: Some(SinkState::Flushing(
                        flushing
                            .map_ok(|state| serde_json::to_string(&state).unwrap_or_default())
                            .boxed(),
                    )),
                    failures: Vec::new(),
                })
            }
            Self::Kafka(s) => Ok(PreCommit {
                state: None,
                failures: s.pre_commit().await?,
            }),
            Self::S3(s) => Ok(PreCommit {
                state: s.pre_commit(checkpoint).await?.map(SinkState::Ready),
                failures: Vec::new(),
            }),
            Self::Cassandra(s) => Ok(PreCommit {
                state: None,
                failures: s.drain().await?,
            }),
            Self::Blackhole(_) => Ok(PreCommit::default()),
        }
    }

    /// `true` while something pre-committed waits for its checkpoint.
    pub fn uncommitted(&self) -> bool {
        match self {
            Self::TransactionalKafka(s) => s.uncommitted(),
            Self::S3(s) => s.covers(u64::MAX),
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) => false,
        }
    }

    /// `true` when checkpoint `completed` covers something pre-committed and
    /// not yet committed.
    pub fn covers(&self, completed: u64) -> bool {
        match self {
            Self::TransactionalKafka(s) => s.covers(completed),
            Self::S3(s) => s.covers(completed),
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) => false,
        }
    }

    /// Checkpoint `completed` completed: commits what was pre-committed at
    /// its barrier and at earlier ones, and nothing of later barriers.
    pub async fn commit(&mut self, completed: u64) -> Result<()> {
        match self {
            Self::TransactionalKafka(s) => s.commit(completed).await,
            Self::S3(s) => s.commit(completed).await,
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) => Ok(()),
        }
    }

    /// The coordinator settled checkpoints up to `completed` and abandoned
    /// up to `abandoned` (`completed` `None`: checkpoint `abandoned` alone
    /// was abandoned): a sink blocked on an abandoned one writes on.
    pub fn abandoned(&mut self, completed: Option<u64>, abandoned: u64) {
        if let Self::TransactionalKafka(s) = self {
            s.abandoned(completed, abandoned);
        }
    }

    /// `true` while the sink takes no records: every transaction it may
    /// hold waits for a checkpoint to complete.
    pub fn blocked(&self) -> bool {
        match self {
            Self::TransactionalKafka(s) => s.blocked(),
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) | Self::S3(_) => false,
        }
    }

    /// The input ended after the last checkpoint committed (nothing is
    /// [`Self::uncommitted`]): nothing the sink began since is left open or
    /// in flight. Returns the records the
    /// output refused since the last batch.
    pub async fn end(&mut self) -> Result<Vec<Failure>> {
        match self {
            Self::TransactionalKafka(s) => {
                s.end().await;
                Ok(Vec::new())
            }
            Self::Cassandra(s) => s.drain().await,
            Self::Kafka(_) | Self::Blackhole(_) | Self::S3(_) => Ok(Vec::new()),
        }
    }

    /// Since when the sink's open transaction has held records, for sinks
    /// whose transactions the broker aborts past a timeout.
    pub fn open_transaction_since(&self) -> Option<SystemTime> {
        match self {
            Self::TransactionalKafka(s) => s.open_transaction_since(),
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) | Self::S3(_) => None,
        }
    }
}
