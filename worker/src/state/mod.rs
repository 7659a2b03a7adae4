//! Keyed operator state, organised in key groups so a checkpoint of one
//! parallelism can be restored at another, and its snapshots in the
//! checkpoint store.

mod keyed;
mod snapshot;

pub use keyed::{GroupedState, KeyedState, group_of, key_of};
pub use snapshot::{SnapshotTarget, SnapshotUpload, restore_chain_state};
