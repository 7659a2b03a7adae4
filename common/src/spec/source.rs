use super::reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// How often the coordinator looks for partitions added to a source topic,
/// unless the spec says otherwise.
pub const DEFAULT_PARTITION_DISCOVERY: Duration = Duration::from_secs(10);
/// Each look is a metadata request to the brokers: not more often than this.
const MIN_PARTITION_DISCOVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    Kafka(KafkaSourceSpec),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    /// Each message is one JSON value.
    Json,
    /// Each message is a UTF-8 string, kept as the string field `message`.
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KafkaSourceSpec {
    pub brokers: String,
    pub topic: String,
    pub group_id: Option<String>,
    pub format: SourceFormat,
    pub start_from: StartFrom,
    /// librdkafka consumer settings passed through unchanged.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// How often the coordinator checks the topic's partition count while
    /// the job runs; partitions added are read from their beginning. `None`
    /// (`partition_discovery: off`): the partitions of submission only.
    #[serde(serialize_with = "serialize_discovery")]
    pub partition_discovery: Option<Duration>,
}

fn serialize_discovery<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => super::serialize_duration(d, s),
        None => s.serialize_str("off"),
    }
}

/// `partition_discovery`: a duration of at least [`MIN_PARTITION_DISCOVERY`], or `off`.
fn read_discovery(o: &mut Obj<'_>, p: &mut Problems) -> Option<Option<Duration>> {
    let path = o.path_of("partition_discovery");
    match o.get("partition_discovery") {
        None => return Some(Some(DEFAULT_PARTITION_DISCOVERY)),
        Some(Value::Bool(false)) => return Some(None),
        Some(Value::String(s)) if s == "off" => return Some(None),
        Some(_) => {}
    }
    let d = o.opt_duration("partition_discovery", p)?;
    if d < MIN_PARTITION_DISCOVERY {
        p.push(
            &path,
            format!(
                "must be at least {} (or `off`), found {}",
                humantime::format_duration(MIN_PARTITION_DISCOVERY),
                humantime::format_duration(d)
            ),
        );
        return None;
    }
    Some(Some(d))
}

impl SourceSpec {
    pub(crate) fn read(path: &str, v: &Value, p: &mut Problems) -> Option<Self> {
        let (_, body, path) = Obj::variant(path, v, &["kafka"], p)?;
        let mut o = Obj::new(&path, body, p)?;
        let brokers = o.string("brokers", p);
        let topic = o.string("topic", p);
        let group_id = o.opt_string("group_id", p);
        let format = match o.opt_string("format", p).as_deref() {
            None | Some("json") => Some(SourceFormat::Json),
            Some("text") => Some(SourceFormat::Text),
            Some(other) => {
                p.push(
                    &o.path_of("format"),
                    format!("unknown format `{other}` (expected json or text)"),
                );
                None
            }
        };
        let start_from = match o.opt_string("start_from", p).as_deref() {
            None | Some("earliest") => Some(StartFrom::Earliest),
            Some("latest") => Some(StartFrom::Latest),
            Some(other) => {
                p.push(
                    &o.path_of("start_from"),
                    format!("unknown start `{other}` (expected earliest or latest)"),
                );
                None
            }
        };
        let properties = o.opt_string_map("properties", p);
        let partition_discovery = read_discovery(&mut o, p);
        o.finish(p);
        Some(Self::Kafka(KafkaSourceSpec {
            brokers: brokers?,
            topic: topic?,
            group_id,
            format: format?,
            start_from: start_from?,
            properties,
            partition_discovery: partition_discovery?,
        }))
    }
}
