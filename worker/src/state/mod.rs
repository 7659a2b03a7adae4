//! Keyed operator state, organised in key groups so a checkpoint of one
//! parallelism can be restored at another, and its snapshots in the
//! checkpoint store.

mod chain;
mod keyed;
mod snapshot;

pub use chain::StateChain;
pub use keyed::{GroupedState, KeyedState, Restoring, Retain, StateSnapshot, group_of, key_of};
pub use snapshot::{SnapshotTarget, SnapshotUpload, restore_chain_state};
