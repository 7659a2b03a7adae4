//! What the coordinator and the Cassandra sink both need to know of a sink
//! table: its columns and their CQL types, read from `system_schema`, and
//! whether Sluice can write them.

pub mod cql_type;
pub mod schema;
pub mod system;

pub use cql_type::{CqlType, Unsupported, UserType, UserTypes};
pub use schema::{ColumnKind, ColumnSchema, TableSchema};
pub use system::SystemKeyspace;

use crate::Fault;
use crate::error::SpecProblem;
use crate::spec::CassandraSinkSpec;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::time::Duration;

/// Why a sink table's schema could not be read, or cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("Cassandra unreachable at {contact_points}: {source}")]
    Connect {
        contact_points: String,
        #[source]
        source: Box<scylla::errors::NewSessionError>,
    },
    #[error("Cassandra at {contact_points} did not answer within {timeout:?}")]
    Timeout {
        contact_points: String,
        timeout: Duration,
    },
    #[error("cannot read the schema of {keyspace}.{table} from system_schema: {source}")]
    Read {
        keyspace: String,
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("table {keyspace}.{table} does not exist")]
    NoTable { keyspace: String, table: String },
    #[error(
        "{keyspace}.{table} is in {keyspace}, {}; a job may not write to Cassandra's own \
         keyspaces: name a keyspace of your own", .kind.describe()
    )]
    SystemKeyspace {
        keyspace: String,
        table: String,
        kind: SystemKeyspace,
    },
    #[error("table {keyspace}.{table} cannot take this job's records: {}", join(.problems))]
    Unwritable {
        keyspace: String,
        table: String,
        problems: Vec<SpecProblem>,
    },
}

impl SchemaError {
    /// A table that is missing or has columns Sluice cannot write is the
    /// spec's fault; a Cassandra that does not answer is the outside world's.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::Read { .. } => Fault::External,
            Self::NoTable { .. } | Self::SystemKeyspace { .. } | Self::Unwritable { .. } => {
                Fault::Spec
            }
        }
    }

    /// The problems of a job spec this error stands for, each with its field
    /// path (`sink.cassandra.contact_points`, `sink.cassandra.keyspace`,
    /// `sink.cassandra.table`, `sink.cassandra.columns.<name>`).
    pub fn problems(&self) -> Vec<SpecProblem> {
        match self {
            Self::Unwritable { problems, .. } => problems.clone(),
            Self::NoTable { .. } => vec![SpecProblem {
                path: "sink.cassandra.table".into(),
                message: self.to_string(),
            }],
            Self::SystemKeyspace { .. } => vec![SpecProblem {
                path: "sink.cassandra.keyspace".into(),
                message: self.to_string(),
            }],
            Self::Connect { .. } | Self::Timeout { .. } | Self::Read { .. } => {
                vec![SpecProblem {
                    path: "sink.cassandra.contact_points".into(),
                    message: self.to_string(),
                }]
            }
        }
    }
}

fn join(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A session with the cluster of `contact_points` (`host` or `host:port`),
/// given up after `timeout`.
pub async fn connect(contact_points: &[String], timeout: Duration) -> Result<Session, SchemaError> {
    let listed = contact_points.join(", ");
    let builder = SessionBuilder::new()
        .known_nodes(contact_points)
        .connection_timeout(timeout);
    match tokio::time::timeout(timeout, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(SchemaError::Connect {
            contact_points: listed,
            source: Box::new(e),
        }),
        Err(_) => Err(SchemaError::Timeout {
            contact_points: listed,
            timeout,
        }),
    }
}

/// The sink table's schema, once it is known that the job can write it: the
/// keyspace is not one of Cassandra's own, the table exists, every column has
/// a type Sluice writes, and every column of `sink.cassandra.columns` exists.
pub async fn writable_schema(
    session: &Session,
    spec: &CassandraSinkSpec,
    timeout: Duration,
) -> Result<TableSchema, SchemaError> {
    let (keyspace, table) = (spec.keyspace.as_str(), spec.table.as_str());
    let read = async {
        if let Some(kind) = SystemKeyspace::read(session, keyspace, table).await? {
            return Err(SchemaError::SystemKeyspace {
                keyspace: keyspace.to_string(),
                table: table.to_string(),
                kind,
            });
        }
        TableSchema::read(session, keyspace, table).await
    };
    let schema =
        tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| SchemaError::Timeout {
                contact_points: spec.contact_points.join(", "),
                timeout,
            })??;
    let problems = schema.problems(&spec.columns);
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(SchemaError::Unwritable {
            keyspace: spec.keyspace.clone(),
            table: spec.table.clone(),
            problems,
        })
    }
}
