//! What the HTTP API answers with: the coordinator's views of jobs,
//! checkpoints, savepoints, workers and the group, as JSON documents with
//! the field names `jobctl --output json` uses. Times are milliseconds
//! (`*_ms`); instants are Unix epoch milliseconds (`*_at_ms`).

use serde::{Deserialize, Serialize};
use sluice_proto as pb;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub use super::states::{JobState, TaskState, WorkerState};

/// A job with its subtasks and their counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub job_id: String,
    pub name: String,
    pub state: JobState,
    pub parallelism: u32,
    /// Why the job failed or was cancelled; empty while it runs.
    pub failure: String,
    pub submitted_at_ms: i64,
    /// The run the job is in: 1, then one more per restart.
    pub attempt: u32,
    pub restarts: u32,
    /// The failure that caused the latest restart; empty without one.
    pub last_failure: String,
    /// 0 before the first completed checkpoint.
    pub last_checkpoint_id: u64,
    pub last_checkpoint_age_ms: u64,
    /// The savepoint a stopped job can be resumed from; empty otherwise.
    pub stopped_with_savepoint: String,
    /// The savepoint the job started from; empty otherwise.
    pub from_savepoint: String,
    /// What needs the user's attention while the job runs, one sentence each.
    pub warnings: Vec<String>,
    /// Source offsets the job went past unread since it was submitted.
    pub offsets_skipped: u64,
    /// Records the job's sources are behind their partitions' ends, summed
    /// over `partition_lag` (0 once the job has read everything).
    pub lag: i64,
    /// How far the job's sources are behind each partition's end: live from
    /// its source subtasks while it runs; for a stopped job, from its stop
    /// savepoint's offsets to the partitions' ends now.
    pub partition_lag: Vec<PartitionLag>,
    /// The job's latest events (at most 5), oldest first.
    pub recent_events: Vec<Event>,
    /// The job's spec as the coordinator stores it (Sluice's own form).
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
    pub tasks: Vec<Task>,
}

/// One subtask of a job: a stage's instance on a worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct Task {
    pub task_id: String,
    /// 0 reads the source; each `key_by` starts the next stage.
    pub stage: u32,
    pub index: u32,
    pub worker_id: String,
    pub state: TaskState,
    /// The source partitions a stage-0 subtask reads.
    pub partitions: Vec<i32>,
    /// Why the subtask failed; empty otherwise.
    pub error: String,
    /// Whose fault `error` is: record, spec, external or internal; null without one.
    pub fault: Option<String>,
    /// The errors under `error`, outermost first.
    pub causes: Vec<String>,
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub open_transaction_age_ms: u64,
    pub offsets_skipped: u64,
    pub dead_letters_dropped: u64,
    /// Time the subtask spent handling input since it started, in ms, back
    /// pressure included; waiting for input is not.
    pub busy_ms: u64,
    /// Time the subtask spent blocked handing records on because the next
    /// stage or the sink did not take them, since it started, in ms.
    pub back_pressure_ms: u64,
    /// Share of the last few seconds the subtask was busy, in percent
    /// (0-100), back pressure included.
    pub busy_percent: f64,
    /// Share of the last few seconds the subtask waited for the next stage
    /// or the sink to take records, in percent (0-100).
    pub back_pressure_percent: f64,
    /// Bytes the subtask read: of the Kafka messages (keys and values) for
    /// a source subtask, of the records received from subtasks on other
    /// workers otherwise.
    pub bytes_in: u64,
    /// Bytes of the records the subtask sent to subtasks on other workers.
    pub bytes_out: u64,
    /// A source subtask's partitions: where it reads and how far behind
    /// their ends it is, measured live.
    pub partition_lag: Vec<PartitionLag>,
}

/// How far a source is behind one partition's end.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The next offset to read.
    pub position: i64,
    /// The partition's high watermark as the broker last told it; -1: not known yet.
    pub high_watermark: i64,
    /// `high_watermark - position`, at least 0; 0 while the high watermark is not known.
    pub lag: i64,
}

/// Something that happened to a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    pub at_ms: i64,
    /// offsets_skipped, offsets_reset, partitions_added, task_failed,
    /// restarted or job_failed.
    pub kind: String,
    /// The event in one line, for people.
    pub message: String,
    pub attempt: u32,
    /// The task it concerns; empty when none.
    pub task_id: String,
    /// offsets_skipped, offsets_reset, partitions_added: the source topic.
    pub topic: String,
    pub partition: i32,
    pub from_offset: i64,
    pub to_offset: i64,
    pub count: u64,
    /// task_failed: the error, whose fault it is, and the errors under it.
    pub error: String,
    pub fault: Option<String>,
    pub causes: Vec<String>,
}

