//! Records as they flow through a task, and what is kept of a record that failed.

pub mod exact;
pub mod json;

use bytes::Bytes;
pub use exact::ExactNumbers;
use std::sync::Arc;
use vrl::value::Value;

/// Where a record was read: carried to the end so a failure anywhere can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// A Kafka message's headers as read: names and values (`None`: a header
/// without a value).
pub type Headers = Vec<(String, Option<Bytes>)>;

#[derive(Debug, Clone)]
pub struct Record {
    pub value: Value,
    pub origin: Origin,
    /// The Kafka key the record was read with, kept for its dead letter.
    pub key: Option<Bytes>,
    /// The Kafka headers the record was read with, kept for its dead letter.
    pub headers: Option<Arc<Headers>>,
    /// Which strings of `value` are numbers no VRL type holds exactly.
    pub exact: Option<Box<ExactNumbers>>,
    /// The JSON the record was read as, while no step changed its value:
    /// sinks write these bytes as they came (field order, spacing and all).
    pub raw: Option<Bytes>,
}

impl Record {
    /// A record with no Kafka key, headers or exact numbers.
    pub fn new(value: Value, origin: Origin) -> Self {
        Self {
            value,
            origin,
            key: None,
            headers: None,
            exact: None,
            raw: None,
        }
    }

    /// The record's value as JSON: as it was read when no step changed it,
    /// else written from the value, exact numbers as numbers.
    pub fn to_json(&self) -> Vec<u8> {
        match &self.raw {
            Some(raw) => raw.to_vec(),
            None => json::to_vec(&self.value, self.exact.as_deref()),
        }
    }

    /// Appends the record's JSON as one line (no line break inside): as it
    /// was read when that is one line, else written compact from its value.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        match &self.raw {
            Some(raw) if !raw.iter().any(|b| matches!(b, b'\n' | b'\r')) => {
                out.extend_from_slice(raw)
            }
            _ => json::write(out, &self.value, self.exact.as_deref()),
        }
    }

    /// The value was rewritten: what was read no longer stands for it.
    pub fn set_value(&mut self, value: Value) {
        self.value = value;
        self.raw = None;
        if let Some(exact) = &mut self.exact {
            exact.retain_in(&self.value);
            if exact.is_empty() {
                self.exact = None;
            }
        }
    }
}

/// The pipeline step a record failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedAt {
    Decode,
    Transform,
    KeyBy,
    Sink,
}

impl FailedAt {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Transform => "transform",
            Self::KeyBy => "key_by",
            Self::Sink => "sink",
        }
    }
}

/// What a dead letter holds of the failed record.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The message had no value at all (a Kafka tombstone), which is not an
    /// empty value.
    Tombstone,
    /// The message's value as read, byte for byte (decode failures).
    Raw(Bytes),
    /// The record as JSON, as it was when it failed (later steps).
    Json(Vec<u8>),
}

impl Payload {
    /// Size in bytes of what the payload holds.
    pub fn len(&self) -> usize {
        match self {
            Self::Tombstone => 0,
            Self::Raw(b) => b.len(),
            Self::Json(j) => j.len(),
        }
    }

    /// The payload's bytes; empty for a tombstone.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Tombstone => &[],
            Self::Raw(b) => b,
            Self::Json(j) => j,
        }
    }
}

/// A record that goes to the dead-letter topic instead of the sink: always
/// the record's own fault, so the job goes on without it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub origin: Origin,
    pub at: FailedAt,
    pub error: String,
    pub payload: Payload,
    pub key: Option<Bytes>,
    pub headers: Option<Arc<Headers>>,
}

impl Failure {
    pub fn of(record: &Record, at: FailedAt, error: impl Into<String>) -> Self {
        Self {
            origin: record.origin.clone(),
            at,
            error: error.into(),
            payload: Payload::Json(record.to_json()),
            key: record.key.clone(),
            headers: record.headers.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_read_over_several_lines_is_written_as_one() {
        let raw = Bytes::from_static(b"{\n  \"i\": 18446744073709551616,\r\n  \"t\": \"x\"\n}\n");
        let (value, exact) = json::decode(&raw).expect("decodes");
        let mut record = Record::new(
            value,
            Origin {
                topic: "t".into(),
                partition: 0,
                offset: 0,
            },
        );
        record.exact = exact;
        record.raw = Some(raw);
        let mut line = Vec::new();
        record.write_json_line(&mut line);
        assert_eq!(line, br#"{"i":18446744073709551616,"t":"x"}"#);
        record.raw = Some(Bytes::from_static(
            br#"{"t":"x",  "i":18446744073709551616}"#,
        ));
        line.clear();
        record.write_json_line(&mut line);
        assert_eq!(
            line, br#"{"t":"x",  "i":18446744073709551616}"#,
            "one line stays as read"
        );
    }
}
