//! Partition discovery: at each live job's `partition_discovery` interval,
//! the leader asks the brokers how many partitions the job's source topic
//! has; when the topic grew, it records the new count and the running
//! attempt's source partition lists through the Raft log. Heartbeats hand
//! the new lists to the source tasks, which read the new partitions from
//! their beginning.

use crate::kafka_meta::MetadataClient;
use crate::meta::{Command, MetaStore};
use crate::state::Shared;
use sluice_common::JobId;
use sluice_common::spec::SourceSpec;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the loop looks for jobs due a check.
const TICK: Duration = Duration::from_millis(500);

/// What a check needs to know of a job.
struct Due {
    job: JobId,
    brokers: String,
    topic: String,
    known: i32,
}

/// Checks, while this member leads, each live job's source topic at the
/// job's interval; runs until the process ends.
pub async fn run<S: MetaStore>(state: Shared<S>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checked: HashMap<JobId, Instant> = HashMap::new();
    let mut clients: HashMap<String, MetadataClient> = HashMap::new();
    loop {
        tick.tick().await;
        if state.enter_term().is_none() || state.store.check_leader().is_err() {
            checked.clear();
            continue;
        }
        let (due, live): (Vec<Due>, Vec<JobId>) = state.store.read(|m| {
            let live: Vec<JobId> = m
                .jobs
                .values()
                .filter(|j| j.wants_tasks_running())
                .map(|j| j.id.clone())
                .collect();
            let due = m
                .jobs
                .values()
                .filter(|j| j.wants_tasks_running())
                .filter_map(|j| {
                    let SourceSpec::Kafka(source) = &j.spec.source;
                    let every = source.partition_discovery?;
                    checked
                        .get(&j.id)
                        .is_none_or(|at| at.elapsed() >= every)
                        .then(|| Due {
                            job: j.id.clone(),
                            brokers: source.brokers.clone(),
                            topic: source.topic.clone(),
                            known: j.source_partitions,
                        })
                })
                .collect();
            (due, live)
        });
        checked.retain(|job, _| live.contains(job));
        for d in due {
            checked.insert(d.job.clone(), Instant::now());
            let client = match clients.get(&d.brokers) {
                Some(c) => c.clone(),
                None => match MetadataClient::new(&d.brokers) {
                    Ok(c) => clients.entry(d.brokers.clone()).or_insert(c).clone(),
                    Err(e) => {
                        tracing::warn!(job = %d.job, error = %e, "partition discovery: no metadata client");
                        continue;
                    }
                },
            };
            match client.partition_count(&d.topic).await {
                Ok(count) if count > d.known => {
                    tracing::info!(job = %d.job, topic = %d.topic, from = d.known, to = count, "source topic grew: partitions added to the job");
                    let added = state
                        .store
                        .apply(Command::AddPartitions {
                            job: d.job.clone(),
                            partitions: count,
                            at_ms: crate::job_service::now_ms(),
                        })
                        .await;
                    if let Err(e) = added {
                        tracing::warn!(job = %d.job, error = %e, "added partitions not recorded; the next check tries again");
                        checked.remove(&d.job);
                    }
                }
                Ok(count) if count < d.known => {
                    tracing::warn!(job = %d.job, topic = %d.topic, partitions = count, job_partitions = d.known, "source topic has fewer partitions than the job reads: was it deleted and recreated?");
                }
                Ok(_) => {}
                Err(e) => {
                    // Dropped: the next check connects again.
                    clients.remove(&d.brokers);
                    tracing::warn!(job = %d.job, error = %e, "partition discovery failed; trying again at the next interval");
                }
            }
        }
    }
}
