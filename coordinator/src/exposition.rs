//! The coordinator's `/metrics`: its Raft membership on every member, and on
//! the leader (which alone hears from workers) each job and the workers.

use crate::meta::MetaStore;
use crate::raft::{Raft, RaftStore};
use crate::state::Shared;
use openraft::LogIdOptionExt;
use openraft::async_runtime::WatchReceiver;
use sluice_common::metrics::{Exposition, Labels, MetricSource, seconds_from_ms};
use sluice_proto::{JobState, JobStatus, WorkerState};

/// Every job state, for the `sluice_job_state` state set.
const JOB_STATES: [JobState; 7] = [
    JobState::Scheduling,
    JobState::Running,
    JobState::Failed,
    JobState::Cancelling,
    JobState::Cancelled,
    JobState::Finished,
    JobState::Stopped,
];

/// What a coordinator exposes.
pub struct CoordinatorMetrics {
    pub state: Shared<RaftStore>,
    pub raft: Raft,
}

/// `RUNNING` as `running`.
fn state_name(state: JobState) -> String {
    state.name().to_ascii_lowercase()
}

impl CoordinatorMetrics {
    fn raft(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let m = self.raft.metrics().borrow_watched().clone();
        let none = Labels::new();
        out.gauge(
            "sluice_raft_term",
            "The Raft term this coordinator is in.",
            [(none.clone(), m.current_term as i64)],
        )?;
        out.gauge(
            "sluice_raft_leader",
            "The id of the coordinator this member knows as the leader; -1 while none is known.",
            [(none.clone(), m.current_leader.map_or(-1, |l| l as i64))],
        )?;
        out.gauge(
            "sluice_raft_is_leader",
            "1 on the coordinator that leads, 0 on the others.",
            [(none.clone(), i64::from(m.state.is_leader()))],
        )?;
        out.gauge(
            "sluice_raft_last_log_index",
            "The index of the last entry of this member's Raft log; -1 while empty.",
            [(none.clone(), m.last_log_index.map_or(-1, |i| i as i64))],
        )?;
        out.gauge(
            "sluice_raft_commit_index",
            "The index of the last Raft log entry this member knows committed; -1 while none.",
            [(
                none.clone(),
                m.local_committed.index().map_or(-1, |i| i as i64),
            )],
        )?;
        out.gauge(
            "sluice_raft_applied_index",
            "The index of the last Raft log entry applied to this member's state; -1 while none.",
            [(none, m.last_applied.index().map_or(-1, |i| i as i64))],
        )
    }

    fn workers(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let workers = self.state.workers.all();
        let count = |s: WorkerState| workers.iter().filter(|w| w.state == s).count() as i64;
        out.gauge(
            "sluice_workers",
            "Workers registered with the leader, by state: alive, or lost (silent past the heartbeat timeout).",
            [
                (vec![("state", "alive".to_string())], count(WorkerState::Alive)),
                (vec![("state", "lost".to_string())], count(WorkerState::Lost)),
            ],
        )
    }

    fn jobs(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let jobs: Vec<(JobStatus, Option<crate::meta::CompletedCheckpoint>)> =
            self.state.store.read(|m| {
                m.jobs
                    .values()
                    .map(|j| (self.state.job_status(j), j.checkpoints.last().cloned()))
                    .collect()
            });
        let labels = |s: &JobStatus| -> Labels {
            vec![("job", s.job_id.clone()), ("job_name", s.name.clone())]
        };
        out.gauge(
            "sluice_job_state",
            "1 for the job's current state, 0 for the others (state: scheduling, running, failed, cancelling, cancelled, finished, stopped).",
            jobs.iter().flat_map(|(s, _)| {
                JOB_STATES.iter().map(move |state| {
                    let mut l = labels(s);
                    l.push(("state", state_name(*state)));
                    (l, i64::from(s.state == *state as i32))
                })
            }),
        )?;
        out.counter(
            "sluice_job_restarts",
            "Times the job restarted from its latest checkpoint after a failure.",
            jobs.iter().map(|(s, _)| (labels(s), u64::from(s.restarts))),
        )?;
        let checkpointed: Vec<_> = jobs
            .iter()
            .filter_map(|(s, c)| Some((labels(s), s.last_checkpoint_age_ms, c.as_ref()?)))
            .collect();
        out.gauge(
            "sluice_job_last_checkpoint_id",
            "The id of the job's latest completed checkpoint.",
            checkpointed
                .iter()
                .map(|(l, _, c)| (l.clone(), c.id as i64)),
        )?;
        out.gauge(
            "sluice_job_last_checkpoint_age_seconds",
            "Time since the job's latest checkpoint completed.",
            checkpointed
                .iter()
                .map(|(l, age, _)| (l.clone(), seconds_from_ms(*age))),
        )?;
        out.gauge(
            "sluice_job_last_checkpoint_duration_seconds",
            "How long the job's latest completed checkpoint took, from its trigger to the last subtask's acknowledgement.",
            checkpointed
                .iter()
                .map(|(l, _, c)| (l.clone(), seconds_from_ms(c.duration_ms))),
        )?;
        out.gauge(
            "sluice_job_last_checkpoint_size_bytes",
            "Bytes of keyed state the subtasks uploaded for the job's latest completed checkpoint (full snapshots or deltas).",
            checkpointed
                .iter()
                .map(|(l, _, c)| (l.clone(), c.size_bytes as i64)),
        )?;
        out.gauge(
            "sluice_checkpoint_alignment_seconds",
            "The longest barrier alignment of a subtask in the job's latest completed checkpoint: from the first to the last of its inputs delivering the barrier.",
            checkpointed
                .iter()
                .map(|(l, _, c)| (l.clone(), c.alignment_us as f64 / 1e6)),
        )?;
        out.gauge(
            "sluice_job_open_transaction_age_seconds",
            "How long the oldest open sink transaction of the job has held records; 0 when none does.",
            jobs.iter().map(|(s, _)| {
                let oldest = s
                    .tasks
                    .iter()
                    .filter_map(|t| t.metrics.as_ref())
                    .map(|m| m.open_transaction_age_ms)
                    .max()
                    .unwrap_or(0);
                (labels(s), seconds_from_ms(oldest))
            }),
        )?;
        out.counter(
            "sluice_job_offsets_skipped",
            "Source offsets the job went past unread because retention had deleted them.",
            jobs.iter().map(|(s, _)| (labels(s), s.offsets_skipped)),
        )?;
        out.gauge(
            "sluice_job_partition_lag",
            "Records of each source partition the job has yet to read (the partition's high watermark minus the job's position), as its source subtasks last reported.",
            jobs.iter().flat_map(|(s, _)| {
                s.partition_lag.iter().map(move |p| {
                    let mut l = labels(s);
                    l.push(("topic", p.topic.clone()));
                    l.push(("partition", p.partition.to_string()));
                    (l, p.lag)
                })
            }),
        )
    }
}

impl MetricSource for CoordinatorMetrics {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        self.raft(out)?;
        // Only the leader hears from workers: a follower's figures of them
        // would be stale or missing.
        if self.state.store.leader_term().is_some() {
            self.workers(out)?;
            self.jobs(out)?;
        }
        Ok(())
    }
}
