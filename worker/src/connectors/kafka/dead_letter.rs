//! The dead-letter topic: one JSON message per failed record, with its
//! error, the step that failed, where it was read, its Kafka key and headers
//! and its payload, always small enough for the topic.

use super::topic_watch::TopicWatch;
use super::{TOPIC_CHECK_EVERY, client_config, kafka_err, topic_exists, topic_limits};
use crate::error::{Result, TopicRole, WorkerError};
use crate::record::{Failure, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value as Json, json};
use sluice_common::spec::DeadLetterSpec;
use std::time::{Duration, Instant};

const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes failed records to the dead-letter topic, at least once.
pub struct DeadLetterWriter {
    producer: super::DetachedDrop<FutureProducer>,
    topic: String,
    brokers: String,
    job: String,
    /// Largest dead letter the topic takes, in bytes (key and body).
    limit: usize,
    /// The topic is compacted: every dead letter needs a key.
    compacted: bool,
}

impl DeadLetterWriter {
    /// Connects to the dead-letter topic's brokers (the source's unless the
    /// spec names others) and reads how large a message the topic takes.
    pub async fn build(spec: &DeadLetterSpec, default_brokers: &str, job: &str) -> Result<Self> {
        let kafka = &spec.kafka;
        let brokers = kafka
            .brokers
            .clone()
            .unwrap_or_else(|| default_brokers.to_string());
        let limits = topic_limits(&brokers, &kafka.properties, &kafka.topic).await;
        let producer: FutureProducer = client_config(
            &brokers,
            &[("linger.ms", "5"), ("allow.auto.create.topics", "false")],
            &kafka.properties,
        )
        .create()
        .map_err(kafka_err("create dead-letter producer", &brokers))?;
        Ok(Self {
            producer: super::DetachedDrop::new(producer),
            topic: kafka.topic.clone(),
            brokers,
            job: job.to_string(),
            limit: limits.max_message_bytes,
            compacted: limits.compacted,
        })
    }

    /// Writes every failure and waits until the broker took them; returns
    /// how many the topic refused even cut down (logged, and dropped). A
    /// dead letter refused for its size is written again without its
    /// payload; only the topic being unavailable is an error.
    pub async fn write(&self, failures: &[Failure]) -> Result<usize> {
        let mut dropped = 0;
        let mut pending = Vec::with_capacity(failures.len());
        for f in failures {
            let (mut key, body) = letter(&self.job, f, self.limit);
            if self.compacted && key.is_none() {
                // Where the record was read names it uniquely.
                key = Some(
                    format!(
                        "{}/{}/{}",
                        f.origin.topic, f.origin.partition, f.origin.offset
                    )
                    .into_bytes(),
                );
            }
            let delivery = loop {
                let mut record = FutureRecord::to(&self.topic).payload(&body);
                if let Some(k) = &key {
                    record = record.key(k.as_slice());
                }
                match self.producer.send_result(record) {
                    Ok(d) => break Some(d),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) if super::is_record_error(&e) => {
                        dropped += usize::from(!self.write_bare(f, &e).await?);
                        break None;
                    }
                    Err((e, _)) => return Err(self.unavailable(e.to_string())),
                }
            };
            pending.push((f, delivery));
        }
        for (f, delivery) in pending {
            let Some(mut delivery) = delivery else {
                continue;
            };
            let waiting = Instant::now();
            let mut watch = TopicWatch::new(TopicRole::DeadLetter, &self.topic, &self.brokers);
            let outcome = loop {
                match tokio::time::timeout(TOPIC_CHECK_EVERY, &mut delivery).await {
                    Ok(outcome) => break outcome,
                    Err(_) => {
                        let (producer, topic) = ((*self.producer).clone(), self.topic.clone());
                        watch
                            .look(move || {
                                topic_exists(producer.client(), &topic, TOPIC_CHECK_EVERY)
                            })
                            .await?;
                        if waiting.elapsed() >= ACK_TIMEOUT {
                            return Err(self.unavailable("no acknowledgement within 60s".into()));
                        }
                    }
                }
            };
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if super::is_record_error(&e) => {
                    dropped += usize::from(!self.write_bare(f, &e).await?);
                }
                Ok(Err((e, _))) => return Err(self.unavailable(e.to_string())),
                Err(_) => return Err(self.unavailable("the delivery was cancelled".into())),
            }
        }
        Ok(dropped)
    }

    /// The dead letter without payload, key or headers, for when the topic
    /// refused the full one for its size: the error and where the record was
    /// read still get recorded. Refused again, it is logged and dropped:
    /// `false`.
    async fn write_bare(&self, f: &Failure, refused: &KafkaError) -> Result<bool> {
        let mut body = envelope(&self.job, f);
        body.insert("payload_size".into(), f.payload.len().into());
        body.insert("truncated".into(), true.into());
        body.insert("dropped".into(), json!(["payload", "key", "headers"]));
        body.insert(
            "note".into(),
            format!("the topic refused the full dead letter: {refused}").into(),
        );
        let body = Json::Object(body).to_string();
        let mut record = FutureRecord::to(&self.topic).payload(&body);
        let key = format!(
            "{}/{}/{}",
            f.origin.topic, f.origin.partition, f.origin.offset
        );
        if self.compacted {
            record = record.key(&key);
        }
        let sent = self.producer.send(record, ACK_TIMEOUT).await;
        match sent {
            Ok(_) => Ok(true),
            Err((e, _)) if super::is_record_error(&e) => {
                tracing::error!(topic = %self.topic, record_topic = %f.origin.topic, partition = f.origin.partition,
                    offset = f.origin.offset, error = %e, "dead letter refused even without its payload; dropped");
                Ok(false)
            }
            Err((e, _)) => Err(self.unavailable(e.to_string())),
        }
    }

    fn unavailable(&self, reason: String) -> WorkerError {
        WorkerError::DeadLetter {
            topic: format!("{} ({})", self.topic, self.brokers),
            reason,
        }
    }
}

