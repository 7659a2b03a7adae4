mod dead_letter;
mod deliveries;
mod detached_drop;
mod lag;
mod sink;
mod source;
mod topic_watch;
mod transaction_calls;
mod transactional_sink;

pub use dead_letter::DeadLetterWriter;
use detached_drop::DetachedDrop;
pub use lag::{PartitionOffsets, PartitionState};
pub use sink::KafkaSink;
pub use source::{KafkaSource, OutOfRange, Polled, RawMessage};
pub use transaction_calls::TransactionCalls;
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

/// How long a sink or dead-letter producer waits for acknowledgements
/// before it asks whether its topic still exists, and how often after
/// that: librdkafka holds messages to a deleted topic without a word until
/// its own timeout.
pub(crate) const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Whether `topic` is in the broker's metadata, read with `client` within
/// `timeout`; `false` only when the broker says it does not exist. With a
/// client that may create topics, asking could create it: Sluice's
/// producers are set not to, unless the spec's `properties` say otherwise.
/// Blocks.
pub(crate) fn topic_exists<C: rdkafka::client::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, rdkafka::error::KafkaError> {
    use rdkafka::types::RDKafkaErrorCode;
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(!metadata.topics().iter().any(|t| {
        t.name() == topic
            && t.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    }))
}

/// Whether a produce error is the record's own fault (too large, say), so the
/// record goes to the dead-letter topic and the job goes on.
pub(crate) fn is_record_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(
            MessageSizeTooLarge
                | InvalidRecord
                | InvalidMessageSize
                | InvalidMessage
                | InvalidTimestamp
                | MessageBatchTooLarge
        )
    )
}

/// What a topic takes, as far as a record alone can be refused for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicLimits {
    /// Largest message (key, value and headers) Sluice writes to it: the
    /// topic's `max.message.bytes` (read from the broker) and the client's
    /// `message.max.bytes`, less room for the record batch framing.
    pub max_message_bytes: usize,
    /// `cleanup.policy` includes `compact`: the broker refuses a message
    /// without a key.
    pub compacted: bool,
}

/// Reads what `topic` takes from the broker. A topic whose config cannot be
/// read counts as the broker's defaults.
pub(crate) async fn topic_limits(
    brokers: &str,
    properties: &BTreeMap<String, String>,
    topic: &str,
) -> TopicLimits {
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
    let lookup = tokio::task::spawn_blocking(move || -> Result<(Option<usize>, bool), String> {
        let admin: AdminClient<DefaultClientContext> =
            config.create().map_err(|e| e.to_string())?;
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let answer = tokio::runtime::Handle::current()
            .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&topic_name)], &opts))
            .map_err(|e| e.to_string())?;
        let resource = answer.into_iter().flatten().next();
        let value = |name: &str| resource.as_ref().and_then(|r| r.get(name)?.value.clone());
        Ok((
            value("max.message.bytes").and_then(|v| v.parse().ok()),
            value("cleanup.policy").is_some_and(|p| p.contains("compact")),
        ))
    })
    .await;
    let (topic_limit, compacted) = match lookup {
        Ok(Ok((limit, compacted))) => (limit.unwrap_or(BROKER_DEFAULT), compacted),
        Ok(Err(reason)) => {
            tracing::warn!(topic, brokers, %reason, "cannot read the topic's config; assuming the broker defaults");
            (BROKER_DEFAULT, false)
        }
        Err(e) => {
            tracing::warn!(topic, brokers, error = %e, "cannot read the topic's config; assuming the broker defaults");
            (BROKER_DEFAULT, false)
        }
    };
    TopicLimits {
        max_message_bytes: client.min(topic_limit).saturating_sub(FRAMING).max(FRAMING),
        compacted,
    }
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
