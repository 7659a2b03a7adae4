//! Repartitioning across workers, and what a slow sink does to memory.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, rss_bytes, submit, task_metric, test_dir, unique, wait_for,
    wait_running,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_by_sends_every_record_of_a_key_to_one_subtask_across_workers() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("key-by");
    let cluster = SluiceCluster::start(&dir, 2, ClusterOptions::default()).await?;
    let (input, output) = (unique("keyed-in"), unique("keyed-out"));
    admin::create_topic(&infra.kafka, &input, 4).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &cluster.coordinator_address,
        &dir,
        &format!(
            r#"
name: keyed
parallelism: 2
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - remap: .seen_by_source = %sluice.subtask
  - key_by: [account]
  - remap: .seen_by = %sluice.subtask
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    let status = wait_running(&cluster.coordinator_address, &job).await?;
    let keyed_workers: BTreeSet<String> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["stage"] == 1)
        .filter_map(|t| t["worker_id"].as_str().map(String::from))
        .collect();
    assert_eq!(
        keyed_workers.len(),
        2,
        "the keyed stage runs on both workers: {status}"
    );

    let n = 4_000;
    let payloads = (0..n)
        .map(|i| serde_json::json!({"n": i, "account": format!("acct-{}", i % 97)}).to_string());
    producer::produce(&infra.kafka, &input, payloads, None, 0).await?;
    let out = admin::read_topic(
        &infra.kafka,
        &output,
        n,
        Duration::from_secs(30),
        Duration::from_secs(120),
        "read_uncommitted",
    )
    .await?;
    assert_eq!(out.len(), n, "every record comes out once");

    let mut subtasks_of_key: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut numbers = BTreeSet::new();
    let mut crossed = 0;
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        assert!(
            numbers.insert(v["n"].as_i64().unwrap_or(-1)),
            "duplicate {v}"
        );
        let by = v["seen_by"].as_i64().unwrap_or(-1);
        if by != v["seen_by_source"].as_i64().unwrap_or(-1) {
            crossed += 1;
        }
        subtasks_of_key
            .entry(v["account"].as_str().unwrap_or_default().to_string())
            .or_default()
            .insert(by);
    }
    assert_eq!(numbers.len(), n);
    for (key, subtasks) in &subtasks_of_key {
        assert_eq!(
            subtasks.len(),
            1,
            "key {key} was processed by subtasks {subtasks:?}"
        );
    }
    let used: BTreeSet<i64> = subtasks_of_key.values().flatten().copied().collect();
    assert_eq!(used, BTreeSet::from([0, 1]), "both keyed subtasks got keys");
    assert!(
        crossed > 0,
        "some records moved between subtasks, hence between workers"
    );

    let cancelled = jobctl(&cluster.coordinator_address, &["cancel", &job], &[])?;
    assert!(cancelled.success, "{}", cancelled.stderr);
    wait_for(
        "job cancelled and its slots free",
        Duration::from_secs(30),
        || {
            let (c, j) = (&cluster.coordinator_address, &job);
            async move {
                let status = jobctl_json(c, &["status", j])?;
                let workers = jobctl_json(c, &["workers"])?;
                let free = workers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|w| w["used_slots"] == 0);
                Ok((status["state"] == "CANCELLED" && free).then_some(()))
            }
        },
    )
    .await?;
    let again = jobctl(&cluster.coordinator_address, &["cancel", &job], &[])?;
    assert!(
        !again.success && again.stderr.contains("cannot be cancelled"),
        "{}",
        again.stderr
    );
    Ok(())
}

/// The bound this test holds a worker to while its sink is slow and a large
/// backlog waits in Kafka.
const RSS_BOUND: u64 = 160 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_keeps_the_backlog_in_kafka_and_worker_memory_bounded() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("backpressure");
    let cluster = SluiceCluster::start(&dir, 2, ClusterOptions::default()).await?;
    let input = unique("backlog");
    admin::create_topic(&infra.kafka, &input, 2).await?;
    // ~1 KiB records: 150,000 of them are ~150 MiB waiting in Kafka.
    let total = 150_000usize;
    let pad = "x".repeat(1000);
    let payloads =
        (0..total).map(|i| serde_json::json!({"n": i, "k": i % 1000, "pad": pad}).to_string());
    producer::produce(&infra.kafka, &input, payloads, None, 0).await?;

    let job = submit(
        &cluster.coordinator_address,
        &dir,
        &format!(
            r#"
name: slow-sink
parallelism: 2
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [k]
sink: {{ blackhole: {{ records_per_second: 500 }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&cluster.coordinator_address, &job).await?;

    let pids: Vec<u32> = (0..cluster.worker_count())
        .filter_map(|i| cluster.worker_pid(i))
        .collect();
    let mut peak = 0;
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let rss: u64 = pids
            .iter()
            .map(|p| rss_bytes(*p).unwrap_or(0))
            .max()
            .unwrap_or(0);
        peak = peak.max(rss);
        samples.push(rss);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = jobctl_json(&cluster.coordinator_address, &["status", &job])?;
    let read = task_metric(&status, Some(0), "records_in");
    let written = task_metric(&status, Some(1), "records_out");
    println!(
        "backpressure: peak worker RSS {:.1} MiB (bound {:.0} MiB), read {read} of {total}, written {written}",
        peak as f64 / 1048576.0,
        RSS_BOUND as f64 / 1048576.0
    );
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert!(written > 0, "the sink makes progress");
    assert!(
        (read as usize) < total / 2,
        "the source stays behind a slow sink: read {read} of {total}"
    );
    assert!(
        peak < RSS_BOUND,
        "worker RSS peaked at {peak} bytes, over the {RSS_BOUND} bound"
    );
    Ok(())
}
