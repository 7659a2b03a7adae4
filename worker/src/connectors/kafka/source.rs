//! Kafka source with partitions assigned explicitly by the coordinator: no
//! consumer-group rebalancing ever moves a partition behind Sluice's back.

use super::lag::{PartitionOffsets, STATISTICS_INTERVAL_MS, SourceContext};
use super::{client_config, kafka_err, topic_exists};
use crate::error::{Result, TopicRole, WorkerError};
use crate::record::Headers;
use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers as _;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sluice_common::spec::KafkaSourceSpec;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub struct KafkaSource {
    /// `None` while the subtask has no partition to read.
    consumer: Option<super::DetachedDrop<Arc<SourceConsumer>>>,
    spec: KafkaSourceSpec,
    group: String,
    topic: Arc<str>,
    /// Next offset to read of each partition, as far as records were handed on:
    /// the source's state in a checkpoint.
    positions: BTreeMap<i32, i64>,
    /// The consumer found a partition's position out of range and stopped
    /// fetching it: [`KafkaSource::recover_out_of_range`] before reading on.
    out_of_range: bool,
    /// A receive that failed, kept until its meaning is known (see
    /// [`KafkaSource::next_message`]).
    failed: Option<KafkaError>,
    /// `positions` as the metrics see them, with each partition's high watermark.
    offsets: Arc<PartitionOffsets>,
}

type SourceConsumer = StreamConsumer<SourceContext>;

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

/// What waiting on the source gives.
pub enum Polled {
    Message(RawMessage),
    /// A partition's next offset is no longer in the partition: call
    /// [`KafkaSource::recover_out_of_range`].
    OutOfRange,
}

/// A partition whose next offset to read (`position`) was outside what it
/// holds, `low..=high` (earliest offset, high watermark): retention deleted
/// records the source had not read (`position < low`), or the topic was
/// deleted and recreated (`position > high`). The source went on at `low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub partition: i32,
    pub position: i64,
    pub low: i64,
    pub high: i64,
}

