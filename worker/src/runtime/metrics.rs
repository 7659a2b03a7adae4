use sluice_proto::TaskMetrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Counters of one subtask, read by heartbeats.
#[derive(Default, Debug)]
pub struct Metrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Since when (epoch milliseconds) the sink's open transaction has held
    /// records; 0 when it holds none.
    open_transaction_since_ms: AtomicU64,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
            open_transaction_age_ms: match since {
                0 => 0,
                since => epoch_ms(SystemTime::now()).saturating_sub(since).max(1),
            },
        }
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
