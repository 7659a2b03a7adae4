//! Benchmarks: programs that print figures, compared as ratios within one run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::datagen::producer;
use sluice_harness::testing::unique;
use sluice_harness::{DevStack, StackOptions, admin};
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{CancelJobRequest, GetJobRequest, JobState, SubmitJobRequest};
use std::time::{Duration, Instant};

mod failover;

#[derive(Parser, Debug)]
#[command(version, about = "Sluice benchmarks; each prints its figures")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Throughput of a keyed Kafka -> remap -> key_by -> Kafka job with
    /// checkpoints off and every 10 s, 1 s and 100 ms, at least once and exactly once.
    Checkpoints {
        /// Records in the input topic, read by every run.
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// Coordinator failover: three coordinators and two workers run an
    /// exactly-once job while the leader is SIGKILLed, again and again; prints
    /// how long until a new leader, and until the job's next checkpoint completed.
    Failover {
        /// Leaders to kill, one after the other (each restarted after).
        #[arg(long, default_value_t = 5)]
        kills: usize,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Checkpoints {
            records,
            workers,
            parallelism,
            kafka,
        } => checkpoints(records, workers, parallelism, kafka).await,
        Bench::Failover { kills, kafka } => failover::run(kills, kafka).await,
    }
}

async fn checkpoints(
    records: usize,
    workers: usize,
    parallelism: u32,
    kafka: Option<String>,
) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench"));
    let stack = DevStack::start(
        dir.clone(),
        StackOptions {
            workers,
            kafka,
            no_cassandra: true,
            cluster: ClusterOptions {
                slots: parallelism,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let cluster = stack.cluster.as_ref().context("no cluster started")?;
    let brokers = stack.kafka_broker.clone();
    let input = unique("bench-in");
    admin::create_topic(&brokers, &input, 4).await?;
    eprintln!("producing {records} records...");
    let pad = "x".repeat(64);
    producer::produce(
        &brokers,
        &input,
        (0..records).map(|n| serde_json::json!({"n": n, "k": n % 1000, "pad": pad}).to_string()),
        None,
        0,
    )
    .await?;
    let mut client =
        JobServiceClient::connect(sluice_common::http_url(&cluster.coordinator_address)).await?;
    // The first run warms the broker's page cache and the workers; it is not reported.
    let runs: [(&str, Option<&str>); 8] = [
        ("at_least_once", None),
        ("at_least_once", None),
        ("at_least_once", Some("10s")),
        ("at_least_once", Some("1s")),
        ("at_least_once", Some("100ms")),
        ("exactly_once", Some("10s")),
        ("exactly_once", Some("1s")),
        ("exactly_once", Some("100ms")),
    ];
    println!(
        "checkpoint benchmark: {records} records of ~100 bytes, Kafka -> remap -> key_by -> Kafka, \
         parallelism {parallelism} on {workers} workers, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<15} {:>10} {:>10} {:>12} {:>10}",
        "delivery", "checkpoint", "seconds", "records/s", "vs off"
    );
    let mut baseline = None;
    for (run, (delivery, interval)) in runs.into_iter().enumerate() {
        let output = unique("bench-out");
        admin::create_topic(&brokers, &output, 4).await?;
        let checkpoint = match interval {
            None => "\"off\"".to_string(),
            Some(i) => format!("{{\"interval\": \"{i}\"}}"),
        };
        let spec = format!(
            r#"{{"name": "bench", "parallelism": {parallelism}, "delivery": "{delivery}", "checkpoint": {checkpoint},
                "source": {{"kafka": {{"brokers": "{brokers}", "topic": "{input}"}}}},
                "transforms": [{{"remap": ".n2 = int!(.n) + 1"}}, {{"key_by": ["k"]}}],
                "sink": {{"kafka": {{"brokers": "{brokers}", "topic": "{output}"}}}}}}"#
        );
        let job = client
            .submit_job(SubmitJobRequest {
                spec_json: spec,
                from_savepoint: String::new(),
            })
            .await?
            .into_inner()
            .job_id;
        let seconds = measure(&mut client, &job, records).await?;
        client
            .cancel_job(CancelJobRequest {
                job_id: job.clone(),
            })
            .await?;
        wait_stopped(&mut client, &job).await?;
        let rate = records as f64 / seconds;
        if run == 0 {
            continue;
        }
        let base = *baseline.get_or_insert(rate);
        println!(
            "{delivery:<15} {:>10} {seconds:>10.2} {rate:>12.0} {:>10.2}",
            interval.unwrap_or("off"),
            rate / base
        );
    }
    drop(stack);
    Ok(())
}

/// Seconds from the job running to every record written by its sinks.
async fn measure(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    job: &str,
    records: usize,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut started = None;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "job {job} did not finish within 10 minutes"
        );
        let status = client
            .get_job(GetJobRequest {
                job_id: job.to_string(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            status.state() != JobState::Failed,
            "job {job} failed: {}",
            status.failure
        );
        if status.state() == JobState::Running && started.is_none() {
            started = Some(Instant::now());
        }
        let written: u64 = status
            .tasks
            .iter()
            .filter(|t| t.stage == 1)
            .filter_map(|t| t.metrics.map(|m| m.records_out))
            .sum();
        if let Some(s) = started
            && written as usize >= records
        {
            return Ok(s.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_stopped(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    job: &str,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        let status = client
            .get_job(GetJobRequest {
                job_id: job.to_string(),
            })
            .await?
            .into_inner();
        if status.state().is_terminal() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("job {job} did not stop")
}
