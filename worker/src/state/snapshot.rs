use super::GroupedState;
use crate::error::{Result, WorkerError};
use serde::{Deserialize, Serialize};
use sluice_common::keys::{DEFAULT_MAX_PARALLELISM, subtask_of_group};
use sluice_common::store::{CheckpointStore, StoreError};
use sluice_proto::StateHandle;

/// What one subtask's snapshot object holds: the state of each operator of
/// its chain, by position (`None` for stateless ones).
#[derive(Debug, Serialize, Deserialize)]
struct SubtaskSnapshot {
    job: String,
    checkpoint: u64,
    stage: u32,
    index: u32,
    operators: Vec<Option<GroupedState>>,
}

/// The key groups subtask `index` of `parallelism` owns: a contiguous range.
pub fn owned_groups(index: u32, parallelism: u32) -> (u32, u32) {
    let owned: Vec<u32> = (0..DEFAULT_MAX_PARALLELISM)
        .filter(|g| subtask_of_group(*g, DEFAULT_MAX_PARALLELISM, parallelism) == index)
        .collect();
    (
        owned.first().copied().unwrap_or(0),
        owned.last().copied().unwrap_or(0),
    )
}

/// A snapshot taken at a barrier, serialised while the subtask waits, and
/// uploaded while it goes on processing.
pub struct SnapshotUpload {
    store: CheckpointStore,
    key: String,
    bytes: Vec<u8>,
    groups: (u32, u32),
}

/// Where the snapshot goes and whose it is.
pub struct SnapshotTarget<'a> {
    pub job_uid: &'a str,
    pub attempt: u32,
    pub stage: u32,
    pub index: u32,
    pub parallelism: u32,
}

impl SnapshotUpload {
    /// `None` when no operator of the chain keeps state.
    pub fn prepare(
        store: &CheckpointStore,
        target: &SnapshotTarget<'_>,
        checkpoint: u64,
        operators: Vec<Option<GroupedState>>,
    ) -> Option<Self> {
        if operators.iter().all(Option::is_none) {
            return None;
        }
        // The attempt keeps a late upload of a failed attempt from
        // overwriting the snapshot of a new one under a reused checkpoint id.
        let key = format!(
            "{}/chk-{checkpoint}-a{}/s{}-{}.json",
            target.job_uid, target.attempt, target.stage, target.index
        );
        let snapshot = SubtaskSnapshot {
            job: target.job_uid.to_string(),
            checkpoint,
            stage: target.stage,
            index: target.index,
            operators,
        };
        Some(Self {
            store: store.clone(),
            key,
            bytes: serde_json::to_vec(&snapshot).unwrap_or_default(),
            groups: owned_groups(target.index, target.parallelism),
        })
    }

    pub async fn run(self) -> Result<StateHandle, StoreError> {
        fail::fail_point!("snapshot-before-upload", |_| {
            std::process::abort();
        });
        let size = self.bytes.len();
        self.store.put(&self.key, self.bytes).await?;
        fail::fail_point!("snapshot-after-upload", |_| {
            std::process::abort();
        });
        tracing::debug!(key = %self.key, bytes = size, "state snapshot uploaded");
        Ok(StateHandle {
            key: self.key,
            first_group: self.groups.0,
            last_group: self.groups.1,
        })
    }
}

/// The state of each operator of a chain of `operators` positions, gathered
/// from every snapshot in `handles` and cut to the key groups subtask `index`
/// of `parallelism` owns.
pub async fn restore_chain_state(
    store: &CheckpointStore,
    handles: &[StateHandle],
    index: u32,
    parallelism: u32,
    operators: usize,
) -> Result<Vec<Option<GroupedState>>> {
    let (first, last) = owned_groups(index, parallelism);
    let mut out: Vec<Option<GroupedState>> = vec![None; operators];
    for handle in handles
        .iter()
        .filter(|h| h.first_group <= last && h.last_group >= first)
    {
        let bytes = store.get(&handle.key).await?;
        let snapshot: SubtaskSnapshot =
            serde_json::from_slice(&bytes).map_err(|e| WorkerError::Restore {
                key: handle.key.clone(),
                reason: e.to_string(),
            })?;
        if snapshot.operators.len() != operators {
            return Err(WorkerError::Restore {
                key: handle.key.clone(),
                reason: format!(
                    "it holds {} operators, the job's stage has {operators}: \
                     the transforms changed since the snapshot",
                    snapshot.operators.len()
                ),
            });
        }
        for (slot, state) in out.iter_mut().zip(snapshot.operators) {
            let Some(state) = state else { continue };
            let merged = slot.get_or_insert_with(GroupedState::new);
            merged.extend(
                state
                    .into_iter()
                    .filter(|(g, _)| (first..=last).contains(g)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_groups_cover_every_group_once() {
        for p in [1, 2, 3, 7, 128] {
            let mut next = 0;
            for i in 0..p {
                let (first, last) = owned_groups(i, p);
                assert_eq!(first, next, "p={p} i={i}");
                next = last + 1;
            }
            assert_eq!(next, DEFAULT_MAX_PARALLELISM);
        }
    }
}
