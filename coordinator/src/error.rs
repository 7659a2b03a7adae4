use sluice_common::{Fault, JobId, SpecError, SpecProblem, WorkerId};

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
    #[error("no savepoint `{0}` (jobctl savepoints lists them)")]
    UnknownSavepoint(String),
    /// The savepoint's offsets or keyed state do not fit the job: each
    /// problem at the path of the submitted spec that differs.
    #[error("savepoint `{savepoint}` cannot start this job: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    SavepointMismatch {
        savepoint: String,
        problems: Vec<SpecProblem>,
    },
    #[error("job `{job}` is {state}; {what} needs a running job")]
    NotRunning {
        job: JobId,
        state: &'static str,
        what: &'static str,
    },
    /// A rescale of a job that is not running nor waiting for task slots:
    /// `savepoint` is its latest savepoint, which a new job can start from
    /// at another parallelism.
    #[error("job `{job}` is {state}, not running, so it cannot be rescaled; {}", rescale_hint(state, savepoint.as_deref()))]
    NotRescalable {
        job: JobId,
        state: &'static str,
        savepoint: Option<String>,
    },
    #[error("job `{0}` has checkpoints off, so it cannot take a savepoint")]
    CheckpointsOff(JobId),
    #[error("savepoint of job `{job}` failed: {reason}")]
    SavepointFailed { job: JobId, reason: String },
    #[error("parallelism must be between 1 and {max}, found {found}")]
    Parallelism { found: u32, max: u64 },
    /// A parallelism the alive workers' task slots cannot hold: `free`
    /// counts the slots of every alive worker that no other job uses.
    #[error(
        "job `{job}` at parallelism {needed} needs {needed} task slots, but the alive workers have {free} free for it (a slot holds one subtask of each stage); {}",
        if *free == 0 { "no slot is free: add workers or end other jobs".to_string() } else { format!("add workers or ask for at most {free}") }
    )]
    NotEnoughSlots { job: JobId, needed: u32, free: u32 },
    /// A worker registering with the exchange address a live worker
    /// already advertises: records meant for one would reach the other.
    #[error(
        "exchange address {address} is already advertised by live worker {worker} (pid {pid}): give each worker its own --data-advertise"
    )]
    ExchangeAddressInUse {
        address: String,
        worker: WorkerId,
        pid: u32,
    },
    #[error("this coordinator is not the leader{}", .leader.as_ref().map(|l| format!("; the leader is at {l}")).unwrap_or_else(|| "; no leader is known yet".into()))]
    NotLeader { leader: Option<String> },
    #[error("the coordinator group could not record the change: {0}")]
    Raft(String),
    /// A fault of the coordinator itself (a task of it ended early).
    #[error("internal error of the coordinator: {0}")]
    Internal(String),
    #[error("no topic `{topic}` on {brokers}: {reason}")]
    UnknownTopic {
        brokers: String,
        topic: String,
        reason: String,
    },
    /// Systems the job spec names did not answer at submission: each at the
    /// path of the field naming it. Trying again later may succeed.
    #[error("systems the job spec names did not answer; try again once they do: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unavailable(Vec<SpecProblem>),
    #[error("cannot read metadata of topic `{topic}` from {brokers}: {reason}")]
    KafkaMetadata {
        brokers: String,
        topic: String,
        reason: String,
    },
    #[error("cannot read broker setting `{name}` from {brokers}: {reason}")]
    BrokerConfig {
        brokers: String,
        name: String,
        reason: String,
    },
}

/// How to get a job that is not running (in `state`) to another
/// parallelism: once it runs when its tasks are being placed, else from
/// its latest savepoint `savepoint`.
fn rescale_hint(state: &str, savepoint: Option<&str>) -> String {
    match (state, savepoint) {
        ("SCHEDULING", _) => "its tasks are being placed: rescale it once it is RUNNING".into(),
        (_, Some(id)) => format!(
            "start a new job from its savepoint `{id}` at the new parallelism: \
             `jobctl submit SPEC --from-savepoint {id} --parallelism N`, or \
             POST /api/jobs?from_savepoint={id} with the spec's parallelism set"
        ),
        (_, None) => "it has no savepoint: submit its spec again at the new parallelism".into(),
    }
}