/// The dead letter of `f` as its Kafka key (the record's own) and JSON body,
/// the payload cut so the whole fits `limit` bytes.
fn letter(job: &str, f: &Failure, limit: usize) -> (Option<Vec<u8>>, String) {
    let mut body = envelope(job, f);
    // A key too large to repeat as the message key still travels in the body.
    let mut key = f
        .key
        .as_ref()
        .filter(|k| k.len() <= limit / 4)
        .map(|k| k.to_vec());
    if let Some(k) = &f.key {
        insert_bytes(&mut body, "key", k);
    }
    if let Some(headers) = &f.headers {
        let headers: Vec<Json> = headers
            .iter()
            .map(|(name, value)| {
                let mut h = Map::new();
                h.insert("name".into(), name.clone().into());
                match value {
                    None => {
                        h.insert("value".into(), Json::Null);
                    }
                    Some(v) => insert_bytes(&mut h, "value", v),
                }
                Json::Object(h)
            })
            .collect();
        body.insert("headers".into(), headers.into());
    }
    // Headers, then the key, give way when even without its payload the
    // letter would not fit; the letter says what it lacks.
    let mut dropped = Vec::new();
    let without_payload = |body: &Map<String, Json>, key: &Option<Vec<u8>>| {
        with_payload(body.clone(), &f.payload, 0).len() + key.as_ref().map_or(0, Vec::len)
    };
    if without_payload(&body, &key) > limit && body.remove("headers").is_some() {
        dropped.push("headers");
    }
    if without_payload(&body, &key) > limit {
        body.remove("key");
        body.remove("key_base64");
        key = None;
        dropped.push("key");
    }
    if !dropped.is_empty() {
        body.insert("dropped".into(), dropped.into());
    }
    let budget = limit.saturating_sub(key.as_ref().map_or(0, Vec::len));
    let full = with_payload(body.clone(), &f.payload, f.payload.len());
    if full.len() <= budget {
        return (key, full);
    }
    body.insert("truncated".into(), true.into());
    body.insert("payload_size".into(), f.payload.len().into());
    let room = budget.saturating_sub(with_payload(body.clone(), &f.payload, 0).len());
    let binary = std::str::from_utf8(f.payload.bytes()).is_err();
    let mut keep = if binary { room / 4 * 3 } else { room };
    loop {
        let text = with_payload(body.clone(), &f.payload, keep);
        // Escaping can grow text up to six times: shrink until it fits.
        if text.len() <= budget || keep == 0 {
            return (key, text);
        }
        keep = keep.saturating_sub((text.len() - budget).max(keep / 8));
    }
}

/// What every dead letter says: which job, what went wrong, where.
fn envelope(job: &str, f: &Failure) -> Map<String, Json> {
    let mut body = Map::new();
    body.insert("job".into(), job.into());
    body.insert("error".into(), cut_error(&f.error).into());
    body.insert("fault".into(), sluice_common::Fault::Record.as_str().into());
    body.insert("failed_at".into(), f.at.as_str().into());
    body.insert("topic".into(), (*f.origin.topic).into());
    body.insert("partition".into(), f.origin.partition.into());
    body.insert("offset".into(), f.origin.offset.into());
    body
}

/// Errors may quote the whole value that failed: a few KiB of one say why.
const ERROR_BYTES: usize = 4096;

fn cut_error(error: &str) -> String {
    if error.len() <= ERROR_BYTES {
        return error.to_string();
    }
    let mut end = ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &error[..end], error.len() - end)
}

/// The body with at most `keep` bytes of the payload: text as `payload`,
/// anything not UTF-8 as `payload_base64`, a tombstone as `tombstone: true`
/// with a null payload.
fn with_payload(mut body: Map<String, Json>, payload: &Payload, keep: usize) -> String {
    match payload {
        Payload::Tombstone => {
            body.insert("tombstone".into(), true.into());
            body.insert("payload".into(), Json::Null);
        }
        Payload::Raw(_) | Payload::Json(_) => {
            let bytes = payload.bytes();
            let cut = &bytes[..keep.min(bytes.len())];
            if std::str::from_utf8(bytes).is_ok() {
                let text = match std::str::from_utf8(cut) {
                    Ok(t) => t,
                    // Cut inside a character: end before it.
                    Err(e) => std::str::from_utf8(&cut[..e.valid_up_to()]).unwrap_or_default(),
                };
                body.insert("payload".into(), text.into());
            } else {
                body.insert("payload_base64".into(), BASE64.encode(cut).into());
            }
        }
    }
    Json::Object(body).to_string()
}

