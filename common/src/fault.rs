//! Whose fault a failure is, which decides what Sluice does with it. Every
//! connector and operator classifies its errors with [`Fault`]; the worker
//! then sends a record to the dead-letter topic, fails the job at once, or
//! restarts it from its checkpoint, from that classification alone.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Whose fault a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// One record cannot be handled (a value that does not convert, a row the
    /// database refuses, a message the topic refuses). The record goes to the
    /// dead-letter topic with its error; the job goes on. Retrying the same
    /// record cannot help.
    Record,
    /// The job spec asks for something that cannot work (a table that does not
    /// exist, a column type Sluice cannot write, a setting the broker refuses).
    /// Refused at submission when it can be known then; found later, it fails
    /// the job at once: restarting cannot help.
    Spec,
    /// A broker, database or store is unreachable, slow or refuses for a
    /// while. Retried with back-off, then the job restarts from its checkpoint.
    External,
    /// Sluice itself: a bug, or a state it cannot go on from. The job restarts
    /// from its checkpoint, which may help.
    Internal,
}

impl Fault {
    /// Whether trying again (a retry, a restart from the checkpoint) can help.
    pub fn retriable(self) -> bool {
        matches!(self, Self::External | Self::Internal)
    }

    /// Whose fault, in the words `jobctl` and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Record => "record",
            Self::Spec => "spec",
            Self::External => "external",
            Self::Internal => "internal",
        }
    }

    /// Parses what [`Fault::as_str`] gives.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "record" => Self::Record,
            "spec" => Self::Spec,
            "external" => Self::External,
            "internal" => Self::Internal,
            _ => return None,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Record => "the record's fault",
            Self::Spec => "the job spec's fault",
            Self::External => "an outside system's fault",
            Self::Internal => "Sluice's own fault",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_outside_and_internal_faults_are_retried() {
        assert!(!Fault::Record.retriable());
        assert!(!Fault::Spec.retriable());
        assert!(Fault::External.retriable());
        assert!(Fault::Internal.retriable());
        for f in [Fault::Record, Fault::Spec, Fault::External, Fault::Internal] {
            assert_eq!(Fault::parse(f.as_str()), Some(f));
        }
    }
}
