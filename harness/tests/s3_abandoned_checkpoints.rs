//! The S3 sink across abandoned checkpoints (case 012): a worker paused past
//! the checkpoint timeout, but not past the heartbeat timeout, abandons
//! checkpoints without a restart. The files the sinks staged for those
//! checkpoints must be published with the next checkpoint that completes,
//! also when a worker is killed afterwards and the job recovers: every event
//! exactly once under its own date and hour, and nothing left in staging
//! once a savepoint completed.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::ingestion::{IngestionEvents, IngestionKind};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_checkpointed, wait_running,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};

const EVENTS: u64 = 5_000;
const RATE: u64 = 250;
const PAUSES: [u64; 2] = [5, 12];
const PAUSE: Duration = Duration::from_secs(3);
const KILL_AT: u64 = 17;

/// Where the sink writes: a local directory, or the test run's MinIO.
enum Target {
    Dir,
    Bucket,
}

async fn run(name: &str, target: Target, kill: bool) -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir(name);
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_secs(5),
        env: infra.s3_env(),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let c = cluster.coordinator_address.clone();
    let (input, dlq, prefix) = (unique("s3-abandoned-in"), unique("dlq"), unique("cdc"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let (target_yaml, store): (String, Arc<dyn object_store::ObjectStore>) = match target {
        Target::Dir => {
            let files = dir.join("s3");
            std::fs::create_dir_all(&files)?;
            (
                format!("dir: \"{}\"", files.display()),
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                    &files,
                )?),
            )
        }
        Target::Bucket => (
            format!(
                "bucket: sluice\n    endpoint: \"{}\"\n    region: us-east-1",
                infra.s3_endpoint
            ),
            admin::s3_bucket(&infra.s3_endpoint, "sluice")?,
        ),
    };
    // Checkpoints time out quickly, so a 3 s pause abandons some; files
    // roll often, so every abandoned checkpoint has staged some.
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: s3-abandoned
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms, timeout: 1s }}
source: {{ kafka: {{ brokers: "{k}", topic: {input}, format: json }} }}
sink:
  s3:
    {target_yaml}
    prefix: {prefix}
    path: "dt=%Y-%m-%d/hour=%H"
    time_field: timestamp
    batch_interval: 200ms
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    let status = wait_running(&c, &job).await?;
    let hosts: BTreeSet<&str> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["worker_id"].as_str())
        .collect();
    assert_eq!(hosts.len(), 2, "one subtask per worker: {status}");
    let producing = {
        let (brokers, input) = (infra.kafka.clone(), input.clone());
        tokio::spawn(async move {
            let events = IngestionEvents::new(IngestionKind::Cdc, 12, EVENTS)
                .take(EVENTS as usize)
                .map(|e| e.payload);
            producer::produce(&brokers, &input, events, Some(RATE), 0).await
        })
    };
    let t0 = Instant::now();
    for at in PAUSES {
        sleep_until(t0 + Duration::from_secs(at)).await;
        cluster.pause_worker(1);
        sleep_until(t0 + Duration::from_secs(at) + PAUSE).await;
        cluster.resume_worker(1);
        println!("worker 1 paused for {PAUSE:?} at t={at}s");
    }
    if kill {
        sleep_until(t0 + Duration::from_secs(KILL_AT)).await;
        cluster.kill_worker(0);
        println!("worker 0 killed at t={KILL_AT}s");
    }
    producing.await??;
    wait_checkpointed(&c, &job, EVENTS).await?;
    let savepoint = jobctl_json(&c, &["savepoint", &job])?;
    println!("savepoint: {savepoint}");
    let status = jobctl_json(&c, &["status", &job])?;
    let abandoned = jobctl_json(&c, &["checkpoints", &job])?["failed"]
        .as_u64()
        .unwrap_or(0);
    let restarts = status["restarts"].as_u64().unwrap_or(0);
    println!("{abandoned} checkpoints abandoned, {restarts} restarts");
    assert!(abandoned > 0, "the pauses abandoned checkpoints");
    if kill {
        assert!(restarts >= 1, "the killed worker's subtask recovered");
    } else {
        assert_eq!(restarts, 0, "pauses shorter than the heartbeat timeout");
    }

    let seen = admin::events_by_id(store.as_ref(), &prefix, "id").await?;
    let lost: Vec<String> = (0..EVENTS)
        .map(|n| format!("change_{n}"))
        .filter(|id| !seen.contains_key(id))
        .collect();
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "{EVENTS} in, {} distinct out, {} lost (first {:?}), {} duplicated",
        seen.len(),
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        duplicated.len()
    );
    assert!(lost.is_empty(), "lost events");
    assert!(duplicated.is_empty(), "duplicated events: {duplicated:?}");
    assert_eq!(seen.len() as u64, EVENTS, "unexpected events");
    let staged = admin::list_objects(store.as_ref(), &format!(".sluice-staging/{prefix}")).await?;
    assert!(
        staged.is_empty(),
        "staging empty after the savepoint: {staged:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_staged_for_abandoned_checkpoints_are_published_once_by_the_next_one()
-> anyhow::Result<()> {
    run("s3-abandoned", Target::Dir, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_staged_for_abandoned_checkpoints_survive_a_worker_killed_after_them()
-> anyhow::Result<()> {
    run("s3-abandoned-kill", Target::Bucket, true).await
}
