use super::ProducerIdentity;
use std::time::Duration;

/// Why a transaction could not be described, committed or fenced.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("cannot reach broker {address}: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no broker of `{bootstrap}` answers: {last}")]
    NoBroker {
        bootstrap: String,
        #[source]
        last: Box<TxnError>,
    },
    #[error("kafka protocol with {address}: {reason}")]
    Protocol { address: String, reason: String },
    #[error("{call} for transactional id `{id}` answered error code {code}")]
    Refused {
        call: &'static str,
        id: String,
        code: i16,
    },
    #[error("transaction of `{id}` is {state}; waiting for the broker to finish it")]
    Settling { id: String, state: String },
    #[error("transaction of `{id}` not settled within {deadline:?}: {last}")]
    Timeout {
        id: String,
        deadline: Duration,
        #[source]
        last: Box<TxnError>,
    },
    #[error(
        "the transaction open on `{id}` belongs to producer {found}, not to producer {expected} \
         that pre-committed the checkpoint's transaction: it is not the checkpoint's, and is not committed"
    )]
    NotOurs {
        id: String,
        expected: ProducerIdentity,
        found: ProducerIdentity,
    },
    #[error(
        "transaction {txn} on `{id}`, holding {records} records of a completed checkpoint, was \
         aborted by the broker (open past transaction.timeout.ms?): its records are lost"
    )]
    AbortedByBroker { id: String, txn: u64, records: u64 },
    #[error(
        "transaction on `{id}` holds records but is {state} at pre-commit: \
         the broker aborted it (open past transaction.timeout.ms?) or another producer fenced it"
    )]
    NotOpen { id: String, state: String },
    #[error("given up on `{id}`: the caller was cancelled")]
    Cancelled { id: String },
}

/// Errors the transaction coordinator answers while it moves or loads.
const RETRIABLE_CODES: &[i16] = &[
    14, // COORDINATOR_LOAD_IN_PROGRESS
    15, // COORDINATOR_NOT_AVAILABLE
    16, // NOT_COORDINATOR
    51, // CONCURRENT_TRANSACTIONS
];

impl TxnError {
    /// Whether asking again later can succeed.
    pub fn retriable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::NoBroker { .. } | Self::Protocol { .. } => true,
            Self::Settling { .. } => true,
            Self::Refused { code, .. } => RETRIABLE_CODES.contains(code),
            Self::Timeout { .. }
            | Self::NotOurs { .. }
            | Self::AbortedByBroker { .. }
            | Self::NotOpen { .. }
            | Self::Cancelled { .. } => false,
        }
    }
}
