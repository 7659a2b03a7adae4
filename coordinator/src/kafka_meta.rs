//! Topic metadata and broker settings, read through rdkafka on a blocking thread.

use crate::error::CoordinatorError;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::time::Duration;

/// Runs `query` with a consumer of `brokers` on a blocking thread; an error
/// names the brokers and `topic`.
async fn with_consumer<T: Send + 'static>(
    brokers: &str,
    topic: &str,
    query: impl FnOnce(BaseConsumer, String) -> Result<T, String> + Send + 'static,
) -> Result<T, CoordinatorError> {
    let (b, t) = (brokers.to_string(), topic.to_string());
    let err = |reason: String| CoordinatorError::KafkaMetadata {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        reason,
    };
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| e.to_string())?;
        query(consumer, t)
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(err)
}

/// Number of partitions of `topic`; an error names the topic when it does not exist.
pub async fn partition_count(brokers: &str, topic: &str) -> Result<i32, CoordinatorError> {
    with_consumer(brokers, topic, |consumer, t| {
        let md = consumer
            .fetch_metadata(Some(&t), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let topic = md
            .topics()
            .iter()
            .find(|mt| mt.name() == t)
            .ok_or_else(|| "topic missing from metadata".to_string())?;
        if let Some(e) = topic.error() {
            return Err(format!("{:?} (does the topic exist?)", e));
        }
        Ok(topic.partitions().len() as i32)
    })
    .await
}

/// The next offset of every partition of `topic` now: where a source that
/// starts from `latest` begins.
pub async fn end_offsets(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>, CoordinatorError> {
    with_consumer(brokers, topic, move |consumer, t| {
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(&t, p, Duration::from_secs(10))
                    .map(|(_, high)| (p, high))
                    .map_err(|e| format!("offsets of partition {p}: {e}"))
            })
            .collect()
    })
    .await
}

/// The value of the broker setting `name` (such as
/// `transaction.max.timeout.ms`) on the first broker the metadata of `topic`
/// lists, through DescribeConfigs; `None` when the broker does not report it.
pub async fn broker_config(
    brokers: &str,
    topic: &str,
    name: &str,
) -> Result<Option<String>, CoordinatorError> {
    let (b, t, n) = (brokers.to_string(), topic.to_string(), name.to_string());
    let err = |reason: String| CoordinatorError::BrokerConfig {
        brokers: brokers.to_string(),
        name: name.to_string(),
        reason,
    };
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &b)
            .create()
            .map_err(|e| e.to_string())?;
        let md = admin
            .inner()
            .fetch_metadata(Some(&t), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let broker = md
            .brokers()
            .first()
            .map(|b| b.id())
            .ok_or_else(|| "the metadata names no broker".to_string())?;
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let described = runtime
            .block_on(admin.describe_configs(&[ResourceSpecifier::Broker(broker)], &options))
            .map_err(|e| e.to_string())?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| "DescribeConfigs answered nothing".to_string())?
            .map_err(|code| format!("DescribeConfigs of broker {broker}: {code}"))?;
        Ok(resource.get(&n).and_then(|entry| entry.value.clone()))
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(err)
}
