//! Deleting state snapshots from the checkpoint store once nothing can
//! read them: those of checkpoints no longer retained, and those uploaded
//! for checkpoints that never completed (timed out, declined, or cut short
//! by a restart), which no record refers to.

use crate::meta::CompletedCheckpoint;
use crate::meta::MetaStore;
use crate::state::Shared;
use sluice_common::JobId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

/// After checkpoint `completed` of attempt `attempt` of `job` was recorded:
/// deletes the snapshots of the checkpoints it pushed out of retention
/// (`retained_before` are those retained before it) and those of earlier
/// checkpoints nothing refers to (see [`delete_abandoned`]).
pub fn after_completion<S: MetaStore>(
    state: &Shared<S>,
    job: &JobId,
    retained_before: &[CompletedCheckpoint],
    attempt: u32,
    completed: u64,
) {
    delete_unreferenced(state, retained_before, job.as_str());
    if let Some(uid) = state.store.read(|m| m.jobs.get(job).map(|j| j.uid.clone())) {
        delete_abandoned(state, &uid, attempt, completed);
    }
}

/// Deletes from the checkpoint store the objects of `dropped` that no
/// savepoint and no retained checkpoint of any job (one started from a
/// savepoint shares its objects) refers to any more. In the background: the
/// store may be remote and slow. `owner` names the job or savepoint in logs.
pub fn delete_unreferenced<S: MetaStore>(
    state: &Shared<S>,
    dropped: &[CompletedCheckpoint],
    owner: &str,
) {
    let kept = state.store.read(|m| m.referenced_state_keys());
    let doomed: BTreeSet<String> = dropped
        .iter()
        .flat_map(|c| c.state_keys())
        .filter(|k| !kept.contains(*k))
        .map(str::to_string)
        .collect();
    if doomed.is_empty() {
        return;
    }
    let store = state.checkpoint_store.clone();
    let owner = owner.to_string();
    tokio::spawn(async move {
        for key in doomed {
            if let Err(e) = store.delete(&key).await {
                tracing::warn!(owner = %owner, key = %key, error = %e, "snapshot no longer referenced not deleted");
            }
        }
    });
}

/// After checkpoint `completed` of attempt `attempt` of the job stored
/// under `job_uid` was recorded: deletes, in the background, the job's
/// snapshots of checkpoints before it that nothing refers to (see
/// [`abandoned`]). A failed listing or deletion is logged and left for the
/// next completed checkpoint. One sweep per job at a time: with a slow
/// store, sweeps of checkpoints completing every second would pile up, so
/// those asked for meanwhile make one more sweep, for the latest of them.
fn delete_abandoned<S: MetaStore>(state: &Shared<S>, job_uid: &str, attempt: u32, completed: u64) {
    if !state.snapshot_sweeps.request(job_uid, (attempt, completed)) {
        return;
    }
    let state = state.clone();
    let job_uid = job_uid.to_string();
    tokio::spawn(async move {
        // A sweep that panicked must not keep the job's later ones waiting.
        let mut guard = EndsSweeps {
            state: state.clone(),
            job_uid: job_uid.clone(),
            armed: true,
        };
        let mut next = Some((attempt, completed));
        while let Some((attempt, completed)) = next {
            sweep(&state, &job_uid, attempt, completed).await;
            next = state.snapshot_sweeps.next(&job_uid);
        }
        // `next` ended them already; a new sweep may be under way by now.
        guard.armed = false;
    });
}

/// Ends a job's sweeps when dropped armed, as on a panic.
struct EndsSweeps<S: MetaStore> {
    state: Shared<S>,
    job_uid: String,
    armed: bool,
}

impl<S: MetaStore> Drop for EndsSweeps<S> {
    fn drop(&mut self) {
        if self.armed {
            self.state.snapshot_sweeps.end(&self.job_uid);
        }
    }
}

/// One sweep of [`delete_abandoned`].
async fn sweep<S: MetaStore>(state: &Shared<S>, job_uid: &str, attempt: u32, completed: u64) {
    let keys = match state.checkpoint_store.list(job_uid).await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(job_uid = %job_uid, error = %e, "snapshots of abandoned checkpoints not listed");
            return;
        }
    };
    // Read after listing: a key referenced by then is kept, and one listed
    // is at least as old as any record that could refer to it. The job's
    // own retained checkpoints are kept even once it ended (cancelled while
    // this sweep ran), when no other record counts them.
    let kept = state.store.read(|m| {
        let mut kept = m.referenced_state_keys();
        for job in m.jobs.values().filter(|j| j.uid == job_uid) {
            kept.extend(
                job.checkpoints
                    .iter()
                    .flat_map(|c| c.state_keys().map(str::to_string)),
            );
        }
        kept
    });
    for key in abandoned(&keys, &kept, attempt, completed) {
        match state.checkpoint_store.delete(&key).await {
            Ok(()) => tracing::debug!(key = %key, "snapshot of an abandoned checkpoint deleted"),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "snapshot of an abandoned checkpoint not deleted")
            }
        }
    }
}

