//! Records as they flow through a task, and what is kept of a record that failed.

use std::sync::Arc;
use vrl::value::Value;

/// Where a record was read: carried to the end so a failure anywhere can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone)]
pub struct Record {
    pub value: Value,
    pub origin: Origin,
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

/// A record that goes to the dead-letter topic instead of the sink.
#[derive(Debug, Clone)]
pub struct Failure {
    pub origin: Origin,
    pub at: FailedAt,
    pub error: String,
    /// The record as it was when it failed: the raw message for decode errors,
    /// the JSON value otherwise.
    pub payload: String,
}

impl Failure {
    pub fn of(record: &Record, at: FailedAt, error: impl Into<String>) -> Self {
        Self {
            origin: record.origin.clone(),
            at,
            error: error.into(),
            payload: serde_json::to_string(&record.value).unwrap_or_default(),
        }
    }
}
