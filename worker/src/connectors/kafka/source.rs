//! Kafka source with partitions assigned explicitly by the coordinator: no
//! consumer-group rebalancing ever moves a partition behind Sluice's back.

use super::{client_config, kafka_err};
use crate::error::Result;
use crate::record::Headers;
use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Headers as _;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_common::spec::{KafkaSourceSpec, StartFrom};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct KafkaSource {
    consumer: Option<super::DetachedDrop<StreamConsumer>>,
    topic: Arc<str>,
    brokers: String,
    /// Next offset to read of each partition, as far as records were handed on:
    /// the source's state in a checkpoint.
    positions: BTreeMap<i32, i64>,
}

/// A message as read, before decoding.
pub struct RawMessage {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// `None` for a tombstone (no value at all), unlike an empty value.
    pub payload: Option<Bytes>,
    pub key: Option<Bytes>,
    pub headers: Option<Arc<Headers>>,
}

impl KafkaSource {
    /// Reads `partitions`, each from its offset in `start` when it has one,
    /// else from where the spec's `start_from` says, resolved to an offset
    /// now so that the first checkpoint already names every partition.
    pub async fn build(
        spec: &KafkaSourceSpec,
        job_name: &str,
        partitions: &[i32],
        start: &BTreeMap<i32, i64>,
    ) -> Result<Self> {
        let (spec, job_name, partitions, start) = (
            spec.clone(),
            job_name.to_string(),
            partitions.to_vec(),
            start.clone(),
        );
        let brokers = spec.brokers.clone();
        tokio::task::spawn_blocking(move || {
            Self::build_blocking(&spec, &job_name, &partitions, &start)
        })
        .await
        .map_err(|_| kafka_err("create consumer", &brokers)(rdkafka::error::KafkaError::Canceled))?
    }

    fn build_blocking(
        spec: &KafkaSourceSpec,
        job_name: &str,
        partitions: &[i32],
        start: &BTreeMap<i32, i64>,
    ) -> Result<Self> {
        let topic: Arc<str> = spec.topic.as_str().into();
        let mut positions: BTreeMap<i32, i64> = start
            .iter()
            .filter(|(p, _)| partitions.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect();
        if partitions.is_empty() {
            // More subtasks than partitions: this one idles.
            return Ok(Self {
                consumer: None,
                topic,
                brokers: spec.brokers.clone(),
                positions,
            });
        }
        let group = spec
            .group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{job_name}"));
        let config = client_config(
            &spec.brokers,
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                // Only when a checkpointed offset has fallen out of retention:
                // the least loss is to go on from the oldest record kept.
                ("auto.offset.reset", "earliest"),
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
        for p in partitions {
            let offset = match positions.get(p) {
                Some(o) => *o,
                None => {
                    let (low, high) = consumer
                        .fetch_watermarks(&spec.topic, *p, Duration::from_secs(30))
                        .map_err(kafka_err(
                            format!("read offsets of partition {p}"),
                            &spec.brokers,
                        ))?;
                    let o = match spec.start_from {
                        StartFrom::Earliest => low,
                        StartFrom::Latest => high,
                    };
                    positions.insert(*p, o);
                    o
                }
            };
            tpl.add_partition_offset(&spec.topic, *p, Offset::Offset(offset))
                .map_err(kafka_err(format!("assign partition {p}"), &spec.brokers))?;
        }
        consumer
            .assign(&tpl)
            .map_err(kafka_err("assign partitions", &spec.brokers))?;
        Ok(Self {
            consumer: Some(super::DetachedDrop::new(consumer)),
            topic,
            brokers: spec.brokers.clone(),
            positions,
        })
    }

    /// Waits for the next message. Cancel-safe: a message is only taken from
    /// the consumer when this returns it.
    pub async fn next_message(&mut self) -> Result<RawMessage> {
        let Some(consumer) = &self.consumer else {
            return std::future::pending().await;
        };
        let m = consumer
            .recv()
            .await
            .map_err(kafka_err("receive", &self.brokers))?;
        Ok(self.raw(&m))
    }

    /// Adds what else arrives within `linger` to `batch`, up to `max` messages.
    /// Not cancel-safe: run it to completion.
    pub async fn fill(
        &mut self,
        batch: &mut Vec<RawMessage>,
        max: usize,
        linger: Duration,
    ) -> Result<()> {
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(self.raw(&m)),
                Ok(Err(e)) => return Err(kafka_err("receive", &self.brokers)(e)),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Records that the messages at these (partition, offset)s have been handed on.
    pub fn advance(&mut self, handed_on: &[(i32, i64)]) {
        for (partition, offset) in handed_on {
            self.positions.insert(*partition, offset + 1);
        }
    }

    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// Commits `offsets` to the job's consumer group so lag shows in Kafka's
    /// own tools. Recovery never reads them: offsets live in checkpoints.
    pub fn commit_for_visibility(&self, offsets: &BTreeMap<i32, i64>) {
        let Some(consumer) = &self.consumer else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            if tpl
                .add_partition_offset(&self.topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(topic = %self.topic, error = %e, "cannot commit offsets to the consumer group");
        }
    }

    fn raw(&self, m: &rdkafka::message::BorrowedMessage<'_>) -> RawMessage {
        RawMessage {
            topic: self.topic.clone(),
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().map(Bytes::copy_from_slice),
            key: m.key().map(Bytes::copy_from_slice),
            headers: m.headers().map(|hs| {
                Arc::new(
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(Bytes::copy_from_slice)))
                        .collect(),
                )
            }),
        }
    }
}
