use serde::{Deserialize, Serialize};
use std::fmt;

/// A producer session of a transactional id, as the broker's transaction
/// coordinator knows it: a new session (InitProducerId) bumps the epoch, or
/// changes the producer id, and aborts what the previous one left open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl fmt::Display for ProducerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} epoch {}", self.producer_id, self.producer_epoch)
    }
}

/// The exactly-once Kafka sink's part of a checkpoint (JSON in the
/// checkpoint's sink states): which transaction the checkpoint covers and
/// what recovery needs to commit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionalSinkState {
    /// The transaction pre-committed at the checkpoint's barrier; it runs on
    /// transactional id `txn mod 2` of the subtask.
    pub txn: u64,
    /// Records written into it, so recovery can tell an empty transaction
    /// (never seen by the broker) from one the broker aborted.
    #[serde(default)]
    pub records: u64,
    /// The producer that held the transaction at pre-commit, read from the
    /// broker when it held records. Recovery commits an open transaction
    /// only if the same producer holds it; states written before this was
    /// recorded have none, and recovery then goes by `txn` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<ProducerIdentity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_without_a_producer_still_parse() {
        let old: TransactionalSinkState =
            serde_json::from_str(r#"{"txn":7,"records":12}"#).expect("parses");
        assert_eq!(
            old,
            TransactionalSinkState {
                txn: 7,
                records: 12,
                producer: None
            }
        );
        let older: TransactionalSinkState = serde_json::from_str(r#"{"txn":3}"#).expect("parses");
        assert_eq!((older.txn, older.records, older.producer), (3, 0, None));
        let new = TransactionalSinkState {
            txn: 8,
            records: 2,
            producer: Some(ProducerIdentity {
                producer_id: 4001,
                producer_epoch: 3,
            }),
        };
        let text = serde_json::to_string(&new).expect("serialises");
        assert_eq!(
            serde_json::from_str::<TransactionalSinkState>(&text).expect("parses"),
            new
        );
    }
}
