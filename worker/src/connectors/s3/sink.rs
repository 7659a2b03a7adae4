use crate::connectors::sink::SinkIdentity;
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use chrono::Utc;
use chrono_tz::Tz;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_common::spec::{S3SinkSpec, S3Target};
use sluice_common::time::time_of_value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vrl::value::Value;

/// Staged objects live here, beside the user's prefix, never under it.
const STAGING: &str = ".sluice-staging";
/// Buffered bytes that roll the open files before the batch interval.
const ROLL_BYTES: usize = 8 << 20;

/// A file written under its staging key, and the key it becomes visible under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedFile {
    staged: String,
    final_key: String,
}

/// What a checkpoint holds of this sink: the files its commit makes visible.
#[derive(Debug, Default, Serialize, Deserialize)]
struct S3SinkState {
    files: Vec<StagedFile>,
}

/// Writes each record as a JSON line into the file of its time's directory;
/// files roll into staged objects at the batch interval and at each barrier.
/// Every file staged and not yet committed is in the state of each later
/// checkpoint, and moves to its final key once one of those completes:
/// files of a checkpoint that was abandoned carry over to the next one, since
/// their records' source offsets are past by then and nothing would replay
/// them. Recovery finishes the move of the restored checkpoint's files and
/// deletes every other staged file, whose records it replays.
pub struct S3Sink {
    store: Arc<dyn ObjectStore>,
    target: String,
    prefix: String,
    template: String,
    time_field: Option<String>,
    /// The job's zone: of zone-less times, and of the directories' dates and hours.
    timezone: Tz,
    batch_interval: Duration,
    /// `.sluice-staging/<prefix>/<job uid>/s<stage>-<index>`
    staging: String,
    /// `part-<job uid>-s<stage>-<index>-a<attempt>`
    file_stem: String,
    next_file: u64,
    /// Lines not yet uploaded, by directory below the prefix.
    open: BTreeMap<String, Vec<u8>>,
    open_bytes: usize,
    last_roll: Instant,
    /// Staged since the last barrier.
    staged: Vec<StagedFile>,
    /// Staged before a barrier and not yet committed, whether that
    /// barrier's checkpoint is in flight or was abandoned, each with the
    /// checkpoint of the first barrier after it: that checkpoint's
    /// completion, or any later one's, makes it visible.
    pending: Vec<(u64, StagedFile)>,
}

fn open_store(spec: &S3SinkSpec) -> std::result::Result<(Arc<dyn ObjectStore>, String), String> {
    match &spec.target {
        S3Target::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| e.to_string())?;
            Ok((Arc::new(store), dir.clone()))
        }
        S3Target::Bucket(bucket) => {
            let bucket = bucket.trim_start_matches("s3://").trim_end_matches('/');
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(spec.virtual_hosted_style);
            if let Some(region) = &spec.region {
                b = b.with_region(region);
            }
            if let Some(endpoint) = &spec.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(key) = &spec.access_key_id {
                b = b.with_access_key_id(key);
            }
            if let Some(secret) = &spec.secret_access_key {
                b = b.with_secret_access_key(secret);
            }
            let store = b.build().map_err(|e| e.to_string())?;
            Ok((Arc::new(store), format!("s3://{bucket}")))
        }
    }
}

