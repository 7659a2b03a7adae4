//! The states the API answers with, by the names the README documents
//! (`RUNNING`, never the protobuf `JOB_STATE_RUNNING`), as enums so the
//! OpenAPI document lists every value.

use serde::Serialize;
use sluice_proto as pb;
use utoipa::ToSchema;

/// A job's state; `UNKNOWN` only from a coordinator newer than this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Scheduling,
    Running,
    Failed,
    Cancelling,
    Cancelled,
    Finished,
    Stopped,
    Unknown,
}

impl From<pb::JobState> for JobState {
    fn from(s: pb::JobState) -> Self {
        match s {
            pb::JobState::Scheduling => Self::Scheduling,
            pb::JobState::Running => Self::Running,
            pb::JobState::Failed => Self::Failed,
            pb::JobState::Cancelling => Self::Cancelling,
            pb::JobState::Cancelled => Self::Cancelled,
            pb::JobState::Finished => Self::Finished,
            pb::JobState::Stopped => Self::Stopped,
            pb::JobState::Unspecified => Self::Unknown,
        }
    }
}

/// A subtask's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Scheduled,
    Deploying,
    Running,
    Finished,
    Failed,
    Cancelled,
    Unknown,
}

impl From<pb::TaskState> for TaskState {
    fn from(s: pb::TaskState) -> Self {
        match s {
            pb::TaskState::Scheduled => Self::Scheduled,
            pb::TaskState::Deploying => Self::Deploying,
            pb::TaskState::Running => Self::Running,
            pb::TaskState::Finished => Self::Finished,
            pb::TaskState::Failed => Self::Failed,
            pb::TaskState::Cancelled => Self::Cancelled,
            pb::TaskState::Unspecified => Self::Unknown,
        }
    }
}

/// A worker's state as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
    Alive,
    Lost,
    Unknown,
}

impl From<pb::WorkerState> for WorkerState {
    fn from(s: pb::WorkerState) -> Self {
        match s {
            pb::WorkerState::Alive => Self::Alive,
            pb::WorkerState::Lost => Self::Lost,
            pb::WorkerState::Unspecified => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_serialise_as_the_names_jobctl_and_the_proto_name_method_use() {
        for s in [
            pb::JobState::Scheduling,
            pb::JobState::Running,
            pb::JobState::Stopped,
            pb::JobState::Unspecified,
        ] {
            let json = serde_json::to_value(JobState::from(s)).expect("serialises");
            assert_eq!(json, s.name(), "{s:?}");
        }
        let task = serde_json::to_value(TaskState::from(pb::TaskState::Deploying));
        assert_eq!(task.expect("serialises"), "DEPLOYING");
        let worker = serde_json::to_value(WorkerState::from(pb::WorkerState::Alive));
        assert_eq!(worker.expect("serialises"), "ALIVE");
    }
}
