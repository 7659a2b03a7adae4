use super::reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkSpec {
    Kafka(KafkaSinkSpec),
    Cassandra(CassandraSinkSpec),
    /// Discards records; for benchmarks and for testing backpressure.
    Blackhole(BlackholeSinkSpec),
    /// JSON-lines files in S3-compatible storage or a local directory.
    S3(S3SinkSpec),
}

/// Where the S3 sink writes: a bucket of S3-compatible storage, or a local
/// directory standing in for one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum S3Target {
    Bucket(String),
    Dir(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct S3SinkSpec {
    #[serde(flatten)]
    pub target: S3Target,
    /// Key prefix of every file, such as `raw-data/clickstream`.
    pub prefix: String,
    /// strftime template of the directory below the prefix, from the record's
    /// time in the job's zone.
    pub path: String,
    /// Field with the record's time, in any form [`crate::time`] reads (epoch
    /// milliseconds, RFC 3339, ISO 8601 variants); the time of writing when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_field: Option<String>,
    /// Files are rolled at least this often, and at every checkpoint.
    #[serde(serialize_with = "super::serialize_duration")]
    pub batch_interval: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// For MinIO, LocalStack and other S3-compatible servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// `bucket.host` addressing instead of `host/bucket`.
    pub virtual_hosted_style: bool,
}

pub const DEFAULT_S3_PATH: &str = "dt=%Y-%m-%d/hour=%H";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaSinkSpec {
    pub brokers: String,
    pub topic: String,
    /// Field whose value becomes the message key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_field: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CassandraSinkSpec {
    pub contact_points: Vec<String>,
    pub keyspace: String,
    pub table: String,
    /// Column name -> record field; columns not named here take the field of the same name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, String>,
    /// Records buffered before a flush.
    pub batch_size: usize,
    /// Writes in flight at once during a flush.
    pub max_concurrency: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlackholeSinkSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_per_second: Option<u64>,
}

/// Where records that fail to decode, transform or convert are sent, with their error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterSpec {
    pub kafka: KafkaDeadLetterSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaDeadLetterSpec {
    /// Defaults to the source's brokers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brokers: Option<String>,
    pub topic: String,
    /// librdkafka producer settings, passed through (security, compression...).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl SinkSpec {
    pub(crate) fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (kind, body, path) =
            Obj::variant(path, v, &["kafka", "cassandra", "blackhole", "s3"], p)?;
        let mut o = Obj::new(&path, body, p)?;
        let sink = match kind {
            "kafka" => {
                let brokers = o.string("brokers", p);
                let topic = o.string("topic", p);
                let key_field = o.opt_string("key_field", p);
                let properties = o.opt_string_map("properties", p);
                brokers.zip(topic).map(|(brokers, topic)| {
                    Self::Kafka(KafkaSinkSpec {
                        brokers,
                        topic,
                        key_field,
                        properties,
                    })
                })
            }
            "cassandra" => {
                let contact_points = match o.required("contact_points", p) {
                    Some(v) => super::reader::string_list(&o.path_of("contact_points"), v, p),
                    None => None,
                };
                let keyspace = o.string("keyspace", p);
                let table = o.string("table", p);
                let columns = o.opt_string_map("columns", p);
                let batch_size = o.opt_u64("batch_size", 1..=10_000, p).unwrap_or(256) as usize;
                let max_concurrency =
                    o.opt_u64("max_concurrency", 1..=1024, p).unwrap_or(128) as usize;
                match (contact_points, keyspace, table) {
                    (Some(contact_points), Some(keyspace), Some(table)) => {
                        Some(Self::Cassandra(CassandraSinkSpec {
                            contact_points,
                            keyspace,
                            table,
                            columns,
                            batch_size,
                            max_concurrency,
                        }))
                    }
                    _ => None,
                }
            }
            "s3" => read_s3(&mut o, p).map(Self::S3),
            _ => {
                let records_per_second = o.opt_u64("records_per_second", 1..=u64::MAX, p);
                Some(Self::Blackhole(BlackholeSinkSpec { records_per_second }))
            }
        };
        o.finish(p);
        sink
    }
}

fn read_s3(o: &mut Obj<'_>, p: &mut Problems) -> Option<S3SinkSpec> {
    let bucket = o.opt_string("bucket", p);
    let dir = o.opt_string("dir", p);
    let target = match (bucket, dir) {
        (Some(b), None) => Some(S3Target::Bucket(b)),
        (None, Some(d)) => Some(S3Target::Dir(d)),
        _ => {
            p.push(
                &o.path,
                "needs exactly one of `bucket` (S3) or `dir` (a local directory)",
            );
            None
        }
    };
    let prefix = o.opt_string("prefix", p).unwrap_or_default();
    let path = o
        .opt_string("path", p)
        .unwrap_or_else(|| DEFAULT_S3_PATH.to_string());
    let bad_template = chrono::format::StrftimeItems::new(&path)
        .any(|item| matches!(item, chrono::format::Item::Error));
    if bad_template {
        p.push(
            &o.path_of("path"),
            format!("`{path}` is not a valid strftime template (such as `{DEFAULT_S3_PATH}`)"),
        );
    }
    let time_field = o.opt_string("time_field", p);
    let batch_interval = o
        .opt_duration("batch_interval", p)
        .unwrap_or(Duration::from_secs(60));
    let region = o.opt_string("region", p);
    let endpoint = o.opt_string("endpoint", p);
    let access_key_id = o.opt_string("access_key_id", p);
    let secret_access_key = o.opt_string("secret_access_key", p);
    let virtual_hosted_style = o.opt_bool("virtual_hosted_style", p).unwrap_or(false);
    (!bad_template).then_some(())?;
    Some(S3SinkSpec {
        target: target?,
        prefix: prefix.trim_matches('/').to_string(),
        path,
        time_field,
        batch_interval,
        region,
        endpoint,
        access_key_id,
        secret_access_key,
        virtual_hosted_style,
    })
}

impl DeadLetterSpec {
    pub(crate) fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (_, body, path) = Obj::variant(path, v, &["kafka"], p)?;
        let mut o = Obj::new(&path, body, p)?;
        let brokers = o.opt_string("brokers", p);
        let topic = o.string("topic", p);
        let properties = o.opt_string_map("properties", p);
        o.finish(p);
        Some(Self {
            kafka: KafkaDeadLetterSpec {
                brokers,
                topic: topic?,
                properties,
            },
        })
    }
}
