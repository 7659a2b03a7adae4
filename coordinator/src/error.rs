use sluice_common::{JobId, SpecError, WorkerId};

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("{0}")]
    InvalidSpec(#[from] SpecError),
    #[error("no job `{0}`")]
    UnknownJob(JobId),
    #[error("unknown worker `{0}`; register again")]
    UnknownWorker(WorkerId),
    #[error("job `{job}` is {state} and cannot be cancelled")]
    NotCancellable { job: JobId, state: &'static str },
    #[error("cannot read metadata of topic `{topic}` from {brokers}: {reason}")]
    KafkaMetadata {
        brokers: String,
        topic: String,
        reason: String,
    },
}

/// The one place coordinator errors become gRPC statuses.
impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        use CoordinatorError::*;
        let message = e.to_string();
        match e {
            InvalidSpec(_) => tonic::Status::invalid_argument(message),
            UnknownJob(_) => tonic::Status::not_found(message),
            UnknownWorker(_) => tonic::Status::failed_precondition(message),
            NotCancellable { .. } => tonic::Status::failed_precondition(message),
            KafkaMetadata { .. } => tonic::Status::unavailable(message),
        }
    }
}