/// How long a watermark query may take.
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaSource {
    /// Reads `partitions`, each from its offset in `start` when it has one
    /// (the restored checkpoint, or where a `start_from: latest` topic ended
    /// at submission), else from its earliest offset: a partition without
    /// one was added to the topic after submission. Resolved to offsets now,
    /// so the first checkpoint already names every partition. Publishes
    /// where it reads, and each partition's high watermark, to `offsets`.
    pub async fn build(
        spec: &KafkaSourceSpec,
        job_name: &str,
        partitions: &[i32],
        start: &BTreeMap<i32, i64>,
        offsets: Arc<PartitionOffsets>,
    ) -> Result<Self> {
        offsets.set_topic(&spec.topic);
        let group = spec
            .group_id
            .clone()
            .unwrap_or_else(|| format!("sluice-{job_name}"));
        let mut source = Self {
            consumer: None,
            spec: spec.clone(),
            group,
            topic: spec.topic.as_str().into(),
            positions: BTreeMap::new(),
            out_of_range: false,
            failed: None,
            offsets,
        };
        let mut start: BTreeMap<i32, i64> = start
            .iter()
            .filter(|(p, _)| partitions.contains(p))
            .map(|(p, o)| (*p, *o))
            .collect();
        // A deliberate break of exactly-once, off unless switched on: the
        // chaos program's test turns it on to prove its verdict sees loss.
        if fail::eval("source-skip-offset-after-restore", |_| ()).is_some() {
            start.values_mut().for_each(|o| *o += 1);
        }
        source.assign(partitions, start).await?;
        Ok(source)
    }

    /// Adds the partitions of `partitions` the source does not read yet,
    /// from their earliest offset (they were added to the topic while the
    /// job ran); their positions go into the next checkpoint. Returns them.
    pub async fn add_partitions(&mut self, partitions: &[i32]) -> Result<Vec<i32>> {
        let new: Vec<i32> = partitions
            .iter()
            .filter(|p| !self.positions.contains_key(p))
            .copied()
            .collect();
        if !new.is_empty() {
            self.assign(&new, BTreeMap::new()).await?;
        }
        Ok(new)
    }

    /// Starts reading `partitions` besides those read already, each at its
    /// offset in `start` or else at its earliest one; creates the consumer
    /// on first use. On a blocking thread: librdkafka waits for the broker.
    async fn assign(&mut self, partitions: &[i32], start: BTreeMap<i32, i64>) -> Result<()> {
        if partitions.is_empty() {
            // More subtasks than partitions: this one idles.
            return Ok(());
        }
        let consumer = match &self.consumer {
            Some(c) => Some(Arc::clone(c)),
            None => None,
        };
        let (spec, group, partitions) =
            (self.spec.clone(), self.group.clone(), partitions.to_vec());
        let brokers = self.spec.brokers.clone();
        let shared = self.offsets.clone();
        let (consumer, offsets) = tokio::task::spawn_blocking(move || {
            let consumer = match consumer {
                Some(c) => c,
                None => Arc::new(create_consumer(&spec, &group, shared)?),
            };
            let mut offsets = start;
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                let offset = match offsets.get(p) {
                    Some(o) => *o,
                    None => {
                        let (low, _) = watermarks(&consumer, &spec.topic, &spec.brokers, *p)?;
                        offsets.insert(*p, low);
                        low
                    }
                };
                tpl.add_partition_offset(&spec.topic, *p, Offset::Offset(offset))
                    .map_err(kafka_err(format!("assign partition {p}"), &spec.brokers))?;
            }
            consumer
                .incremental_assign(&tpl)
                .map_err(kafka_err("assign partitions", &spec.brokers))?;
            Ok::<_, crate::error::WorkerError>((consumer, offsets))
        })
        .await
        .map_err(|_| kafka_err("assign partitions", &brokers)(KafkaError::Canceled))??;
        if self.consumer.is_none() {
            self.consumer = Some(super::DetachedDrop::new(consumer));
        }
        self.positions.extend(offsets);
        self.offsets.set_positions(&self.positions);
        Ok(())
    }

    /// Finds the partitions whose position is outside what they hold now and
    /// moves each to its earliest offset; every partition then fetches again
    /// from its position. Returns the partitions moved.
    pub async fn recover_out_of_range(&mut self) -> Result<Vec<OutOfRange>> {
        self.out_of_range = false;
        let Some(consumer) = &self.consumer else {
            return Ok(Vec::new());
        };
        let (consumer, positions) = (Arc::clone(consumer), self.positions.clone());
        let (topic, brokers) = (self.spec.topic.clone(), self.spec.brokers.clone());
        let moved = tokio::task::spawn_blocking(move || {
            let mut moved = Vec::new();
            let mut tpl = TopicPartitionList::new();
            for (p, position) in positions {
                let (low, high) = watermarks(&consumer, &topic, &brokers, p)?;
                let offset = if position < low || position > high {
                    moved.push(OutOfRange {
                        partition: p,
                        position,
                        low,
                        high,
                    });
                    low
                } else {
                    position
                };
                tpl.add_partition_offset(&topic, p, Offset::Offset(offset))
                    .map_err(kafka_err(format!("assign partition {p}"), &brokers))?;
            }
            // librdkafka stopped fetching the partition it found out of
            // range; assigning everything again restarts it, and drops what
            // was fetched past the positions.
            consumer
                .assign(&tpl)
                .map_err(kafka_err("assign partitions", &brokers))?;
            Ok::<_, crate::error::WorkerError>(moved)
        })
        .await
        .map_err(|_| kafka_err("assign partitions", &self.spec.brokers)(KafkaError::Canceled))??;
        for m in &moved {
            self.positions.insert(m.partition, m.low);
            self.offsets
                .add_skipped(m.partition, (m.low - m.position).max(0) as u64);
        }
        self.offsets.set_positions(&self.positions);
        Ok(moved)
    }

    /// Waits for the next message. Cancel-safe: a message is only taken from
    /// the consumer when this returns it.
    pub async fn next_message(&mut self) -> Result<Polled> {
        let Some(consumer) = &self.consumer else {
            return std::future::pending().await;
        };
        if self.out_of_range {
            return Ok(Polled::OutOfRange);
        }
        if self.failed.is_none() {
            match consumer.recv().await {
                Ok(m) => return Ok(Polled::Message(self.raw(&m))),
                Err(e) if is_out_of_range(&e) => return Ok(Polled::OutOfRange),
                Err(e) => self.failed = Some(e),
            }
        }
        Err(self.receive_error().await)
    }

    /// Adds what else arrives within `linger` to `batch`, up to `max` messages;
    /// stops early when a partition is out of range. What librdkafka has
    /// fetched already is taken without waiting; only an empty queue is
    /// waited on. Not cancel-safe: run it to completion.
    pub async fn fill(
        &mut self,
        batch: &mut Vec<RawMessage>,
        max: usize,
        linger: Duration,
    ) -> Result<()> {
        use futures::{FutureExt, StreamExt};
        let Some(consumer) = &self.consumer else {
            return Ok(());
        };
        let mut stream = consumer.stream();
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None => match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            match next {
                Some(Ok(m)) => batch.push(self.raw(&m)),
                Some(Err(e)) if is_out_of_range(&e) => {
                    self.out_of_range = true;
                    break;
                }
                Some(Err(e)) => {
                    drop(stream);
                    self.failed = Some(e);
                    return Err(self.receive_error().await);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// What the failed receive in `failed` means, taking it once known: a
    /// topic the broker no longer knows (deleted while the job ran) is named
    /// as such, as librdkafka reports it as an unknown partition; anything
    /// else is Kafka's own error. The error stays in `failed` while the
    /// broker is asked, so a call cancelled meanwhile leaves it for the next:
    /// librdkafka reports a missing topic only once.
    async fn receive_error(&mut self) -> WorkerError {
        let brokers = self.spec.brokers.clone();
        let unknown = self.failed.as_ref().is_some_and(is_unknown);
        let mut gone = false;
        if let Some(consumer) = self.consumer.as_ref().filter(|_| unknown) {
            let (c, topic) = (Arc::clone(consumer), self.spec.topic.clone());
            let exists = tokio::task::spawn_blocking(move || {
                topic_exists(c.client(), &topic, WATERMARKS_TIMEOUT)
            })
            .await;
            gone = matches!(exists, Ok(Ok(false)));
        }
        match (self.failed.take(), gone) {
            (_, true) => WorkerError::TopicGone {
                role: TopicRole::Source,
                topic: self.spec.topic.clone(),
                brokers,
            },
            (Some(e), false) => kafka_err("receive", &brokers)(e),
            (None, false) => kafka_err("receive", &brokers)(KafkaError::Canceled),
        }
    }

    /// Records that the messages at these (partition, offset)s have been handed on.
    pub fn advance(&mut self, handed_on: &[(i32, i64)]) {
        for (partition, offset) in handed_on {
            self.positions.insert(*partition, offset + 1);
        }
        self.offsets.set_positions(&self.positions);
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

    /// The source topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
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

/// The consumer of a source: partitions are assigned explicitly, offsets
/// come from checkpoints.
fn create_consumer(
    spec: &KafkaSourceSpec,
    group: &str,
    offsets: Arc<PartitionOffsets>,
) -> Result<SourceConsumer> {
    client_config(
        &spec.brokers,
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
            // A position no longer in its partition (retention deleted what
            // the job had not read, or the topic was recreated) is reported
            // to the source, which moves on and tells the coordinator.
            ("auto.offset.reset", "error"),
            // Bound what librdkafka prefetches per partition so a slow
            // pipeline leaves its backlog in Kafka instead of in memory.
            ("queued.max.messages.kbytes", "2048"),
            ("queued.min.messages", "2000"),
            // Once that bound is reached, librdkafka waits this long before
            // it fetches again; its default of a second capped a source at
            // about 2 MB of records per second.
            ("fetch.queue.backoff.ms", "10"),
            // Each partition's high watermark, for the live lag.
            ("statistics.interval.ms", STATISTICS_INTERVAL_MS),
        ],
        &spec.properties,
    )
    .create_with_context(SourceContext { offsets })
    .map_err(kafka_err("create consumer", &spec.brokers))
}

/// The earliest offset `partition` holds and its high watermark. The
/// consumer's metadata may not know a partition added to the topic (or a
/// topic recreated) a moment ago: it is refreshed, and the query tried
/// again, for a while. Blocks.
fn watermarks(
    consumer: &SourceConsumer,
    topic: &str,
    brokers: &str,
    partition: i32,
) -> Result<(i64, i64)> {
    let err = || kafka_err(format!("read offsets of partition {partition}"), brokers);
    let deadline = std::time::Instant::now() + WATERMARKS_TIMEOUT;
    loop {
        match consumer.fetch_watermarks(topic, partition, WATERMARKS_TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(e) if is_unknown(&e) => {
                let exists =
                    topic_exists(consumer.client(), topic, WATERMARKS_TIMEOUT).map_err(err())?;
                if std::time::Instant::now() >= deadline {
                    return Err(match exists {
                        true => err()(e),
                        false => WorkerError::TopicGone {
                            role: TopicRole::Source,
                            topic: topic.to_string(),
                            brokers: brokers.to_string(),
                        },
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(err()(e)),
        }
    }
}

/// Whether librdkafka says the topic or partition is unknown to it: so it
/// reports a topic deleted under a reading consumer, and one whose metadata
/// it has not read yet.
fn is_unknown(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    )
}

fn is_out_of_range(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
    )
}
