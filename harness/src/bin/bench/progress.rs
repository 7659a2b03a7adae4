//! What an outside observer sees of one `bench compare` run: when every
//! record of the run has become visible to a `read_committed` consumer (the
//! run's end, taken the same way for every system), and the steady rate from
//! the output topic's end offsets.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Watches one run's output topic from the moment the run starts.
pub struct Progress {
    /// When the run started: every time of the run is counted from here.
    start: Instant,
    stop: Arc<AtomicBool>,
    /// `(seconds since start, sum of end offsets)`, every 50 ms.
    samples: JoinHandle<Vec<(f64, u64)>>,
    /// Seconds from `start` until a `read_committed` consumer had read
    /// `size` records; `None` until then.
    visible: watch::Receiver<Option<f64>>,
    reader: JoinHandle<()>,
}

impl Progress {
    /// Starts watching `output` (of `partitions` partitions) for a run of
    /// `size` records; the run's clock starts now.
    pub fn watch(brokers: &str, output: &str, partitions: i32, size: usize) -> Self {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let samples = {
            let (brokers, output, stop) = (brokers.to_string(), output.to_string(), stop.clone());
            tokio::task::spawn_blocking(move || {
                sample_end_offsets(&brokers, &output, partitions, start, &stop)
            })
        };
        let (tx, visible) = watch::channel(None);
        let reader = {
            let (brokers, output, stop) = (brokers.to_string(), output.to_string(), stop.clone());
            tokio::task::spawn_blocking(move || {
                if let Some(seconds) = read_committed(&brokers, &output, size, start, &stop) {
                    tx.send_replace(Some(seconds));
                }
            })
        };
        Self {
            start,
            stop,
            samples,
            visible,
            reader,
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Seconds from the start until every record was visible to a
    /// `read_committed` consumer, once they are.
    pub fn visible(&self) -> Option<f64> {
        *self.visible.borrow()
    }

    /// Waits until every record is visible, at most `limit` after the start.
    pub async fn all_visible(&mut self, limit: Duration) -> anyhow::Result<f64> {
        let deadline = self.start + limit;
        let seen =
            tokio::time::timeout_at(deadline.into(), self.visible.wait_for(|v| v.is_some())).await;
        match seen {
            Ok(Ok(v)) => v.ok_or_else(|| anyhow::anyhow!("no records seen")),
            Ok(Err(_)) => {
                anyhow::bail!("the output reader stopped before every record was visible")
            }
            Err(_) => anyhow::bail!("not every record visible {limit:?} after the start"),
        }
    }

    /// Stops watching; the records/s while the sum of end offsets went from
    /// 20% to 80% of `size` (NaN when the samples do not cover that).
    pub async fn steady_rate(self, size: usize) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.reader.await;
        let samples = self.samples.await.unwrap_or_default();
        let at = |share: f64| {
            samples
                .iter()
                .find(|(_, n)| *n as f64 >= share * size as f64)
                .map(|(t, _)| *t)
        };
        match (at(0.2), at(0.8)) {
            (Some(a), Some(b)) if b > a => 0.6 * size as f64 / (b - a),
            _ => f64::NAN,
        }
    }
}

fn sample_end_offsets(
    brokers: &str,
    output: &str,
    partitions: i32,
    start: Instant,
    stop: &AtomicBool,
) -> Vec<(f64, u64)> {
    let mut samples = Vec::new();
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<BaseConsumer>()
    else {
        return samples;
    };
    while !stop.load(Ordering::Relaxed) {
        let total: i64 = (0..partitions)
            .filter_map(|p| {
                consumer
                    .fetch_watermarks(output, p, Duration::from_secs(5))
                    .ok()
            })
            .map(|(_, high)| high)
            .sum();
        samples.push((start.elapsed().as_secs_f64(), total.max(0) as u64));
        std::thread::sleep(Duration::from_millis(50));
    }
    samples
}

/// Counts the records of `output` a `read_committed` consumer reads; the
/// seconds since `start` when it had read `size`, or `None` if stopped first.
/// Fetches wait at most 10 ms at the broker so the end is seen promptly.
fn read_committed(
    brokers: &str,
    output: &str,
    size: usize,
    start: Instant,
    stop: &AtomicBool,
) -> Option<f64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("sluice-bench-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .ok()?;
    let metadata = consumer
        .fetch_metadata(Some(output), Duration::from_secs(10))
        .ok()?;
    let partitions = metadata.topics().first()?.partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(output, p, Offset::Beginning)
            .ok()?;
    }
    consumer.assign(&assignment).ok()?;
    let mut read = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
            read += 1;
            if read >= size {
                return Some(start.elapsed().as_secs_f64());
            }
        }
    }
    None
}
