//! What end-to-end tests check of a job's outcome beyond its output: its
//! dead letters, that it never restarted, and keyspaces and large messages
//! of a test's own.

use crate::testing::{jobctl_json, unique};
use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// A keyspace name no earlier run used (`prefix_<hex>`, under Cassandra's 48
/// characters for a prefix of up to 15).
pub fn unique_keyspace(prefix: &str) -> String {
    unique(prefix).replace('-', "_")
}

/// The dead letters of `topic` as JSON, in offset order of the records they
/// stand for, once no new one came for 3 s; call it after the job
/// checkpointed its input, when every dead letter is written.
pub async fn dead_letters(brokers: &str, topic: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let messages = crate::admin::read_topic(
        brokers,
        topic,
        usize::MAX,
        Duration::from_secs(3),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?;
    let mut letters = messages
        .iter()
        .map(|m| serde_json::from_str(&m.payload).context("a dead letter that is not JSON"))
        .collect::<anyhow::Result<Vec<serde_json::Value>>>()?;
    letters.sort_by_key(|l| (l["partition"].as_i64(), l["offset"].as_i64()));
    Ok(letters)
}

/// Fails unless the job runs and never restarted.
pub fn running_without_restarts(coordinator: &str, job: &str) -> anyhow::Result<()> {
    let status = jobctl_json(coordinator, &["status", job])?;
    anyhow::ensure!(
        status["state"] == "RUNNING" && status["restarts"] == 0,
        "job {job} should run with 0 restarts: {status}"
    );
    Ok(())
}

/// Creates `topic` (one partition) that takes messages up to `max_bytes`.
pub async fn create_large_message_topic(
    brokers: &str,
    topic: &str,
    max_bytes: usize,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create Kafka admin client")?;
    let max = max_bytes.to_string();
    let topic_spec =
        NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &max);
    let results = admin
        .create_topics(
            &[topic_spec],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("cannot create topic `{t}`: {e}"))?;
    }
    Ok(())
}

/// Produces `payloads` to partition 0 of `topic` with a producer that sends
/// messages up to `max_bytes`; returns once every one is acknowledged.
pub async fn produce_large(
    brokers: &str,
    topic: &str,
    payloads: &[String],
    max_bytes: usize,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", max_bytes.to_string())
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create Kafka producer")?;
    for payload in payloads {
        producer
            .send(
                FutureRecord::<(), String>::to(topic)
                    .partition(0)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to `{topic}`: {e}"))?;
    }
    Ok(())
}
