//! The chaos program's workload: a sequenced generator whose every record
//! can be told apart and checked afterwards, the job that carries it from
//! one Kafka topic to another with exactly-once delivery, and the
//! independent reader that counts what the job made visible.

use super::seeds;
use crate::admin;
use crate::datagen::producer;
use std::collections::BTreeMap;
use std::time::Duration;

/// The job the records go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JobKind {
    /// Kafka to Kafka through a `remap`, one stage.
    Remap,
    /// Kafka to Kafka through `remap`, `key_by: [k]` and a `dedup` on the
    /// record's id: two stages joined by the exchange, with keyed state in
    /// every checkpoint.
    Keyed,
    /// The keyed job writing JSON-lines files to S3 (MinIO) instead of
    /// Kafka, as seed 004 does; its output is read back by listing the
    /// prefix and reading every file.
    S3,
    /// The keyed job writing rows to a Cassandra table of its own keyed by
    /// the id, as seed 000 does; read back with CQL. Upserts make a
    /// duplicate invisible there: loss and corruption are what shows.
    Cassandra,
    /// The S3 job writing to a local directory instead (the S3 sink's
    /// `dir`), read back by reading every file under the prefix.
    Files,
    /// Seed 000's shipped job (`deploy/jobs/user-events-to-cassandra.yaml`):
    /// user events into Cassandra, bucketed by date, at least once; each
    /// event's row read back with CQL.
    #[value(name = "seed-000")]
    Seed000,
    /// Seed 001's shipped job (`users-created-to-cassandra.yaml`): users
    /// into Cassandra, one row per user id.
    #[value(name = "seed-001")]
    Seed001,
    /// Seed 002's shipped job (`pair-numbers-summing-to-12.yaml`): numbers
    /// paired in keyed state when two sum to 12, into Kafka; corrupt numbers
    /// to its dead-letter topic. Counts are of pairs and dead letters.
    #[value(name = "seed-002")]
    Seed002,
    /// Seed 003's shipped job (`random-users-to-cassandra.yaml`): RandomUser
    /// results cleaned and deduplicated on `login.uuid` into Cassandra.
    #[value(name = "seed-003")]
    Seed003,
    /// Seed 004's shipped clickstream job (`clickstream-to-s3.json`):
    /// events deduplicated into S3 files under their date and hour.
    #[value(name = "seed-004")]
    Seed004,
}

/// Where a job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Kafka,
    S3,
    Cassandra,
    /// Files in a local directory (the S3 sink's `dir`).
    Files,
}

impl JobKind {
    /// The shipped seed jobs.
    pub const SEEDS: [JobKind; 5] = [
        Self::Seed000,
        Self::Seed001,
        Self::Seed002,
        Self::Seed003,
        Self::Seed004,
    ];

    /// Where the job writes.
    pub fn sink(self) -> SinkKind {
        match self {
            Self::Remap | Self::Keyed | Self::Seed002 => SinkKind::Kafka,
            Self::S3 | Self::Seed004 => SinkKind::S3,
            Self::Cassandra | Self::Seed000 | Self::Seed001 | Self::Seed003 => SinkKind::Cassandra,
            Self::Files => SinkKind::Files,
        }
    }

    /// `true` when records cross between workers: the job has a `key_by`,
    /// so its stages are joined by the data exchange a worker-worker cut
    /// strikes. `remap` and seed 001 run as one stage.
    pub fn exchanges(self) -> bool {
        !matches!(self, Self::Remap | Self::Seed001)
    }

    /// `true` for a shipped seed job.
    pub fn is_seed(self) -> bool {
        Self::SEEDS.contains(&self)
    }

    /// `true` when a record written twice shows in the output: not in a
    /// Cassandra table, where the second write of a row overwrites the first.
    pub fn shows_duplicates(self) -> bool {
        self.sink() != SinkKind::Cassandra
    }

    /// The name `--job` takes.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map_or_else(|| format!("{self:?}"), |v| v.get_name().to_string())
    }
}

