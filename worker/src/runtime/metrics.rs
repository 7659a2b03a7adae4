use crate::connectors::kafka::OutOfRange;
use sluice_proto::{OffsetReset, TaskMetrics};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

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
    /// Dead letters the dead-letter topic refused even cut down.
    pub dead_letters_dropped: AtomicU64,
    resets: Mutex<Resets>,
    /// Since when (epoch milliseconds) the sink's open transaction has held
    /// records; 0 when it holds none.
    open_transaction_since_ms: AtomicU64,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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

    /// Records since when the sink's open transaction has held records.
    pub fn set_open_transaction(&self, since: Option<SystemTime>) {
        self.open_transaction_since_ms
            .store(since.map_or(0, epoch_ms), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TaskMetrics {
        let since = self.open_transaction_since_ms.load(Ordering::Relaxed);
        TaskMetrics {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            offsets_skipped: self.offsets_skipped.load(Ordering::Relaxed),
            dead_letters_dropped: self.dead_letters_dropped.load(Ordering::Relaxed),
            open_transaction_age_ms: match since {
                0 => 0,
                since => epoch_ms(SystemTime::now()).saturating_sub(since).max(1),
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_transaction_age_runs_from_its_first_record() {
        let m = Metrics::default();
        assert_eq!(m.snapshot().open_transaction_age_ms, 0);
        m.set_open_transaction(Some(SystemTime::now() - Duration::from_secs(30)));
        let age = m.snapshot().open_transaction_age_ms;
        assert!((30_000..31_000).contains(&age), "{age}");
        m.set_open_transaction(None);
        assert_eq!(m.snapshot().open_transaction_age_ms, 0);
    }
}
