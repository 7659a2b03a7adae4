//! Kafka source with partitions assigned explicitly by the coordinator: no
//! consumer-group rebalancing ever moves a partition behind Sluice's back.

use super::{client_config, kafka_err};
use crate::error::Result;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_common::spec::{KafkaSourceSpec, StartFrom};
use std::sync::Arc;
use std::time::Duration;

pub struct KafkaSource {
    consumer: Option<StreamConsumer>,
    topic: Arc<str>,
}

/// A message as read, before decoding.
pub struct RawMessage {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
}

impl KafkaSource {
    pub fn build(spec: &KafkaSourceSpec, job_name: &str, partitions: &[i32]) -> Result<Self> {
        let topic: Arc<str> = spec.topic.as_str().into();
        if partitions.is_empty() {
            // More subtasks than partitions: this one idles.
            return Ok(Self {
                consumer: None,
                topic,
            });
        }
        let group = spec
            .group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{job_name}"));
        let reset = match spec.start_from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        };
        let config = client_config(
            &spec.brokers,
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("auto.offset.reset", reset),
                // Bound what librdkafka prefetches per partition so a slow
                // pipeline leaves its backlog in Kafka instead of in memory.
                ("queued.max.messages.kbytes", "2048"),
                ("queued.min.messages", "2000"),
            ],
            &spec.properties,
        );
        let consumer: StreamConsumer = config
            .create()
            .map_err(kafka_err("create consumer", &spec.brokers))?;
        let mut tpl = TopicPartitionList::new();
        let start = match spec.start_from {
            StartFrom::Earliest => Offset::Beginning,
            StartFrom::Latest => Offset::End,
        };
        for p in partitions {
            tpl.add_partition_offset(&spec.topic, *p, start)
                .map_err(kafka_err(format!("assign partition {p}"), &spec.brokers))?;
        }
        consumer
            .assign(&tpl)
            .map_err(kafka_err("assign partitions", &spec.brokers))?;
        Ok(Self {
            consumer: Some(consumer),
            topic,
        })
    }

    /// Waits for at least one message, then takes what else arrives within
    /// `linger`, up to `max` messages.
    pub async fn next_batch(&mut self, max: usize, linger: Duration) -> Result<Vec<RawMessage>> {
        let Some(consumer) = &self.consumer else {
            return std::future::pending().await;
        };
        let mut batch = Vec::with_capacity(max);
        let first = consumer.recv().await.map_err(kafka_err("receive", ""))?;
        batch.push(self.raw(&first));
        drop(first);
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(self.raw(&m)),
                Ok(Err(e)) => return Err(kafka_err("receive", "")(e)),
                Err(_) => break,
            }
        }
        Ok(batch)
    }

    fn raw(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> RawMessage {
        RawMessage {
            topic: self.topic.clone(),
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().map(<[u8]>::to_vec),
        }
    }
}
