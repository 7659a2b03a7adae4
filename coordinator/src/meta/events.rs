//! What happened to a job that its operators want to know of: source offsets
//! skipped, partitions added, task failures, restarts. Recorded through the
//! Raft log with the change that caused them, the last [`MAX_EVENTS`] per job.

use serde::{Deserialize, Serialize};
use sluice_common::{Fault, TaskId, WorkerId};
use sluice_proto::OffsetReset;

/// Events a job keeps; older ones are dropped.
pub const MAX_EVENTS: usize = 100;

/// One event of a job, dated by whoever saw it (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub at_ms: i64,
    /// The job's attempt it happened in.
    pub attempt: u32,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A source's next offset of `partition` was outside what the partition
    /// holds (`low..=high`); it went on at `low`.
    OffsetsOutOfRange {
        task: TaskId,
        topic: String,
        partition: i32,
        position: i64,
        low: i64,
        high: i64,
    },
    /// The source topic grew from `from` to `to` partitions.
    PartitionsAdded { topic: String, from: i32, to: i32 },
    TaskFailed {
        task: TaskId,
        worker: WorkerId,
        error: String,
        fault: Option<Fault>,
        /// The chain of errors under `error`, outermost first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        causes: Vec<String>,
    },
    /// The job restarts as attempt `attempt` (the event's own attempt is the
    /// one that ended) after `backoff_ms`.
    Restarted { attempt: u32, backoff_ms: u64 },
    /// The job failed for good.
    JobFailed { reason: String },
}

impl EventKind {
    /// From a source's report.
    pub fn offset_reset(task: &TaskId, r: &OffsetReset) -> Self {
        Self::OffsetsOutOfRange {
            task: task.clone(),
            topic: r.topic.clone(),
            partition: r.partition,
            position: r.position,
            low: r.low,
            high: r.high,
        }
    }

    /// Offsets a source went past unread: those before the partition's
    /// earliest offset that it had not read yet.
    pub fn offsets_skipped(&self) -> u64 {
        match self {
            Self::OffsetsOutOfRange { position, low, .. } => (low - position).max(0) as u64,
            _ => 0,
        }
    }

    /// The same offsets skipped again, as a restart from a checkpoint taken
    /// before the skip finds them: the same records, reported once.
    pub fn repeats(&self, other: &Self) -> bool {
        matches!(
            (self, other),
            (
                Self::OffsetsOutOfRange { topic, partition, position, low, .. },
                Self::OffsetsOutOfRange { topic: t, partition: p, position: o, low: l, .. },
            ) if topic == t && partition == p && position == o && low == l
        )
    }
}

impl JobEvent {
    /// As `jobctl` shows it.
    pub fn to_proto(&self) -> sluice_proto::JobEvent {
        let mut e = sluice_proto::JobEvent {
            at_ms: self.at_ms,
            attempt: self.attempt,
            ..Default::default()
        };
        match &self.kind {
            EventKind::OffsetsOutOfRange {
                task,
                topic,
                partition,
                position,
                low,
                high,
            } => {
                e.task_id = task.to_string();
                e.topic = topic.clone();
                e.partition = *partition;
                if position < low {
                    e.kind = "offsets_skipped".into();
                    e.from_offset = *position;
                    e.to_offset = *low;
                    e.count = self.kind.offsets_skipped();
                    e.message = format!(
                        "{topic} partition {partition}: offsets {position}..{} were deleted before \
                         the job read them (retention); {} offsets skipped, reading went on at {low}",
                        low - 1,
                        e.count
                    );
                } else {
                    e.kind = "offsets_reset".into();
                    e.from_offset = *position;
                    e.to_offset = *low;
                    e.message = format!(
                        "{topic} partition {partition}: next offset {position} is past the \
                         partition's end ({high}): the topic was deleted and recreated, or \
                         truncated; reading went on at its earliest offset {low}"
                    );
                }
            }
            EventKind::PartitionsAdded { topic, from, to } => {
                e.kind = "partitions_added".into();
                e.topic = topic.clone();
                e.count = (to - from).max(0) as u64;
                e.message = format!(
                    "{topic} grew from {from} to {to} partitions; partitions {from}..{} are read \
                     from their beginning",
                    to - 1
                );
            }
            EventKind::TaskFailed {
                task,
                worker,
                error,
                fault,
                causes,
            } => {
                e.kind = "task_failed".into();
                e.task_id = task.to_string();
                e.error = error.clone();
                e.causes = causes.clone();
                e.fault = fault.map_or(sluice_proto::Fault::Unspecified, Into::into) as i32;
                e.message = match fault {
                    Some(f) => format!("task {task} on {worker} failed ({f}): {error}"),
                    None => format!("task {task} on {worker} failed: {error}"),
                };
            }
            EventKind::Restarted {
                attempt,
                backoff_ms,
            } => {
                e.kind = "restarted".into();
                e.message = format!(
                    "restarting as attempt {attempt} from the latest checkpoint in {:.1}s",
                    *backoff_ms as f64 / 1000.0
                );
            }
            EventKind::JobFailed { reason } => {
                e.kind = "job_failed".into();
                e.message = format!("job failed: {reason}");
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(position: i64, low: i64, high: i64) -> JobEvent {
        JobEvent {
            at_ms: 0,
            attempt: 1,
            kind: EventKind::OffsetsOutOfRange {
                task: TaskId::new("t"),
                topic: "in".into(),
                partition: 3,
                position,
                low,
                high,
            },
        }
    }

    #[test]
    fn offsets_before_the_earliest_are_skipped_and_a_position_past_the_end_is_a_reset() {
        let skipped = reset(100, 150, 200).to_proto();
        assert_eq!(skipped.kind, "offsets_skipped");
        assert_eq!(
            (skipped.from_offset, skipped.to_offset, skipped.count),
            (100, 150, 50)
        );
        assert!(
            skipped.message.contains("offsets 100..149"),
            "{}",
            skipped.message
        );
        let after_recreate = reset(300, 0, 20).to_proto();
        assert_eq!(after_recreate.kind, "offsets_reset");
        assert_eq!(after_recreate.count, 0);
        assert!(
            reset(100, 150, 200)
                .kind
                .repeats(&reset(100, 150, 260).kind)
        );
        assert!(
            !reset(100, 150, 200)
                .kind
                .repeats(&reset(150, 180, 260).kind)
        );
    }
}
