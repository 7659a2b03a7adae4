//! Types shared by every Sluice process: the job spec and its validation, ids,
//! and the error taxonomy.

pub mod auth;
#[cfg(feature = "cassandra")]
pub mod cassandra;
pub mod env;
pub mod error;
pub mod fault;
#[cfg(feature = "metrics")]
pub mod https;
pub mod ids;
#[cfg(feature = "kafka-txn")]
pub mod kafka_txn;
pub mod keys;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "process")]
pub mod process;
pub mod secrets;
pub mod spec;
#[cfg(feature = "store")]
pub mod store;
pub mod text;
pub mod time;
#[cfg(feature = "vrl")]
pub mod vrl_program;

pub use error::{SpecError, SpecProblem};
pub use fault::Fault;
pub use ids::{JobId, TaskId, WorkerId};
pub use spec::JobSpec;

/// The gRPC metadata in which a coordinator that is not the leader names the
/// leader's address, for clients to follow.
pub const LEADER_HEADER: &str = "sluice-leader";

/// `host:port` or a URL, as a URL gRPC clients accept.
pub fn http_url(address: &str) -> String {
    let address = address.trim().trim_end_matches('/');
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    }
}
