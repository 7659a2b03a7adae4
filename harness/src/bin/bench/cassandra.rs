//! `bench cassandra`: seed 000's job (user events from Kafka into Cassandra,
//! bucketed by date) on Sluice against a bare loop with the scylla driver
//! writing the same rows with the same consistency (the driver's default,
//! LOCAL_QUORUM), one process per core. Each runs over a small and a large
//! input; records/s are taken between the two so start-up cancels out.
//! Every row is counted afterwards.

use anyhow::Context;
use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::value::{CqlDate, CqlTimestamp};
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::datagen::{producer, user_events::UserEvents};
use sluice_harness::testing::unique;
use sluice_harness::{DevStack, StackOptions, admin};
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{CancelJobRequest, GetJobRequest, JobState, SubmitJobRequest};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Settings {
    pub small: usize,
    pub large: usize,
    pub rounds: u32,
    pub kafka: Option<String>,
    pub cassandra: Option<String>,
}

const PARTITIONS: i32 = 4;
const PROCESSES: u32 = 2;
const SHIPPED: &str = include_str!("../../../../deploy/jobs/user-events-to-cassandra.yaml");
const TABLE: &str = include_str!("../../../../deploy/cql/user_events.cql");
const RUN_LIMIT: Duration = Duration::from_secs(1200);