/// One run's records and topics: ids `0..records` go into `input`, the job
/// writes them to `output`.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: JobKind,
    /// The broker the generator and the reader use.
    pub brokers: String,
    /// The broker the job's spec names: `brokers`, or a proxy in front of it.
    pub job_brokers: String,
    pub input: String,
    pub output: String,
    pub records: u64,
    pub parallelism: u32,
    /// Where the sink writes: the sink's proxy, in front of MinIO for the
    /// S3 job (bucket `sluice`), of Cassandra for the Cassandra job; the
    /// directory of the files job.
    pub sink_address: String,
    /// Where the reader reads: MinIO (`http://HOST:PORT`) or Cassandra
    /// (`HOST:PORT`) itself; the directory of the files job.
    pub read_address: String,
}

/// The bucket the S3 job writes to (the local stack creates it).
pub(super) const BUCKET: &str = "sluice";

/// What the reader found in the output, against ids `0..records`.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Records read from the output (read_committed).
    pub read: u64,
    pub lost: u64,
    /// Extra copies: a record seen three times counts two.
    pub duplicated: u64,
    /// Records whose fields are not those their id gives (or no id at all).
    pub corrupted: u64,
    /// A few ids of each kind, for the report.
    pub lost_examples: Vec<String>,
    pub duplicated_examples: Vec<String>,
    pub corrupted_examples: Vec<String>,
}

impl Counts {
    /// Counts the record of `id` as lost.
    pub fn lose(&mut self, id: String) {
        self.lost += 1;
        push_example(&mut self.lost_examples, id);
    }

    /// Counts `extra` copies of the record of `id`.
    pub fn duplicate(&mut self, id: String, extra: u64) {
        self.duplicated += extra;
        push_example(&mut self.duplicated_examples, id);
    }

    /// Counts `record` (as read) as corrupted.
    pub fn corrupt(&mut self, record: String) {
        self.corrupted += 1;
        push_example(&mut self.corrupted_examples, record);
    }
}

/// Field `k` of record `n`: the key of the keyed job.
fn key_of(n: u64) -> u64 {
    n % 97
}