impl S3Sink {
    /// Opens the store, finishes the commit of `restored` (the state of the
    /// checkpoint the job restarts from) and deletes staged files no
    /// completed checkpoint holds. Directories are dated in `timezone`.
    pub async fn build(
        spec: &S3SinkSpec,
        timezone: Tz,
        id: &SinkIdentity<'_>,
        restored: &str,
    ) -> Result<Self> {
        let (store, target) = open_store(spec).map_err(|reason| WorkerError::S3 {
            target: format!("{:?}", spec.target),
            what: "open".into(),
            reason,
        })?;
        let mut sink = Self {
            store,
            target,
            prefix: spec.prefix.clone(),
            template: spec.path.clone(),
            time_field: spec.time_field.clone(),
            timezone,
            batch_interval: spec.batch_interval,
            staging: [STAGING, spec.prefix.as_str(), id.job_uid]
                .iter()
                .filter(|p| !p.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
                + &format!("/s{}-{}", id.stage, id.index),
            file_stem: format!(
                "part-{}-s{}-{}-a{}",
                id.job_uid, id.stage, id.index, id.attempt
            ),
            next_file: 0,
            open: BTreeMap::new(),
            open_bytes: 0,
            last_roll: Instant::now(),
            staged: Vec::new(),
            pending: Vec::new(),
        };
        if !restored.is_empty() {
            let state: S3SinkState =
                serde_json::from_str(restored).map_err(|e| sink.err("restore", e.to_string()))?;
            let files = state.files.len();
            sink.pending = state.files.into_iter().map(|f| (0, f)).collect();
            sink.commit(0).await?;
            tracing::info!(
                files,
                "S3 sink finished the commit of its restored checkpoint"
            );
        }
        sink.delete_orphans().await?;
        Ok(sink)
    }

    fn err(&self, what: &str, reason: impl Into<String>) -> WorkerError {
        WorkerError::S3 {
            target: self.target.clone(),
            what: what.to_string(),
            reason: reason.into(),
        }
    }

    /// Staged files of this subtask that no completed checkpoint holds:
    /// written after the checkpoint the job restarts from.
    async fn delete_orphans(&self) -> Result<()> {
        let prefix = Path::from(self.staging.as_str());
        let orphans: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err("list staged files", e.to_string()))?;
        for meta in orphans {
            self.store
                .delete(&meta.location)
                .await
                .map_err(|e| self.err("delete a staged file", e.to_string()))?;
        }
        Ok(())
    }

    /// The directory of the record's time (its `time_field`, read as every
    /// sink reads times; the time of writing without one), in the job's zone.
    fn directory(&self, record: &Record) -> std::result::Result<String, String> {
        let time = match &self.time_field {
            None => Utc::now(),
            Some(field) => {
                let Value::Object(map) = &record.value else {
                    return Err("the S3 sink needs object records".into());
                };
                let value = map
                    .get(field.as_str())
                    .ok_or_else(|| format!("time field `{field}` is missing"))?;
                time_of_value(value, self.timezone)
                    .map_err(|e| format!("time field `{field}`: {e}"))?
            }
        };
        Ok(time
            .with_timezone(&self.timezone)
            .format(&self.template)
            .to_string())
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for record in batch {
            match self.directory(&record) {
                Ok(dir) => {
                    let line = self.open.entry(dir).or_default();
                    let before = line.len();
                    record.write_json_line(line);
                    line.push(b'\n');
                    self.open_bytes += line.len() - before;
                }
                Err(e) => failures.push(Failure::of(&record, FailedAt::Sink, e)),
            }
        }
        if self.open_bytes >= ROLL_BYTES || self.last_roll.elapsed() >= self.batch_interval {
            self.roll().await?;
        }
        Ok(failures)
    }

