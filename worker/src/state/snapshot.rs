use super::chain::StateChain;
use super::{GroupedState, Restoring, StateSnapshot};
use crate::error::{Result, WorkerError};
use serde::{Deserialize, Serialize};
use sluice_common::keys::{DEFAULT_MAX_PARALLELISM, subtask_of_group};
use sluice_common::store::{CheckpointStore, StoreError};
use sluice_proto::StateHandle;
use tokio::task::JoinHandle;

/// What one subtask's snapshot object holds: the state of each operator of
/// its chain, by position (`None` for stateless ones), whole or as a delta.
/// Snapshots from before deltas existed hold each whole state untagged.
#[derive(Debug, Serialize, Deserialize)]
struct SubtaskSnapshot<S> {
    job: String,
    checkpoint: u64,
    stage: u32,
    index: u32,
    operators: Vec<Option<S>>,
}

/// An operator's snapshot as read: tagged `full` or `delta`, or an older
/// untagged whole state.
fn read_operator(stored: serde_json::Value) -> std::result::Result<StateSnapshot, String> {
    let tagged = stored
        .as_object()
        .is_some_and(|o| o.len() == 1 && (o.contains_key("full") || o.contains_key("delta")));
    if tagged {
        serde_json::from_value(stored).map_err(|e| e.to_string())
    } else {
        serde_json::from_value::<GroupedState>(stored)
            .map(StateSnapshot::Full)
            .map_err(|e| e.to_string())
    }
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
/// uploaded while it goes on processing, after the link of the chain before it.
pub struct SnapshotUpload {
    store: CheckpointStore,
    key: String,
    bytes: Vec<u8>,
    /// What the checkpoint records: the chain's full snapshot and deltas.
    handle: StateHandle,
    /// The upload of the link before; `true` once it is stored.
    previous: Option<JoinHandle<bool>>,
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
    /// `None` when no operator of the chain keeps state. `full` says whether
    /// `operators` hold whole states (starting a new chain) or deltas.
    pub fn prepare(
        store: &CheckpointStore,
        target: &SnapshotTarget<'_>,
        checkpoint: u64,
        operators: Vec<Option<StateSnapshot>>,
        chain: &mut StateChain,
    ) -> Option<Self> {
        if operators.iter().all(Option::is_none) {
            return None;
        }
        let full = operators
            .iter()
            .flatten()
            .all(|s| matches!(s, StateSnapshot::Full(_)));
        // The attempt keeps a late upload of a failed attempt from
        // overwriting the snapshot of a new one under a reused checkpoint id.
        let key = format!(
            "{}/chk-{checkpoint}-a{}/s{}-{}{}.json",
            target.job_uid,
            target.attempt,
            target.stage,
            target.index,
            if full { "" } else { ".delta" }
        );
        let snapshot = SubtaskSnapshot {
            job: target.job_uid.to_string(),
            checkpoint,
            stage: target.stage,
            index: target.index,
            operators,
        };
        let bytes = serde_json::to_vec(&snapshot).unwrap_or_default();
        let (base, deltas) = chain.link(&key, bytes.len(), full);
        // A full snapshot starts a new chain: it stands whether the link
        // before it was stored or not, so one failed upload (a checkpoint
        // store briefly unreachable) is not repeated by every later one.
        let previous = chain.take_last().filter(|_| !full);
        let (first_group, last_group) = owned_groups(target.index, target.parallelism);
        Some(Self {
            store: store.clone(),
            key,
            bytes,
            handle: StateHandle {
                key: base,
                first_group,
                last_group,
                deltas,
            },
            previous,
        })
    }

    /// Bytes the upload stores.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub async fn run(self) -> Result<StateHandle, StoreError> {
        if let Some(previous) = self.previous {
            // A delta stands only on a chain whose every link is stored.
            if !matches!(previous.await, Ok(true)) {
                return Err(StoreError::Chain { key: self.key });
            }
        }
        fail::fail_point!("snapshot-before-upload", |_| {
            std::process::abort();
        });
        // As a store refusing the put would (a full disk, an outage).
        fail::fail_point!("snapshot-upload-error", |_| {
            Err(StoreError::Io {
                location: self.store.location().to_string(),
                op: "put",
                key: self.key.clone(),
                reason: "refused at failpoint snapshot-upload-error".into(),
            })
        });
        let size = self.bytes.len();
        self.store.put(&self.key, self.bytes).await?;
        fail::fail_point!("snapshot-after-upload", |_| {
            std::process::abort();
        });
        tracing::debug!(key = %self.key, bytes = size, deltas = self.handle.deltas.len(), "state snapshot uploaded");
        Ok(self.handle)
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
    let mut restoring: Vec<Option<Restoring>> = (0..operators).map(|_| None).collect();
    for handle in handles
        .iter()
        .filter(|h| h.first_group <= last && h.last_group >= first)
    {
        for key in std::iter::once(&handle.key).chain(&handle.deltas) {
            let bytes = store.get(key).await?;
            let restore_err = |reason: String| WorkerError::Restore {
                key: key.clone(),
                reason,
            };
            let snapshot: SubtaskSnapshot<serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| restore_err(e.to_string()))?;
            if snapshot.operators.len() != operators {
                return Err(WorkerError::Restore {
                    key: key.clone(),
                    reason: format!(
                        "it holds {} operators, the job's stage has {operators}: \
                         the transforms changed since the snapshot",
                        snapshot.operators.len()
                    ),
                });
            }
            for (slot, state) in restoring.iter_mut().zip(snapshot.operators) {
                let Some(state) = state else { continue };
                slot.get_or_insert_with(Restoring::default)
                    .apply(read_operator(state).map_err(restore_err)?, |g| {
                        (first..=last).contains(&g)
                    });
            }
        }
    }
    Ok(restoring
        .into_iter()
        .map(|r| r.map(Restoring::into_grouped))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_read_back_whole_delta_and_from_before_deltas() {
        let mut whole = GroupedState::new();
        whole.insert(93, vec![("k\0".into(), serde_json::json!([1, 2]))]);
        let delta = crate::state::keyed::StateDelta {
            puts: whole.clone(),
            deletes: [(5, vec!["gone".to_string()])].into(),
        };
        for snapshot in [
            StateSnapshot::Full(whole.clone()),
            StateSnapshot::Delta(delta),
        ] {
            let text = serde_json::to_vec(&SubtaskSnapshot {
                job: "j".into(),
                checkpoint: 1,
                stage: 1,
                index: 0,
                operators: vec![None, Some(snapshot.clone())],
            })
            .expect("serialises");
            let read: SubtaskSnapshot<serde_json::Value> =
                serde_json::from_slice(&text).expect("reads");
            let back = read.operators.into_iter().flatten().next().expect("one");
            assert_eq!(read_operator(back), Ok(snapshot));
        }
        let legacy = serde_json::json!({"93": [["k\0", [1, 2]]]});
        assert_eq!(read_operator(legacy), Ok(StateSnapshot::Full(whole)));
    }

    /// After a snapshot whose upload failed, the next full snapshot is
    /// uploaded: the checkpoints after an outage of the store complete.
    #[tokio::test]
    async fn a_full_snapshot_after_a_failed_upload_is_stored() {
        let dir = std::env::temp_dir().join(format!("sluice-snapshot-{}", std::process::id()));
        let store = CheckpointStore::open(&dir.to_string_lossy()).expect("store");
        let target = SnapshotTarget {
            job_uid: "j",
            attempt: 0,
            stage: 1,
            index: 0,
            parallelism: 1,
        };
        let mut chain = StateChain::default();
        let mut state = GroupedState::new();
        state.insert(1, vec![("k".into(), serde_json::json!(1))]);
        let first = SnapshotUpload::prepare(
            &store,
            &target,
            1,
            vec![Some(StateSnapshot::Full(state.clone()))],
            &mut chain,
        )
        .expect("an upload");
        // The first upload failed, as with the store unreachable.
        drop(first);
        chain.uploading(tokio::spawn(async { false }));
        chain
            .failure_flag()
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(chain.wants_full());
        let second = SnapshotUpload::prepare(
            &store,
            &target,
            2,
            vec![Some(StateSnapshot::Full(state))],
            &mut chain,
        )
        .expect("an upload");
        let stored = second.run().await;
        let _ = std::fs::remove_dir_all(&dir);
        let handle = stored.expect("the full snapshot is stored");
        assert_eq!(handle.key, "j/chk-2-a0/s1-0.json");
        assert!(handle.deltas.is_empty());
    }

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
