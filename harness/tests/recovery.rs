//! A job survives the loss of a worker: it restarts from its latest completed
//! checkpoint on the workers left, and nothing is lost.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_for, wait_restarted, wait_running,
};
use std::collections::BTreeMap;
use std::time::Duration;

const RECORDS: usize = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_restarts_from_its_checkpoint_when_a_worker_dies_and_loses_nothing()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("recovery");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        slots: 4,
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 3, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("recover-in"), unique("recover-out"));
    admin::create_topic(&infra.kafka, &input, 3).await?;
    admin::create_topic(&infra.kafka, &output, 3).await?;
    let group = unique("recovery-group");
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: recovering
parallelism: 3
checkpoint: {{ interval: 500ms }}
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input}, group_id: {group} }} }}
transforms:
  - remap: .doubled = int!(.n) * 2
  - key_by: [k]
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;

    // Input keeps flowing while a worker dies: 30,000 records over about 6 s.
    let brokers = infra.kafka.clone();
    let topic = input.clone();
    let producing = tokio::spawn(async move {
        let payloads = (0..RECORDS).map(|n| serde_json::json!({"n": n, "k": n % 101}).to_string());
        producer::produce(&brokers, &topic, payloads, Some(5_000), 0).await
    });
    wait_for("a completed checkpoint", Duration::from_secs(30), || {
        let (c, j) = (&coordinator, &job);
        async move {
            let s = jobctl_json(c, &["status", j])?;
            Ok((s["last_checkpoint_id"].as_u64().unwrap_or(0) >= 2).then_some(()))
        }
    })
    .await?;
    let victim_pid = cluster.worker_pid(1);
    cluster.kill_worker(1);
    println!("killed worker process {victim_pid:?}");

    let status = wait_restarted(&coordinator, &job).await?;
    println!(
        "restarts: {}, last failure: {}",
        status["restarts"], status["last_failure"]
    );
    assert!(
        !status["last_failure"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{status}"
    );
    // Once the dead worker is declared lost, no subtask of the job is on it.
    wait_for(
        "the dead worker declared lost and unused",
        Duration::from_secs(30),
        || {
            let (c, j) = (&coordinator, &job);
            async move {
                let workers = jobctl_json(c, &["workers"])?;
                let Some(lost) = workers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|w| w["state"] == "LOST")
                    .and_then(|w| w["worker_id"].as_str().map(String::from))
                else {
                    return Ok(None);
                };
                let s = jobctl_json(c, &["status", j])?;
                let on_lost = s["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["worker_id"] == lost.as_str());
                Ok((s["state"] == "RUNNING" && !on_lost).then_some(()))
            }
        },
    )
    .await?;
    producing.await??;

    let out = admin::read_topic(
        &infra.kafka,
        &output,
        usize::MAX,
        Duration::from_secs(15),
        Duration::from_secs(180),
        "read_uncommitted",
    )
    .await?;
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let n = v["n"].as_i64().unwrap_or(-1);
        assert_eq!(v["doubled"].as_i64(), Some(n * 2), "{v}");
        *seen.entry(n).or_default() += 1;
    }
    let lost: Vec<usize> = (0..RECORDS)
        .filter(|n| !seen.contains_key(&(*n as i64)))
        .collect();
    let duplicated: u32 = seen.values().map(|c| c - 1).sum();
    println!(
        "recovery: {} records out for {RECORDS} in, {} lost, {duplicated} duplicated (at-least-once replays since the restored checkpoint)",
        out.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} records, first {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(seen.len(), RECORDS);

    let checkpoints = jobctl_json(&coordinator, &["checkpoints", &job])?;
    let retained = checkpoints["checkpoints"].as_array().map_or(0, Vec::len);
    assert!((1..=3).contains(&retained), "{checkpoints}");
    assert_eq!(
        checkpoints["checkpoints"][0]["attempt"],
        jobctl_json(&coordinator, &["status", &job])?["attempt"],
        "checkpoints go on after the restart: {checkpoints}"
    );

    // Offsets reach the job's consumer group for Kafka's own lag tools.
    let committed = wait_for(
        "offsets in the consumer group",
        Duration::from_secs(20),
        || {
            let (b, g, t) = (&infra.kafka, &group, &input);
            async move {
                let c = admin::committed_offsets(b, g, t).await?;
                Ok((c.values().sum::<i64>() == RECORDS as i64).then_some(c))
            }
        },
    )
    .await?;
    println!("consumer group {group} committed {committed:?}");
    Ok(())
}

/// `start_from: latest` is where the topic ended when the job was submitted:
/// a restart with no checkpoint to restore (here checkpoints are off) starts
/// there again, so what arrived in between is not skipped, and what came
/// before submission is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_latest_restarted_before_its_first_checkpoint_skips_nothing()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("recovery-latest");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("latest-in"), unique("latest-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let numbers = |from: usize, to: usize| {
        (from..to).map(|n| serde_json::json!({"n": n, "k": n % 7}).to_string())
    };
    // Before submission: not to be read.
    producer::produce(&infra.kafka, &input, numbers(0, 500), None, 0).await?;
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: from-latest
parallelism: 2
checkpoint: off
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input}, start_from: latest }} }}
transforms:
  - key_by: [k]
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;
    // After submission: every one must come out.
    producer::produce(&infra.kafka, &input, numbers(500, 1_500), None, 0).await?;
    cluster.kill_worker(1);
    let status = wait_restarted(&coordinator, &job).await?;
    assert_eq!(status["last_checkpoint_id"], 0, "no checkpoint: {status}");
    let out = admin::read_topic(
        &infra.kafka,
        &output,
        usize::MAX,
        Duration::from_secs(10),
        Duration::from_secs(120),
        "read_uncommitted",
    )
    .await?;
    let seen: std::collections::BTreeSet<i64> = out
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).ok())
        .filter_map(|v| v["n"].as_i64())
        .collect();
    let before: Vec<&i64> = seen.iter().filter(|n| **n < 500).take(5).collect();
    let missing: Vec<i64> = (500..1_500).filter(|n| !seen.contains(n)).collect();
    println!(
        "from latest: {} records out, {} from before submission, {} of 1000 after it missing",
        out.len(),
        seen.iter().filter(|n| **n < 500).count(),
        missing.len()
    );
    assert!(before.is_empty(), "read from before submission: {before:?}");
    assert!(
        missing.is_empty(),
        "skipped after the restart: {:?}",
        &missing[..missing.len().min(10)]
    );
    Ok(())
}
