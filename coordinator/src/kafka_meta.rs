//! Topic metadata and broker settings, read through rdkafka on a blocking thread.

use crate::error::CoordinatorError;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::sync::Arc;
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

/// Number of partitions of `topic`. Errors: [`CoordinatorError::UnknownTopic`]
/// when the brokers answer without the topic (the spec's fault),
/// [`CoordinatorError::KafkaMetadata`] when they do not answer.
pub async fn partition_count(brokers: &str, topic: &str) -> Result<i32, CoordinatorError> {
    let counted = with_consumer(brokers, topic, |consumer, t| {
        Ok(count_partitions(&consumer, &t))
    })
    .await?;
    counted.map_err(|e| match e {
        Uncounted::Unanswered(reason) => CoordinatorError::KafkaMetadata {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            reason,
        },
        Uncounted::NoTopic(reason) => CoordinatorError::UnknownTopic {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            reason,
        },
    })
}

/// Why a topic's partitions were not counted.
enum Uncounted {
    /// The brokers did not answer (unreachable, timed out).
    Unanswered(String),
    /// They answered without the topic.
    NoTopic(String),
}

impl Uncounted {
    fn into_reason(self) -> String {
        match self {
            Self::Unanswered(r) | Self::NoTopic(r) => r,
        }
    }
}

fn count_partitions(consumer: &BaseConsumer, topic: &str) -> Result<i32, Uncounted> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| Uncounted::Unanswered(e.to_string()))?;
    let found = md
        .topics()
        .iter()
        .find(|mt| mt.name() == topic)
        .ok_or_else(|| Uncounted::NoTopic("topic missing from metadata".to_string()))?;
    if let Some(e) = found.error() {
        return Err(Uncounted::NoTopic(format!(
            "{:?} (does the topic exist?)",
            e
        )));
    }
    Ok(found.partitions().len() as i32)
}

/// A metadata client of one Kafka cluster, kept for repeated queries.
#[derive(Clone)]
pub struct MetadataClient {
    brokers: String,
    consumer: Arc<BaseConsumer>,
}

impl MetadataClient {
    /// A client of `brokers` (`host:port`, comma-separated); it connects on
    /// its first query. Fails only when librdkafka refuses the settings.
    pub fn new(brokers: &str) -> Result<Self, CoordinatorError> {
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("allow.auto.create.topics", "false")
            .create()
            .map_err(|e| CoordinatorError::KafkaMetadata {
                brokers: brokers.to_string(),
                topic: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            brokers: brokers.to_string(),
            consumer: Arc::new(consumer),
        })
    }

    /// Number of partitions of `topic` now, asked of the brokers.
    pub async fn partition_count(&self, topic: &str) -> Result<i32, CoordinatorError> {
        let (consumer, t) = (self.consumer.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            // Nothing is assigned, but client errors queue up until polled.
            while consumer.poll(Duration::ZERO).is_some() {}
            count_partitions(&consumer, &t).map_err(Uncounted::into_reason)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|reason| CoordinatorError::KafkaMetadata {
            brokers: self.brokers.clone(),
            topic: topic.to_string(),
            reason,
        })
    }

    /// The high watermark of each of `partitions` of `topic` now.
    pub async fn high_watermarks(
        &self,
        topic: &str,
        partitions: Vec<i32>,
    ) -> Result<BTreeMap<i32, i64>, CoordinatorError> {
        let (consumer, t) = (self.consumer.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            while consumer.poll(Duration::ZERO).is_some() {}
            partitions
                .into_iter()
                .map(|p| {
                    consumer
                        .fetch_watermarks(&t, p, Duration::from_secs(10))
                        .map(|(_, high)| (p, high))
                        .map_err(|e| format!("offsets of partition {p}: {e}"))
                })
                .collect::<Result<BTreeMap<i32, i64>, String>>()
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|reason| CoordinatorError::KafkaMetadata {
            brokers: self.brokers.clone(),
            topic: topic.to_string(),
            reason,
        })
    }
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

/// Which Kafka client a spec's `properties` configure.
#[derive(Debug, Clone, Copy)]
pub enum ClientKind {
    Consumer,
    Producer,
}

/// Each of `properties` that librdkafka refuses for a client of `kind`, with
/// its reason: an unknown name, a value out of range, a feature this build
/// lacks. Every property is tried on its own, so each refusal names its key.
/// No connection is made.
pub async fn refused_properties(
    brokers: &str,
    kind: ClientKind,
    properties: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let (brokers, properties) = (brokers.to_string(), properties.clone());
    tokio::task::spawn_blocking(move || {
        properties
            .iter()
            .filter_map(|(key, value)| {
                let mut config = ClientConfig::new();
                config.set("bootstrap.servers", &brokers).set(key, value);
                let created = match kind {
                    ClientKind::Consumer => config
                        .set("group.id", "sluice-spec-check")
                        .create::<BaseConsumer>()
                        .map(drop),
                    ClientKind::Producer => {
                        config.create::<rdkafka::producer::BaseProducer>().map(drop)
                    }
                };
                created.err().map(|e| (key.clone(), e.to_string()))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// The value of topic-level config `name` of `topic` (DescribeConfigs),
/// on a blocking thread; `None` when the broker does not name it.
pub async fn topic_config(
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
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let described = runtime
            .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(&t)], &options))
            .map_err(|e| e.to_string())?;
        let resource = described
            .into_iter()
            .next()
            .ok_or_else(|| "DescribeConfigs answered nothing".to_string())?
            .map_err(|code| format!("DescribeConfigs of topic {t}: {code}"))?;
        Ok(resource.get(&n).and_then(|entry| entry.value.clone()))
    })
    .await
    .map_err(|e| err(e.to_string()))?
    .map_err(err)
}
