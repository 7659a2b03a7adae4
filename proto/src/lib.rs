//! The gRPC API of Sluice: `JobService` for clients, `ClusterService` for
//! workers, `ExchangeService` between workers, `RaftService` between
//! coordinators.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("sluice.v1");
}

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

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Cancelled)
    }
}
