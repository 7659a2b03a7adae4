//! Messages in flight to a Kafka topic. Sinks do not wait for the broker
//! after every batch: they wait when too much is in flight, and for
//! everything at a barrier, which is all a checkpoint needs.

use super::{is_record_error, kafka_err};
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record, json};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::VecDeque;
use std::time::Duration;
use vrl::value::Value;

/// Messages awaiting the broker's acknowledgement before the oldest is awaited.
const MAX_IN_FLIGHT: usize = 20_000;
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Deliveries {
    pending: VecDeque<DeliveryFuture>,
    topic: String,
    brokers: String,
    key_field: Option<String>,
}

impl Deliveries {
    pub fn new(topic: &str, brokers: &str, key_field: Option<String>) -> Self {
        Self {
            pending: VecDeque::new(),
            topic: topic.to_string(),
            brokers: brokers.to_string(),
            key_field,
        }
    }

    /// Sends each record as one JSON message; returns the records that are
    /// themselves at fault (too large, say), for the dead-letter topic.
    pub async fn send(
        &mut self,
        producer: &FutureProducer,
        batch: &[Record],
    ) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        let topic = self.topic.clone();
        for record in batch {
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
            let mut msg = FutureRecord::to(&topic).payload(payload);
            if let Some(k) = &key {
                msg = msg.key(k.as_slice());
            }
            loop {
                match producer.send_result(msg) {
                    Ok(delivery) => {
                        self.pending.push_back(delivery);
                        break;
                    }
                    // librdkafka's queue is full: make room by awaiting the oldest.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), m))
                        if !self.pending.is_empty() =>
                    {
                        msg = m;
                        self.await_oldest().await?;
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
            while self.pending.len() > MAX_IN_FLIGHT {
                self.await_oldest().await?;
            }
        }
        Ok(failures)
    }

    /// Waits until the broker acknowledged everything sent.
    pub async fn drain(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            self.await_oldest().await?;
        }
        Ok(())
    }

    async fn await_oldest(&mut self) -> Result<()> {
        let Some(delivery) = self.pending.pop_front() else {
            return Ok(());
        };
        match tokio::time::timeout(ACK_TIMEOUT, delivery).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err((e, _)))) => Err(kafka_err(
                format!("deliver to `{}`", self.topic),
                &self.brokers,
            )(e)),
            Ok(Err(_)) | Err(_) => Err(WorkerError::Unacknowledged {
                topic: self.topic.clone(),
                brokers: self.brokers.clone(),
            }),
        }
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
    use crate::record::Origin;

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
}
