//! Messages in flight to a Kafka topic. Sinks do not wait for the broker
//! after every batch: they wait when too much is in flight, and for
//! everything at a barrier, which is all a checkpoint needs.

use super::{is_record_error, kafka_err};
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::VecDeque;
use std::time::Duration;

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
            let payload = match serde_json::to_vec(&record.value) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(Failure::of(record, FailedAt::Sink, e.to_string()));
                    continue;
                }
            };
            let key = self.key_field.as_deref().and_then(|f| match &record.value {
                vrl::value::Value::Object(map) => {
                    map.get(f).map(|v| v.to_string_lossy().into_owned())
                }
                _ => None,
            });
            let mut msg = FutureRecord::to(&topic).payload(&payload);
            if let Some(k) = &key {
                msg = msg.key(k);
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
                        failures.push(Failure::of(record, FailedAt::Sink, e.to_string()));
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