/// Field `v` of record `n`: derived from the id alone, so a record whose
/// fields got mixed up with another's shows.
fn value_of(n: u64) -> String {
    format!("{:016x}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The input record of id `n`, as JSON text.
pub fn payload(n: u64) -> String {
    serde_json::json!({"n": n, "k": key_of(n), "v": value_of(n)}).to_string()
}

impl Workload {
    /// Creates the input topic and, for a Kafka sink, the output topic,
    /// one partition per subtask.
    pub async fn create_topics(&self) -> anyhow::Result<()> {
        let partitions = i32::try_from(self.parallelism)?;
        admin::create_topic(&self.brokers, &self.input, partitions).await?;
        if self.kind.is_seed() {
            return seeds::create(self, partitions).await;
        }
        match self.kind {
            JobKind::S3 | JobKind::Files => Ok(()),
            JobKind::Cassandra => {
                let session = admin::cassandra_session(&self.read_address).await?;
                let keyspace = self.keyspace();
                admin::run_cql(
                    &session,
                    &format!(
                        "CREATE KEYSPACE {keyspace} WITH replication = \
                         {{'class': 'SimpleStrategy', 'replication_factor': 1}}; \
                         CREATE TABLE {keyspace}.records \
                         (n bigint PRIMARY KEY, k bigint, v text, tag text)"
                    ),
                )
                .await?;
                Ok(())
            }
            _ => admin::create_topic(&self.brokers, &self.output, partitions).await,
        }
    }

    /// The Cassandra job's keyspace: the output's name as CQL takes it.
    pub(super) fn keyspace(&self) -> String {
        self.output.replace('-', "_")
    }

    /// The job spec as the JobService takes it (JSON): exactly-once delivery,
    /// checkpoints every 500 ms abandoned after 10 s (a checkpoint a fault
    /// broke holds up the next one that long), restarts without a practical
    /// limit so that only a fault Sluice cannot recover from ends the job.
    /// A seed job runs its shipped spec with this run's settings
    /// ([`seeds::spec_json`]).
    pub fn spec_json(&self, name: &str) -> anyhow::Result<String> {
        let restart =
            serde_json::json!({"max_attempts": 100000, "backoff": "200ms", "max_backoff": "2s"});
        if self.kind.is_seed() {
            return seeds::spec_json(self, name, restart);
        }
        let mut transforms = vec![serde_json::json!({"remap": ".tag = \"seen\""})];
        if self.kind != JobKind::Remap {
            transforms.push(serde_json::json!({"key_by": ["k"]}));
            // Every id is new, so the dedup drops nothing unless state or
            // offsets come back wrong after a recovery; the TTL bounds the
            // state of a long run.
            transforms.push(serde_json::json!({"dedup": {"fields": ["n"], "ttl": "2m"}}));
        }
        Ok(serde_json::json!({
            "name": name,
            "parallelism": self.parallelism,
            "delivery": "exactly_once",
            "checkpoint": {"interval": "500ms", "timeout": "10s"},
            "restart": restart,
            "source": {"kafka": {"brokers": self.job_brokers, "topic": self.input}},
            "transforms": transforms,
            "sink": self.sink(),
        })
        .to_string())
    }

    fn sink(&self) -> serde_json::Value {
        match self.kind {
            JobKind::S3 => serde_json::json!({"s3": {
                "bucket": BUCKET,
                "endpoint": format!("http://{}", self.sink_address),
                "region": "us-east-1",
                "prefix": self.output,
                "path": "dt=%Y-%m-%d/hour=%H",
                "batch_interval": "1s",
            }}),
            JobKind::Files => serde_json::json!({"s3": {
                "dir": self.sink_address,
                "prefix": self.output,
                "path": "dt=%Y-%m-%d/hour=%H",
                "batch_interval": "1s",
            }}),
            JobKind::Cassandra => serde_json::json!({"cassandra": {
                "contact_points": [self.sink_address],
                "keyspace": self.keyspace(),
                "table": "records",
            }}),
            _ => serde_json::json!({"kafka": {"brokers": self.job_brokers, "topic": self.output}}),
        }
    }

    /// Produces ids from 0 on at `rate` per second (unlimited: `None`): at
    /// least `records`, and on until `more` is cleared, so faults find
    /// records in flight however late they strike, ending on a whole input
    /// ([`seeds::whole_input`]); returns how many, once
    /// the broker acknowledged every one. [`Self::check`] then checks ids
    /// `0..` that many (see [`Self::produced`]).
    pub async fn produce(
        &self,
        rate: Option<u64>,
        more: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<usize> {
        let records = self.records;
        let messages: Box<dyn Iterator<Item = seeds::Message> + Send> = match self.kind.is_seed() {
            true => seeds::messages(self.kind)?,
            false => Box::new((0..).map(|n| (None, payload(n)))),
        };
        let whole = seeds::whole_input(self.kind);
        let messages = messages
            .zip(0u64..)
            .take_while(move |(_, n)| {
                !n.is_multiple_of(whole)
                    || *n < records
                    || more.load(std::sync::atomic::Ordering::SeqCst)
            })
            .map(|(m, _)| m);
        producer::produce_keyed(&self.brokers, &self.input, messages, rate, 0).await
    }

    /// Sets how many records were produced: the ids the check expects.
    pub fn produced(&mut self, records: u64) {
        self.records = records;
    }

    /// Reads the whole output as a `read_committed` consumer and checks it
    /// against ids `0..records`: each exactly once, with the fields its id
    /// gives and the tag the job adds.
    pub async fn check(&self) -> anyhow::Result<Counts> {
        if self.kind.is_seed() {
            return seeds::check(self).await;
        }
        if self.kind == JobKind::Cassandra {
            return self.check_rows().await;
        }
        if matches!(self.kind, JobKind::S3 | JobKind::Files) {
            let store: std::sync::Arc<dyn object_store::ObjectStore> = match self.kind {
                JobKind::Files => std::sync::Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&self.read_address)?,
                ),
                _ => admin::s3_bucket(&self.read_address, BUCKET)?,
            };
            let files = admin::read_objects(store.as_ref(), &self.output).await?;
            let mut lines = Vec::new();
            for (_, body) in &files {
                lines.extend(String::from_utf8_lossy(body).lines().map(str::to_string));
            }
            return Ok(self.count(lines.iter().map(String::as_str)));
        }
        let messages = admin::read_topic(
            &self.brokers,
            &self.output,
            usize::MAX,
            Duration::from_secs(4),
            Duration::from_secs(900),
            "read_committed",
        )
        .await?;
        Ok(self.count(messages.iter().map(|m| m.payload.as_str())))
    }

    /// Reads every row of the Cassandra job's table, as records.
    async fn check_rows(&self) -> anyhow::Result<Counts> {
        use futures::TryStreamExt;
        let session = admin::cassandra_session(&self.read_address).await?;
        let mut rows = session
            .query_iter(
                format!("SELECT n, k, v, tag FROM {}.records", self.keyspace()),
                (),
            )
            .await?
            .rows_stream::<(i64, Option<i64>, Option<String>, Option<String>)>()?;
        let mut records = Vec::new();
        while let Some((n, k, v, tag)) = rows.try_next().await? {
            records.push(serde_json::json!({"n": n, "k": k, "v": v, "tag": tag}).to_string());
        }
        Ok(self.count(records.iter().map(String::as_str)))
    }

    fn count<'a>(&self, payloads: impl Iterator<Item = &'a str>) -> Counts {
        let mut counts = Counts::default();
        let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
        for text in payloads {
            counts.read += 1;
            let record: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            let Some(n) = record["n"].as_u64().filter(|n| *n < self.records) else {
                counts.corrupt(text.to_string());
                continue;
            };
            let intact = record["k"].as_u64() == Some(key_of(n))
                && record["v"].as_str() == Some(value_of(n).as_str())
                && record["tag"] == "seen";
            if !intact {
                counts.corrupt(text.to_string());
            }
            *seen.entry(n).or_default() += 1;
        }
        for n in 0..self.records {
            match seen.get(&n) {
                None => counts.lose(n.to_string()),
                Some(&c) if c > 1 => counts.duplicate(n.to_string(), u64::from(c - 1)),
                Some(_) => {}
            }
        }
        counts
    }
}

