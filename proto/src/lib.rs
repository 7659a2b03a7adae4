//! The gRPC API of Sluice: `JobService` for clients, `ClusterService` for
//! workers, `ExchangeService` between workers, `RaftService` between
//! coordinators.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

pub mod dialer;
pub mod reloading_cert;
pub mod tls;

pub use v1::*;

impl JobState {
    /// Whether a job in this state will never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Cancelled | Self::Finished | Self::Stopped
        )
    }
}

impl JobState {
    /// The name users see (jobctl, the HTTP API, logs): `RUNNING`, not the
    /// protobuf name `JOB_STATE_RUNNING`; `UNKNOWN` for a value this build
    /// does not know.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduling => "SCHEDULING",
            Self::Running => "RUNNING",
            Self::Failed => "FAILED",
            Self::Cancelling => "CANCELLING",
            Self::Cancelled => "CANCELLED",
            Self::Finished => "FINISHED",
            Self::Stopped => "STOPPED",
            Self::Unspecified => "UNKNOWN",
        }
    }
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }

    /// The name users see: `RUNNING`, not `TASK_STATE_RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Deploying => "DEPLOYING",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Unspecified => "UNKNOWN",
        }
    }
}

impl WorkerState {
    /// The name users see: `ALIVE`, not `WORKER_STATE_ALIVE`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alive => "ALIVE",
            Self::Lost => "LOST",
            Self::Unspecified => "UNKNOWN",
        }
    }
}

impl From<sluice_common::Fault> for Fault {
    fn from(f: sluice_common::Fault) -> Self {
        match f {
            sluice_common::Fault::Record => Self::Record,
            sluice_common::Fault::Spec => Self::Spec,
            sluice_common::Fault::External => Self::External,
            sluice_common::Fault::Internal => Self::Internal,
        }
    }
}

impl Fault {
    /// `None` when unspecified (a report from a worker that does not say).
    pub fn to_common(self) -> Option<sluice_common::Fault> {
        match self {
            Self::Unspecified => None,
            Self::Record => Some(sluice_common::Fault::Record),
            Self::Spec => Some(sluice_common::Fault::Spec),
            Self::External => Some(sluice_common::Fault::External),
            Self::Internal => Some(sluice_common::Fault::Internal),
        }
    }
}
