//! Whose fault a failed Cassandra request is, from the driver's error: the
//! sink splits a batch for the record's fault, fails the job for the spec's,
//! and retries, then restarts, for the outside world's.

use scylla::errors::{BadQuery, DbError, ExecutionError, PrepareError, RequestAttemptError};
use sluice_common::Fault;

/// The fault of a failed write. `Record` covers every request the server
/// found invalid (InvalidRequest: an empty or oversized key, a value the
/// column refuses, a mutation over the size limit); the sink then checks
/// that its table did not change, which would make it the spec's instead.
pub fn write_fault(e: &ExecutionError) -> Fault {
    match e {
        ExecutionError::LastAttemptError(attempt) => attempt_fault(attempt),
        ExecutionError::BadQuery(
            BadQuery::SerializationError(_) | BadQuery::ValuesTooLongForKey(..),
        ) => Fault::Record,
        ExecutionError::BadQuery(_) => Fault::Internal,
        ExecutionError::PrepareError(p) => prepare_fault(p),
        // Timeouts, connections, pools, schema agreement: the cluster, for a while.
        _ => Fault::External,
    }
}

/// The fault of a failed PREPARE: refused by the server, the table or its
/// columns do not fit the statement (the spec's); else the cluster's.
pub fn prepare_fault(e: &PrepareError) -> Fault {
    match e {
        PrepareError::AllAttemptsFailed { first_attempt } => match attempt_fault(first_attempt) {
            Fault::Record => Fault::Spec,
            other => other,
        },
        PrepareError::PreparedStatementIdsMismatch => Fault::Internal,
        _ => Fault::External,
    }
}

fn attempt_fault(e: &RequestAttemptError) -> Fault {
    match e {
        RequestAttemptError::DbError(db, _) => db_fault(db),
        RequestAttemptError::SerializationError(_) => Fault::Record,
        RequestAttemptError::UnableToAllocStreamId
        | RequestAttemptError::BrokenConnectionError(_) => Fault::External,
        // The driver and the server disagree on the protocol: not going to pass.
        _ => Fault::Internal,
    }
}

fn db_fault(e: &DbError) -> Fault {
    match e {
        DbError::Invalid => Fault::Record,
        DbError::Unauthorized | DbError::AuthenticationError | DbError::ConfigError => Fault::Spec,
        DbError::SyntaxError | DbError::ProtocolError | DbError::AlreadyExists { .. } => {
            Fault::Internal
        }
        // Unavailable, overloaded, bootstrapping, timeouts, write failures,
        // rate limits, server errors, unprepared statements.
        _ => Fault::External,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{BrokenConnectionErrorKind, ConnectionPoolError};
    use scylla::statement::Consistency;

    fn db(e: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, "message".into()))
    }

    #[test]
    fn invalid_rows_are_the_records_fault() {
        assert_eq!(write_fault(&db(DbError::Invalid)), Fault::Record);
        assert_eq!(
            write_fault(&ExecutionError::BadQuery(BadQuery::ValuesTooLongForKey(
                70_000, 65_535
            ))),
            Fault::Record
        );
    }

    #[test]
    fn permissions_are_the_specs_fault_and_a_refused_prepare_too() {
        assert_eq!(write_fault(&db(DbError::Unauthorized)), Fault::Spec);
        assert_eq!(write_fault(&db(DbError::ConfigError)), Fault::Spec);
        let refused = PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(
                DbError::Invalid,
                "unconfigured table users".into(),
            ),
        };
        assert_eq!(prepare_fault(&refused), Fault::Spec);
        assert_eq!(
            write_fault(&ExecutionError::PrepareError(refused)),
            Fault::Spec
        );
    }

    #[test]
    fn timeouts_and_unavailable_nodes_are_the_outside_worlds_fault() {
        for e in [
            db(DbError::Unavailable {
                consistency: Consistency::One,
                required: 1,
                alive: 0,
            }),
            db(DbError::Overloaded),
            db(DbError::WriteTimeout {
                consistency: Consistency::One,
                received: 0,
                required: 1,
                write_type: scylla::errors::WriteType::Simple,
            }),
            ExecutionError::RequestTimeout(std::time::Duration::from_secs(1)),
            ExecutionError::EmptyPlan,
            ExecutionError::ConnectionPoolError(ConnectionPoolError::Initializing),
            ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(
                BrokenConnectionErrorKind::ChannelError.into(),
            )),
        ] {
            assert_eq!(write_fault(&e), Fault::External, "{e}");
        }
        assert_eq!(write_fault(&db(DbError::SyntaxError)), Fault::Internal);
    }
}
