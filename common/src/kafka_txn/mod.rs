//! Kafka transactions of exactly-once sinks, settled over the Kafka protocol
//! directly: librdkafka can neither resume a transaction another process
//! began nor tell which producer holds one. The worker uses this to record
//! the producer of a pre-committed transaction and, at recovery, to commit
//! the transaction of the checkpoint it restores; the coordinator uses it to
//! commit or abort what a job left open once the job ended (cancelled or
//! failed), also when its workers are gone. Calls block: run them on a
//! blocking thread.

mod error;
mod sink_state;
mod transactions;
mod wire;

pub use error::TxnError;
pub use sink_state::{ProducerIdentity, TransactionalSinkState};
pub use transactions::{
    Described, Fenced, InDoubt, commit_checkpointed, describe, fence, open_producer,
};

use std::collections::BTreeMap;

/// The sink's `transaction.timeout.ms` unless its `properties` set one: 15
/// minutes, the default `transaction.max.timeout.ms` of brokers.
pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 900_000;

/// The producer property holding a transaction's timeout.
pub const TRANSACTION_TIMEOUT: &str = "transaction.timeout.ms";

/// How many transactional ids a sink subtask rotates over: one for the open
/// transaction, one for the transaction waiting for its checkpoint, and one
/// for the transaction committed last, whose id takes no new transaction
/// while a checkpoint naming it may still be restored.
pub const TRANSACTIONAL_IDS: usize = 3;

/// The transactional ids of sink subtask `index` of stage `stage` of the
/// job with uid `job_uid`: `sluice-<job uid>-s<stage>-<index>-{0,1,2}`.
/// Transaction `k` of the subtask runs on the id at `k mod 3` (`k mod 2` in
/// states of sinks that had two; see [`TransactionalSinkState::ids`]).
/// Stable across attempts of the job, so a new attempt fences the producers
/// of an old one.
pub fn transactional_ids(job_uid: &str, stage: u32, index: u32) -> [String; TRANSACTIONAL_IDS] {
    let prefix = format!("sluice-{job_uid}-s{stage}-{index}");
    std::array::from_fn(|i| format!("{prefix}-{i}"))
}

/// The `transaction.timeout.ms` a Kafka sink with these producer
/// `properties` runs its transactions with, in milliseconds; an error says
/// why the property's value is not a whole number of milliseconds.
pub fn transaction_timeout_ms(properties: &BTreeMap<String, String>) -> Result<u64, String> {
    match properties.get(TRANSACTION_TIMEOUT) {
        None => Ok(DEFAULT_TRANSACTION_TIMEOUT_MS),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .ok_or_else(|| format!("`{v}` is not a positive whole number of milliseconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_timeouts() {
        assert_eq!(
            transactional_ids("ab12", 1, 3),
            [
                "sluice-ab12-s1-3-0",
                "sluice-ab12-s1-3-1",
                "sluice-ab12-s1-3-2"
            ]
        );
        let mut props = BTreeMap::new();
        assert_eq!(transaction_timeout_ms(&props), Ok(900_000));
        props.insert(TRANSACTION_TIMEOUT.to_string(), "60000".to_string());
        assert_eq!(transaction_timeout_ms(&props), Ok(60_000));
        props.insert(TRANSACTION_TIMEOUT.to_string(), "1m".to_string());
        assert!(transaction_timeout_ms(&props).is_err());
    }
}
