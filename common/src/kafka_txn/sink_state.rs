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
/// what recovery needs to commit it, and the one before it when that one
/// was pre-committed and not yet committed at the barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionalSinkState {
    /// The transaction pre-committed at the checkpoint's barrier; it runs on
    /// transactional id `txn mod ids` of the subtask.
    pub txn: u64,
    /// How many transactional ids the sink rotated over: 2 in states
    /// written before sinks had three.
    #[serde(default = "two_ids")]
    pub ids: u64,
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
    /// Transaction `txn - 1` when it was pre-committed at an earlier barrier
    /// whose checkpoint had not completed by this one (it completes later,
    /// or was abandoned): this checkpoint covers it too, and recovery
    /// commits it first, on its own transactional id. It has no `earlier`
    /// of its own: a sink holds at most two transactions not committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier: Option<Box<TransactionalSinkState>>,
}

fn two_ids() -> u64 {
    2
}

impl TransactionalSinkState {
    /// Which of the subtask's transactional ids (an index into
    /// [`super::transactional_ids`]) transaction `txn` runs on.
    pub fn id_index(&self) -> usize {
        (self.txn % self.ids.max(1)) as usize
    }

    /// The transactions the checkpoint covers, oldest first, each without
    /// its `earlier`.
    pub fn transactions(&self) -> Vec<TransactionalSinkState> {
        let own = TransactionalSinkState {
            earlier: None,
            ..self.clone()
        };
        match &self.earlier {
            Some(e) => vec![
                TransactionalSinkState {
                    earlier: None,
                    ..(**e).clone()
                },
                own,
            ],
            None => vec![own],
        }
    }
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
                ids: 2,
                records: 12,
                producer: None,
                earlier: None,
            }
        );
        let older: TransactionalSinkState = serde_json::from_str(r#"{"txn":3}"#).expect("parses");
        assert_eq!((older.txn, older.records, older.producer), (3, 0, None));
        let new = TransactionalSinkState {
            txn: 8,
            ids: 3,
            records: 2,
            producer: Some(ProducerIdentity {
                producer_id: 4001,
                producer_epoch: 3,
            }),
            earlier: Some(Box::new(TransactionalSinkState {
                txn: 7,
                ids: 3,
                records: 5,
                producer: None,
                earlier: None,
            })),
        };
        assert_eq!(
            new.transactions()
                .iter()
                .map(|t| (t.txn, t.records, t.earlier.is_none()))
                .collect::<Vec<_>>(),
            vec![(7, 5, true), (8, 2, true)]
        );
        assert_eq!(
            new.transactions()
                .iter()
                .map(TransactionalSinkState::id_index)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        let text = serde_json::to_string(&new).expect("serialises");
        assert_eq!(
            serde_json::from_str::<TransactionalSinkState>(&text).expect("parses"),
            new
        );
    }
}
