use crate::meta::{Applied, Command};
use std::fmt;

openraft::declare_raft_types!(
    /// Coordinator nodes by number; their address is the Raft RPC endpoint.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, job) = match self {
            Self::SubmitJob { uid, .. } => ("submit", uid.as_str()),
            Self::AssignTasks { job, .. } => ("assign tasks", job.as_str()),
            Self::SetTaskState { job, .. } => ("task state", job.as_str()),
            Self::CheckpointCompleted { job, .. } => ("checkpoint completed", job.as_str()),
            Self::Rescale { job, .. } => ("rescale", job.as_str()),
            Self::ResizeWaiting { job, .. } => ("rescale waiting job", job.as_str()),
            Self::SetJobState { job, .. } => ("job state", job.as_str()),
            Self::ReserveCheckpointIds { job, .. } => ("reserve checkpoint ids", job.as_str()),
            Self::TransactionsSettled { job } => ("transactions settled", job.as_str()),
            Self::AddPartitions { job, .. } => ("add partitions", job.as_str()),
            Self::RecordOffsetResets { job, .. } => ("offset resets", job.as_str()),
            Self::DeleteSavepoint { id } => ("delete savepoint", id.as_str()),
        };
        write!(f, "{what} ({job})")
    }
}