/// A completed checkpoint a job retains.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checkpoint {
    pub checkpoint_id: u64,
    pub completed_at_ms: i64,
    pub attempt: u32,
    /// From the trigger to the last acknowledgement.
    pub duration_ms: u64,
    /// The next offset of each source partition, by partition.
    pub source_offsets: BTreeMap<String, i64>,
    /// The objects of the checkpoint store holding its keyed state.
    pub state_objects: Vec<String>,
    /// Bytes of keyed state the subtasks uploaded for this checkpoint (full
    /// snapshots or deltas); 0 for a job without keyed state.
    pub size_bytes: u64,
    /// The longest barrier alignment of a subtask in it, in microseconds:
    /// from the first to the last of its inputs delivering the barrier (0
    /// when no subtask has several inputs).
    pub alignment_us: u64,
}

/// A job's retained checkpoints, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checkpoints {
    pub checkpoints: Vec<Checkpoint>,
    /// Checkpoints of the job that failed or timed out since this leader leads.
    pub failed: u64,
    /// Why the latest of `failed` was abandoned ("checkpoint 7 timed out
    /// after 10s", "checkpoint 7 declined by task T: REASON"); empty when
    /// none failed.
    pub last_failure: String,
}

/// A checkpoint kept until deleted, which a job can start from.
#[derive(Debug, Serialize, ToSchema)]
pub struct Savepoint {
    pub savepoint_id: String,
    pub job_id: String,
    pub job_name: String,
    pub checkpoint_id: u64,
    pub created_at_ms: i64,
    pub parallelism: u32,
    /// The next offset of each source partition, by partition.
    pub source_offsets: BTreeMap<String, i64>,
}

/// A worker the leader knows.
#[derive(Debug, Serialize, ToSchema)]
pub struct Worker {
    pub worker_id: String,
    /// Where other workers send it records (host:port).
    pub data_address: String,
    pub state: WorkerState,
    pub slots: u32,
    pub used_slots: u32,
    pub last_heartbeat_ms_ago: u64,
    pub tasks: Vec<String>,
}

/// One member of the coordinator group.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub id: u64,
    /// Its gRPC address (host:port).
    pub address: String,
    /// false for a learner still catching up.
    pub voter: bool,
}

/// The coordinator group as the answering member sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    /// The answering member.
    pub id: u64,
    /// leader, follower, candidate or learner.
    pub role: String,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub leader_address: String,
    /// Whether this member serves the API now (a leader a quorum answered).
    pub serving: bool,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    /// Where this member serves HTTP (host:port).
    pub http_address: String,
    pub members: Vec<Member>,
}

/// A job accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    pub job_id: String,
}

/// The body of a rescale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rescale {
    /// The new parallelism, from 1.
    pub parallelism: u32,
}

fn fault(f: i32) -> Option<String> {
    pb::Fault::try_from(f)
        .unwrap_or_default()
        .to_common()
        .map(|f| f.as_str().to_string())
}

/// Thousandths of the time as percent.
fn percent(permille: u32) -> f64 {
    f64::from(permille.min(1000)) / 10.0
}

fn lags(lag: Vec<pb::SourcePartitionLag>) -> Vec<PartitionLag> {
    lag.into_iter()
        .map(|l| PartitionLag {
            topic: l.topic,
            partition: l.partition,
            position: l.position,
            high_watermark: l.high_watermark,
            lag: l.lag,
        })
        .collect()
}

fn offsets(map: &std::collections::HashMap<i32, i64>) -> BTreeMap<String, i64> {
    map.iter().map(|(p, o)| (p.to_string(), *o)).collect()
}

