//! Describing, committing and fencing the transactions of a sink subtask's
//! transactional ids.

use super::wire::Conn;
use super::{ProducerIdentity, TransactionalSinkState, TxnError};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What the broker's transaction coordinator says of a transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Kafka's name of the state: `Empty`, `Ongoing`, `PrepareCommit`,
    /// `PrepareAbort`, `CompleteCommit`, `CompleteAbort`,
    /// `PrepareEpochFence` or `Dead`.
    pub state: String,
    /// The producer session holding the id.
    pub producer: ProducerIdentity,
    /// When the open transaction began (epoch milliseconds); -1 when none is.
    pub start_time_ms: i64,
}

/// What became of the transaction a completed checkpoint recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InDoubt {
    /// It was open and is now committed.
    Committed,
    /// Nothing of it was open: committed before, or never seen by the broker.
    NothingOpen(String),
}

/// What fencing a transactional id did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// The broker does not know the id: no producer ever used it.
    Unknown,
    /// A new producer session now holds the id; whatever the previous one
    /// had open is aborted, and its producer can write no more.
    Fenced(ProducerIdentity),
}

/// The transaction timeout of the session a fence opens: it writes nothing.
const FENCE_TRANSACTION_TIMEOUT_MS: i32 = 10_000;

/// What the broker says of `transactional_id`; `None` when it does not know
/// it. Blocking; retried until `deadline`, or until `cancelled` is set.
pub fn describe(
    bootstrap: &str,
    transactional_id: &str,
    deadline: Duration,
    cancelled: &AtomicBool,
) -> Result<Option<Described>, TxnError> {
    retrying(transactional_id, deadline, cancelled, || {
        describe_at(
            &mut Conn::transaction_coordinator(bootstrap, transactional_id)?,
            transactional_id,
        )
    })
}

/// The producer session holding the transaction open on
/// `transactional_id`, which must be open: what a sink records at
/// pre-commit, so recovery commits that transaction and no other. An id
/// whose transaction is not open (aborted by the broker, or fenced) is
/// [`TxnError::NotOpen`]. Blocking, retried as [`describe`] is.
pub fn open_producer(
    bootstrap: &str,
    transactional_id: &str,
    deadline: Duration,
    cancelled: &AtomicBool,
) -> Result<ProducerIdentity, TxnError> {
    match describe(bootstrap, transactional_id, deadline, cancelled)? {
        Some(found) if found.state == "Ongoing" => Ok(found.producer),
        found => Err(TxnError::NotOpen {
            id: transactional_id.to_string(),
            state: found.map_or_else(|| "unknown to the broker".into(), |f| f.state),
        }),
    }
}

/// Commits the transaction that a completed checkpoint recorded in `state`
/// if it is still open on `transactional_id` (the id at `state.id_index()`).
/// It is open when its producer died between the checkpoint's completion
/// and its own commit. When `state` names the producer that pre-committed
/// it, only a transaction of that producer is committed: another one open
/// on the id is not the checkpoint's, and the answer is
/// [`TxnError::NotOurs`]. A transaction with records found aborted is
/// [`TxnError::AbortedByBroker`]. Blocking; retried until `deadline`, or
/// until `cancelled` is set (a recovery cancelled meanwhile must not touch
/// an id a newer attempt may own by now).
pub fn commit_checkpointed(
    bootstrap: &str,
    transactional_id: &str,
    state: &TransactionalSinkState,
    deadline: Duration,
    cancelled: &AtomicBool,
) -> Result<InDoubt, TxnError> {
    if state.records == 0 {
        // librdkafka adds partitions to a transaction with its first record:
        // the broker never saw this one, and whatever is open is not it.
        return Ok(InDoubt::NothingOpen(
            "the checkpoint's transaction held no records".into(),
        ));
    }
    retrying(transactional_id, deadline, cancelled, || {
        let mut coordinator = Conn::transaction_coordinator(bootstrap, transactional_id)?;
        let found = describe_at(&mut coordinator, transactional_id)?;
        match decide(transactional_id, state, found.as_ref())? {
            Decision::Settled(outcome) => Ok(outcome),
            Decision::Commit(producer) => {
                // EndTxn v3: below v5 a commit repeated on a completed commit
                // succeeds, and the epoch is not bumped.
                let ended = coordinator.call(
                    3,
                    &EndTxnRequest::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(
                            transactional_id.to_owned(),
                        )))
                        .with_producer_id(producer.producer_id.into())
                        .with_producer_epoch(producer.producer_epoch)
                        .with_committed(true),
                )?;
                refused("EndTxn", transactional_id, ended.error_code)?;
                Ok(InDoubt::Committed)
            }
        }
    })
}

/// Opens a new producer session on `transactional_id` (InitProducerId): the
/// broker aborts the transaction the previous session had open, and that
/// session's producer can neither write nor commit any more. An id the
/// broker does not know is left alone. Blocking; retried until `deadline`
/// (the broker answers CONCURRENT_TRANSACTIONS until the abort is done), or
/// until `cancelled` is set.
pub fn fence(
    bootstrap: &str,
    transactional_id: &str,
    deadline: Duration,
    cancelled: &AtomicBool,
) -> Result<Fenced, TxnError> {
    retrying(transactional_id, deadline, cancelled, || {
        let mut coordinator = Conn::transaction_coordinator(bootstrap, transactional_id)?;
        if describe_at(&mut coordinator, transactional_id)?.is_none() {
            return Ok(Fenced::Unknown);
        }
        let init = coordinator.call(
            1,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                    transactional_id.to_owned(),
                ))))
                .with_transaction_timeout_ms(FENCE_TRANSACTION_TIMEOUT_MS),
        )?;
        refused("InitProducerId", transactional_id, init.error_code)?;
        Ok(Fenced::Fenced(ProducerIdentity {
            producer_id: init.producer_id.0,
            producer_epoch: init.producer_epoch,
        }))
    })
}

