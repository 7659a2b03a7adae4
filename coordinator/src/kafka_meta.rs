//! Topic metadata, read through rdkafka on a blocking thread.

use crate::error::CoordinatorError;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::time::Duration;

/// Number of partitions of `topic`; an error names the topic when it does not exist.
pub async fn partition_count(brokers: &str, topic: &str) -> Result<i32, CoordinatorError> {
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
    .map_err(|e| err(e.to_string()))?
    .map_err(err)
}
