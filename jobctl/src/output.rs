//! Tables for people, JSON for scripts.

use crate::Format;
use serde_json::{Value, json};
use sluice_common::text::abbreviated;
use sluice_proto::*;
use std::io::IsTerminal;

pub struct Printer {
    pub format: Format,
}

fn job_state(s: i32) -> &'static str {
    JobState::try_from(s).unwrap_or_default().name()
}

fn task_state(s: i32) -> &'static str {
    TaskState::try_from(s).unwrap_or_default().name()
}

fn worker_state(s: i32) -> &'static str {
    WorkerState::try_from(s).unwrap_or_default().name()
}

fn offsets(c: &CheckpointInfo) -> Vec<(i32, i64)> {
    let mut o: Vec<(i32, i64)> = c.source_offsets.iter().map(|(p, o)| (*p, *o)).collect();
    o.sort_unstable();
    o
}

fn sorted_offsets(map: &std::collections::HashMap<i32, i64>) -> Vec<(i32, i64)> {
    let mut o: Vec<(i32, i64)> = map.iter().map(|(p, o)| (*p, *o)).collect();
    o.sort_unstable();
    o
}

fn offsets_text(o: &[(i32, i64)]) -> String {
    o.iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn savepoint_json(s: &SavepointInfo) -> Value {
    json!({
        "savepoint_id": s.savepoint_id, "job_id": s.job_id, "job_name": s.job_name,
        "checkpoint_id": s.checkpoint_id, "created_at_ms": s.created_at_ms,
        "parallelism": s.parallelism,
        "source_offsets": sorted_offsets(&s.source_offsets).into_iter().map(|(p, o)| (p.to_string(), json!(o))).collect::<serde_json::Map<_, _>>(),
    })
}

/// The widest a table cell is shown; longer ones end in `…` (JSON output
/// has them whole).
const MAX_CELL: usize = 80;

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| row.iter().map(|cell| abbreviated(cell, MAX_CELL)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count()))))
            .collect();
        say!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn task_json(t: &TaskStatus) -> Value {
    let m = t.metrics.clone().unwrap_or_default();
    json!({
        "task_id": t.task_id, "stage": t.stage, "index": t.index, "worker_id": t.worker_id,
        "state": task_state(t.state), "partitions": t.partitions, "error": t.error,
        "fault": fault(t.fault), "causes": t.causes,
        "records_in": m.records_in, "records_out": m.records_out, "dead_lettered": m.dead_lettered,
        "open_transaction_age_ms": m.open_transaction_age_ms,
        "offsets_skipped": m.offsets_skipped, "dead_letters_dropped": m.dead_letters_dropped,
        "busy_ms": m.busy_ms, "back_pressure_ms": m.back_pressure_ms,
        "busy_percent": percent(m.busy_permille),
        "back_pressure_percent": percent(m.back_pressure_permille),
        "bytes_in": m.bytes_in, "bytes_out": m.bytes_out,
        "partition_lag": m.partition_lag.iter().map(lag_json).collect::<Vec<_>>(),
    })
}

/// Thousandths of the time as percent.
fn percent(permille: u32) -> f64 {
    f64::from(permille.min(1000)) / 10.0
}

fn lag_json(l: &SourcePartitionLag) -> Value {
    json!({
        "topic": l.topic, "partition": l.partition, "position": l.position,
        "high_watermark": l.high_watermark, "lag": l.lag,
    })
}

/// Records a job's sources are behind their partitions' ends, in total.
fn total_lag(j: &JobStatus) -> i64 {
    j.partition_lag.iter().map(|l| l.lag.max(0)).sum()
}

/// Whose fault a task's error is (`record`, `spec`, `external`, `internal`);
/// null when it did not fail.
fn fault(f: i32) -> Value {
    match fault_name(f) {
        "" => Value::Null,
        name => name.into(),
    }
}

fn fault_name(f: i32) -> &'static str {
    match Fault::try_from(f).unwrap_or_default() {
        Fault::Record => "record",
        Fault::Spec => "spec",
        Fault::External => "external",
        Fault::Internal => "internal",
        Fault::Unspecified => "",
    }
}

