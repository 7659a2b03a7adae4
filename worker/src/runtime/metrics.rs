use crate::connectors::kafka::{OutOfRange, PartitionOffsets};
use crate::record::FailedAt;
use sluice_common::JobSpec;
use sluice_common::spec::{SinkSpec, SourceSpec, TransformSpec};
use sluice_proto::{OffsetReset, TaskMetrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Offset resets a task keeps for its reports: the coordinator records each
/// once, so only those since the last report matter.
const KEPT_RESETS: usize = 20;

/// The shortest span the recent busy and back-pressure shares cover.
const RECENT: Duration = Duration::from_secs(5);

/// The stages of a record's way where it can fail, in the order of
/// [`Metrics::dead_lettered_at`].
pub const FAILED_AT: [FailedAt; 4] = [
    FailedAt::Decode,
    FailedAt::Transform,
    FailedAt::KeyBy,
    FailedAt::Sink,
];

/// Who a subtask is, for the labels of its metrics: known once its job spec
/// was read.
#[derive(Debug, Clone)]
pub struct SubtaskLabels {
    pub job: String,
    pub job_name: String,
    pub stage: u32,
    pub subtask: u32,
    /// The operators the subtask runs, in order, as [`SubtaskLabels::operators`]
    /// names them.
    pub operator: String,
}

impl SubtaskLabels {
    /// The operators a subtask of `stage` runs, in order, joined by ` -> `:
    /// the source (stage 0), the stage's transforms, the `key_by` routing
    /// its output, or the sink (the last stage), such as
    /// `kafka_source -> remap -> key_by` or `dedup -> kafka_sink`.
    pub fn operators(spec: &JobSpec, stage: u32) -> String {
        let (transforms, key_fields) = spec.stage_plan(stage);
        let mut names: Vec<&str> = Vec::new();
        if stage == 0 {
            let SourceSpec::Kafka(_) = &spec.source;
            names.push("kafka_source");
        }
        names.extend(transforms.iter().map(|t| match t {
            TransformSpec::Remap(_) => "remap",
            TransformSpec::Filter(_) => "filter",
            TransformSpec::KeyBy(_) => "key_by",
            TransformSpec::PairSum(_) => "pair_sum",
            TransformSpec::Dedup(_) => "dedup",
        }));
        if key_fields.is_some() {
            names.push("key_by");
        } else {
            names.push(match &spec.sink {
                SinkSpec::Kafka(_) => "kafka_sink",
                SinkSpec::Cassandra(_) => "cassandra_sink",
                SinkSpec::Blackhole(_) => "blackhole_sink",
                SinkSpec::S3(_) => "s3_sink",
            });
        }
        names.join(" -> ")
    }
}

/// What one subtask tells the coordinator with every report and the metrics
/// endpoint at every scrape: its counters, where a source reads, and a
/// source's latest offset resets. Counters are atomics the subtask adds to
/// once per batch.
#[derive(Default, Debug)]
pub struct Metrics {
    pub labels: OnceLock<SubtaskLabels>,
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Dead letters by where the record failed, in the order of [`FAILED_AT`].
    dead_lettered_at: [AtomicU64; 4],
    /// Bytes of the Kafka messages a source read (keys and values), or of
    /// the records a later stage received from other workers (as sent).
    pub bytes_in: AtomicU64,
    /// Bytes of the records sent to subtasks on other workers.
    pub bytes_out: AtomicU64,
    /// Time spent handling input batches, in ns, back pressure included.
    busy_ns: AtomicU64,
    /// Time spent waiting for the next stage or the sink to take records, in ns.
    back_pressure_ns: AtomicU64,
    /// Time the data path stood still for checkpoints, in ns: see
    /// [`Metrics::add_checkpoint_sync`].
    checkpoint_sync_ns: AtomicU64,
    /// A source's partitions: positions, high watermarks, skipped offsets.
    pub partitions: Arc<PartitionOffsets>,
    /// The busy and back-pressure times at the start of the recent span.
    recent: Mutex<Option<Sample>>,
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

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    busy_ns: u64,
    back_pressure_ns: u64,
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

    /// Counts `n` records dead-lettered after failing at `at`.
    pub fn add_dead_lettered(&self, at: FailedAt, n: usize) {
        let i = FAILED_AT.iter().position(|f| *f == at).unwrap_or(0);
        Self::add(&self.dead_lettered_at[i], n);
        Self::add(&self.dead_lettered, n);
    }

    /// Dead letters by where the records failed.
    pub fn dead_lettered_at(&self) -> impl Iterator<Item = (FailedAt, u64)> + '_ {
        FAILED_AT
            .iter()
            .zip(&self.dead_lettered_at)
            .map(|(at, n)| (*at, n.load(Ordering::Relaxed)))
    }

    /// Adds a batch's handling time, of which `blocked` waiting on output.
    pub fn add_busy(&self, busy: Duration, blocked: Duration) {
        self.busy_ns
            .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
        self.back_pressure_ns
            .fetch_add(blocked.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Adds time the data path stood still for a checkpoint: a barrier's
    /// snapshot serialisation and sink pre-commit, a completion's sink
    /// commit, or an exactly-once sink waiting for a free transactional id.
    pub fn add_checkpoint_sync(&self, stood_still: Duration) {
        self.checkpoint_sync_ns
            .fetch_add(stood_still.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time the data path stood still for checkpoints since the subtask
    /// started.
    pub fn checkpoint_sync(&self) -> Duration {
        Duration::from_nanos(self.checkpoint_sync_ns.load(Ordering::Relaxed))
    }

    /// Busy and back-pressure time since the subtask started.
    pub fn busy_and_back_pressure(&self) -> (Duration, Duration) {
        (
            Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            Duration::from_nanos(self.back_pressure_ns.load(Ordering::Relaxed)),
        )
    }

    /// Busy and back-pressure shares of the last [`RECENT`] or so, in
    /// thousandths; the span restarts once it is twice that long.
    fn recent_permille(&self, now: Instant) -> (u32, u32) {
        let current = Sample {
            at: now,
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
            back_pressure_ns: self.back_pressure_ns.load(Ordering::Relaxed),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let start = *recent.get_or_insert(current);
        if now.duration_since(start.at) >= 2 * RECENT {
            *recent = Some(current);
        }
        let span = now.duration_since(start.at).as_nanos() as u64;
        if span == 0 {
            return (0, 0);
        }
        let share = |ns: u64| (ns.saturating_mul(1000) / span).min(1000) as u32;
        (
            share(current.busy_ns.saturating_sub(start.busy_ns)),
            share(
                current
                    .back_pressure_ns
                    .saturating_sub(start.back_pressure_ns),
            ),
        )
    }

    /// Records since when the sink's open transaction has held records.
    pub fn set_open_transaction(&self, since: Option<SystemTime>) {
        self.open_transaction_since_ms
            .store(since.map_or(0, epoch_ms), Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> TaskMetrics {
        let since = self.open_transaction_since_ms.load(Ordering::Relaxed);
        let (busy, back_pressure) = self.busy_and_back_pressure();
        let (busy_permille, back_pressure_permille) = self.recent_permille(Instant::now());
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
            partition_lag: self.partitions.report(),
            busy_ms: busy.as_millis() as u64,
            back_pressure_ms: back_pressure.as_millis() as u64,
            busy_permille,
            back_pressure_permille,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            checkpoint_sync_ms: self.checkpoint_sync().as_millis() as u64,
        }
    }

    /// A source moved a partition of `topic` past offsets it no longer
    /// holds, at `at_ms` (ms since the epoch).
    pub fn offset_reset(&self, topic: &str, r: OutOfRange, at_ms: i64) {
        let skipped = (r.low - r.position).max(0) as u64;
        self.offsets_skipped.fetch_add(skipped, Ordering::Relaxed);
        self.partitions.add_skipped(r.partition, skipped);
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
    #[test]
    fn a_subtask_is_labelled_with_the_operators_it_runs() {
        let spec = JobSpec::parse_resolved(
            "name: j\nsource: { kafka: { brokers: b, topic: t } }\n\
             transforms: [ { remap: '.x = 1' }, { key_by: [k] }, { dedup: {} } ]\n\
             sink: { s3: { dir: /tmp/x } }\n",
        )
        .expect("valid spec");
        assert_eq!(
            super::SubtaskLabels::operators(&spec, 0),
            "kafka_source -> remap -> key_by"
        );
        assert_eq!(
            super::SubtaskLabels::operators(&spec, 1),
            "dedup -> s3_sink"
        );
    }

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

    #[test]
    fn busy_and_back_pressure_shares_cover_the_recent_span() {
        let m = Metrics::default();
        let start = Instant::now();
        assert_eq!(m.recent_permille(start), (0, 0));
        m.add_busy(Duration::from_secs(4), Duration::from_secs(1));
        let (busy, blocked) = m.recent_permille(start + Duration::from_secs(8));
        assert_eq!((busy, blocked), (500, 125));
        // Past twice the span it starts over from what was counted by then.
        assert_eq!(
            m.recent_permille(start + Duration::from_secs(10)),
            (400, 100)
        );
        m.add_busy(Duration::from_secs(1), Duration::ZERO);
        assert_eq!(m.recent_permille(start + Duration::from_secs(12)), (500, 0));
        let snapshot = m.snapshot();
        assert_eq!((snapshot.busy_ms, snapshot.back_pressure_ms), (5000, 1000));
    }

    #[test]
    fn dead_letters_are_counted_by_where_they_failed() {
        let m = Metrics::default();
        m.add_dead_lettered(FailedAt::Transform, 2);
        m.add_dead_lettered(FailedAt::Sink, 1);
        let by: Vec<(&str, u64)> = m.dead_lettered_at().map(|(a, n)| (a.as_str(), n)).collect();
        assert_eq!(
            by,
            [("decode", 0), ("transform", 2), ("key_by", 0), ("sink", 1)]
        );
        assert_eq!(m.snapshot().dead_lettered, 3);
    }
}
