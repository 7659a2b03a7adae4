//! What an outside observer sees of one `bench compare` run: when every
//! record of the run has become visible to a `read_committed` consumer (the
//! run's end, taken the same way for every system), and the steady rate from
//! the output topic's end offsets.

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Watches one run's output topic from the moment the run starts.
pub struct Progress {
    /// When the run started: every time of the run is counted from here.
    start: Instant,
    stop: StopOnDrop,
    /// End offsets of each partition, every 50 ms, for the steady rate.
    ends: Readings,
    /// The threads reading offsets.
    samplers: Vec<JoinHandle<()>>,
    /// Seconds from `start` until all `size` records were visible to
    /// `read_committed` consumers; `None` until a consumer has read them all.
    visible: watch::Receiver<Option<f64>>,
    reader: JoinHandle<()>,
}

impl Progress {
    /// Starts watching `output` (of `partitions` partitions) for a run of
    /// `size` records; the run's clock starts now.
    pub fn watch(brokers: &str, output: &str, partitions: i32, size: usize) -> Self {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let ends = Readings::default();
        let stable = Readings::default();
        let samplers = [
            (Sampling::new("read_uncommitted", 50), ends.clone()),
            (Sampling::new("read_committed", 10), stable.clone()),
        ]
        .map(|(sampling, into)| {
            let (brokers, output, stop) = (brokers.to_string(), output.to_string(), stop.clone());
            tokio::task::spawn_blocking(move || {
                read_offsets(&brokers, &output, partitions, sampling, start, &stop, &into);
            })
        })
        .into();
        let (tx, visible) = watch::channel(None);
        let reader = {
            let (brokers, output, stop) = (brokers.to_string(), output.to_string(), stop.clone());
            tokio::task::spawn_blocking(move || {
                if let Some(seconds) = read_committed(&brokers, &output, size, &stable, &stop) {
                    tx.send_replace(Some(seconds));
                }
            })
        };
        Self {
            start,
            stop: StopOnDrop(stop),
            ends,
            samplers,
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
        self.stop.0.store(true, Ordering::Relaxed);
        let _ = self.reader.await;
        for sampler in self.samplers {
            let _ = sampler.await;
        }
        let samples: Vec<(f64, i64)> = lock(&self.ends)
            .iter()
            .map(|(t, ends)| (*t, ends.iter().sum()))
            .collect();
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

/// Stops the watching threads when dropped: a run that failed drops its
/// watch without asking for its rate, and the program could not end while
/// they watched on.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Offsets read over time: `(seconds since the start, end offset of each
/// partition)`.
type Readings = Arc<Mutex<Vec<(f64, Vec<i64>)>>>;

fn lock(readings: &Readings) -> std::sync::MutexGuard<'_, Vec<(f64, Vec<i64>)>> {
    readings.lock().unwrap_or_else(|p| p.into_inner())
}

/// How end offsets are read: as a consumer of `isolation` sees them
/// (`read_committed`: the last stable offset), every `every`.
#[derive(Clone, Copy)]
struct Sampling {
    isolation: &'static str,
    every: Duration,
}

impl Sampling {
    fn new(isolation: &'static str, every_ms: u64) -> Self {
        Self {
            isolation,
            every: Duration::from_millis(every_ms),
        }
    }
}

/// Reads the end offset of each partition of `output` as `sampling` says,
/// into `into`, until `stop`. A client of its own: on the reading
/// consumer's connection each request would queue behind its fetches.
fn read_offsets(
    brokers: &str,
    output: &str,
    partitions: i32,
    sampling: Sampling,
    start: Instant,
    stop: &AtomicBool,
    into: &Readings,
) {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("isolation.level", sampling.isolation)
        .create::<BaseConsumer>()
    else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let at = start.elapsed().as_secs_f64();
        let ends: Option<Vec<i64>> = (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(output, p, Duration::from_secs(5))
                    .ok()
                    .map(|(_, end)| end)
            })
            .collect();
        if let Some(ends) = ends {
            lock(into).push((at, ends));
        }
        std::thread::sleep(sampling.every);
    }
}

/// When the last of `size` records of `output` became visible to
/// `read_committed` consumers, in seconds since the start; `None` if
/// stopped first. A consumer reads every record, noting the last offset it
/// read of each partition; the time is that of the first of the `stable`
/// readings (last stable offsets) past every one of them: when the output
/// was all visible, not when this consumer got through it, which a system
/// whose output becomes visible in large transactions would pay for.
fn read_committed(
    brokers: &str,
    output: &str,
    size: usize,
    stable: &Readings,
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
    let partitions = metadata.topics().first()?.partitions().len();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(output, p, Offset::Beginning)
            .ok()?;
    }
    consumer.assign(&assignment).ok()?;
    let mut last_read = vec![-1i64; partitions];
    let mut read = 0;
    while read < size {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(10)) {
            if let Some(last) = last_read.get_mut(m.partition() as usize) {
                *last = (*last).max(m.offset());
            }
            read += 1;
        }
    }
    let past = |ends: &[i64]| ends.iter().zip(&last_read).all(|(end, last)| end > last);
    while !stop.load(Ordering::Relaxed) {
        if let Some((at, _)) = lock(stable).iter().find(|(_, ends)| past(ends)) {
            return Some(*at);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