impl From<pb::JobStatus> for Job {
    fn from(j: pb::JobStatus) -> Self {
        Self {
            state: j.state().into(),
            spec: serde_json::from_str(&j.spec_json).unwrap_or_default(),
            job_id: j.job_id,
            name: j.name,
            parallelism: j.parallelism,
            failure: j.failure,
            submitted_at_ms: j.submitted_at_ms,
            attempt: j.attempt,
            restarts: j.restarts,
            last_failure: j.last_failure,
            last_checkpoint_id: j.last_checkpoint_id,
            last_checkpoint_age_ms: j.last_checkpoint_age_ms,
            stopped_with_savepoint: j.stopped_with_savepoint,
            from_savepoint: j.from_savepoint,
            warnings: j.warnings,
            offsets_skipped: j.offsets_skipped,
            lag: j.partition_lag.iter().map(|l| l.lag.max(0)).sum(),
            partition_lag: lags(j.partition_lag),
            recent_events: j.recent_events.into_iter().map(Event::from).collect(),
            tasks: j.tasks.into_iter().map(Task::from).collect(),
        }
    }
}

impl From<pb::TaskStatus> for Task {
    fn from(t: pb::TaskStatus) -> Self {
        let (state, fault) = (t.state().into(), fault(t.fault));
        let m = t.metrics.unwrap_or_default();
        Self {
            state,
            fault,
            task_id: t.task_id,
            stage: t.stage,
            index: t.index,
            worker_id: t.worker_id,
            partitions: t.partitions,
            error: t.error,
            causes: t.causes,
            records_in: m.records_in,
            records_out: m.records_out,
            dead_lettered: m.dead_lettered,
            open_transaction_age_ms: m.open_transaction_age_ms,
            offsets_skipped: m.offsets_skipped,
            dead_letters_dropped: m.dead_letters_dropped,
            busy_ms: m.busy_ms,
            back_pressure_ms: m.back_pressure_ms,
            busy_percent: percent(m.busy_permille),
            back_pressure_percent: percent(m.back_pressure_permille),
            bytes_in: m.bytes_in,
            bytes_out: m.bytes_out,
            partition_lag: lags(m.partition_lag),
        }
    }
}

impl From<pb::JobEvent> for Event {
    fn from(e: pb::JobEvent) -> Self {
        Self {
            fault: fault(e.fault),
            at_ms: e.at_ms,
            kind: e.kind,
            message: e.message,
            attempt: e.attempt,
            task_id: e.task_id,
            topic: e.topic,
            partition: e.partition,
            from_offset: e.from_offset,
            to_offset: e.to_offset,
            count: e.count,
            error: e.error,
            causes: e.causes,
        }
    }
}

impl From<pb::ListCheckpointsResponse> for Checkpoints {
    fn from(r: pb::ListCheckpointsResponse) -> Self {
        Self {
            checkpoints: r
                .checkpoints
                .into_iter()
                .map(|c| Checkpoint {
                    source_offsets: offsets(&c.source_offsets),
                    checkpoint_id: c.checkpoint_id,
                    completed_at_ms: c.completed_at_ms,
                    attempt: c.attempt,
                    duration_ms: c.duration_ms,
                    state_objects: c.state_objects,
                    size_bytes: c.size_bytes,
                    alignment_us: c.alignment_us,
                })
                .collect(),
            failed: r.failed,
            last_failure: r.last_failure,
        }
    }
}

impl From<pb::SavepointInfo> for Savepoint {
    fn from(s: pb::SavepointInfo) -> Self {
        Self {
            source_offsets: offsets(&s.source_offsets),
            savepoint_id: s.savepoint_id,
            job_id: s.job_id,
            job_name: s.job_name,
            checkpoint_id: s.checkpoint_id,
            created_at_ms: s.created_at_ms,
            parallelism: s.parallelism,
        }
    }
}

impl From<pb::WorkerInfo> for Worker {
    fn from(w: pb::WorkerInfo) -> Self {
        Self {
            state: w.state().into(),
            worker_id: w.worker_id,
            data_address: w.data_address,
            slots: w.slots,
            used_slots: w.used_slots,
            last_heartbeat_ms_ago: w.last_heartbeat_ms_ago,
            tasks: w.task_ids,
        }
    }
}

impl From<pb::ClusterInfoResponse> for Cluster {
    fn from(c: pb::ClusterInfoResponse) -> Self {
        Self {
            id: c.id,
            role: c.role,
            leader_id: c.leader_id,
            leader_address: c.leader_address,
            serving: c.serving,
            term: c.term,
            last_log_index: c.last_log_index,
            applied_index: c.applied_index,
            snapshot_index: c.snapshot_index,
            purged_index: c.purged_index,
            http_address: c.http_address,
            members: c
                .members
                .into_iter()
                .map(|m| Member {
                    id: m.id,
                    address: m.address,
                    voter: m.voter,
                })
                .collect(),
        }
    }
}
