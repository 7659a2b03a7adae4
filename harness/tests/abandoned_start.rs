//! An exactly-once Kafka sink whose start is abandoned while it opens its
//! producer sessions (the transaction coordinator slow to answer) must not
//! open one after the job's next attempt opened its own on the same
//! transactional id: that late session would abort the next attempt's
//! transaction, and with it records of a checkpoint that may have
//! completed. The next attempt is placed once the abandoned subtask ended,
//! and the abandoned start opens nothing once stopped.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{infra, jobctl_json, submit, test_dir, unique, wait_for};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_start_abandoned_mid_session_leaves_the_next_attempt_alone() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("abandoned-start");
    // Worker 0's first producer session takes 6 s to open, as with a
    // transaction coordinator still loading; the job restarts meanwhile.
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        failpoints: [(0, "sink-before-init-transactions=1*sleep(6000)".to_string())].into(),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("abandon-in"), unique("abandon-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            "name: abandoned-start\nparallelism: 2\ndelivery: exactly_once\n\
             checkpoint: {{ interval: 300ms }}\n\
             restart: {{ max_attempts: 10, backoff: 200ms }}\n\
             source: {{ kafka: {{ brokers: \"{k}\", topic: {input} }} }}\n\
             sink: {{ kafka: {{ brokers: \"{k}\", topic: {output} }} }}\n",
            k = infra.kafka
        ),
        &[],
    )?;
    let records = 4_000u64;
    let producing = {
        let (kafka, input) = (infra.kafka.clone(), input.clone());
        tokio::spawn(async move {
            let payloads = (0..records).map(|n| format!("{{\"n\":{n}}}"));
            producer::produce(&kafka, &input, payloads, Some(400), 0).await
        })
    };
    // One subtask runs on each worker; worker 0's is still opening its
    // sessions when worker 1 dies, and the job restarts.
    wait_for("a subtask running", Duration::from_secs(30), || {
        let (c, job) = (&c, &job);
        async move {
            let status = jobctl_json(c, &["status", job])?;
            let running = status["tasks"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["state"] == "RUNNING"));
            Ok(running.then_some(()))
        }
    })
    .await?;
    cluster.kill_worker(1);
    producing.await??;
    let out = admin::read_topic(
        &infra.kafka,
        &output,
        records as usize,
        Duration::from_secs(5),
        Duration::from_secs(90),
        "read_committed",
    )
    .await?;
    // Past the whole output, a fenced attempt would have failed by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let n = v["n"].as_u64().unwrap_or(u64::MAX);
        assert!(
            n < records,
            "a record that was never produced: {}",
            m.payload
        );
        *seen.entry(n).or_default() += 1;
    }
    let lost = (0..records).filter(|n| !seen.contains_key(n)).count();
    let duplicated: u32 = seen.values().map(|c| c - 1).sum();
    let status = jobctl_json(&c, &["status", &job])?;
    println!(
        "{records} in, {} committed out, {lost} lost, {duplicated} duplicated; {} restarts, last failure: {}",
        out.len(),
        status["restarts"],
        status["last_failure"]
    );
    assert_eq!((lost, duplicated), (0, 0), "every record exactly once");
    assert_eq!(status["state"], "RUNNING", "{status}");
    // The worker's loss is the only restart: no attempt found its producer
    // fenced by the abandoned start's late session.
    assert_eq!(status["restarts"], 1, "{status}");
    Ok(())
}
