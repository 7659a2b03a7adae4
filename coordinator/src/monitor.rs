//! The coordinator's periodic work: declare silent workers lost and place
//! jobs that wait for slots.

use crate::meta::{Command, MetaStore};
use crate::scheduler;
use crate::state::Shared;
use sluice_proto::{JobState, TaskState};
use std::time::Duration;

pub async fn run<S: MetaStore>(state: Shared<S>) {
    let period = (state.timing.heartbeat_interval / 2).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        expire_workers(&state);
        schedule_waiting_jobs(&state);
    }
}

fn expire_workers<S: MetaStore>(state: &Shared<S>) {
    for (worker, silent) in state.workers.expire(state.timing.heartbeat_timeout) {
        let reason = format!(
            "worker {worker} lost: no heartbeat for {:.1}s (timeout {:.1}s)",
            silent.as_secs_f64(),
            state.timing.heartbeat_timeout.as_secs_f64()
        );
        tracing::warn!(worker = %worker, silent_ms = silent.as_millis() as u64, "worker lost");
        let orphaned: Vec<_> = state.store.read(|m| {
            m.jobs
                .values()
                .flat_map(|j| {
                    j.tasks
                        .iter()
                        .filter(|t| t.worker == worker && !t.state.is_terminal())
                        .map(|t| (j.id.clone(), t.id.clone()))
                })
                .collect()
        });
        for (job, task) in orphaned {
            state.set_task_state(&job, &task, TaskState::Failed, Some(reason.clone()));
        }
    }
}

fn schedule_waiting_jobs<S: MetaStore>(state: &Shared<S>) {
    let waiting: Vec<_> = state.store.read(|m| {
        m.jobs
            .values()
            .filter(|j| j.state == JobState::Scheduling && j.tasks.is_empty())
            .filter(|j| j.not_before_ms <= crate::job_service::now_ms())
            .map(|j| j.id.clone())
            .collect()
    });
    for job in waiting {
        let alive = state
            .workers
            .placeable(state.timing.heartbeat_interval * 2 + Duration::from_millis(100));
        let placed = state.store.read(|m| {
            let free = scheduler::free_slots(m, &alive);
            m.jobs.get(&job).map(|j| scheduler::place(j, free))
        });
        match placed {
            Some(Ok(tasks)) => {
                tracing::info!(job = %job, tasks = tasks.len(), "job placed");
                state.store.apply(Command::AssignTasks { job, tasks });
            }
            Some(Err(e)) => {
                tracing::debug!(job = %job, needed = e.needed, free = e.free, "job waits for slots");
            }
            None => {}
        }
    }
}
