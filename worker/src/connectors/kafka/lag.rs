//! How far a source is behind its partitions' ends, measured live: the
//! source publishes where it reads each partition, librdkafka's statistics
//! (every [`STATISTICS_INTERVAL_MS`]) tell each partition's high watermark as
//! its last fetch response gave it, and the metrics read both. No request of
//! its own: the high watermark comes with the fetches the source makes anyway.

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;
use sluice_proto::SourcePartitionLag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How often librdkafka hands a source its statistics, in ms.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Offsets {
    /// The next offset to read, as far as records were handed on.
    position: i64,
    /// The high watermark the broker last told; -1 until it did.
    high: i64,
    /// Offsets the source went past unread: retention deleted them first.
    skipped: u64,
}

#[derive(Debug, Default)]
struct Inner {
    topic: String,
    partitions: BTreeMap<i32, Offsets>,
}

/// Each partition a source reads: its position, high watermark and skipped
/// offsets. Shared by the source, its consumer's statistics and the metrics.
#[derive(Debug, Default)]
pub struct PartitionOffsets {
    inner: Mutex<Inner>,
}

/// One partition as the metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: i32,
    pub position: i64,
    /// -1 while not known yet.
    pub high_watermark: i64,
    /// High watermark minus position, at least 0; 0 while not known.
    pub lag: i64,
    pub skipped: u64,
}

impl PartitionOffsets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_topic(&self, topic: &str) {
        self.lock().topic = topic.to_string();
    }

    pub fn topic(&self) -> String {
        self.lock().topic.clone()
    }

    /// The source reads these partitions from these positions now.
    pub fn set_positions<'a>(&self, positions: impl IntoIterator<Item = (&'a i32, &'a i64)>) {
        let mut inner = self.lock();
        for (p, position) in positions {
            inner
                .partitions
                .entry(*p)
                .or_insert(Offsets {
                    high: -1,
                    ..Offsets::default()
                })
                .position = *position;
        }
    }

    /// The source went past `skipped` offsets of `partition` it never read.
    pub fn add_skipped(&self, partition: i32, skipped: u64) {
        if let Some(o) = self.lock().partitions.get_mut(&partition) {
            o.skipped += skipped;
        }
    }

    fn set_high_watermark(&self, topic: &str, partition: i32, high: i64) {
        let mut inner = self.lock();
        if inner.topic != topic {
            return;
        }
        // Only partitions the source reads: the statistics list every
        // partition of the topic the consumer knows of.
        if let Some(o) = inner.partitions.get_mut(&partition) {
            o.high = high;
        }
    }

    /// Every partition the source reads, in order.
    pub fn states(&self) -> Vec<PartitionState> {
        self.lock()
            .partitions
            .iter()
            .map(|(p, o)| PartitionState {
                partition: *p,
                position: o.position,
                high_watermark: o.high,
                lag: if o.high < 0 {
                    0
                } else {
                    (o.high - o.position).max(0)
                },
                skipped: o.skipped,
            })
            .collect()
    }

    /// The partitions as a task report carries them.
    pub fn report(&self) -> Vec<SourcePartitionLag> {
        let topic = self.topic();
        self.states()
            .into_iter()
            .map(|s| SourcePartitionLag {
                topic: topic.clone(),
                partition: s.partition,
                position: s.position,
                high_watermark: s.high_watermark,
                lag: s.lag,
            })
            .collect()
    }
}

/// The client context of a source's consumer: takes each partition's high
/// watermark from librdkafka's statistics (on the thread polling the consumer).
pub struct SourceContext {
    pub offsets: Arc<PartitionOffsets>,
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, p) in &topic.partitions {
                // librdkafka's own "unassigned" partition is -1.
                if *partition >= 0 && p.hi_offset >= 0 {
                    self.offsets
                        .set_high_watermark(name, *partition, p.hi_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_high_watermark_past_the_position() {
        let o = PartitionOffsets::default();
        o.set_topic("t");
        o.set_positions(&BTreeMap::from([(0, 10), (1, 5)]));
        assert_eq!(o.states()[0].lag, 0, "no high watermark known yet");
        assert_eq!(o.states()[0].high_watermark, -1);
        o.set_high_watermark("t", 0, 25);
        o.set_high_watermark("t", 7, 99);
        o.set_high_watermark("other", 1, 99);
        let states = o.states();
        assert_eq!(states.len(), 2, "only partitions the source reads");
        assert_eq!((states[0].position, states[0].lag), (10, 15));
        assert_eq!(states[1].high_watermark, -1, "another topic's partition 1");
        o.set_positions(&BTreeMap::from([(0, 30)]));
        assert_eq!(o.states()[0].lag, 0, "a stale high watermark is no lag");
        o.add_skipped(1, 4);
        assert_eq!(o.report()[1].topic, "t");
        assert_eq!(o.states()[1].skipped, 4);
    }
}