    /// Uploads every open file under its staging key.
    async fn roll(&mut self) -> Result<()> {
        self.last_roll = Instant::now();
        self.open_bytes = 0;
        for (dir, bytes) in std::mem::take(&mut self.open) {
            let name = format!("{}-{:06}.jsonl", self.file_stem, self.next_file);
            self.next_file += 1;
            let file = StagedFile {
                staged: format!("{}/{name}", self.staging),
                final_key: [self.prefix.as_str(), dir.as_str(), name.as_str()]
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("/"),
            };
            self.store
                .put(&Path::from(file.staged.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| self.err("upload a staged file", e.to_string()))?;
            self.staged.push(file);
        }
        Ok(())
    }

    /// At the barrier of checkpoint `checkpoint`: rolls, and returns the
    /// files the checkpoint makes visible (JSON), or `None` when there are
    /// none. These are this barrier's files and every earlier one's not
    /// committed yet: an earlier checkpoint still in flight or abandoned
    /// hands its files on to this one.
    pub async fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<String>> {
        self.roll().await?;
        self.pending
            .extend(self.staged.drain(..).map(|f| (checkpoint, f)));
        if self.pending.is_empty() {
            return Ok(None);
        }
        let state = S3SinkState {
            files: self.pending.iter().map(|(_, f)| f.clone()).collect(),
        };
        Ok(Some(serde_json::to_string(&state).unwrap_or_default()))
    }

    /// `true` when checkpoint `completed` covers files still to move.
    pub fn covers(&self, completed: u64) -> bool {
        self.pending.iter().any(|(c, _)| *c <= completed)
    }

    /// Checkpoint `completed` completed: moves the files staged before its
    /// barrier (and the abandoned ones' before them) to their final keys;
    /// files staged for a later barrier wait for their own checkpoint.
    /// Idempotent: a file already moved is skipped, so recovery can repeat
    /// it.
    pub async fn commit(&mut self, completed: u64) -> Result<()> {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= completed);
        self.pending = later;
        // A failure fails the subtask: its restart repeats the move.
        self.publish(&due).await
    }

    async fn publish(&self, files: &[(u64, StagedFile)]) -> Result<()> {
        for (i, (_, file)) in files.iter().enumerate() {
            if i == 1 {
                fail::fail_point!("s3-sink-mid-commit", |_| {
                    std::process::abort();
                });
            }
            let (staged, final_key) = (
                Path::from(file.staged.as_str()),
                Path::from(file.final_key.as_str()),
            );
            match self.store.copy(&staged, &final_key).await {
                Ok(()) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    // Moved by an earlier commit that died before the rest.
                    if self.store.head(&final_key).await.is_err() {
                        return Err(self.err(
                            "commit",
                            format!("neither {} nor {} exists", file.staged, file.final_key),
                        ));
                    }
                    continue;
                }
                Err(e) => return Err(self.err("commit", e.to_string())),
            }
            match self.store.delete(&staged).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete a committed staged file", e.to_string())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use sluice_common::spec::DEFAULT_S3_PATH;

    /// Attempt 0 of sink subtask `index` of stage `stage` of job `job_uid`.
    fn identity(job_uid: &str, stage: u32, index: u32) -> SinkIdentity<'_> {
        SinkIdentity {
            job_uid,
            stage,
            index,
            attempt: 0,
        }
    }

    /// A sink into `dir` restoring nothing, in UTC.
    async fn fresh_sink(dir: &std::path::Path, id: &SinkIdentity<'_>) -> S3Sink {
        S3Sink::build(&spec(dir), chrono_tz::UTC, id, "")
            .await
            .expect("builds")
    }

    fn spec(dir: &std::path::Path) -> S3SinkSpec {
        S3SinkSpec {
            target: S3Target::Dir(dir.to_string_lossy().into_owned()),
            prefix: "raw-data/cdc".into(),
            path: DEFAULT_S3_PATH.into(),
            time_field: Some("timestamp".into()),
            batch_interval: Duration::from_secs(60),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            virtual_hosted_style: false,
        }
    }

    fn rec(v: serde_json::Value, offset: i64) -> Record {
        Record::new(
            serde_json::from_value(v).expect("value"),
            Origin {
                topic: "cdc_events".into(),
                partition: 0,
                offset,
            },
        )
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sluice-s3-sink-{name}-{}", uuid::Uuid::new_v4()))
    }