/// The jobs (by uid) whose abandoned snapshots are being deleted, each
/// with the latest (attempt, checkpoint) completed since its sweep began.
#[derive(Default)]
pub struct Sweeps(Mutex<BTreeMap<String, Option<(u32, u64)>>>);

impl Sweeps {
    /// Asks for a sweep of `job_uid` after checkpoint `completed`: `true`
    /// when none is under way and the caller runs it; otherwise the sweep
    /// under way runs once more after it ends, for the latest checkpoint.
    fn request(&self, job_uid: &str, completed: (u32, u64)) -> bool {
        let mut sweeps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match sweeps.get_mut(job_uid) {
            Some(pending) => {
                *pending = (*pending).max(Some(completed));
                false
            }
            None => {
                sweeps.insert(job_uid.to_string(), None);
                true
            }
        }
    }

    /// At the end of a sweep of `job_uid`: the checkpoint to sweep after
    /// next, if one completed meanwhile; else the sweeps of the job end.
    fn next(&self, job_uid: &str) -> Option<(u32, u64)> {
        let mut sweeps = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let pending = sweeps.get_mut(job_uid).and_then(Option::take);
        if pending.is_none() {
            sweeps.remove(job_uid);
        }
        pending
    }

    /// Forgets `job_uid`'s sweeps, under way or asked for.
    fn end(&self, job_uid: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(job_uid);
    }
}

/// Of a job's snapshot `keys` (`{uid}/chk-{checkpoint}-a{attempt}/...`),
/// those no record in `kept` refers to and no later checkpoint can: of an
/// earlier attempt, or of this `attempt` and a checkpoint before
/// `completed`. A subtask's later snapshots only extend the chain it had at
/// `completed` (or start a new one), and that chain is in `kept`, since the
/// latest completed checkpoint is always retained; so an older snapshot not
/// in it is never read again. Snapshots of later checkpoints may still be
/// uploading and are left alone, as are keys of any other shape.
pub fn abandoned(
    keys: &[String],
    kept: &BTreeSet<String>,
    attempt: u32,
    completed: u64,
) -> Vec<String> {
    keys.iter()
        .filter(|k| !kept.contains(*k))
        .filter(|k| {
            checkpoint_of(k).is_some_and(|(id, a)| a < attempt || (a == attempt && id < completed))
        })
        .cloned()
        .collect()
}

/// The checkpoint id and attempt a snapshot key names in its second part.
fn checkpoint_of(key: &str) -> Option<(u64, u32)> {
    let dir = key.split('/').nth(1)?;
    let (id, attempt) = dir.strip_prefix("chk-")?.split_once("-a")?;
    Some((id.parse().ok()?, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreferenced_snapshots_of_earlier_checkpoints_are_abandoned() {
        let keys: Vec<String> = [
            "u/chk-3-a0/s1-0.json",
            "u/chk-4-a0/s1-0.delta.json",
            "u/chk-5-a1/s1-0.json",
            "u/chk-6-a1/s1-0.delta.json",
            "u/chk-7-a1/s1-0.delta.json",
            "u/chk-8-a1/s1-0.delta.json",
            "u/chk-9-a1/s1-0.delta.json",
            "u/chk-2-a2/s1-0.json",
            "u/odd/s1-0.json",
            "u/chk-x-a1/s1-0.json",
        ]
        .map(String::from)
        .to_vec();
        // Checkpoint 8 of attempt 1 completed; its chain is 5, 6 and 8 (7
        // timed out after its upload, and 8 started from 6's chain).
        let kept: BTreeSet<String> = [
            "u/chk-5-a1/s1-0.json",
            "u/chk-6-a1/s1-0.delta.json",
            "u/chk-8-a1/s1-0.delta.json",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            abandoned(&keys, &kept, 1, 8),
            vec![
                "u/chk-3-a0/s1-0.json".to_string(),
                "u/chk-4-a0/s1-0.delta.json".into(),
                "u/chk-7-a1/s1-0.delta.json".into(),
            ]
        );
    }

    #[test]
    fn one_sweep_per_job_at_a_time_and_one_more_for_the_latest_checkpoint() {
        let sweeps = Sweeps::default();
        assert!(sweeps.request("u", (0, 1)));
        assert!(!sweeps.request("u", (0, 2)));
        assert!(!sweeps.request("u", (1, 3)));
        assert!(!sweeps.request("u", (1, 2)), "an older one arriving late");
        assert!(sweeps.request("v", (0, 1)));
        assert_eq!(sweeps.next("u"), Some((1, 3)));
        assert_eq!(sweeps.next("u"), None);
        assert!(sweeps.request("u", (1, 4)));
        assert_eq!(sweeps.next("v"), None);
        sweeps.end("u");
        assert!(sweeps.request("u", (1, 5)), "a sweep that ended abruptly");
    }
}
