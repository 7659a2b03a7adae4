//! The coordinator's state as a Raft group (openraft): every [`Command`]
//! goes through the log, persisted in a redb file with the snapshots.
//!
//! [`Command`]: crate::meta::Command

pub mod bootstrap;
mod log_store;
pub mod membership;
mod network;
mod state_machine;
mod store;
mod types;

pub use log_store::LogStore;
pub use network::SnapshotMessage;
pub use state_machine::StateMachine;
pub use store::{Raft, RaftStore};
pub use types::TypeConfig;

use std::path::Path;
use std::sync::Arc;

/// Opens (or creates) the coordinator's Raft file: the log store and the
/// state machine share one database.
pub fn open(path: &Path) -> std::io::Result<(LogStore, StateMachine)> {
    let db = redb::Database::create(path).map_err(std::io::Error::other)?;
    let db = Arc::new(db);
    let log = LogStore::new(db.clone())?;
    let sm = StateMachine::new(db)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests;
