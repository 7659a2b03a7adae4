mod dead_letter;
mod deliveries;
mod detached_drop;
mod sink;
mod source;
mod transactional_sink;

pub use dead_letter::DeadLetterWriter;
use detached_drop::DetachedDrop;
pub use sink::KafkaSink;
pub use source::{KafkaSource, OutOfRange, Polled, RawMessage};
pub use transactional_sink::TransactionalKafkaSink;

use crate::error::WorkerError;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use std::collections::BTreeMap;
use std::time::Duration;

/// A client config with Sluice's `defaults`, then the user's `properties` over them.
pub(crate) fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Whether a produce error is the record's own fault (too large, say), so the
/// record goes to the dead-letter topic and the job goes on.
pub(crate) fn is_record_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(MessageSizeTooLarge | InvalidRecord | InvalidMessageSize | InvalidMessage)
    )
}

/// Largest message (key, value and headers) the sink side of a job writes to
/// a topic: the topic's `max.message.bytes` (read from the broker) and the
/// client's `message.max.bytes`, less room for the record batch framing.
/// A topic whose config cannot be read counts as the broker default.
pub(crate) async fn message_limit(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    topic: &str,
) -> usize {
    /// Kafka's default `max.message.bytes` and librdkafka's default `message.max.bytes`.
    const BROKER_DEFAULT: usize = 1_048_588;
    const CLIENT_DEFAULT: usize = 1_000_000;
    /// Record batch and record framing around one message, generously.
    const FRAMING: usize = 1024;
    let client = properties
        .get("message.max.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(CLIENT_DEFAULT);
    let config = client_config(brokers, &[], properties);
    let topic_name = topic.to_string();
    let lookup = tokio::task::spawn_blocking(move || -> Result<Option<usize>, String> {
        let admin: AdminClient<DefaultClientContext> =
            config.create().map_err(|e| e.to_string())?;
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let answer = tokio::runtime::Handle::current()
            .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&topic_name)], &opts))
            .map_err(|e| e.to_string())?;
        Ok(answer
            .into_iter()
            .flatten()
            .find_map(|r| r.get("max.message.bytes")?.value.as_deref()?.parse().ok()))
    })
    .await;
    let topic_limit = match lookup {
        Ok(Ok(Some(limit))) => limit,
        Ok(Ok(None)) => BROKER_DEFAULT,
        Ok(Err(reason)) => {
            tracing::warn!(topic, brokers, %reason, "cannot read the topic's max.message.bytes; assuming the broker default");
            BROKER_DEFAULT
        }
        Err(e) => {
            tracing::warn!(topic, brokers, error = %e, "cannot read the topic's max.message.bytes; assuming the broker default");
            BROKER_DEFAULT
        }
    };
    client.min(topic_limit).saturating_sub(FRAMING).max(FRAMING)
}

/// The user's producer `properties` with `message.max.bytes` (and the batch
/// size it bounds) set to `limit`, so librdkafka refuses an oversized record
/// before it is sent: the broker refusing it would fail a whole transaction.
pub(crate) fn with_limit(
    properties: &BTreeMap<String, String>,
    limit: &str,
) -> BTreeMap<String, String> {
    let mut out = properties.clone();
    out.insert("message.max.bytes".into(), limit.to_string());
    let batch = out
        .get("batch.size")
        .and_then(|b| b.parse::<usize>().ok())
        .unwrap_or(1_000_000)
        .min(limit.parse().unwrap_or(1_000_000));
    out.insert("batch.size".into(), batch.to_string());
    out
}

pub(crate) fn kafka_err(
    what: impl Into<String>,
    brokers: &str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> WorkerError {
    let what = what.into();
    let brokers = brokers.to_string();
    move |source| WorkerError::Kafka {
        what,
        brokers,
        source: Box::new(source),
    }
}