impl CoordinatorError {
    /// Whose fault the error is: the caller's request or spec (`Spec`,
    /// answered as such and not worth retrying unchanged), an outside system
    /// or the coordinator group not answering for now (`External`, worth
    /// retrying), or Sluice's own (`Internal`).
    pub fn fault(&self) -> Fault {
        use CoordinatorError::*;
        match self {
            InvalidSpec(_)
            | UnknownJob(_)
            | UnknownWorker(_)
            | NotCancellable { .. }
            | UnknownSavepoint(_)
            | SavepointMismatch { .. }
            | NotRunning { .. }
            | NotRescalable { .. }
            | CheckpointsOff(_)
            | Parallelism { .. }
            | NotEnoughSlots { .. }
            | ExchangeAddressInUse { .. }
            | UnknownTopic { .. } => Fault::Spec,
            SavepointFailed { .. }
            | NotLeader { .. }
            | Unavailable(_)
            | KafkaMetadata { .. }
            | BrokerConfig { .. } => Fault::External,
            Raft(_) | Internal(_) => Fault::Internal,
        }
    }
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
            KafkaMetadata { .. } | BrokerConfig { .. } | Unavailable(_) => {
                tonic::Status::unavailable(message)
            }
            UnknownTopic { .. } => tonic::Status::invalid_argument(message),
            UnknownSavepoint(_) => tonic::Status::not_found(message),
            SavepointMismatch { .. } | Parallelism { .. } => {
                tonic::Status::invalid_argument(message)
            }
            NotRunning { .. }
            | NotRescalable { .. }
            | CheckpointsOff(_)
            | NotEnoughSlots { .. } => tonic::Status::failed_precondition(message),
            SavepointFailed { .. } => tonic::Status::aborted(message),
            ExchangeAddressInUse { .. } => tonic::Status::already_exists(message),
            NotLeader { leader } => {
                let mut status = tonic::Status::unavailable(message);
                if let Some(leader) = leader.and_then(|l| l.parse().ok()) {
                    status
                        .metadata_mut()
                        .insert(sluice_common::LEADER_HEADER, leader);
                }
                status
            }
            // Unknown whether the change took effect: a retry could apply it twice.
            Raft(_) => tonic::Status::aborted(message),
            Internal(_) => tonic::Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_refusals_never_suggest_a_parallelism_of_zero() {
        let full = CoordinatorError::NotEnoughSlots {
            job: JobId::new("job-1"),
            needed: 2,
            free: 0,
        }
        .to_string();
        assert!(!full.contains("at most 0"), "{full}");
        assert!(full.contains("no slot is free"), "{full}");
        let some = CoordinatorError::NotEnoughSlots {
            job: JobId::new("job-1"),
            needed: 3,
            free: 2,
        }
        .to_string();
        assert!(some.contains("ask for at most 2"), "{some}");
    }

    #[test]
    fn an_ended_job_is_rescaled_by_starting_a_new_one_from_its_savepoint() {
        let stopped = CoordinatorError::NotRescalable {
            job: JobId::new("job-1"),
            state: "STOPPED",
            savepoint: Some("sp-1".into()),
        }
        .to_string();
        assert!(stopped.contains("is STOPPED, not running"), "{stopped}");
        assert!(stopped.contains("--from-savepoint sp-1"), "{stopped}");
        assert!(!stopped.contains("stop with savepoint"), "{stopped}");
        let cancelled = CoordinatorError::NotRescalable {
            job: JobId::new("job-1"),
            state: "CANCELLED",
            savepoint: None,
        }
        .to_string();
        assert!(cancelled.contains("no savepoint"), "{cancelled}");
    }
}
