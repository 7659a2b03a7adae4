use super::{client_config, is_record_error, kafka_err};
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_common::spec::KafkaSinkSpec;
use std::time::Duration;

/// Writes each record as one JSON message; a batch is done when every message
/// of it is acknowledged by the broker.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    key_field: Option<String>,
    brokers: String,
}

impl KafkaSink {
    pub fn build(spec: &KafkaSinkSpec) -> Result<Self> {
        let config = client_config(&spec.brokers, &[("linger.ms", "5")], &spec.properties);
        let producer: FutureProducer = config
            .create()
            .map_err(kafka_err("create producer", &spec.brokers))?;
        Ok(Self {
            producer,
            topic: spec.topic.clone(),
            key_field: spec.key_field.clone(),
            brokers: spec.brokers.clone(),
        })
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        let mut pending = Vec::with_capacity(batch.len());
        for record in &batch {
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
            let mut msg = FutureRecord::to(&self.topic).payload(&payload);
            if let Some(k) = &key {
                msg = msg.key(k);
            }
            let delivery = match self.producer.send_result(msg) {
                Ok(d) => d,
                Err((e, _)) if is_record_error(&e) => {
                    failures.push(Failure::of(record, FailedAt::Sink, e.to_string()));
                    continue;
                }
                Err((e, _)) => {
                    return Err(kafka_err(
                        format!("produce to `{}`", self.topic),
                        &self.brokers,
                    )(e));
                }
            };
            pending.push(delivery);
        }
        for delivery in pending {
            match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((e, _)))) => {
                    return Err(kafka_err(
                        format!("deliver to `{}`", self.topic),
                        &self.brokers,
                    )(e));
                }
                Ok(Err(_)) | Err(_) => {
                    return Err(WorkerError::Unacknowledged {
                        topic: self.topic.clone(),
                        brokers: self.brokers.clone(),
                    });
                }
            }
        }
        Ok(failures)
    }
}
