//! Cassandra's own keyspaces, which no job writes: the node's schema and
//! peers (`system`, `system_schema`), the data Cassandra replicates for
//! itself (roles, traces, repair history) and the virtual tables that show a
//! node's state. A sink table in one of them is the spec's fault, refused at
//! submit and when the sink starts.

use super::SchemaError;
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use std::collections::HashMap;

/// Kept on each node, never replicated (Cassandra's `LOCAL_SYSTEM_KEYSPACE_NAMES`).
const LOCAL: &[&str] = &["system", "system_schema"];
/// Replicated by Cassandra for its own use (Cassandra's
/// `REPLICATED_SYSTEM_KEYSPACE_NAMES`, ScyllaDB's own, and Cassandra's
/// cluster metadata keyspace of 5.1).
const REPLICATED: &[&str] = &[
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_distributed_everywhere",
    "system_replicated_keys",
    "system_cluster_metadata",
];
/// Keyspaces of virtual tables (Cassandra's `VIRTUAL_SYSTEM_KEYSPACE_NAMES`).
const VIRTUAL: &[&str] = &["system_views", "system_virtual_schema"];

/// What kind of keyspace of Cassandra's own a keyspace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKeyspace {
    /// Each node's own data (schema, peers, local state), kept with
    /// `LocalStrategy`, which only Cassandra itself may use.
    Local,
    /// Data Cassandra replicates for itself: roles and permissions, tracing
    /// sessions, repair history.
    Replicated,
    /// Virtual tables: views of a node's state and settings computed when
    /// read, not stored data.
    Virtual,
}

impl SystemKeyspace {
    /// The kind of `keyspace` from its name, or from what the server says of
    /// it: `replication_class` (`system_schema.keyspaces.replication`'s
    /// `class`) and whether `system_virtual_schema.keyspaces` lists it.
    /// `None` for a keyspace of the users'.
    pub fn classify(
        keyspace: &str,
        replication_class: Option<&str>,
        is_virtual: bool,
    ) -> Option<Self> {
        if LOCAL.contains(&keyspace) {
            Some(Self::Local)
        } else if REPLICATED.contains(&keyspace) {
            Some(Self::Replicated)
        } else if VIRTUAL.contains(&keyspace) || is_virtual {
            Some(Self::Virtual)
        } else if replication_class.is_some_and(|c| c.ends_with("LocalStrategy")) {
            Some(Self::Local)
        } else {
            None
        }
    }

    /// What the keyspace holds, for the error refusing it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Local => {
                "a Cassandra system keyspace, holding each node's own data (its schema, peers and local state)"
            }
            Self::Replicated => {
                "a Cassandra system keyspace, holding data Cassandra replicates for its own use \
                 (roles and permissions, tracing sessions, repair history)"
            }
            Self::Virtual => {
                "a keyspace of Cassandra's virtual tables: views of a node's state and settings \
                 computed when read, not stored data, which cannot be written"
            }
        }
    }

    /// The kind of `keyspace` on the cluster of `session`, by name first, then
    /// as the server reports it; `None` for a keyspace of the users' (or one
    /// that does not exist). `table` is the sink's, for errors.
    pub async fn read(
        session: &Session,
        keyspace: &str,
        table: &str,
    ) -> Result<Option<Self>, SchemaError> {
        if let Some(kind) = Self::classify(keyspace, None, false) {
            return Ok(Some(kind));
        }
        let read_err = |source: Box<dyn std::error::Error + Send + Sync>| SchemaError::Read {
            keyspace: keyspace.to_string(),
            table: table.to_string(),
            source,
        };
        let rows = session
            .query_unpaged(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
                (keyspace,),
            )
            .await
            .map_err(|e| read_err(Box::new(e)))?
            .into_rows_result()
            .map_err(|e| read_err(Box::new(e)))?;
        let replication: Option<HashMap<String, String>> = rows
            .maybe_first_row::<(HashMap<String, String>,)>()
            .map_err(|e| read_err(Box::new(e)))?
            .map(|(r,)| r);
        if let Some(replication) = replication {
            let class = replication.get("class").map(String::as_str);
            return Ok(Self::classify(keyspace, class, false));
        }
        // Virtual keyspaces are listed apart; a server without virtual
        // tables (ScyllaDB, Cassandra before 4.0) refuses the query as invalid.
        let listed = session
            .query_unpaged(
                "SELECT keyspace_name FROM system_virtual_schema.keyspaces WHERE keyspace_name = ?",
                (keyspace,),
            )
            .await;
        let is_virtual = match listed {
            Ok(result) => {
                result
                    .into_rows_result()
                    .map_err(|e| read_err(Box::new(e)))?
                    .rows_num()
                    > 0
            }
            Err(ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::Invalid,
                _,
            ))) => false,
            Err(e) => return Err(read_err(Box::new(e))),
        };
        Ok(Self::classify(keyspace, None, is_virtual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cassandras_own_keyspaces_are_known_by_name() {
        for (keyspace, kind) in [
            ("system", SystemKeyspace::Local),
            ("system_schema", SystemKeyspace::Local),
            ("system_auth", SystemKeyspace::Replicated),
            ("system_distributed", SystemKeyspace::Replicated),
            ("system_traces", SystemKeyspace::Replicated),
            ("system_views", SystemKeyspace::Virtual),
            ("system_virtual_schema", SystemKeyspace::Virtual),
        ] {
            assert_eq!(
                SystemKeyspace::classify(keyspace, None, false),
                Some(kind),
                "{keyspace}"
            );
        }
    }

    #[test]
    fn others_are_system_keyspaces_when_the_server_says_so() {
        let local = "org.apache.cassandra.locator.LocalStrategy";
        assert_eq!(
            SystemKeyspace::classify("system_future", Some(local), false),
            Some(SystemKeyspace::Local)
        );
        assert_eq!(
            SystemKeyspace::classify("node_views", None, true),
            Some(SystemKeyspace::Virtual)
        );
        // A keyspace of the users' may well start with `system`.
        let simple = "org.apache.cassandra.locator.SimpleStrategy";
        for keyspace in ["system_probe", "systems", "event_streaming", "System"] {
            assert_eq!(
                SystemKeyspace::classify(keyspace, Some(simple), false),
                None,
                "{keyspace}"
            );
        }
    }

    #[test]
    fn a_sink_table_there_is_refused_at_the_keyspace_field_saying_what_it_is() {
        let err = SchemaError::SystemKeyspace {
            keyspace: "system_views".into(),
            table: "settings".into(),
            kind: SystemKeyspace::Virtual,
        };
        assert_eq!(err.fault(), crate::Fault::Spec);
        let problems = err.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "sink.cassandra.keyspace");
        assert_eq!(
            problems[0].message,
            "system_views.settings is in system_views, a keyspace of Cassandra's virtual tables: \
             views of a node's state and settings computed when read, not stored data, which \
             cannot be written; a job may not write to Cassandra's own keyspaces: name a \
             keyspace of your own"
        );
    }
}
