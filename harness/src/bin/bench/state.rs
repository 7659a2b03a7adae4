//! `bench state`: what a checkpoint costs against the size of the keyed
//! state. A `dedup` job first takes in N distinct keys, then a steady trickle
//! of new ones; the bench prints, for each N, the bytes its checkpoints
//! upload and how long they take while only the trickle changes the state.

use anyhow::Context;
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::datagen::producer;
use sluice_harness::testing::unique;
use sluice_harness::{DevStack, StackOptions, admin};
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{CancelJobRequest, GetJobRequest, ListCheckpointsRequest, SubmitJobRequest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Settings {
    pub keys: Vec<usize>,
    /// New keys per second after the state is loaded.
    pub rate: u64,
    /// How long the trickle runs, in seconds.
    pub seconds: u64,
    pub kafka: Option<String>,
}

pub async fn run(s: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench-state"));
    let stack = DevStack::start(
        dir.clone(),
        StackOptions {
            workers: 2,
            kafka: s.kafka.clone(),
            no_cassandra: true,
            no_s3: true,
            cluster: ClusterOptions {
                slots: 2,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let cluster = stack.cluster.as_ref().context("no cluster started")?;
    let store = cluster.checkpoint_store();
    let mut client = cluster.client().await?;
    let brokers = stack.kafka_broker.clone();
    println!(
        "state benchmark: key_by + dedup over N distinct keys, then {} new keys/s for {} s; \
         checkpoints every second, parallelism 2; per checkpoint while only the trickle changes the state",
        s.rate, s.seconds
    );
    println!(
        "{:>10} {:>16} {:>18} {:>16}",
        "keys", "full state (B)", "checkpoint (B)", "duration (ms)"
    );
    for n in &s.keys {
        let (full, bytes, ms) = measure(&mut client, &brokers, &store, *n, &s).await?;
        println!("{n:>10} {full:>16} {bytes:>18} {ms:>16}");
    }
    drop(stack);
    Ok(())
}

/// Loads `n` keys, then trickles; returns the largest checkpoint's bytes
/// (the whole state) and the median bytes and duration of the checkpoints
/// taken during the trickle.
async fn measure(
    client: &mut JobServiceClient<Channel>,
    brokers: &str,
    store: &Path,
    n: usize,
    s: &Settings,
) -> anyhow::Result<(u64, u64, u64)> {
    let input = unique("state-in");
    admin::create_topic(brokers, &input, 2).await?;
    let event = |i: usize| format!(r#"{{"event_id":"e-{i}","n":{i}}}"#);
    producer::produce(brokers, &input, (0..n).map(event), None, 0).await?;
    let before: Vec<PathBuf> = list(store);
    let spec = format!(
        r#"{{"name": "state", "parallelism": 2, "checkpoint": {{"interval": "1s", "retained": 100}},
            "source": {{"kafka": {{"brokers": "{brokers}", "topic": "{input}"}}}},
            "transforms": [{{"key_by": ["event_id"]}}, {{"dedup": {{"ttl": "1h"}}}}],
            "sink": {{"blackhole": {{}}}}}}"#
    );
    let job = client
        .submit_job(SubmitJobRequest {
            spec_json: spec,
            from_savepoint: String::new(),
        })
        .await?
        .into_inner()
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        anyhow::ensure!(Instant::now() < deadline, "{n} keys not loaded");
        let status = client
            .get_job(GetJobRequest {
                job_id: job.clone(),
            })
            .await?
            .into_inner();
        let read: u64 = status
            .tasks
            .iter()
            .filter(|t| t.stage == 1)
            .filter_map(|t| t.metrics.as_ref().map(|m| m.records_in))
            .sum();
        if read as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let job_dir = list(store)
        .into_iter()
        .find(|d| !before.contains(d))
        .context("the job's snapshots are not in the store")?;
    let loaded = latest_checkpoint(client, &job).await?;
    let trickle = {
        let (brokers, input, rate, seconds) =
            (brokers.to_string(), input.clone(), s.rate, s.seconds);
        tokio::spawn(async move {
            let count = (rate * seconds) as usize;
            producer::produce(&brokers, &input, (n..n + count).map(event), Some(rate), 0).await
        })
    };
    trickle.await??;
    let checkpoints = client
        .list_checkpoints(ListCheckpointsRequest {
            job_id: job.clone(),
        })
        .await?
        .into_inner()
        .checkpoints;
    let mut sizes = Vec::new();
    let mut durations = Vec::new();
    let mut full = 0;
    for c in &checkpoints {
        let bytes = checkpoint_bytes(&job_dir, c.checkpoint_id);
        full = full.max(bytes);
        if c.checkpoint_id > loaded + 1 {
            sizes.push(bytes);
            durations.push(c.duration_ms);
        }
    }
    client.cancel_job(CancelJobRequest { job_id: job }).await?;
    Ok((full, median(&mut sizes), median(&mut durations)))
}

async fn latest_checkpoint(
    client: &mut JobServiceClient<Channel>,
    job: &str,
) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .get_job(GetJobRequest {
                job_id: job.to_string(),
            })
            .await?
            .into_inner();
        if status.last_checkpoint_id > 0 {
            return Ok(status.last_checkpoint_id);
        }
        anyhow::ensure!(Instant::now() < deadline, "no checkpoint completed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn list(store: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(store)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Bytes the checkpoint uploaded: every object under its directory.
fn checkpoint_bytes(job_dir: &Path, checkpoint: u64) -> u64 {
    list(job_dir)
        .into_iter()
        .filter(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("chk-{checkpoint}-")))
        })
        .flat_map(|d| list(&d))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}
