//! `bench checkpoints`: what checkpoints cost in throughput, at least once and
//! exactly once, against the same job without checkpoints.

use anyhow::Context;
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::datagen::producer;
use sluice_harness::testing::unique;
use sluice_harness::{DevStack, StackOptions, admin};
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{CancelJobRequest, GetJobRequest, JobState, SubmitJobRequest};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Settings {
    pub records: usize,
    pub rounds: u32,
    pub workers: usize,
    pub parallelism: u32,
    pub kafka: Option<String>,
}

/// Delivery and checkpoint interval of each measured setting; the first is
/// the baseline the others are compared with.
const SETTINGS: [(&str, Option<&str>); 7] = [
    ("at_least_once", None),
    ("at_least_once", Some("10s")),
    ("at_least_once", Some("1s")),
    ("at_least_once", Some("100ms")),
    ("exactly_once", Some("10s")),
    ("exactly_once", Some("1s")),
    ("exactly_once", Some("100ms")),
];

/// The longest one run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

pub async fn run(s: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench"));
    let stack = DevStack::start(
        dir.clone(),
        StackOptions {
            workers: s.workers,
            kafka: s.kafka.clone(),
            no_cassandra: true,
            no_s3: true,
            cluster: ClusterOptions {
                slots: s.parallelism,
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
    eprintln!("producing {} records...", s.records);
    let pad = "x".repeat(64);
    producer::produce(
        &brokers,
        &input,
        (0..s.records).map(|n| serde_json::json!({"n": n, "k": n % 1000, "pad": pad}).to_string()),
        None,
        0,
    )
    .await?;
    let mut client = cluster.client().await?;
    let job = Job {
        brokers: &brokers,
        input: &input,
        parallelism: s.parallelism,
        records: s.records,
    };
    // Warms the broker's page cache and the workers; not reported.
    job.run(&mut client, SETTINGS[0]).await?;
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); SETTINGS.len()];
    let mut stood_still: Vec<Vec<f64>> = vec![Vec::new(); SETTINGS.len()];
    for round in 1..=s.rounds {
        for (i, setting) in SETTINGS.into_iter().enumerate() {
            let run = job.run(&mut client, setting).await?;
            eprintln!(
                "round {round}: {} checkpoints {}: {:.2}s, data path stood still {:.2}%",
                setting.0,
                setting.1.unwrap_or("off"),
                run.seconds,
                100.0 * run.stood_still
            );
            seconds[i].push(run.seconds);
            stood_still[i].push(run.stood_still);
        }
    }

    println!(
        "checkpoint benchmark: {} records of ~100 bytes, Kafka -> remap -> key_by -> Kafka, \
         parallelism {} on {} workers, {} cores; median of {} interleaved rounds",
        s.records,
        s.parallelism,
        s.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.rounds
    );
    println!(
        "{:<15} {:>10} {:>10} {:>12} {:>10} {:>12} {:>16}",
        "delivery", "checkpoint", "seconds", "records/s", "vs off", "stood still", "spread (s)"
    );
    let base = s.records as f64 / median(&mut seconds[0].clone());
    for (((delivery, interval), runs), still) in SETTINGS
        .into_iter()
        .zip(seconds.iter_mut())
        .zip(stood_still.iter_mut())
    {
        let m = median(runs);
        let rate = s.records as f64 / m;
        println!(
            "{delivery:<15} {:>10} {m:>10.2} {rate:>12.0} {:>10.2} {:>11.2}% {:>16}",
            interval.unwrap_or("off"),
            rate / base,
            100.0 * median(still),
            format!(
                "{:.2}-{:.2}",
                runs.first().copied().unwrap_or(0.0),
                runs.last().copied().unwrap_or(0.0)
            )
        );
    }
    drop(stack);
    Ok(())
}

/// Sorts `runs` and returns their median.
fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One run of the job.
struct Run {
    /// From the job running to every record written.
    seconds: f64,
    /// The share of that time the subtasks' data paths stood still for
    /// checkpoints, averaged over the subtasks (0-1).
    stood_still: f64,
}

/// The benchmark's job over its input topic.
struct Job<'a> {
    brokers: &'a str,
    input: &'a str,
    parallelism: u32,
    records: usize,
}

impl Job<'_> {
    /// Runs the job once over the whole input into a fresh topic.
    async fn run(
        &self,
        client: &mut JobServiceClient<Channel>,
        (delivery, interval): (&str, Option<&str>),
    ) -> anyhow::Result<Run> {
        let output = unique("bench-out");
        admin::create_topic(self.brokers, &output, 4).await?;
        let checkpoint = match interval {
            None => "\"off\"".to_string(),
            Some(i) => format!("{{\"interval\": \"{i}\"}}"),
        };
        let spec = format!(
            r#"{{"name": "bench", "parallelism": {p}, "delivery": "{delivery}", "checkpoint": {checkpoint},
                "source": {{"kafka": {{"brokers": "{b}", "topic": "{i}"}}}},
                "transforms": [{{"remap": ".n2 = int!(.n) + 1"}}, {{"key_by": ["k"]}}],
                "sink": {{"kafka": {{"brokers": "{b}", "topic": "{output}"}}}}}}"#,
            p = self.parallelism,
            b = self.brokers,
            i = self.input,
        );
        let job = client
            .submit_job(SubmitJobRequest {
                spec_json: spec,
                from_savepoint: String::new(),
            })
            .await?
            .into_inner()
            .job_id;
        let run = self.measure(client, &job).await?;
        client
            .cancel_job(CancelJobRequest {
                job_id: job.clone(),
            })
            .await?;
        wait_stopped(client, &job).await?;
        Ok(run)
    }

    /// Seconds from the job running to every record written by its sinks,
    /// and the share of it its subtasks stood still for checkpoints.
    async fn measure(
        &self,
        client: &mut JobServiceClient<Channel>,
        job: &str,
    ) -> anyhow::Result<Run> {
        let deadline = Instant::now() + RUN_LIMIT;
        let mut started = None;
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "job {job} did not finish within {RUN_LIMIT:?}"
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
                .filter_map(|t| t.metrics.as_ref().map(|m| m.records_out))
                .sum();
            if let Some(s) = started
                && written as usize >= self.records
            {
                let seconds = s.elapsed().as_secs_f64();
                let syncs: Vec<f64> = status
                    .tasks
                    .iter()
                    .filter_map(|t| t.metrics.as_ref())
                    .map(|m| m.checkpoint_sync_ms as f64 / 1000.0 / seconds)
                    .collect();
                let stood_still = syncs.iter().sum::<f64>() / syncs.len().max(1) as f64;
                return Ok(Run {
                    seconds,
                    stood_still,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn wait_stopped(client: &mut JobServiceClient<Channel>, job: &str) -> anyhow::Result<()> {
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
