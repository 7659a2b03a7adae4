//! The coordinator's periodic work: declare silent workers lost and place
//! jobs that wait for slots.

use crate::meta::{Command, MetaStore};
use crate::scheduler;
use crate::state::Shared;
use sluice_common::{Fault, WorkerId};
use sluice_proto::TaskState;
use std::collections::BTreeSet;
use std::time::Duration;

pub async fn run<S: MetaStore>(state: Shared<S>) {
    let period = (state.timing.heartbeat_interval / 2).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.placement.notified() => {}
        }
        // Only the leader acts; a follower's registry is empty anyway.
        let Some(since) = state.enter_term() else {
            continue;
        };
        if state.store.check_leader().is_err() {
            continue;
        }
        expire_workers(&state).await;
        // Workers had a heartbeat timeout to find a new leader and report.
        if since.elapsed() > state.timing.heartbeat_timeout {
            fail_tasks_of_unknown_workers(&state).await;
        }
        schedule_waiting_jobs(&state).await;
    }
}

/// Tasks placed on workers this coordinator never heard from since it became
/// leader: their workers are gone, and their jobs restart.
async fn fail_tasks_of_unknown_workers<S: MetaStore>(state: &Shared<S>) {
    let known: BTreeSet<WorkerId> = state.workers.all().into_iter().map(|w| w.id).collect();
    let orphaned: Vec<_> = state.store.read(|m| {
        m.jobs
            .values()
            .filter(|j| j.wants_tasks_running())
            .flat_map(|j| {
                j.tasks
                    .iter()
                    .filter(|t| !t.state.is_terminal() && !known.contains(&t.worker))
                    .map(|t| (j.id.clone(), t.id.clone(), t.worker.clone()))
            })
            .collect()
    });
    for (job, task, worker) in orphaned {
        let reason = format!("worker {worker} did not report to the new leader");
        state
            .set_task_state(
                &job,
                &task,
                TaskState::Failed,
                Some(reason),
                Some(Fault::External),
                Vec::new(),
            )
            .await;
    }
}

async fn expire_workers<S: MetaStore>(state: &Shared<S>) {
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
            state
                .set_task_state(
                    &job,
                    &task,
                    TaskState::Failed,
                    Some(reason.clone()),
                    Some(Fault::External),
                    Vec::new(),
                )
                .await;
        }
    }
}

/// How long a job's next attempt waits for the tasks of its last one to
/// report their end on workers still alive, before it is placed anyway.
const ENDING_PATIENCE: Duration = Duration::from_secs(30);

async fn schedule_waiting_jobs<S: MetaStore>(state: &Shared<S>) {
    let now = crate::job_service::now_ms();
    let waiting: Vec<_> = state.store.read(|m| {
        m.jobs
            .values()
            .filter(|j| j.waits_for_slots())
            .filter(|j| j.not_before_ms <= now)
            .map(|j| (j.id.clone(), j.not_before_ms, j.attempt))
            .collect()
    });
    for (job, not_before_ms, attempt) in waiting {
        // A task of the job's previous attempt still stopping may have a
        // Kafka transactional session under way on an id the next attempt
        // takes; opened after that attempt's, it would abort its
        // transaction. Its worker reports the end once the call returned.
        let ending = state.workers.tasks_not_ended(job.as_str());
        // A worker that registered (after a coordinator failover, say) and
        // has not heartbeated yet may be ending such a task unseen.
        let unheard = match attempt {
            0 => Vec::new(),
            _ => state.workers.workers_not_heard(),
        };
        if !ending.is_empty() || !unheard.is_empty() {
            let waited = Duration::from_millis(u64::try_from(now - not_before_ms).unwrap_or(0));
            if waited < ENDING_PATIENCE {
                tracing::debug!(job = %job, tasks = ?ending, workers_not_heard = ?unheard, "next attempt waits for the last one's tasks to end");
                continue;
            }
            tracing::warn!(job = %job, tasks = ?ending, workers_not_heard = ?unheard, waited_ms = waited.as_millis() as u64, "tasks of the job's last attempt have not reported their end; placing its next attempt anyway");
        }
        let alive = state.placeable_workers();
        let placed = state.store.read(|m| {
            let free = scheduler::free_slots(m, &alive);
            m.jobs.get(&job).map(|j| scheduler::place(j, free))
        });
        match placed {
            Some(Ok(tasks)) => {
                tracing::info!(job = %job, tasks = tasks.len(), "job placed");
                let workers: Vec<WorkerId> = tasks.iter().map(|t| t.worker.clone()).collect();
                match state.store.apply(Command::AssignTasks { job, tasks }).await {
                    Ok(_) => state.heartbeat_now(&workers),
                    Err(e) => tracing::warn!(error = %e, "tasks not assigned"),
                }
            }
            Some(Err(e)) => {
                tracing::debug!(job = %job, needed = e.needed, free = e.free, "job waits for slots");
            }
            None => {}
        }
    }
}
