//! A sink's producer and the messages it has in flight. Sinks do not wait
//! for the broker after each record: librdkafka batches and sends, its
//! delivery reports are served on the sink's own task after each batch, and
//! a barrier waits until nothing is in flight, which is all a checkpoint
//! needs. No future, channel or timer is made per message.

use super::topic_watch::TopicWatch;
use super::{TOPIC_CHECK_EVERY, is_record_error, kafka_err, topic_exists};
use crate::error::{Result, TopicRole, WorkerError};
use crate::record::{FailedAt, Failure, Origin, Payload, Record, json};
use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use sluice_common::spec::KafkaSinkSpec;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vrl::value::Value;

const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Most messages a sink's producer queues unacknowledged, unless the spec's
/// properties set `queue.buffering.max.messages`: a barrier waits until the
/// broker acknowledged all that is queued, and librdkafka's default of
/// 100,000 held the data path there for up to a second of input.
pub const QUEUED_MESSAGES: &str = "20000";
/// Most delivery report events served at once; each holds the reports of
/// one produce request.
const MAX_REPORT_EVENTS: usize = 100_000;

/// A message the broker refused, with where its record was read.
struct Refused {
    partition: i32,
    offset: i64,
    error: KafkaError,
    payload: Option<Bytes>,
    key: Option<Bytes>,
}

/// Gathers the deliveries the broker refused; called on the sink's task,
/// while it polls.
#[derive(Default)]
pub struct SinkContext {
    refused: Mutex<Vec<Refused>>,
}

impl ClientContext for SinkContext {}

impl ProducerContext for SinkContext {
    /// The source partition and offset of the record, packed: 16 and 48 bits.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, origin: usize) {
        if let Err((error, message)) = result {
            let refused = Refused {
                partition: (origin >> 48) as i32,
                offset: (origin & ((1 << 48) - 1)) as i64,
                error: error.clone(),
                payload: message.payload().map(Bytes::copy_from_slice),
                key: message.key().map(Bytes::copy_from_slice),
            };
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(refused);
        }
    }
}

pub type SinkProducer = BaseProducer<SinkContext>;

/// Creates a sink producer from `config`.
pub fn create(config: &ClientConfig, what: &str, brokers: &str) -> Result<Arc<SinkProducer>> {
    config
        .create_with_context(SinkContext::default())
        .map(Arc::new)
        .map_err(kafka_err(what.to_string(), brokers))
}

/// Reads `topic`'s metadata with `producer` before its first message:
/// librdkafka held the first messages to a topic it had no metadata of
/// until its next one-second topic scan, so each new sink producer stood
/// still for most of a second (a new transactional id's first transaction,
/// a restarted job's first records). A topic the broker says does not exist
/// (deleted while the job ran) is asked for once more after
/// [`TOPIC_CHECK_EVERY`], then fails with [`WorkerError::TopicGone`]:
/// messages to it would wait in the queue for nothing.
pub async fn learn_topic(producer: &Arc<SinkProducer>, topic: &str, brokers: &str) -> Result<()> {
    let (p, t) = (Arc::clone(producer), topic.to_string());
    let exists = tokio::task::spawn_blocking(move || topic_exists(p.client(), &t, ACK_TIMEOUT))
        .await
        .unwrap_or(Err(KafkaError::Canceled))
        .map_err(kafka_err(
            format!("read metadata of topic `{topic}`"),
            brokers,
        ))?;
    if !exists {
        let mut watch = TopicWatch::new(TopicRole::Sink, topic, brokers);
        watch.look(|| Ok(false)).await?;
        tokio::time::sleep(TOPIC_CHECK_EVERY).await;
        watch.look(exists_with(producer, topic)).await?;
    }
    Ok(())
}

/// Whether `topic` exists, asked with `producer` within
/// [`TOPIC_CHECK_EVERY`]: for a [`TopicWatch`].
fn exists_with(
    producer: &Arc<SinkProducer>,
    topic: &str,
) -> impl FnOnce() -> std::result::Result<bool, KafkaError> + Send + 'static {
    let (p, t) = (Arc::clone(producer), topic.to_string());
    move || topic_exists(p.client(), &t, TOPIC_CHECK_EVERY)
}

