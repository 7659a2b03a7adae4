//! Turns a job into subtasks and places them on worker slots.
//!
//! Slots are shared across stages: subtask `i` of every stage goes to the same
//! slot, so a job of parallelism `p` needs `p` slots, and the slices are spread
//! over as many workers as possible.

use crate::meta::{ClusterMeta, JobRecord, TaskRecord};
use crate::registry::WorkerEntry;
use sluice_common::{JobId, TaskId, WorkerId};
use sluice_proto::TaskState;
use std::collections::BTreeMap;

/// Why a job could not be placed yet.
#[derive(Debug, PartialEq, Eq)]
pub struct NotEnoughSlots {
    pub needed: u32,
    pub free: u32,
}

/// Slots each alive worker has left, given the tasks of live jobs.
pub fn free_slots(meta: &ClusterMeta, workers: &[WorkerEntry]) -> BTreeMap<WorkerId, u32> {
    free_slots_but_for(meta, workers, None)
}

/// Slots each alive worker has left, given the tasks of live jobs other
/// than `job`: what `job` could have once its own tasks ended (a rescale).
pub fn free_slots_but_for(
    meta: &ClusterMeta,
    workers: &[WorkerEntry],
    job: Option<&JobId>,
) -> BTreeMap<WorkerId, u32> {
    let mut used: BTreeMap<&WorkerId, std::collections::BTreeSet<(&str, u32)>> = BTreeMap::new();
    let others = meta.jobs.values().filter(|j| Some(&j.id) != job);
    for job in others.filter(|j| j.wants_tasks_running()) {
        for t in job.tasks.iter().filter(|t| !t.state.is_terminal()) {
            used.entry(&t.worker)
                .or_default()
                .insert((job.id.as_str(), t.index));
        }
    }
    workers
        .iter()
        .map(|w| {
            let taken = used.get(&w.id).map_or(0, |s| s.len() as u32);
            (w.id.clone(), w.slots.saturating_sub(taken))
        })
        .collect()
}

/// The partitions of a topic of `count` that source subtask `index` of
/// `parallelism` reads: partition `p` goes to subtask `p mod parallelism`.
pub fn source_partitions(index: u32, parallelism: u32, count: i32) -> Vec<i32> {
    (0..count)
        .filter(|p| (*p as u32) % parallelism == index)
        .collect()
}

pub fn place(
    job: &JobRecord,
    mut free: BTreeMap<WorkerId, u32>,
) -> Result<Vec<TaskRecord>, NotEnoughSlots> {
    let p = job.spec.parallelism;
    let total: u32 = free.values().sum();
    if total < p {
        return Err(NotEnoughSlots {
            needed: p,
            free: total,
        });
    }
    let mut slot_worker = Vec::with_capacity(p as usize);
    for _ in 0..p {
        // The worker with most free slots; ties go to the lowest id so placement is stable.
        let Some((worker, left)) = free
            .iter_mut()
            .filter(|(_, left)| **left > 0)
            .max_by(|a, b| (*a.1).cmp(&*b.1).then_with(|| b.0.cmp(a.0)))
        else {
            return Err(NotEnoughSlots {
                needed: p,
                free: total,
            });
        };
        *left -= 1;
        slot_worker.push(worker.clone());
    }
    let mut tasks = Vec::new();
    for stage in 0..job.spec.stage_count() {
        for (index, worker) in slot_worker.iter().enumerate() {
            let index = index as u32;
            let partitions = if stage == 0 {
                source_partitions(index, p, job.source_partitions)
            } else {
                Vec::new()
            };
            tasks.push(TaskRecord {
                id: TaskId::for_subtask(&job.id, stage, index, job.attempt),
                stage,
                index,
                worker: worker.clone(),
                partitions,
                state: TaskState::Deploying,
                error: None,
                fault: None,
                causes: Vec::new(),
                resets_recorded: 0,
            });
        }
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{Applied, Command};
    use sluice_common::JobSpec;

    fn job(parallelism: u32) -> JobRecord {
        let spec = JobSpec::parse_resolved(&format!(
            r#"{{"name": "j", "parallelism": {parallelism},
                "source": {{"kafka": {{"brokers": "b:1", "topic": "t"}}}},
                "transforms": [{{"key_by": ["k"]}}],
                "sink": {{"kafka": {{"brokers": "b:1", "topic": "out"}}}}}}"#
        ))
        .expect("valid spec");
        let mut meta = ClusterMeta::default();
        let Applied::JobCreated(id) = meta.apply(Command::SubmitJob {
            uid: "u".into(),
            spec: Box::new(spec),
            source_partitions: 3,
            submitted_at_ms: 0,
            from_savepoint: None,
            start_offsets: BTreeMap::new(),
        }) else {
            panic!("not created");
        };
        meta.jobs[&id].clone()
    }

    fn free(slots: &[u32]) -> BTreeMap<WorkerId, u32> {
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| (WorkerId::from_seq(i as u64 + 1), *s))
            .collect()
    }

    #[test]
    fn spreads_slices_across_workers_and_partitions_across_sources() {
        let tasks = place(&job(2), free(&[4, 4])).expect("fits");
        assert_eq!(tasks.len(), 4, "two stages of two subtasks");
        let workers: std::collections::BTreeSet<_> = tasks.iter().map(|t| &t.worker).collect();
        assert_eq!(workers.len(), 2);
        let sources: Vec<_> = tasks.iter().filter(|t| t.stage == 0).collect();
        assert_eq!(sources[0].partitions, vec![0, 2]);
        assert_eq!(sources[1].partitions, vec![1]);
        assert!(
            tasks
                .iter()
                .filter(|t| t.stage == 1)
                .all(|t| t.partitions.is_empty())
        );
        for t in tasks.iter().filter(|t| t.stage == 1) {
            let source = &sources[t.index as usize];
            assert_eq!(
                t.worker, source.worker,
                "a slot holds one subtask of each stage"
            );
        }
    }

    #[test]
    fn refuses_when_slots_run_out() {
        assert_eq!(
            place(&job(3), free(&[1, 1])).err(),
            Some(NotEnoughSlots { needed: 3, free: 2 })
        );
    }
}
