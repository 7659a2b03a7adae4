use crate::record::{Failure, Record};
use sluice_common::spec::BlackholeSinkSpec;
use std::time::Duration;

/// Discards records, optionally no faster than a set rate: a stand-in for a
/// slow downstream system when measuring throughput or backpressure.
pub struct BlackholeSink {
    per_record: Option<Duration>,
}

impl BlackholeSink {
    pub fn build(spec: &BlackholeSinkSpec) -> Self {
        Self {
            per_record: spec
                .records_per_second
                .map(|r| Duration::from_secs_f64(1.0 / r as f64)),
        }
    }

    pub async fn write(&mut self, batch: Vec<Record>) -> Vec<Failure> {
        if let Some(per) = self.per_record {
            tokio::time::sleep(per * batch.len() as u32).await;
        }
        Vec::new()
    }
}