fn describe_at(
    coordinator: &mut Conn,
    transactional_id: &str,
) -> Result<Option<Described>, TxnError> {
    let described = coordinator.call(
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.to_owned()),
        )]),
    )?;
    let Some(txn) = described.transaction_states.first() else {
        return Err(TxnError::Refused {
            call: "DescribeTransactions",
            id: transactional_id.to_string(),
            code: -1,
        });
    };
    match txn.error_code {
        0 => Ok(Some(Described {
            state: txn.transaction_state.to_string(),
            producer: ProducerIdentity {
                producer_id: txn.producer_id.0,
                producer_epoch: txn.producer_epoch,
            },
            start_time_ms: txn.transaction_start_time_ms,
        })),
        105 => Ok(None), // TRANSACTIONAL_ID_NOT_FOUND
        code => Err(TxnError::Refused {
            call: "DescribeTransactions",
            id: transactional_id.to_string(),
            code,
        }),
    }
}

fn refused(call: &'static str, id: &str, code: i16) -> Result<(), TxnError> {
    match code {
        0 => Ok(()),
        code => Err(TxnError::Refused {
            call,
            id: id.to_string(),
            code,
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// The checkpoint's transaction is open under this producer session.
    Commit(ProducerIdentity),
    Settled(InDoubt),
}

/// What to do about the checkpoint's transaction, given what is `found` on
/// its transactional id. Only ever one transaction is open per id.
fn decide(
    id: &str,
    state: &TransactionalSinkState,
    found: Option<&Described>,
) -> Result<Decision, TxnError> {
    let Some(found) = found else {
        return Ok(Decision::Settled(InDoubt::NothingOpen(
            "unknown transactional id".into(),
        )));
    };
    match found.state.as_str() {
        "Ongoing" => match state.producer {
            Some(expected) if expected != found.producer => Err(TxnError::NotOurs {
                id: id.to_string(),
                expected,
                found: found.producer,
            }),
            _ => Ok(Decision::Commit(found.producer)),
        },
        "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence" => Err(TxnError::Settling {
            id: id.to_string(),
            state: found.state.clone(),
        }),
        // Nothing else can have run on this id since the checkpoint's
        // transaction: the next one on it begins only after a checkpoint
        // whose barrier came after that commit completed, and recovery
        // restores the latest one.
        "CompleteAbort" if state.records > 0 => Err(TxnError::AbortedByBroker {
            id: id.to_string(),
            txn: state.txn,
            records: state.records,
        }),
        other => Ok(Decision::Settled(InDoubt::NothingOpen(format!(
            "transaction is {other}"
        )))),
    }
}

/// Runs `attempt` until it succeeds, fails for good, `deadline` passes or
/// `cancelled` is set.
fn retrying<T>(
    id: &str,
    deadline: Duration,
    cancelled: &AtomicBool,
    mut attempt: impl FnMut() -> Result<T, TxnError>,
) -> Result<T, TxnError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return Err(TxnError::Cancelled { id: id.to_string() });
        }
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if e.retriable() && start.elapsed() < deadline => {
                tracing::info!(transactional_id = id, reason = %e, "transaction not settled yet; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) if e.retriable() => {
                return Err(TxnError::Timeout {
                    id: id.to_string(),
                    deadline,
                    last: Box::new(e),
                });
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ProducerIdentity = ProducerIdentity {
        producer_id: 1000,
        producer_epoch: 4,
    };

    fn found(state: &str, producer: ProducerIdentity) -> Described {
        Described {
            state: state.into(),
            producer,
            start_time_ms: 0,
        }
    }

    fn state(records: u64, producer: Option<ProducerIdentity>) -> TransactionalSinkState {
        TransactionalSinkState {
            txn: 5,
            ids: 3,
            records,
            producer,
            earlier: None,
        }
    }

    #[test]
    fn commits_only_the_checkpoints_own_transaction() {
        let ours = found("Ongoing", P);
        assert_eq!(
            decide("t", &state(3, Some(P)), Some(&ours)).expect("decides"),
            Decision::Commit(P)
        );
        for other in [
            ProducerIdentity {
                producer_epoch: 5,
                ..P
            },
            ProducerIdentity {
                producer_id: 1001,
                ..P
            },
        ] {
            let theirs = found("Ongoing", other);
            match decide("t", &state(3, Some(P)), Some(&theirs)) {
                Err(TxnError::NotOurs {
                    expected, found, ..
                }) => {
                    assert_eq!((expected, found), (P, other));
                }
                other => panic!("committed another producer's transaction: {other:?}"),
            }
        }
        // A state from before producers were recorded goes by numbering.
        assert_eq!(
            decide("t", &state(3, None), Some(&found("Ongoing", P))).expect("decides"),
            Decision::Commit(P)
        );
    }

    #[test]
    fn finished_aborted_and_moving_transactions() {
        assert!(matches!(
            decide("t", &state(3, Some(P)), Some(&found("CompleteCommit", P))),
            Ok(Decision::Settled(InDoubt::NothingOpen(_)))
        ));
        assert!(matches!(
            decide("t", &state(3, Some(P)), None),
            Ok(Decision::Settled(InDoubt::NothingOpen(_)))
        ));
        assert!(matches!(
            decide("t", &state(3, Some(P)), Some(&found("CompleteAbort", P))),
            Err(TxnError::AbortedByBroker { records: 3, .. })
        ));
        let moving = decide("t", &state(3, Some(P)), Some(&found("PrepareCommit", P)));
        assert!(
            moving.as_ref().is_err_and(TxnError::retriable),
            "{moving:?}"
        );
    }
}
