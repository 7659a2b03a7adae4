//! How far a stopped job is behind its source partitions: from its stop
//! savepoint's offsets to where the partitions end now, asked of the brokers
//! every [`EVERY`] while the job is stopped and no job was started from that
//! savepoint. A running job's lag comes live from its source subtasks; this
//! keeps it visible, and growing with new input, while the job is stopped.

use crate::kafka_meta::MetadataClient;
use crate::meta::MetaStore;
use crate::state::Shared;
use sluice_common::JobId;
use sluice_common::spec::SourceSpec;
use sluice_proto::{JobState, SourcePartitionLag};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How often the stopped jobs' partition ends are read.
const EVERY: Duration = Duration::from_secs(2);

/// A stopped job's source and its stop savepoint's offsets.
struct Stopped {
    job: JobId,
    brokers: String,
    topic: String,
    offsets: BTreeMap<i32, i64>,
}

/// The lag of each stopped job, as last measured.
#[derive(Default)]
pub struct StoppedLag {
    jobs: std::sync::Mutex<BTreeMap<JobId, Vec<SourcePartitionLag>>>,
}

impl StoppedLag {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, Vec<SourcePartitionLag>>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stopped job's partitions, as last measured; empty when unknown.
    pub fn of(&self, job: &JobId) -> Vec<SourcePartitionLag> {
        self.lock().get(job).cloned().unwrap_or_default()
    }
}

/// The stopped jobs no job was started from since.
fn stopped(m: &crate::meta::ClusterMeta) -> Vec<Stopped> {
    m.jobs
        .values()
        .filter(|j| j.state == JobState::Stopped)
        .filter_map(|j| {
            let savepoint = j.stopped_with.as_ref()?;
            let resumed = m
                .jobs
                .values()
                .any(|other| other.from_savepoint.as_ref() == Some(savepoint));
            let checkpoint = &m.savepoints.get(savepoint)?.checkpoint;
            let SourceSpec::Kafka(source) = &j.spec.source;
            (!resumed).then(|| Stopped {
                job: j.id.clone(),
                brokers: source.brokers.clone(),
                topic: source.topic.clone(),
                offsets: checkpoint.source_offsets.clone(),
            })
        })
        .collect()
}

/// Measures, while this member leads, each stopped job's lag; runs until the
/// process ends.
pub async fn run<S: MetaStore>(state: Shared<S>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clients: HashMap<String, MetadataClient> = HashMap::new();
    loop {
        tick.tick().await;
        if state.store.check_leader().is_err() {
            state.stopped_lag.lock().clear();
            continue;
        }
        let jobs = state.store.read(stopped);
        let mut measured = BTreeMap::new();
        for s in jobs {
            let client = match clients.get(&s.brokers) {
                Some(c) => c.clone(),
                None => match MetadataClient::new(&s.brokers) {
                    Ok(c) => clients.entry(s.brokers.clone()).or_insert(c).clone(),
                    Err(e) => {
                        tracing::warn!(job = %s.job, error = %e, "stopped job's lag: no metadata client");
                        continue;
                    }
                },
            };
            let partitions: Vec<i32> = s.offsets.keys().copied().collect();
            match client.high_watermarks(&s.topic, partitions).await {
                Ok(ends) => {
                    let lag = ends
                        .into_iter()
                        .map(|(partition, high)| {
                            let position = s.offsets.get(&partition).copied().unwrap_or(0);
                            SourcePartitionLag {
                                topic: s.topic.clone(),
                                partition,
                                position,
                                high_watermark: high,
                                lag: (high - position).max(0),
                            }
                        })
                        .collect();
                    measured.insert(s.job, lag);
                }
                Err(e) => {
                    clients.remove(&s.brokers);
                    tracing::warn!(job = %s.job, error = %e, "stopped job's lag not measured; trying again");
                    if let Some(last) = state.stopped_lag.lock().get(&s.job).cloned() {
                        measured.insert(s.job, last);
                    }
                }
            }
        }
        *state.stopped_lag.lock() = measured;
    }
}
