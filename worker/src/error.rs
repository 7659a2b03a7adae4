use sluice_common::{Fault, JobId, TaskId};

/// What a job does with a Kafka topic, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRole {
    Source,
    Sink,
    DeadLetter,
}

impl std::fmt::Display for TopicRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Sink => "sink",
            Self::DeadLetter => "dead-letter",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("kafka {what} ({brokers}): {source}")]
    Kafka {
        what: String,
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("kafka topic `{topic}` ({brokers}) did not acknowledge a message within 60s")]
    Unacknowledged { topic: String, brokers: String },
    /// A topic the job reads or writes is missing from the broker's
    /// metadata: deleted while the job ran (submission checks it exists).
    /// The outside world's fault, and a restart helps once it exists again.
    #[error(
        "kafka {role} topic `{topic}` ({brokers}) does not exist: it was deleted while the job \
         ran; restarts help once it exists again"
    )]
    TopicGone {
        role: TopicRole,
        topic: String,
        brokers: String,
    },
    #[error("cannot finish the in-doubt transaction of {ids}: {reason}")]
    InDoubt { ids: String, reason: String },
    #[error(transparent)]
    CassandraSchema(#[from] sluice_common::cassandra::SchemaError),
    #[error("cassandra: cannot prepare the INSERT into {table}: {source}")]
    CassandraPrepare {
        table: String,
        #[source]
        source: Box<scylla::errors::PrepareError>,
    },
    #[error("cassandra write to {table}: {source}")]
    CassandraWrite {
        table: String,
        #[source]
        source: Box<scylla::errors::ExecutionError>,
    },
    #[error("a cassandra write to {table} did not finish: {source}")]
    CassandraWriteTask {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error(
        "cassandra table {table} changed while the job ran ({change}); a write was refused: {source}"
    )]
    CassandraTableChanged {
        table: String,
        change: String,
        #[source]
        source: Box<scylla::errors::ExecutionError>,
    },
    /// An exactly-once Kafka sink's transaction, ended at a barrier, could
    /// not be flushed; whose fault it is is the cause's.
    #[error("kafka transaction {txn} cannot be flushed for its checkpoint: {source}")]
    Flush {
        txn: u64,
        #[source]
        source: std::sync::Arc<WorkerError>,
    },
    #[error("kafka transaction of {ids}: {source}")]
    Transaction {
        ids: String,
        #[source]
        source: sluice_common::kafka_txn::TxnError,
    },
    #[error("job spec of task {task} does not parse: {reason}")]
    Spec { task: TaskId, reason: String },
    #[error("job {job}: {source}")]
    Secret {
        job: JobId,
        #[source]
        source: sluice_common::secrets::SecretError,
    },
    #[error("exchange to {peer} (stage {stage}, subtask {index}): {reason}")]
    Exchange {
        peer: String,
        stage: u32,
        index: u32,
        reason: String,
    },
    #[error("S3 sink {target}: {what}: {reason}")]
    S3 {
        target: String,
        what: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] sluice_common::store::StoreError),
    #[error("state snapshot `{key}` cannot be restored: {reason}")]
    Restore { key: String, reason: String },
    #[error("dead-letter topic `{topic}` unavailable while recording a failed record: {reason}")]
    DeadLetter { topic: String, reason: String },
    /// The coordinator refused this worker's registration for good, such
    /// as for an exchange address another live worker advertises.
    #[error("the coordinator refused this worker: {reason}")]
    Refused { reason: String },
    /// A subtask's code panicked: `message` is the panic's own text.
    #[error("subtask {task} panicked: {message}")]
    Panicked { task: TaskId, message: String },
}

impl WorkerError {
    /// Whose fault this is, which decides whether restarting the job can help.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Kafka { source, .. } => kafka_fault(source),
            // A secret missing on this worker stays missing through restarts
            // until someone provides it.
            Self::Spec { .. }
            | Self::Secret { .. }
            | Self::CassandraTableChanged { .. }
            | Self::Refused { .. } => Fault::Spec,
            Self::CassandraSchema(e) => e.fault(),
            Self::CassandraPrepare { source, .. } => {
                crate::connectors::cassandra::prepare_fault(source)
            }
            Self::CassandraWrite { source, .. } => {
                crate::connectors::cassandra::write_fault(source)
            }
            // A panic is Sluice's bug, which a restart from the checkpoint
            // may not meet again.
            Self::Restore { .. }
            | Self::InDoubt { .. }
            | Self::CassandraWriteTask { .. }
            | Self::Panicked { .. } => Fault::Internal,
            Self::Transaction { source, .. } => transaction_fault(source),
            Self::Flush { source, .. } => source.fault(),
            Self::Unacknowledged { .. }
            | Self::TopicGone { .. }
            | Self::Exchange { .. }
            | Self::S3 { .. }
            | Self::Store(_)
            | Self::DeadLetter { .. } => Fault::External,
        }
    }

    /// The errors under this one, outermost first, each as it describes
    /// itself: what the coordinator shows as the failure's causes.
    pub fn causes(&self) -> Vec<String> {
        let mut causes = Vec::new();
        let mut next = std::error::Error::source(self);
        while let Some(e) = next {
            causes.push(e.to_string());
            next = e.source();
        }
        causes
    }

    /// The peer worker this error could not reach, if that is what it is.
    pub fn unreachable_peer(&self) -> Option<&str> {
        match self {
            Self::Exchange { peer, .. } if peer.contains(':') => Some(peer),
            _ => None,
        }
    }
}

pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// A transaction found in a state Sluice cannot go on from (another
/// producer's in place of the checkpoint's, or the checkpoint's aborted) is
/// Sluice's to report loudly; a broker that does not answer in time, or a
/// transaction aborted before its checkpoint completed, is the broker's.
fn transaction_fault(e: &sluice_common::kafka_txn::TxnError) -> Fault {
    use sluice_common::kafka_txn::TxnError::*;
    match e {
        NotOurs { .. } | AbortedByBroker { .. } => Fault::Internal,
        _ => Fault::External,
    }
}

/// Kafka errors no retry can cure are the spec's (a setting the broker
/// refuses, an authorisation it lacks); the rest are the broker's, for a while.
fn kafka_fault(e: &rdkafka::error::KafkaError) -> Fault {
    use rdkafka::error::KafkaError::{ClientConfig, ClientCreation};
    use rdkafka::types::RDKafkaErrorCode::*;
    // A client the spec's `properties` make impossible (an unknown setting,
    // a bad value, a feature the build lacks) will not become possible.
    if matches!(e, ClientConfig(..) | ClientCreation(_)) {
        return Fault::Spec;
    }
    match e.rdkafka_error_code() {
        Some(
            InvalidTransactionTimeout
            | TopicAuthorizationFailed
            | GroupAuthorizationFailed
            | ClusterAuthorizationFailed
            | TransactionalIdAuthorizationFailed
            | SaslAuthenticationFailed
            | InvalidConfig
            | InvalidArgument
            | UnsupportedVersion,
        ) => Fault::Spec,
        _ => Fault::External,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::KafkaError;

    #[test]
    fn causes_are_the_errors_under_this_one_outermost_first() {
        let e = WorkerError::Kafka {
            what: "producer".into(),
            brokers: "b:9092".into(),
            source: Box::new(KafkaError::ClientCreation("no such setting".into())),
        };
        assert_eq!(
            e.causes(),
            [KafkaError::ClientCreation("no such setting".into()).to_string()]
        );
        let e = WorkerError::Spec {
            task: TaskId::new("job-1/s0/0@0"),
            reason: "not YAML".into(),
        };
        assert!(e.causes().is_empty());
    }
}
