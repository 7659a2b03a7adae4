use super::reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkSpec {
    Kafka(KafkaSinkSpec),
    Cassandra(CassandraSinkSpec),
    /// Discards records; for benchmarks and for testing backpressure.
    Blackhole(BlackholeSinkSpec),
}

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
}

impl SinkSpec {
    pub(crate) fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (kind, body, path) = Obj::variant(path, v, &["kafka", "cassandra", "blackhole"], p)?;
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
                    o.opt_u64("max_concurrency", 1..=1024, p).unwrap_or(32) as usize;
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
            _ => {
                let records_per_second = o.opt_u64("records_per_second", 1..=u64::MAX, p);
                Some(Self::Blackhole(BlackholeSinkSpec { records_per_second }))
            }
        };
        o.finish(p);
        sink
    }
}

impl DeadLetterSpec {
    pub(crate) fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (_, body, path) = Obj::variant(path, v, &["kafka"], p)?;
        let mut o = Obj::new(&path, body, p)?;
        let brokers = o.opt_string("brokers", p);
        let topic = o.string("topic", p);
        o.finish(p);
        Some(Self {
            kafka: KafkaDeadLetterSpec {
                brokers,
                topic: topic?,
            },
        })
    }
}
