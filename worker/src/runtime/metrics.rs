use crate::connectors::kafka::OutOfRange;
use sluice_proto::{OffsetReset, TaskMetrics};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Offset resets a task keeps for its reports: the coordinator records each
/// once, so only those since the last report matter.
const KEPT_RESETS: usize = 20;

/// What one subtask tells the coordinator with every report: its counters,
/// and a source's latest offset resets.
#[derive(Default, Debug)]
pub struct Metrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Offsets a source went past unread: its partition no longer held them.
    pub offsets_skipped: AtomicU64,
    resets: Mutex<Resets>,
}

#[derive(Default, Debug)]
struct Resets {
    seq: u64,
    latest: Vec<OffsetReset>,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TaskMetrics {
        TaskMetrics {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            offsets_skipped: self.offsets_skipped.load(Ordering::Relaxed),
        }
    }

    /// A source moved a partition of `topic` past offsets it no longer
    /// holds, at `at_ms` (ms since the epoch).
    pub fn offset_reset(&self, topic: &str, r: OutOfRange, at_ms: i64) {
        let skipped = (r.low - r.position).max(0) as u64;
        self.offsets_skipped.fetch_add(skipped, Ordering::Relaxed);
        let mut resets = self.resets.lock().unwrap_or_else(|p| p.into_inner());
        resets.seq += 1;
        let seq = resets.seq;
        resets.latest.push(OffsetReset {
            seq,
            at_ms,
            topic: topic.to_string(),
            partition: r.partition,
            position: r.position,
            low: r.low,
            high: r.high,
        });
        let drop = resets.latest.len().saturating_sub(KEPT_RESETS);
        resets.latest.drain(..drop);
    }

    /// The latest offset resets, oldest first.
    pub fn offset_resets(&self) -> Vec<OffsetReset> {
        let resets = self.resets.lock().unwrap_or_else(|p| p.into_inner());
        resets.latest.clone()
    }
}
