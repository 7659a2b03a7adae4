use super::blackhole::BlackholeSink;
use super::cassandra::CassandraSink;
use super::kafka::{KafkaSink, TransactionalKafkaSink};
use super::s3::S3Sink;
use crate::error::{Result, WorkerError};
use crate::record::{Failure, Record};
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

/// What a sink's pre-commit at a barrier gives.
#[derive(Debug, Default)]
pub struct PreCommit {
    /// What the checkpoint holds of the sink when it then waits for the
    /// checkpoint to complete before it commits (JSON).
    pub state: Option<String>,
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
    /// `restored` is the subtask's state in the checkpoint the job restarts
    /// from (JSON, may be empty); `timezone` is the job's, for zone-less times.
    pub async fn build(
        spec: &SinkSpec,
        delivery: &Delivery,
        timezone: chrono_tz::Tz,
        id: &SinkIdentity<'_>,
        restored: &str,
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
                    TransactionalKafkaSink::build(k, ids, restored).await?,
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

    /// At a barrier: pre-commits everything written before it.
    pub async fn pre_commit(&mut self) -> Result<PreCommit> {
        match self {
            Self::TransactionalKafka(s) => {
                let state = s.pre_commit().await?;
                Ok(PreCommit {
                    state: Some(serde_json::to_string(&state).unwrap_or_default()),
                    failures: Vec::new(),
                })
            }
            Self::Kafka(s) => Ok(PreCommit {
                state: None,
                failures: s.pre_commit().await?,
            }),
            Self::S3(s) => Ok(PreCommit {
                state: s.pre_commit().await?,
                failures: Vec::new(),
            }),
            Self::Cassandra(s) => Ok(PreCommit {
                state: None,
                failures: s.drain().await?,
            }),
            Self::Blackhole(_) => Ok(PreCommit::default()),
        }
    }

    /// The checkpoint of the last pre-commit completed.
    pub async fn commit(&mut self) -> Result<()> {
        match self {
            Self::TransactionalKafka(s) => s.commit().await,
            Self::S3(s) => s.commit().await,
            Self::Kafka(_) | Self::Cassandra(_) | Self::Blackhole(_) => Ok(()),
        }
    }

    /// The input ended after the last checkpoint committed: nothing the
    /// sink began since is left open or in flight. Returns the records the
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