/// A time in ms since the epoch as RFC 3339 UTC, to the millisecond.
fn time_text(at_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at_ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// An event's message followed by the errors under it.
fn with_causes(message: &str, causes: &[String]) -> String {
    causes.iter().fold(message.to_string(), |text, cause| {
        format!("{text}; caused by: {cause}")
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An event with the fields its kind uses.
fn event_json(e: &JobEvent) -> Value {
    let mut v = json!({
        "at_ms": e.at_ms, "at": time_text(e.at_ms), "kind": e.kind, "attempt": e.attempt,
        "message": e.message,
    });
    let fields = match e.kind.as_str() {
        "offsets_skipped" | "offsets_reset" => json!({
            "task_id": e.task_id, "topic": e.topic, "partition": e.partition,
            "from_offset": e.from_offset, "to_offset": e.to_offset, "count": e.count,
        }),
        "partitions_added" => json!({ "topic": e.topic, "count": e.count }),
        "task_failed" => json!({
            "task_id": e.task_id, "error": e.error, "fault": fault_name(e.fault),
            "causes": e.causes,
        }),
        _ => json!({}),
    };
    if let (Some(v), Value::Object(fields)) = (v.as_object_mut(), fields) {
        v.extend(fields);
    }
    v
}

fn job_json(j: &JobStatus) -> Value {
    json!({
        "job_id": j.job_id, "name": j.name, "state": job_state(j.state),
        "parallelism": j.parallelism, "failure": j.failure,
        "submitted_at_ms": j.submitted_at_ms,
        "attempt": j.attempt, "restarts": j.restarts, "last_failure": j.last_failure,
        "last_checkpoint_id": j.last_checkpoint_id, "last_checkpoint_age_ms": j.last_checkpoint_age_ms,
        "stopped_with_savepoint": j.stopped_with_savepoint, "from_savepoint": j.from_savepoint,
        "warnings": j.warnings,
        "offsets_skipped": j.offsets_skipped,
        "lag": total_lag(j),
        "partition_lag": j.partition_lag.iter().map(lag_json).collect::<Vec<_>>(),
        "recent_events": j.recent_events.iter().map(event_json).collect::<Vec<_>>(),
        "tasks": j.tasks.iter().map(task_json).collect::<Vec<_>>(),
    })
}

impl Printer {
    fn json(&self, v: Value) {
        say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    }

    /// One refresh of `status --watch`: the table in place of the last one
    /// on a terminal, or one line of JSON.
    pub fn watch_frame(&self, j: &JobStatus, interval: std::time::Duration) {
        match self.format {
            Format::Json => say!("{}", job_json(j)),
            Format::Table => {
                if std::io::stdout().is_terminal() {
                    // Cursor home, then clear the screen: the new table replaces the old.
                    say_part!("\x1b[H\x1b[2J");
                }
                say!(
                    "{}  every {}  (Ctrl-C to stop)\n",
                    time_text(now_ms()),
                    humantime::format_duration(interval)
                );
                self.status(j);
            }
        }
    }

    /// A refresh of `status --watch` that found no coordinator to answer.
    pub fn watch_error(&self, error: &str) {
        match self.format {
            Format::Json => say!("{}", json!({ "error": error })),
            Format::Table => say!("{}  {error}; trying again", time_text(now_ms())),
        }
    }

    pub fn submitted(&self, job_id: &str) {
        match self.format {
            Format::Json => self.json(json!({ "job_id": job_id })),
            Format::Table => say!("submitted {job_id}"),
        }
    }

    pub fn jobs(&self, jobs: &[JobStatus]) {
        match self.format {
            Format::Json => self.json(Value::Array(jobs.iter().map(job_json).collect())),
            Format::Table => table(
                &[
                    "JOB",
                    "NAME",
                    "STATE",
                    "PARALLELISM",
                    "TASKS",
                    "LAG",
                    "FAILURE",
                ],
                jobs.iter()
                    .map(|j| {
                        vec![
                            j.job_id.clone(),
                            j.name.clone(),
                            job_state(j.state).into(),
                            j.parallelism.to_string(),
                            j.tasks.len().to_string(),
                            total_lag(j).to_string(),
                            j.failure.clone(),
                        ]
                    })
                    .collect(),
            ),
        }
    }

    pub fn status(&self, j: &JobStatus) {
        match self.format {
            Format::Json => self.json(job_json(j)),
            Format::Table => {
                say!("job:         {} ({})", j.job_id, j.name);
                say!("state:       {}", job_state(j.state));
                say!("parallelism: {}", j.parallelism);
                if !j.from_savepoint.is_empty() {
                    say!("started from savepoint: {}", j.from_savepoint);
                }
                if !j.stopped_with_savepoint.is_empty() {
                    say!("stopped with savepoint: {}", j.stopped_with_savepoint);
                }
                if !j.failure.is_empty() {
                    say!("failure:     {}", j.failure);
                }
                say!("attempt:     {} ({} restarts)", j.attempt, j.restarts);
                if !j.last_failure.is_empty() {
                    say!("last failure: {}", j.last_failure);
                }
                if j.last_checkpoint_id > 0 {
                    say!(
                        "checkpoint:  {} ({:.1}s ago)",
                        j.last_checkpoint_id,
                        j.last_checkpoint_age_ms as f64 / 1000.0
                    );
                } else {
                    say!("checkpoint:  none yet");
                }
                let mut lags: Vec<_> = j.partition_lag.iter().collect();
                lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                say!(
                    "lag:         {} ({})",
                    total_lag(j),
                    lags.iter()
                        .map(|l| format!("{}/{}:{}", l.topic, l.partition, l.lag))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                for warning in &j.warnings {
                    say!("warning:     {warning}");
                }
                if j.offsets_skipped > 0 {
                    say!(
                        "offsets skipped: {} (deleted before the job read them; see `jobctl events {}`)",
                        j.offsets_skipped,
                        j.job_id
                    );
                }
                if !j.recent_events.is_empty() {
                    say!("recent events:");
                    for e in &j.recent_events {
                        say!("  {}  {}", time_text(e.at_ms), e.message);
                    }
                }
                say!();
                table(
                    &[
                        "TASK",
                        "WORKER",
                        "STATE",
                        "PARTITIONS",
                        "IN",
                        "OUT",
                        "DLQ",
                        "BUSY",
                        "BACKPRESSURE",
                        "ERROR",
                    ],
                    j.tasks
                        .iter()
                        .map(|t| {
                            let m = t.metrics.clone().unwrap_or_default();
                            vec![
                                t.task_id.clone(),
                                t.worker_id.clone(),
                                task_state(t.state).into(),
                                t.partitions
                                    .iter()
                                    .map(i32::to_string)
                                    .collect::<Vec<_>>()
                                    .join(","),
                                m.records_in.to_string(),
                                m.records_out.to_string(),
                                m.dead_lettered.to_string(),
                                format!("{:.0}%", percent(m.busy_permille)),
                                format!("{:.0}%", percent(m.back_pressure_permille)),
                                match fault(t.fault) {
                                    Value::Null => t.error.clone(),
                                    f => {
                                        format!("[{}] {}", f.as_str().unwrap_or_default(), t.error)
                                    }
                                },
                            ]
                        })
                        .collect(),
                );
            }
        }
    }

    /// A savepoint just taken; `what` says what happened to the job.
    pub fn savepoint(&self, s: &SavepointInfo, what: &str) {
        match self.format {
            Format::Json => self.json(savepoint_json(s)),
            Format::Table => say!(
                "{what}: {} (checkpoint {} of {}, parallelism {}, offsets {})",
                if s.savepoint_id.is_empty() {
                    "no savepoint".to_string()
                } else {
                    format!("savepoint {}", s.savepoint_id)
                },
                s.checkpoint_id,
                s.job_id,
                s.parallelism,
                offsets_text(&sorted_offsets(&s.source_offsets))
            ),
        }
    }

    pub fn savepoints(&self, list: &[SavepointInfo]) {
        match self.format {
            Format::Json => self.json(Value::Array(list.iter().map(savepoint_json).collect())),
            Format::Table => table(
                &[
                    "SAVEPOINT",
                    "JOB",
                    "NAME",
                    "CHECKPOINT",
                    "PARALLELISM",
                    "SOURCE OFFSETS",
                ],
                list.iter()
                    .map(|s| {
                        vec![
                            s.savepoint_id.clone(),
                            s.job_id.clone(),
                            s.job_name.clone(),
                            s.checkpoint_id.to_string(),
                            s.parallelism.to_string(),
                            offsets_text(&sorted_offsets(&s.source_offsets)),
                        ]
                    })
                    .collect(),
            ),
        }
    }

    /// Each member's view of the coordinator group, by the address asked.
    pub fn cluster(&self, views: &[(String, anyhow::Result<ClusterInfoResponse>)]) {
        match self.format {
            Format::Json => self.json(Value::Array(
                views
                    .iter()
                    .map(|(address, view)| match view {
                        Ok(v) => json!({
                            "address": address, "id": v.id, "role": v.role, "leader_id": v.leader_id,
                            "leader_address": v.leader_address, "term": v.term,
                            "last_log_index": v.last_log_index, "applied_index": v.applied_index,
                            "snapshot_index": v.snapshot_index, "purged_index": v.purged_index,
                            "serving": v.serving,
                            "members": v.members.iter().map(|m| json!({"id": m.id, "address": m.address, "voter": m.voter})).collect::<Vec<_>>(),
                        }),
                        Err(e) => json!({"address": address, "error": format!("{e:#}")}),
                    })
                    .collect(),
            )),
            Format::Table => {
                table(
                    &["ADDRESS", "ID", "ROLE", "LEADER", "TERM", "LAST LOG", "APPLIED", "SNAPSHOT"],
                    views
                        .iter()
                        .map(|(address, view)| match view {
                            Ok(v) => vec![
                                address.clone(),
                                v.id.to_string(),
                                if v.role == "leader" && !v.serving {
                                    "leader (not serving)".into()
                                } else {
                                    v.role.clone()
                                },
                                if v.leader_id == 0 { "-".into() } else { v.leader_id.to_string() },
                                v.term.to_string(),
                                v.last_log_index.to_string(),
                                v.applied_index.to_string(),
                                v.snapshot_index.to_string(),
                            ],
                            Err(_) => vec![address.clone(), "-".into(), "unreachable".into()],
                        })
                        .collect(),
                );
                if let Some(v) = views.iter().find_map(|(_, v)| v.as_ref().ok()) {
                    let members: Vec<String> = v
                        .members
                        .iter()
                        .map(|m| format!("{}={}{}", m.id, m.address, if m.voter { "" } else { " (learner)" }))
                        .collect();
                    say!("members: {}", members.join(", "));
                }
            }
        }
    }

    pub fn checkpoints(&self, resp: &ListCheckpointsResponse) {
        match self.format {
            Format::Json => self.json(json!({
                "failed": resp.failed,
                "last_failure": resp.last_failure,
                "checkpoints": resp.checkpoints.iter().map(|c| json!({
                    "checkpoint_id": c.checkpoint_id, "attempt": c.attempt,
                    "completed_at_ms": c.completed_at_ms, "duration_ms": c.duration_ms,
                    "source_offsets": offsets(c).into_iter().map(|(p, o)| (p.to_string(), json!(o))).collect::<serde_json::Map<_, _>>(),
                    "state_objects": c.state_objects, "size_bytes": c.size_bytes,
                    "alignment_us": c.alignment_us,
                })).collect::<Vec<_>>(),
            })),
            Format::Table => {
                table(
                    &[
                        "CHECKPOINT",
                        "ATTEMPT",
                        "DURATION",
                        "ALIGNMENT",
                        "STATE OBJECTS",
                        "SIZE",
                        "SOURCE OFFSETS",
                    ],
                    resp.checkpoints
                        .iter()
                        .map(|c| {
                            vec![
                                c.checkpoint_id.to_string(),
                                c.attempt.to_string(),
                                format!("{}ms", c.duration_ms),
                                format!("{:.1}ms", c.alignment_us as f64 / 1000.0),
                                c.state_objects.len().to_string(),
                                format!("{}B", c.size_bytes),
                                offsets(c)
                                    .iter()
                                    .map(|(p, o)| format!("{p}:{o}"))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            ]
                        })
                        .collect(),
                );
                say!("abandoned since the coordinator started: {}", resp.failed);
                if !resp.last_failure.is_empty() {
                    say!("last abandoned: {}", resp.last_failure);
                }
            }
        }
    }

    pub fn events(&self, events: &[JobEvent]) {
        match self.format {
            Format::Json => self.json(Value::Array(events.iter().map(event_json).collect())),
            Format::Table => table(
                &["TIME", "ATTEMPT", "KIND", "EVENT"],
                events
                    .iter()
                    .map(|e| {
                        vec![
                            time_text(e.at_ms),
                            e.attempt.to_string(),
                            e.kind.clone(),
                            with_causes(&e.message, &e.causes),
                        ]
                    })
                    .collect(),
            ),
        }
    }

    pub fn workers(&self, workers: &[WorkerInfo]) {
        match self.format {
            Format::Json => self.json(Value::Array(
                workers
                    .iter()
                    .map(|w| {
                        json!({
                            "worker_id": w.worker_id, "data_address": w.data_address,
                            "state": worker_state(w.state), "slots": w.slots, "used_slots": w.used_slots,
                            "last_heartbeat_ms_ago": w.last_heartbeat_ms_ago, "tasks": w.task_ids,
                        })
                    })
                    .collect(),
            )),
            Format::Table => table(
                &["WORKER", "STATE", "ADDRESS", "SLOTS", "USED", "HEARTBEAT", "TASKS"],
                workers
                    .iter()
                    .map(|w| {
                        vec![
                            w.worker_id.clone(),
                            worker_state(w.state).into(),
                            w.data_address.clone(),
                            w.slots.to_string(),
                            w.used_slots.to_string(),
                            format!("{}ms ago", w.last_heartbeat_ms_ago),
                            w.task_ids.len().to_string(),
                        ]
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_shortened_and_short_ones_kept() {
        assert_eq!(abbreviated("job-1", MAX_CELL), "job-1");
        let long = abbreviated(&"n".repeat(100_000), MAX_CELL);
        assert_eq!(long.chars().count(), MAX_CELL);
        assert!(long.ends_with('…'));
        assert_eq!(abbreviated(&"é".repeat(81), 80).chars().count(), 80);
        assert_eq!(abbreviated(&"é".repeat(80), 80), "é".repeat(80));
    }
}
