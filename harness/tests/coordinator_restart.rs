//! The coordinator's state is a Raft log on disk: a coordinator SIGKILLed and
//! started again on its data directory still has every job and checkpoint,
//! takes its workers back with the tasks they run, and the job goes on from
//! where it was without a restart, exactly once.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    count_numbers, infra, jobctl_json, submit, test_dir, unique, wait_checkpoint_after,
    wait_checkpointed, wait_running,
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_keeps_its_jobs_and_their_checkpoints() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("coordinator-restart");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("restart-in"), unique("restart-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: survives-coordinator-restart
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [k]
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;
    let records = 20_000;
    let producing = {
        let (brokers, input) = (infra.kafka.clone(), input.clone());
        tokio::spawn(async move {
            let payloads =
                (0..records).map(|n| serde_json::json!({"n": n, "k": n % 31}).to_string());
            producer::produce(&brokers, &input, payloads, Some(4_000), 0).await
        })
    };
    let before = wait_checkpoint_after(&c, &job, 3).await?;
    let killed = Instant::now();
    cluster.restart_coordinator()?;
    println!("coordinator SIGKILLed and restarted after checkpoint {before}");
    let (c, job) = (&c, &job);
    let after = wait_checkpoint_after(c, job, before).await?;
    println!(
        "first checkpoint after the restart: {after}, {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let status = jobctl_json(c, &["status", job])?;
    assert_eq!(status["state"], "RUNNING");
    assert_eq!(status["restarts"], 0, "the job ran on: {status}");
    producing.await??;
    wait_checkpointed(c, job, records).await?;
    let (_, lost, duplicated) =
        count_numbers(&infra.kafka, &output, records, "read_committed").await?;
    println!("coordinator restart: {records} in, {lost} lost, {duplicated} duplicated");
    assert_eq!((lost, duplicated), (0, 0));
    Ok(())
}
