use super::deliveries::{self, Deliveries, SinkProducer};
use super::{client_config, topic_limits, with_limit};
use crate::error::Result;
use crate::record::{Failure, Record};
use sluice_common::spec::KafkaSinkSpec;
use std::sync::Arc;

/// Writes each record as one JSON message, at least once: everything sent
/// before a barrier is acknowledged before the barrier is.
pub struct KafkaSink {
    producer: super::DetachedDrop<Arc<SinkProducer>>,
    deliveries: Deliveries,
}

impl KafkaSink {
    /// Records larger than the topic takes go to the dead-letter topic
    /// instead of failing the job.
    pub async fn build(spec: &KafkaSinkSpec) -> Result<Self> {
        let limits = topic_limits(&spec.brokers, &spec.properties, &spec.topic).await;
        let config = client_config(
            &spec.brokers,
            &[
                ("linger.ms", "5"),
                // Asking for the metadata of a deleted topic must not
                // create it again with the broker's defaults.
                ("allow.auto.create.topics", "false"),
                ("queue.buffering.max.messages", deliveries::QUEUED_MESSAGES),
            ],
            &with_limit(&spec.properties, &limits.max_message_bytes.to_string()),
        );
        // Wrapped first: a failed start must not destroy it on this thread.
        let producer = super::DetachedDrop::new(deliveries::create(
            &config,
            "create producer",
            &spec.brokers,
        )?);
        deliveries::learn_topic(&producer, &spec.topic, &spec.brokers).await?;
        Ok(Self {
            producer,
            deliveries: Deliveries::new(spec, limits.compacted),
        })
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = self.deliveries.send(&self.producer, &batch).await?;
        failures.extend(self.deliveries.refused(&self.producer)?);
        Ok(failures)
    }

    /// At a barrier: every message sent so far is acknowledged; returns
    /// the records the broker refused for their own fault.
    pub async fn pre_commit(&mut self) -> Result<Vec<Failure>> {
        self.deliveries.drain(&self.producer).await
    }
}
