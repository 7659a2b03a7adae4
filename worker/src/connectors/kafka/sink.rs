use super::deliveries::Deliveries;
use super::kafka_err;
use super::{client_config, message_limit, with_limit};
use crate::error::Result;
use crate::record::{Failure, Record};
use rdkafka::producer::FutureProducer;
use sluice_common::spec::KafkaSinkSpec;

/// Writes each record as one JSON message, at least once: everything sent
/// before a barrier is acknowledged before the barrier is.
pub struct KafkaSink {
    producer: super::DetachedDrop<FutureProducer>,
    deliveries: Deliveries,
}

impl KafkaSink {
    /// Records larger than the topic takes go to the dead-letter topic
    /// instead of failing the job.
    pub async fn build(spec: &KafkaSinkSpec) -> Result<Self> {
        let limit = message_limit(&spec.brokers, &spec.properties, &spec.topic)
            .await
            .to_string();
        let config = client_config(
            &spec.brokers,
            &[("linger.ms", "5")],
            &with_limit(&spec.properties, &limit),
        );
        let producer: FutureProducer = config
            .create()
            .map_err(kafka_err("create producer", &spec.brokers))?;
        Ok(Self {
            producer: super::DetachedDrop::new(producer),
            deliveries: Deliveries::new(&spec.topic, &spec.brokers, spec.key_field.clone()),
        })
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        self.deliveries.send(&self.producer, &batch).await
    }

    /// At a barrier: every message sent so far is acknowledged.
    pub async fn pre_commit(&mut self) -> Result<()> {
        self.deliveries.drain().await
    }
}