fn pack(origin: &Origin) -> usize {
    ((origin.partition as usize & 0xFFFF) << 48) | (origin.offset.max(0) as usize & ((1 << 48) - 1))
}

pub struct Deliveries {
    topic: String,
    brokers: String,
    key_field: Option<String>,
    /// The topic is compacted: a record without a key is refused before it
    /// is sent, as the broker would refuse it.
    compacted: bool,
    /// The source topic of the records sent, for the dead letters of refused ones.
    source_topic: Option<Arc<str>>,
}

impl Deliveries {
    pub fn new(spec: &KafkaSinkSpec, compacted: bool) -> Self {
        Self {
            topic: spec.topic.clone(),
            brokers: spec.brokers.clone(),
            key_field: spec.key_field.clone(),
            compacted,
            source_topic: None,
        }
    }

    /// Sends each record as one JSON message; returns the records that are
    /// themselves at fault (too large, say) and were not sent, for the
    /// dead-letter topic. Those the broker refuses later come from
    /// [`Deliveries::refused`].
    pub async fn send(
        &mut self,
        producer: &Arc<SinkProducer>,
        batch: &[Record],
    ) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for record in batch {
            if self.source_topic.is_none() {
                self.source_topic = Some(record.origin.topic.clone());
            }
            let written;
            let payload: &[u8] = match &record.raw {
                Some(raw) => raw,
                None => {
                    written = record.to_json();
                    &written
                }
            };
            let key = self
                .key_field
                .as_deref()
                .and_then(|f| message_key(record, f));
            if self.compacted && key.is_none() {
                let error = format!(
                    "topic `{}` is compacted (cleanup.policy=compact) and refuses a message without \
                     a key; the record has none ({})",
                    self.topic,
                    match &self.key_field {
                        Some(f) => format!("key_field `{f}` is absent or null"),
                        None => "the sink names no key_field".into(),
                    }
                );
                failures.push(Failure::of(record, FailedAt::Sink, error));
                continue;
            }
            let mut msg =
                BaseRecord::with_opaque_to(&self.topic, pack(&record.origin)).payload(payload);
            if let Some(k) = &key {
                msg = msg.key(k.as_slice());
            }
            // Made only once the queue stays full: most sends never wait.
            let mut watch: Option<TopicWatch> = None;
            loop {
                match producer.send(msg) {
                    Ok(()) => break,
                    // librdkafka's queue is full: serve its delivery reports,
                    // which makes room as the broker acknowledges.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m)) => {
                        msg = m;
                        let queued = producer.in_flight_count();
                        serve_reports(producer);
                        // Nothing acknowledged yet: wait for the broker.
                        if producer.in_flight_count() >= queued {
                            let watch = watch.get_or_insert_with(|| {
                                TopicWatch::new(TopicRole::Sink, &self.topic, &self.brokers)
                            });
                            if watch.due() {
                                watch.look(exists_with(producer, &self.topic)).await?;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    Err((e, _)) if is_record_error(&e) => {
                        let error = format!(
                            "the record ({} bytes with its key) does not fit topic `{}`: {e}",
                            payload.len() + key.as_ref().map_or(0, Vec::len),
                            self.topic
                        );
                        failures.push(Failure::of(record, FailedAt::Sink, error));
                        break;
                    }
                    Err((e, _)) => {
                        return Err(kafka_err(
                            format!("produce to `{}`", self.topic),
                            &self.brokers,
                        )(e));
                    }
                }
            }
        }
        serve_reports(producer);
        Ok(failures)
    }

    /// Waits until the broker acknowledged everything sent; returns the
    /// records it refused for their own fault. While acknowledgements keep
    /// it waiting, it looks for the topic every [`TOPIC_CHECK_EVERY`] (see
    /// [`TopicWatch`]).
    pub async fn drain(&self, producer: &Arc<SinkProducer>) -> Result<Vec<Failure>> {
        let start = Instant::now();
        let mut watch = TopicWatch::new(TopicRole::Sink, &self.topic, &self.brokers);
        loop {
            serve_reports(producer);
            if producer.in_flight_count() == 0 {
                break;
            }
            if watch.due() {
                watch.look(exists_with(producer, &self.topic)).await?;
                continue;
            }
            if start.elapsed() > ACK_TIMEOUT {
                return Err(WorkerError::Unacknowledged {
                    topic: self.topic.clone(),
                    brokers: self.brokers.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.refused(producer)
    }

    /// Deliveries the broker refused so far: a record's own fault becomes a
    /// dead letter of it; anything else fails the sink.
    pub fn refused(&self, producer: &SinkProducer) -> Result<Vec<Failure>> {
        let refused = std::mem::take(
            &mut *producer
                .context()
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut failures = Vec::new();
        for r in refused {
            if !is_record_error(&r.error) {
                return Err(kafka_err(
                    format!("deliver to `{}`", self.topic),
                    &self.brokers,
                )(r.error));
            }
            failures.push(Failure {
                origin: Origin {
                    topic: self.source_topic.clone().unwrap_or_else(|| "".into()),
                    partition: r.partition,
                    offset: r.offset,
                },
                at: FailedAt::Sink,
                error: format!("topic `{}` refused the record: {}", self.topic, r.error),
                payload: r
                    .payload
                    .map_or(Payload::Tombstone, |p| Payload::Json(p.to_vec())),
                key: r.key,
                headers: None,
            });
        }
        Ok(failures)
    }
}

/// Serves every delivery report librdkafka has ready, without waiting.
/// Acknowledged messages count against the producer's queue until their
/// reports are served: serving one report event per millisecond held
/// the sink at a few thousand messages a second after each time the queue
/// filled up.
fn serve_reports(producer: &SinkProducer) {
    let mut left = producer.in_flight_count();
    for _ in 0..MAX_REPORT_EVENTS {
        producer.poll(Duration::ZERO);
        let now = producer.in_flight_count();
        if now >= left {
            break;
        }
        left = now;
    }
}

/// The message key `field` gives a record: its text for strings (bytes as
/// they are), its digits for numbers, its JSON for other values; no key when
/// the field is absent or null.
fn message_key(record: &Record, field: &str) -> Option<Vec<u8>> {
    let Value::Object(map) = &record.value else {
        return None;
    };
    match map.get(field)? {
        Value::Null => None,
        Value::Bytes(b) => Some(b.to_vec()),
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        other => Some(json::to_vec(other, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: serde_json::Value) -> Record {
        Record::new(
            Value::from(v),
            Origin {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
        )
    }

    #[test]
    fn a_null_key_field_gives_no_key_as_an_absent_one_does() {
        let key = |v| message_key(&record(v), "k");
        assert_eq!(key(serde_json::json!({"k": null})), None);
        assert_eq!(key(serde_json::json!({})), None);
        assert_eq!(key(serde_json::json!({"k": "u-1"})), Some(b"u-1".to_vec()));
        assert_eq!(key(serde_json::json!({"k": 42})), Some(b"42".to_vec()));
        assert_eq!(key(serde_json::json!({"k": 1.5})), Some(b"1.5".to_vec()));
        assert_eq!(
            key(serde_json::json!({"k": "<null>"})),
            Some(b"<null>".to_vec())
        );
    }

    #[test]
    fn origins_travel_packed_in_the_delivery_opaque() {
        let origin = Origin {
            topic: "t".into(),
            partition: 12_345,
            offset: (1 << 47) + 17,
        };
        let packed = pack(&origin);
        assert_eq!((packed >> 48) as i32, 12_345);
        assert_eq!((packed & ((1 << 48) - 1)) as i64, (1 << 47) + 17);
    }
}
