//! `bench failover`: how long a job goes without a leader, and without a
//! completed checkpoint, when the leading coordinator is SIGKILLed.

use anyhow::Context;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::unique;
use sluice_harness::{DevStack, StackOptions, admin};
use sluice_proto::{GetJobRequest, JobState, JobStatus, SubmitJobRequest};
use std::time::{Duration, Instant};

/// The target of a failover with default settings: the next checkpoint
/// completes within this long after the leader died.
const TARGET: Duration = Duration::from_secs(3);
/// Longest wait for any one step, so a broken failover ends the run.
const STEP_LIMIT: Duration = Duration::from_secs(60);
/// Input records per second while leaders die.
const RATE: u64 = 500;

pub async fn run(kills: u64, kafka: Option<String>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench-failover"));
    let mut stack = DevStack::start(
        dir.clone(),
        StackOptions {
            workers: 2,
            kafka,
            no_cassandra: true,
            no_s3: true,
            cluster: ClusterOptions {
                coordinators: 3,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let brokers = stack.kafka_broker.clone();
    let cluster = stack.cluster.as_mut().context("no cluster started")?;
    let (input, output) = (unique("failover-in"), unique("failover-out"));
    admin::create_topic(&brokers, &input, 2).await?;
    admin::create_topic(&brokers, &output, 2).await?;
    let spec = format!(
        r#"{{"name": "failover", "parallelism": 2, "delivery": "exactly_once", "checkpoint": {{"interval": "500ms"}},
            "source": {{"kafka": {{"brokers": "{brokers}", "topic": "{input}"}}}},
            "transforms": [{{"key_by": ["k"]}}],
            "sink": {{"kafka": {{"brokers": "{brokers}", "topic": "{output}"}}}}}}"#
    );
    let job = cluster
        .client()
        .await?
        .submit_job(SubmitJobRequest {
            spec_json: spec,
            from_savepoint: String::new(),
        })
        .await?
        .into_inner()
        .job_id;
    // Input flows through every failover, so checkpoints carry records.
    let producing = {
        let (brokers, input) = (brokers.clone(), input.clone());
        tokio::spawn(async move {
            // Enough for two minutes per kill: the run ends it sooner.
            let payloads = (0..RATE * 120 * kills)
                .map(|n| serde_json::json!({"n": n, "k": n % 31}).to_string());
            producer::produce(&brokers, &input, payloads, Some(RATE), 0).await
        })
    };
    wait_status(cluster, &job, |s| {
        s.state() == JobState::Running && s.last_checkpoint_id > 2
    })
    .await?;

    println!(
        "coordinator failover benchmark: 3 coordinators (default settings), 2 workers, \
         an exactly-once job with 500 ms checkpoints, {kills} leaders SIGKILLed in turn, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5} {:>8} {:>8} {:>12} {:>16} {:>9}",
        "kill", "killed", "leader", "elected (s)", "checkpoint (s)", "restarts"
    );
    let mut recoveries = Vec::new();
    for kill in 1..=kills {
        let leader = cluster.wait_leader(STEP_LIMIT).await?;
        let before = status(cluster, &job).await?;
        let killed_at = Instant::now();
        cluster.kill_coordinator(leader);
        let next = cluster.wait_leader(STEP_LIMIT).await?;
        let elected = killed_at.elapsed();
        let after = wait_status(cluster, &job, |s| {
            s.last_checkpoint_id > before.last_checkpoint_id
        })
        .await?;
        let recovered = killed_at.elapsed();
        recoveries.push(recovered);
        println!(
            "{kill:>5} {:>8} {:>8} {:>12.2} {:>16.2} {:>9}",
            leader + 1,
            next + 1,
            elected.as_secs_f64(),
            recovered.as_secs_f64(),
            after.restarts
        );
        cluster.start_coordinator(leader)?;
        // Back to three members before the next kill.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    producing.abort();
    recoveries.sort();
    let median = recoveries[recoveries.len() / 2];
    let worst = recoveries[recoveries.len() - 1];
    println!(
        "kill to next completed checkpoint: median {:.2}s, worst {:.2}s; target under {:.0}s: {}",
        median.as_secs_f64(),
        worst.as_secs_f64(),
        TARGET.as_secs_f64(),
        if worst < TARGET {
            "met"
        } else if median < TARGET {
            "met at the median only"
        } else {
            "missed"
        }
    );
    let restarts = status(cluster, &job).await?.restarts;
    println!("job restarts over the whole run: {restarts}");
    drop(stack);
    Ok(())
}

async fn status(cluster: &SluiceCluster, job: &str) -> anyhow::Result<JobStatus> {
    Ok(cluster
        .client()
        .await?
        .get_job(GetJobRequest {
            job_id: job.to_string(),
        })
        .await?
        .into_inner())
}

/// Polls the job's status on whichever coordinator leads until `done` holds.
async fn wait_status(
    cluster: &SluiceCluster,
    job: &str,
    done: impl Fn(&JobStatus) -> bool,
) -> anyhow::Result<JobStatus> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        if let Ok(s) = status(cluster, job).await {
            anyhow::ensure!(
                s.state() != JobState::Failed,
                "job {job} failed: {}",
                s.failure
            );
            if done(&s) {
                return Ok(s);
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "job {job}: not there within {STEP_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
