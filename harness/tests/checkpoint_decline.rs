//! A subtask whose state snapshot cannot be stored declines the checkpoint:
//! the coordinator abandons it at once, with the subtask's reason in the
//! checkpoint history, and the next checkpoint completes, instead of the
//! job waiting out the checkpoint's timeout (ten minutes here, far past the
//! test's waits). Nothing is lost or duplicated on the way.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_snapshot_upload_declines_the_checkpoint_and_the_next_completes()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("checkpoint-decline");
    let records = 4_000usize;
    let options = ClusterOptions {
        // The fourth upload of keyed state fails; the others are stored.
        failpoints: [(0, "snapshot-upload-error=3*off->1*return->off".to_string())].into(),
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("decline-in"), unique("decline-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: checkpoint-decline
parallelism: 1
delivery: exactly_once
checkpoint: {{ interval: 300ms, timeout: 10m }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [n]
  - dedup: {{ ttl: 1h }}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka,
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;
    let brokers = infra.kafka.clone();
    let producing = tokio::spawn(async move {
        let payloads = (0..records).map(|n| serde_json::json!({ "n": n }).to_string());
        producer::produce(&brokers, &input, payloads, Some(1_000), 0).await
    });
    let (c, j) = (coordinator.as_str(), job.as_str());
    let declined = wait_for(
        "a declined checkpoint and a later one completed",
        Duration::from_secs(60),
        || async move {
            let cps = jobctl_json(c, &["checkpoints", j])?;
            let reason = cps["last_failure"].as_str().unwrap_or_default().to_string();
            let failed: u64 = reason
                .strip_prefix("checkpoint ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|id| id.parse().ok())
                .unwrap_or(u64::MAX);
            let latest = cps["checkpoints"][0]["checkpoint_id"].as_u64().unwrap_or(0);
            Ok((cps["failed"].as_u64() == Some(1) && latest > failed).then_some(reason))
        },
    )
    .await?;
    println!("abandoned: {declined}");
    assert!(
        declined.contains("declined by task")
            && declined.contains("state snapshot upload failed")
            && declined.contains("snapshot-upload-error"),
        "the history names the subtask's reason: {declined}"
    );
    producing.await??;
    wait_for(
        "checkpointed offsets at the end of the input",
        Duration::from_secs(120),
        || async move {
            let cps = jobctl_json(c, &["checkpoints", j])?;
            let end: i64 = cps["checkpoints"][0]["source_offsets"]
                .as_object()
                .map(|o| o.values().filter_map(|v| v.as_i64()).sum())
                .unwrap_or(0);
            Ok((end == records as i64).then_some(()))
        },
    )
    .await?;
    let out = admin::read_topic(
        &infra.kafka,
        &output,
        records,
        Duration::from_secs(5),
        Duration::from_secs(120),
        "read_committed",
    )
    .await?;
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        *seen.entry(v["n"].as_i64().unwrap_or(-1)).or_default() += 1;
    }
    let lost = (0..records as i64)
        .filter(|n| !seen.contains_key(n))
        .count();
    let duplicated: u32 = seen.values().map(|n| n - 1).sum();
    assert_eq!((lost, duplicated), (0, 0), "lost, duplicated");
    assert_eq!(seen.len(), records);
    let status = jobctl_json(c, &["status", j])?;
    assert_eq!(
        status["restarts"], 0,
        "a declined checkpoint restarts nothing"
    );
    Ok(())
}
