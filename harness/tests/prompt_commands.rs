//! Workers hear of tasks placed on them, and of tasks to stop, at once over
//! their command streams rather than at their next heartbeat: with workers
//! heartbeating every five minutes, a submitted exactly-once job still runs,
//! commits every record once, and ends when cancelled, each well within the
//! waits below, which are far shorter than the heartbeat interval.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::time::Duration;

const RECORDS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_start_and_stop_without_waiting_for_a_heartbeat() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("prompt-commands");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_secs(300),
        heartbeat_timeout: Duration::from_secs(900),
        slots: 2,
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 2, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("prompt-in"), unique("prompt-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let payloads = (0..RECORDS).map(|n| serde_json::json!({"n": n}).to_string());
    producer::produce(&infra.kafka, &input, payloads, None, 0).await?;

    // Submitted after the workers' first heartbeat: without a call to
    // heartbeat now, its tasks would wait five minutes for the next one.
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: prompt
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - remap: .twice = int!(.n) * 2
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;

    let committed = admin::read_topic(
        &infra.kafka,
        &output,
        RECORDS,
        Duration::from_secs(30),
        Duration::from_secs(60),
        "read_committed",
    )
    .await?;
    assert_eq!(committed.len(), RECORDS, "every record committed");
    // Read again, past the count, for anything written twice.
    let messages = admin::read_topic(
        &infra.kafka,
        &output,
        RECORDS + 1,
        Duration::from_secs(3),
        Duration::from_secs(30),
        "read_committed",
    )
    .await?;
    let mut seen = vec![0u32; RECORDS];
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let n = v["n"].as_u64().expect("n") as usize;
        assert_eq!(v["twice"].as_u64(), Some(2 * n as u64), "record {v}");
        seen[n] += 1;
    }
    assert!(
        seen.iter().all(|c| *c == 1),
        "every record exactly once: {:?}",
        seen.iter()
            .enumerate()
            .filter(|(_, c)| **c != 1)
            .take(10)
            .collect::<Vec<_>>()
    );

    // The job is cancelled once every task reported its end, which each
    // worker does when it hears the cancel.
    let out = jobctl(&coordinator, &["cancel", &job], &[])?;
    assert!(out.success, "cancel: {}", out.stderr);
    wait_for("the job cancelled", Duration::from_secs(60), || async {
        let s = jobctl_json(&coordinator, &["status", &job])?;
        Ok((s["state"] == "CANCELLED").then_some(()))
    })
    .await?;
    Ok(())
}
