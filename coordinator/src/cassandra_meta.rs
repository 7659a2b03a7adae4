//! The Cassandra sink's table, checked at submit against the cluster the
//! job names: it is not in one of Cassandra's own keyspaces, it exists,
//! Sluice can write every one of its column types, and
//! `sink.cassandra.columns` names only its columns.

use crate::submit_checks::Findings;
use sluice_common::cassandra;
use sluice_common::spec::SinkSpec;
use sluice_common::{Fault, JobSpec};
use std::time::Duration;

/// How long a submit waits for Cassandra to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What keeps the job from writing its Cassandra sink table, each problem
/// with its field path; a Cassandra that does not answer is filed as
/// unanswered (`sink.cassandra.contact_points`). Nothing for other sinks.
pub async fn sink_table_problems(spec: &JobSpec) -> Findings {
    let SinkSpec::Cassandra(sink) = &spec.sink else {
        return Findings::default();
    };
    let checked = match cassandra::connect(&sink.contact_points, TIMEOUT).await {
        Ok(session) => cassandra::writable_schema(&session, sink, TIMEOUT).await,
        Err(e) => Err(e),
    };
    let mut found = Findings::default();
    match checked {
        Ok(schema) => {
            tracing::debug!(keyspace = %schema.keyspace, table = %schema.table, columns = schema.columns.len(), "sink table checked");
        }
        Err(e) if e.fault() == Fault::External => found.unanswered = e.problems(),
        Err(e) => found.problems = e.problems(),
    }
    found
}
