use super::blackhole::BlackholeSink;
use super::cassandra::CassandraSink;
use super::kafka::KafkaSink;
use crate::error::Result;
use crate::record::{Failure, Record};
use sluice_common::spec::SinkSpec;

/// The sink of a job's last stage.
pub enum SinkWriter {
    Kafka(KafkaSink),
    Cassandra(Box<CassandraSink>),
    Blackhole(BlackholeSink),
}

impl SinkWriter {
    pub async fn build(spec: &SinkSpec) -> Result<Self> {
        Ok(match spec {
            SinkSpec::Kafka(k) => Self::Kafka(KafkaSink::build(k)?),
            SinkSpec::Cassandra(c) => Self::Cassandra(Box::new(CassandraSink::build(c).await?)),
            SinkSpec::Blackhole(b) => Self::Blackhole(BlackholeSink::build(b)),
        })
    }

    /// Writes a batch durably; returns the records the sink could not take.
    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        match self {
            Self::Kafka(s) => s.write(batch).await,
            Self::Cassandra(s) => s.write(batch).await,
            Self::Blackhole(s) => Ok(s.write(batch).await),
        }
    }
}
