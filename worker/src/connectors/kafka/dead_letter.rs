use super::{client_config, kafka_err};
use crate::error::{Result, WorkerError};
use crate::record::Failure;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_common::spec::DeadLetterSpec;
use std::time::Duration;

/// Writes failed records to the dead-letter topic as JSON with their error,
/// the step that failed and where the record was read.
pub struct DeadLetterWriter {
    producer: super::DetachedDrop<FutureProducer>,
    topic: String,
    brokers: String,
    job: String,
}

impl DeadLetterWriter {
    pub fn build(spec: &DeadLetterSpec, default_brokers: &str, job: &str) -> Result<Self> {
        let brokers = spec
            .kafka
            .brokers
            .clone()
            .unwrap_or_else(|| default_brokers.to_string());
        let producer: FutureProducer =
            client_config(&brokers, &[("linger.ms", "5")], &Default::default())
                .create()
                .map_err(kafka_err("create dead-letter producer", &brokers))?;
        Ok(Self {
            producer: super::DetachedDrop::new(producer),
            topic: spec.kafka.topic.clone(),
            brokers,
            job: job.to_string(),
        })
    }

    pub async fn write(&self, failures: &[Failure]) -> Result<()> {
        let mut pending = Vec::with_capacity(failures.len());
        for f in failures {
            let body = serde_json::json!({
                "job": self.job,
                "error": f.error,
                "failed_at": f.at.as_str(),
                "topic": &*f.origin.topic,
                "partition": f.origin.partition,
                "offset": f.origin.offset,
                "payload": f.payload,
            })
            .to_string();
            let key = format!(
                "{}/{}/{}",
                f.origin.topic, f.origin.partition, f.origin.offset
            );
            let delivery = self
                .producer
                .send_result(FutureRecord::to(&self.topic).payload(&body).key(&key))
                .map_err(|(e, _)| self.unavailable(e.to_string()))?;
            pending.push(delivery);
        }
        for delivery in pending {
            match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err((e, _)))) => return Err(self.unavailable(e.to_string())),
                Ok(Err(_)) | Err(_) => {
                    return Err(self.unavailable("no acknowledgement within 60s".into()));
                }
            }
        }
        Ok(())
    }

    fn unavailable(&self, reason: String) -> WorkerError {
        WorkerError::DeadLetter {
            topic: format!("{} ({})", self.topic, self.brokers),
            reason,
        }
    }
}