/// `name` as text when UTF-8, else `<name>_base64`.
fn insert_bytes(body: &mut Map<String, Json>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => body.insert(name.into(), text.into()),
        Err(_) => body.insert(format!("{name}_base64"), BASE64.encode(bytes).into()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FailedAt, Origin};
    use bytes::Bytes;
    use std::sync::Arc;

    fn failure(payload: Payload) -> Failure {
        Failure {
            origin: Origin {
                topic: "in".into(),
                partition: 0,
                offset: 4,
            },
            at: FailedAt::Decode,
            error: "not UTF-8".into(),
            payload,
            key: Some(Bytes::from_static(b"k4")),
            headers: Some(Arc::new(vec![
                ("trace".into(), Some(Bytes::from_static(b"abc"))),
                ("bin".into(), Some(Bytes::from_static(b"\xff"))),
                ("empty".into(), None),
                ("trace".into(), Some(Bytes::from_static(b"again"))),
            ])),
        }
    }

    fn body(f: &Failure, limit: usize) -> (Option<Vec<u8>>, Json) {
        let (key, text) = letter("job-1", f, limit);
        assert!(text.len() <= limit, "{} > {limit}", text.len());
        (key, serde_json::from_str(&text).expect("JSON"))
    }

    #[test]
    fn raw_bytes_are_recoverable_and_a_tombstone_is_not_an_empty_value() {
        let raw = Bytes::from_static(b"{\"id\":4,\"name\":\"\xff\xfe\"}");
        let (key, v) = body(&failure(Payload::Raw(raw.clone())), 1 << 20);
        assert_eq!(key.as_deref(), Some(&b"k4"[..]));
        let decoded = BASE64
            .decode(v["payload_base64"].as_str().expect("base64"))
            .expect("valid base64");
        assert_eq!(decoded, raw.as_ref());
        assert_eq!(v["key"], "k4");
        assert_eq!(
            v["headers"],
            json!([
                {"name": "trace", "value": "abc"},
                {"name": "bin", "value_base64": "/w=="},
                {"name": "empty", "value": null},
                {"name": "trace", "value": "again"},
            ]),
            "every header in order, repeated names too"
        );
        assert_eq!(
            (v["offset"].as_i64(), v["failed_at"].as_str()),
            (Some(4), Some("decode"))
        );

        let (_, tomb) = body(&failure(Payload::Tombstone), 1 << 20);
        let (_, empty) = body(&failure(Payload::Raw(Bytes::new())), 1 << 20);
        assert_eq!(tomb["tombstone"], true);
        assert_eq!(tomb["payload"], Json::Null);
        assert_eq!(empty["payload"], "");
        assert_eq!(empty.get("tombstone"), None);
    }

    #[test]
    fn a_key_and_headers_too_large_give_way_and_the_letter_says_so() {
        let mut f = failure(Payload::Raw(Bytes::from_static(b"8 bytes!")));
        f.key = Some(Bytes::from(vec![0xfe; 900_000]));
        f.headers = Some(Arc::new(vec![(
            "big".into(),
            Some(Bytes::from(vec![b'h'; 900_000])),
        )]));
        let (key, v) = body(&f, 100_000);
        assert_eq!(key, None);
        assert_eq!(v["dropped"], json!(["headers", "key"]));
        assert_eq!(v["payload"], "8 bytes!", "the small payload stays whole");
        assert_eq!(v.get("truncated"), None);
    }

    #[test]
    fn an_error_quoting_a_huge_value_is_cut() {
        let mut f = failure(Payload::Json(b"{}".to_vec()));
        f.error = format!("invalid timestamp \"{}\"", "é".repeat(1_000_000));
        let (_, v) = body(&f, 100_000);
        let error = v["error"].as_str().expect("error");
        assert!(
            error.len() < 5000 && error.ends_with("more bytes)"),
            "{}",
            &error[..100]
        );
    }

    #[test]
    fn a_payload_too_large_for_the_topic_is_truncated_and_says_so() {
        let big = Payload::Json(format!("{{\"blob\":\"{}\"}}", "x".repeat(1_500_000)).into_bytes());
        let (_, v) = body(&failure(big), 1_000_000 - 1024);
        assert_eq!(v["truncated"], true);
        assert_eq!(v["payload_size"], 1_500_011);
        assert!(
            v["payload"]
                .as_str()
                .expect("text")
                .starts_with("{\"blob\":\"xxx")
        );
        // Escaping grows quotes and control characters: still under the limit.
        let escaped = Payload::Raw(Bytes::from(vec![b'"'; 300_000]));
        let (_, v) = body(&failure(escaped), 100_000);
        assert_eq!(v["truncated"], true);
        let binary = Payload::Raw(Bytes::from(vec![0xff; 300_000]));
        let (_, v) = body(&failure(binary), 100_000);
        assert!(v["payload_base64"].as_str().is_some());
    }
}
