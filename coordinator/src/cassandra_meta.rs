//! The Cassandra sink's table, checked at submit against the cluster the
//! job names: it is not in one of Cassandra's own keyspaces, it exists,
//! Sluice can write every one of its column types, and
//! `sink.cassandra.columns` names only its columns.

use sluice_common::cassandra;
use sluice_common::spec::SinkSpec;
use sluice_common::{JobSpec, SpecProblem};
use std::time::Duration;

/// How long a submit waits for Cassandra to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What keeps the job from writing its Cassandra sink table, each problem
/// with its field path; an unreachable Cassandra is one of them
/// (`sink.cassandra.contact_points`). Empty for other sinks.
pub async fn sink_table_problems(spec: &JobSpec) -> Vec<SpecProblem> {
    let SinkSpec::Cassandra(sink) = &spec.sink else {
        return Vec::new();
    };
    let session = match cassandra::connect(&sink.contact_points, TIMEOUT).await {
        Ok(session) => session,
        Err(e) => return e.problems(),
    };
    match cassandra::writable_schema(&session, sink, TIMEOUT).await {
        Ok(schema) => {
            tracing::debug!(keyspace = %schema.keyspace, table = %schema.table, columns = schema.columns.len(), "sink table checked");
            Vec::new()
        }
        Err(e) => e.problems(),
    }
}
