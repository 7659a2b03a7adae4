//! The bare rdkafka loop `bench compare` measures Sluice against: consume,
//! parse the JSON, add one field, produce, in Kafka transactions committed
//! with the consumed offsets (`send_offsets_to_transaction`) every interval.
//! One process per core, each reading its share of the partitions from their
//! start to where they ended when it started.

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One process of the loop.
pub struct BareLoop {
    pub brokers: String,
    pub input: String,
    pub output: String,
    pub partitions: Vec<i32>,
    pub interval: Duration,
    /// Names this process's transactional id and consumer group.
    pub id: String,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl BareLoop {
    /// Runs to the end of its partitions; returns the records it wrote.
    pub fn run(&self) -> anyhow::Result<u64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("bare-loop-{}", self.id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .context("consumer")?;
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("transactional.id", format!("bare-loop-{}", self.id))
            .set("linger.ms", "5")
            .create()
            .context("producer")?;
        producer.init_transactions(TIMEOUT)?;
        let mut end = BTreeMap::new();
        let mut assignment = TopicPartitionList::new();
        for p in &self.partitions {
            let (_, high) = consumer.fetch_watermarks(&self.input, *p, TIMEOUT)?;
            end.insert(*p, high);
            assignment.add_partition_offset(&self.input, *p, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        let mut next: BTreeMap<i32, i64> = self.partitions.iter().map(|p| (*p, 0)).collect();
        let done = |next: &BTreeMap<i32, i64>| {
            end.iter().all(|(p, e)| next.get(p).is_some_and(|n| n >= e))
        };
        producer.begin_transaction()?;
        let mut last_commit = Instant::now();
        let mut written = 0u64;
        while !done(&next) {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m?;
                let mut record: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default())?;
                let n = record["n"].as_i64().unwrap_or_default();
                record["n2"] = (n + 1).into();
                let payload = serde_json::to_vec(&record)?;
                let mut out = BaseRecord::<(), [u8]>::to(&self.output).payload(&payload);
                loop {
                    match producer.send(out) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            producer.poll(Duration::from_millis(10));
                            out = back;
                        }
                        Err((e, _)) => return Err(e.into()),
                    }
                }
                written += 1;
                next.insert(m.partition(), m.offset() + 1);
            }
            producer.poll(Duration::ZERO);
            if last_commit.elapsed() >= self.interval {
                self.commit(&producer, &consumer, &next)?;
                producer.begin_transaction()?;
                last_commit = Instant::now();
            }
        }
        self.commit(&producer, &consumer, &next)?;
        Ok(written)
    }

    fn commit(
        &self,
        producer: &BaseProducer,
        consumer: &BaseConsumer,
        next: &BTreeMap<i32, i64>,
    ) -> anyhow::Result<()> {
        let mut offsets = TopicPartitionList::new();
        for (p, o) in next {
            offsets.add_partition_offset(&self.input, *p, Offset::Offset(*o))?;
        }
        let group = consumer
            .group_metadata()
            .context("the consumer has no group metadata")?;
        producer.send_offsets_to_transaction(&offsets, &group, TIMEOUT)?;
        producer.commit_transaction(TIMEOUT)?;
        Ok(())
    }
}
