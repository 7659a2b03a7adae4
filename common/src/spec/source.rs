use super::reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

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
        o.finish(p);
        Some(Self::Kafka(KafkaSourceSpec {
            brokers: brokers?,
            topic: topic?,
            group_id,
            format: format?,
            start_from: start_from?,
            properties,
        }))
    }
}