fn push_example<T>(examples: &mut Vec<T>, example: T) {
    if examples.len() < 5 {
        examples.push(example);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(records: u64) -> Workload {
        Workload {
            kind: JobKind::Remap,
            brokers: String::new(),
            job_brokers: String::new(),
            input: String::new(),
            output: String::new(),
            records,
            parallelism: 1,
            sink_address: String::new(),
            read_address: String::new(),
        }
    }

    fn out(n: u64) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&payload(n)).unwrap();
        v["tag"] = "seen".into();
        v.to_string()
    }

    #[test]
    fn the_reader_counts_lost_duplicated_and_corrupted_records() {
        let mut texts: Vec<String> = [0, 1, 1, 1, 3].into_iter().map(out).collect();
        // Record 4 with record 5's value; and one that is no record.
        texts.push(out(4).replace(&value_of(4), &value_of(5)));
        texts.push("not json".into());
        let counts = workload(6).count(texts.iter().map(String::as_str));
        assert_eq!(counts.read, 7);
        assert_eq!(counts.lost_examples, vec!["2", "5"]);
        assert_eq!(counts.lost, 2);
        assert_eq!(counts.duplicated, 2);
        assert_eq!(counts.duplicated_examples, vec!["1"]);
        assert_eq!(counts.corrupted, 2);
    }

    #[test]
    fn an_exact_output_has_nothing_to_report() {
        let texts: Vec<String> = (0..50).map(out).collect();
        let counts = workload(50).count(texts.iter().map(String::as_str));
        assert_eq!(
            (
                counts.read,
                counts.lost,
                counts.duplicated,
                counts.corrupted
            ),
            (50, 0, 0, 0)
        );
    }
}