pub async fn run(s: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench-cassandra"));
    let stack = DevStack::start(
        dir,
        StackOptions {
            workers: 2,
            kafka: s.kafka.clone(),
            cassandra: s.cassandra.clone(),
            no_s3: true,
            cluster: ClusterOptions {
                slots: 2,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let cluster = stack.cluster.as_ref().context("no cluster started")?;
    let brokers = stack.kafka_broker.clone();
    let cassandra = stack.cassandra_host.clone().context("no Cassandra")?;
    let session = admin::cassandra_session(&cassandra).await?;
    let mut inputs = BTreeMap::new();
    for size in [s.small, s.large] {
        let topic = unique(&format!("bench-events-{size}"));
        admin::create_topic(&brokers, &topic, PARTITIONS).await?;
        eprintln!("producing {size} user events to {topic}...");
        let events = UserEvents::new(size as u64, 1000, None).take(size);
        producer::produce(&brokers, &topic, events.map(|g| g.payload), None, 0).await?;
        inputs.insert(size, topic);
    }
    let mut client = cluster.client().await?;
    let mut seconds: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    for round in 1..=s.rounds {
        for size in [s.small, s.large] {
            for system in ["bare scylla loop", "Sluice (seed 000 job)"] {
                let keyspace = format!("bench_{}", uuid::Uuid::new_v4().simple());
                admin::run_cql(&session, &TABLE.replace("event_streaming", &keyspace)).await?;
                let took = if system.starts_with("bare") {
                    bare(&brokers, &cassandra, &inputs[&size], &keyspace).await?
                } else {
                    sluice(
                        &mut client,
                        &brokers,
                        &cassandra,
                        &inputs[&size],
                        &keyspace,
                        size,
                    )
                    .await?
                };
                let rows = count(&session, &keyspace).await?;
                anyhow::ensure!(rows == size, "{system}: {rows} rows for {size} events");
                eprintln!("round {round}: {system} over {size} events: {took:.2}s");
                seconds.entry((system, size)).or_default().push(took);
                session
                    .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
                    .await?;
            }
        }
    }
    println!(
        "cassandra benchmark: seed 000's user events, Kafka -> Cassandra at the driver's default \
         consistency, {} processes / parallelism 2, records/s between {} and {} events, median of {} \
         rounds; every row counted",
        PROCESSES, s.small, s.large, s.rounds
    );
    println!(
        "{:<24} {:>10} {:>10} {:>12} {:>10}",
        "system", "small (s)", "large (s)", "records/s", "vs bare"
    );
    let rate = |system: &str| {
        let m = |size| median(seconds.get(&(system, size)).cloned().unwrap_or_default());
        let (small, large) = (m(s.small), m(s.large));
        (small, large, (s.large - s.small) as f64 / (large - small))
    };
    let (_, _, bare_rate) = rate("bare scylla loop");
    for system in ["bare scylla loop", "Sluice (seed 000 job)"] {
        let (small, large, r) = rate(system);
        println!(
            "{system:<24} {small:>10.2} {large:>10.2} {r:>12.0} {:>10.2}",
            r / bare_rate
        );
    }
    drop(stack);
    Ok(())
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn count(session: &Session, keyspace: &str) -> anyhow::Result<usize> {
    let mut statement =
        scylla::statement::Statement::new(format!("SELECT count(*) FROM {keyspace}.user_events"));
    statement.set_request_timeout(Some(Duration::from_secs(120)));
    let rows = session
        .query_unpaged(statement, ())
        .await?
        .into_rows_result()?;
    let (n,) = rows.first_row::<(i64,)>()?;
    Ok(n as usize)
}

/// Runs the bare loop as one process per core; seconds until all wrote.
async fn bare(brokers: &str, cassandra: &str, input: &str, keyspace: &str) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut children = Vec::new();
    for i in 0..PROCESSES {
        let partitions: Vec<String> = (0..PARTITIONS)
            .filter(|p| *p as u32 % PROCESSES == i)
            .map(|p| p.to_string())
            .collect();
        children.push(
            Command::new(&exe)
                .args([
                    "bare-cassandra",
                    "--brokers",
                    brokers,
                    "--cassandra",
                    cassandra,
                ])
                .args(["--input", input, "--keyspace", keyspace])
                .args(["--partitions", &partitions.join(",")])
                .spawn()
                .context("cannot start the bare loop")?,
        );
    }
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        anyhow::ensure!(status.success(), "the bare loop failed: {status}");
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn sluice(
    client: &mut JobServiceClient<Channel>,
    brokers: &str,
    cassandra: &str,
    input: &str,
    keyspace: &str,
    size: usize,
) -> anyhow::Result<f64> {
    // The shipped job's dead-letter topic must exist at submit, as the
    // seed's set-up makes it; each run has its own.
    let dead_letters = format!("{input}-dlq");
    admin::create_topic(brokers, &dead_letters, 1).await?;
    let spec = SHIPPED
        .replace(
            "topic: user-events-dlq\n",
            &format!("topic: {dead_letters}\n"),
        )
        .replace("${KAFKA_BROKER}", brokers)
        .replace("${CASSANDRA_HOST}", cassandra)
        .replace("topic: user-events\n", &format!("topic: {input}\n"))
        .replace(
            "keyspace: event_streaming",
            &format!("keyspace: {keyspace}"),
        )
        .replace(
            "group_id: sluice-user-events",
            &format!("group_id: {keyspace}"),
        );
    let spec = sluice_common::spec::resolve_client_side(&spec, &|_| None)?;
    let start = Instant::now();
    let job = client
        .submit_job(SubmitJobRequest {
            spec_json: spec,
            from_savepoint: String::new(),
        })
        .await?
        .into_inner()
        .job_id;
    loop {
        anyhow::ensure!(start.elapsed() < RUN_LIMIT, "job {job} did not finish");
        let status = client
            .get_job(GetJobRequest {
                job_id: job.clone(),
            })
            .await?
            .into_inner();
        anyhow::ensure!(
            status.state() != JobState::Failed,
            "job {job} failed: {}",
            status.failure
        );
        let written: u64 = status
            .tasks
            .iter()
            .filter(|t| t.stage == 1)
            .filter_map(|t| t.metrics.as_ref().map(|m| m.records_out))
            .sum();
        if written as usize >= size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = start.elapsed().as_secs_f64();
    client.cancel_job(CancelJobRequest { job_id: job }).await?;
    Ok(took)
}

/// One process of the bare loop: reads its partitions to where they ended
/// when it started, writes each event as one row, many in flight.
pub async fn bare_process(
    brokers: &str,
    cassandra: &str,
    input: &str,
    keyspace: &str,
    partitions: &[i32],
) -> anyhow::Result<()> {
    let session = admin::cassandra_session(cassandra).await?;
    let insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.user_events \
             (user_id, bucket_date, event_time, event_type, event_id, metadata) VALUES (?, ?, ?, ?, ?, ?)"
        ))
        .await?;
    type Row = (
        uuid::Uuid,
        CqlDate,
        CqlTimestamp,
        String,
        uuid::Uuid,
        BTreeMap<String, String>,
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<anyhow::Result<Row>>(4096);
    let (brokers, input, group) = (
        brokers.to_string(),
        input.to_string(),
        format!("bare-{keyspace}"),
    );
    let partitions = partitions.to_vec();
    // Reads and parses on a thread of its own; the writes run meanwhile.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut end = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(&input, *p, Duration::from_secs(10))?;
            end.insert(*p, high);
            tpl.add_partition_offset(&input, *p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut next: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
        while end.iter().any(|(p, e)| next[p] < *e) {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = m?;
            next.insert(m.partition(), m.offset() + 1);
            let row = (|| -> anyhow::Result<Row> {
                let event: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default())?;
                let time: chrono::DateTime<chrono::Utc> = event["event_time"]
                    .as_str()
                    .context("event_time")?
                    .parse()?;
                Ok((
                    uuid::Uuid::parse_str(event["user_id"].as_str().context("user_id")?)?,
                    CqlDate::from(time.date_naive()),
                    CqlTimestamp(time.timestamp_millis()),
                    event["event_type"]
                        .as_str()
                        .context("event_type")?
                        .to_string(),
                    uuid::Uuid::parse_str(event["event_id"].as_str().context("event_id")?)?,
                    event["metadata"]
                        .as_object()
                        .context("metadata")?
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect(),
                ))
            })();
            if tx.blocking_send(row).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut writes = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|row| {
            let (session, insert) = (&session, &insert);
            async move {
                session
                    .execute_unpaged(insert, row?)
                    .await
                    .map_err(anyhow::Error::from)
            }
        })
        .buffer_unordered(256);
    while let Some(written) = writes.next().await {
        written?;
    }
    reader.await??;
    Ok(())
}