    /// Every file under `dir`, relative to it, with its lines' `id`s.
    fn files_under(dir: &std::path::Path) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("readable");
                let ids = text
                    .lines()
                    .map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                        v["id"].as_str().unwrap_or_default().to_string()
                    })
                    .collect();
                let rel = path.strip_prefix(dir).expect("below dir");
                out.insert(rel.to_string_lossy().into_owned(), ids);
            }
        }
        out
    }

    fn event(id: &str, offset: i64) -> Record {
        rec(
            serde_json::json!({"id": id, "timestamp": "2024-03-13T10:00:00.000Z"}),
            offset,
        )
    }

    fn staged_files(state: &str) -> Vec<StagedFile> {
        serde_json::from_str::<S3SinkState>(state)
            .expect("sink state")
            .files
    }

    #[tokio::test]
    async fn files_of_an_abandoned_checkpoint_are_committed_with_the_next_one() {
        let dir = scratch("abandoned");
        let id = identity("u2", 0, 1);
        let mut sink = fresh_sink(&dir, &id).await;
        sink.write(vec![event("a", 0)]).await.expect("writes");
        let first = sink
            .pre_commit(1)
            .await
            .expect("pre-commits")
            .expect("a file");
        // Checkpoint abandoned: no commit; input goes on up to the next barrier.
        sink.write(vec![event("b", 1)]).await.expect("writes");
        let second = sink
            .pre_commit(2)
            .await
            .expect("pre-commits")
            .expect("files");
        let carried = staged_files(&second);
        assert_eq!(carried.len(), 2, "{second}");
        assert!(carried.contains(&staged_files(&first)[0]), "{second}");
        sink.commit(2).await.expect("commits");
        let visible = files_under(&dir.join("raw-data/cdc"));
        let ids: Vec<&String> = visible.values().flatten().collect();
        assert_eq!(ids, ["a", "b"], "{visible:?}");
        assert!(
            files_under(&dir.join(STAGING)).is_empty(),
            "staging left empty"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn recovery_commits_the_files_an_abandoned_checkpoint_handed_on() {
        let dir = scratch("abandoned-recovery");
        let id = identity("u3", 1, 0);
        let mut sink = fresh_sink(&dir, &id).await;
        sink.write(vec![event("a", 0)]).await.expect("writes");
        sink.pre_commit(1).await.expect("pre-commits");
        sink.write(vec![event("b", 1)]).await.expect("writes");
        let completed = sink
            .pre_commit(2)
            .await
            .expect("pre-commits")
            .expect("files");
        // Written after the completed checkpoint: replayed after recovery.
        sink.write(vec![event("c", 2)]).await.expect("writes");
        sink.pre_commit(3).await.expect("pre-commits");
        // The process dies before committing; the next attempt restores the
        // completed checkpoint.
        drop(sink);
        let retry = SinkIdentity { attempt: 1, ..id };
        S3Sink::build(&spec(&dir), chrono_tz::UTC, &retry, &completed)
            .await
            .expect("recovers");
        let visible = files_under(&dir.join("raw-data/cdc"));
        let ids: Vec<&String> = visible.values().flatten().collect();
        assert_eq!(ids, ["a", "b"], "{visible:?}");
        assert!(
            files_under(&dir.join(STAGING)).is_empty(),
            "the file after the checkpoint is deleted as an orphan"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_completion_publishes_only_the_files_its_barrier_covers() {
        let dir = scratch("in-flight");
        let id = identity("u4", 0, 0);
        let mut sink = fresh_sink(&dir, &id).await;
        let mut second = None;
        // Input goes on while checkpoint 1 is in flight; barrier 2 comes first.
        for (n, name) in ["a", "b"].into_iter().enumerate() {
            sink.write(vec![event(name, n as i64)])
                .await
                .expect("writes");
            second = sink.pre_commit(n as u64 + 1).await.expect("pre-commits");
        }
        let second = second.expect("files");
        assert_eq!(staged_files(&second).len(), 2, "{second}");
        assert!(sink.covers(1));
        sink.commit(1).await.expect("commits");
        let ids = |dir: &std::path::Path| -> Vec<String> {
            files_under(&dir.join("raw-data/cdc"))
                .into_values()
                .flatten()
                .collect()
        };
        assert_eq!(ids(&dir), ["a"], "checkpoint 1 publishes its own file only");
        assert!(sink.covers(2) && !sink.covers(1));
        sink.commit(2).await.expect("commits");
        let mut all = ids(&dir);
        all.sort();
        assert_eq!(all, ["a", "b"]);
        assert!(!sink.covers(2));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn files_become_visible_at_commit_and_recovery_repeats_it() {
        let dir = scratch("commit");
        let id = identity("u1", 0, 0);
        let mut sink = fresh_sink(&dir, &id).await;
        let failures = sink
            .write(vec![
                rec(
                    serde_json::json!({"id": "a", "timestamp": "2024-03-13T23:59:00.000Z"}),
                    0,
                ),
                rec(
                    serde_json::json!({"id": "b", "timestamp": 1710374400000_i64}),
                    1,
                ),
                rec(serde_json::json!({"id": "c", "timestamp": "soon"}), 2),
            ])
            .await
            .expect("writes");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].error.contains("soon"), "{}", failures[0].error);
        let state = sink
            .pre_commit(1)
            .await
            .expect("pre-commits")
            .expect("files");
        let final_dir = dir.join("raw-data/cdc");
        assert!(!final_dir.exists(), "nothing visible before the commit");
        // A new attempt finishes the commit from the checkpoint's state.
        let retry = SinkIdentity { attempt: 1, ..id };
        S3Sink::build(&spec(&dir), chrono_tz::UTC, &retry, &state)
            .await
            .expect("recovers");
        let day1 = std::fs::read_dir(final_dir.join("dt=2024-03-13/hour=23"))
            .expect("hour 23")
            .count();
        let day2 = std::fs::read_dir(final_dir.join("dt=2024-03-14/hour=00"))
            .expect("hour 00")
            .count();
        assert_eq!((day1, day2), (1, 1));
        // Committing again finds the files moved and changes nothing.
        sink.commit(1).await.expect("idempotent");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn time_fields_read_as_every_sink_reads_times_into_the_jobs_zone() {
        let dir = std::env::temp_dir().join(format!("sluice-s3-zone-{}", std::process::id()));
        let id = SinkIdentity {
            job_uid: "u2",
            stage: 0,
            index: 0,
            attempt: 0,
        };
        let utc = S3Sink::build(&spec(&dir), chrono_tz::UTC, &id, "")
            .await
            .expect("builds");
        let ten_utc = "dt=2024-05-01/hour=10";
        for t in [
            serde_json::json!("2024-05-01 15:30:00.000+0530"),
            serde_json::json!("2024-05-01T10:00:00+0000"),
            serde_json::json!("2024-05-01 10:00:00"),
            serde_json::json!(1_714_557_600_000.5),
        ] {
            let record = rec(serde_json::json!({ "timestamp": t }), 0);
            assert_eq!(utc.directory(&record).as_deref(), Ok(ten_utc), "{t}");
        }
        let new_york = S3Sink::build(&spec(&dir), chrono_tz::America::New_York, &id, "")
            .await
            .expect("builds");
        let at = |t: serde_json::Value| {
            new_york.directory(&rec(serde_json::json!({ "timestamp": t }), 0))
        };
        assert_eq!(
            at(serde_json::json!("2024-05-01T10:00:00Z")).as_deref(),
            Ok("dt=2024-05-01/hour=06")
        );
        assert_eq!(
            at(serde_json::json!("2024-05-01 10:00:00")).as_deref(),
            Ok("dt=2024-05-01/hour=10")
        );
        let gap = at(serde_json::json!("2024-03-10 02:30:00")).expect_err("skipped hour");
        assert!(gap.starts_with("time field `timestamp`: "), "{gap}");
        assert!(gap.contains("does not exist in America/New_York"), "{gap}");
        std::fs::remove_dir_all(dir).ok();
    }
}
