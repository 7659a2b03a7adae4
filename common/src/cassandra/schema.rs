//! A table's columns as `system_schema` describes them, read the same way by
//! the coordinator (to refuse a job at submit) and by the Cassandra sink (to
//! prepare its INSERT and convert records).

use super::SchemaError;
use super::cql_type::{CqlType, Unsupported, UserTypes};
use crate::error::SpecProblem;
use scylla::client::session::Session;
use std::collections::{BTreeMap, HashMap};

/// The role of a column in its table (`system_schema.columns.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    PartitionKey,
    Clustering,
    Static,
    Regular,
}

/// One column: its name, role, type as `system_schema` writes it, and that
/// type parsed, or why Sluice cannot write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSchema {
    pub name: String,
    pub kind: ColumnKind,
    pub type_text: String,
    pub ty: Result<CqlType, Unsupported>,
}

impl ColumnSchema {
    /// Part of the primary key (partition key or clustering column).
    pub fn is_primary_key(&self) -> bool {
        matches!(self.kind, ColumnKind::PartitionKey | ColumnKind::Clustering)
    }
}

/// The columns of `keyspace.table`: partition key columns in key order,
/// then clustering columns in order, then the others by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub keyspace: String,
    pub table: String,
    pub columns: Vec<ColumnSchema>,
}

/// Where a job spec names the sink's table and its column mapping.
const TABLE_PATH: &str = "sink.cassandra.table";

impl TableSchema {
    /// Reads the table's columns and its keyspace's user-defined types from
    /// `system_schema`. A table without columns there does not exist.
    pub async fn read(session: &Session, keyspace: &str, table: &str) -> Result<Self, SchemaError> {
        let read_err = |source: Box<dyn std::error::Error + Send + Sync>| SchemaError::Read {
            keyspace: keyspace.to_string(),
            table: table.to_string(),
            source,
        };
        let columns = session
            .query_unpaged(
                "SELECT column_name, kind, position, type FROM system_schema.columns \
                 WHERE keyspace_name = ? AND table_name = ?",
                (keyspace, table),
            )
            .await
            .map_err(|e| read_err(Box::new(e)))?
            .into_rows_result()
            .map_err(|e| read_err(Box::new(e)))?;
        let columns: Vec<(String, String, i32, String)> = columns
            .rows::<(String, String, i32, String)>()
            .map_err(|e| read_err(Box::new(e)))?
            .collect::<Result<_, _>>()
            .map_err(|e| read_err(Box::new(e)))?;
        let types = session
            .query_unpaged(
                "SELECT type_name, field_names, field_types FROM system_schema.types \
                 WHERE keyspace_name = ?",
                (keyspace,),
            )
            .await
            .map_err(|e| read_err(Box::new(e)))?
            .into_rows_result()
            .map_err(|e| read_err(Box::new(e)))?;
        let types: HashMap<String, (Vec<String>, Vec<String>)> = types
            .rows::<(String, Vec<String>, Vec<String>)>()
            .map_err(|e| read_err(Box::new(e)))?
            .map(|row| row.map(|(name, names, types)| (name, (names, types))))
            .collect::<Result<_, _>>()
            .map_err(|e| read_err(Box::new(e)))?;
        Self::from_rows(keyspace, table, columns, &UserTypes::new(keyspace, types))
    }

    /// The schema from `system_schema.columns` rows `(name, kind, position,
    /// type)`, with `types` the keyspace's user-defined types.
    pub fn from_rows(
        keyspace: &str,
        table: &str,
        rows: Vec<(String, String, i32, String)>,
        types: &UserTypes,
    ) -> Result<Self, SchemaError> {
        if rows.is_empty() {
            return Err(SchemaError::NoTable {
                keyspace: keyspace.to_string(),
                table: table.to_string(),
            });
        }
        let mut columns: Vec<(i32, ColumnSchema)> = rows
            .into_iter()
            .map(|(name, kind, position, type_text)| {
                let kind = match kind.as_str() {
                    "partition_key" => ColumnKind::PartitionKey,
                    "clustering" => ColumnKind::Clustering,
                    "static" => ColumnKind::Static,
                    _ => ColumnKind::Regular,
                };
                let ty = CqlType::parse(&type_text, types);
                (
                    position,
                    ColumnSchema {
                        name,
                        kind,
                        type_text,
                        ty,
                    },
                )
            })
            .collect();
        let rank = |k: ColumnKind| match k {
            ColumnKind::PartitionKey => 0,
            ColumnKind::Clustering => 1,
            ColumnKind::Static | ColumnKind::Regular => 2,
        };
        columns.sort_by_key(|(position, c)| {
            let ordered = c.is_primary_key().then_some(*position);
            (rank(c.kind), ordered, c.name.clone())
        });
        Ok(Self {
            keyspace: keyspace.to_string(),
            table: table.to_string(),
            columns: columns.into_iter().map(|(_, c)| c).collect(),
        })
    }

    /// The column named `name` (case as the table has it).
    pub fn column(&self, name: &str) -> Option<&ColumnSchema> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The partition key columns, in key order.
    pub fn partition_key(&self) -> impl Iterator<Item = &ColumnSchema> {
        self.columns
            .iter()
            .filter(|c| c.kind == ColumnKind::PartitionKey)
    }

    /// What keeps a job with the column mapping `mapped` (column -> record
    /// field, `sink.cassandra.columns`) from writing this table: columns of a
    /// type Sluice cannot write, mapped names that are no column. Each
    /// problem has its spec field path.
    pub fn problems(&self, mapped: &BTreeMap<String, String>) -> Vec<SpecProblem> {
        let name = format!("{}.{}", self.keyspace, self.table);
        let mut problems: Vec<SpecProblem> = self
            .columns
            .iter()
            .filter_map(|c| {
                let why = c.ty.as_ref().err()?;
                Some(SpecProblem {
                    path: TABLE_PATH.into(),
                    message: format!(
                        "column `{}` of {name} has type `{}`, which Sluice cannot write: {why}",
                        c.name, c.type_text
                    ),
                })
            })
            .collect();
        for column in mapped.keys().filter(|m| self.column(m).is_none()) {
            let known: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
            problems.push(SpecProblem {
                path: format!("sink.cassandra.columns.{column}"),
                message: format!(
                    "`{column}` is not a column of {name} (its columns: {})",
                    known.join(", ")
                ),
            });
        }
        problems
    }

    /// How this (newer) schema differs from `earlier` in what an INSERT of
    /// `earlier`'s columns needs: a column dropped or of another type now.
    /// Columns added since do not matter.
    pub fn changes_since(&self, earlier: &TableSchema) -> Option<String> {
        let changes: Vec<String> = earlier
            .columns
            .iter()
            .filter_map(|old| match self.column(&old.name) {
                None => Some(format!("column `{}` was dropped", old.name)),
                Some(new) if new.type_text != old.type_text => Some(format!(
                    "column `{}` is now of type `{}` (was `{}`)",
                    old.name, new.type_text, old.type_text
                )),
                Some(new) if new.kind != old.kind => {
                    Some(format!("column `{}` changed its role in the key", old.name))
                }
                Some(_) => None,
            })
            .collect();
        (!changes.is_empty()).then(|| changes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, position: i32, ty: &str) -> (String, String, i32, String) {
        (name.into(), kind.into(), position, ty.into())
    }

    fn users() -> TableSchema {
        TableSchema::from_rows(
            "ks",
            "users",
            vec![
                row("name", "regular", -1, "text"),
                row("seq", "clustering", 0, "int"),
                row("user_id", "partition_key", 1, "text"),
                row("tenant", "partition_key", 0, "text"),
                row("hits", "regular", -1, "counter"),
                row("at", "clustering", 1, "timestamp"),
                row("home", "static", -1, "frozen<address>"),
            ],
            &UserTypes::default(),
        )
        .expect("columns")
    }

    #[test]
    fn orders_columns_by_their_place_in_the_key() {
        let schema = users();
        let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["tenant", "user_id", "seq", "at", "hits", "home", "name"]
        );
        let key: Vec<&str> = schema.partition_key().map(|c| c.name.as_str()).collect();
        assert_eq!(key, ["tenant", "user_id"]);
        assert!(
            schema
                .column("seq")
                .is_some_and(ColumnSchema::is_primary_key)
        );
        assert!(
            !schema
                .column("home")
                .is_some_and(ColumnSchema::is_primary_key)
        );
    }

    #[test]
    fn a_table_without_columns_does_not_exist() {
        let err = TableSchema::from_rows("ks", "gone", vec![], &UserTypes::default())
            .expect_err("no table");
        assert_eq!(err.to_string(), "table ks.gone does not exist");
        assert_eq!(err.fault(), crate::Fault::Spec);
    }

    #[test]
    fn problems_name_the_column_its_type_and_the_spec_field() {
        let mut mapped = BTreeMap::new();
        mapped.insert("name".to_string(), "profile.name".to_string());
        mapped.insert("nmae".to_string(), "profile.name".to_string());
        let problems = users().problems(&mapped);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(problems[0].path, "sink.cassandra.table");
        assert!(
            problems[0]
                .message
                .starts_with("column `hits` of ks.users has type `counter`"),
            "{}",
            problems[0]
        );
        assert_eq!(problems[1].path, "sink.cassandra.table");
        assert!(
            problems[1].message.contains("unknown type `address`"),
            "{}",
            problems[1]
        );
        assert_eq!(problems[2].path, "sink.cassandra.columns.nmae");
        assert!(
            problems[2]
                .message
                .contains("`nmae` is not a column of ks.users"),
            "{}",
            problems[2]
        );
    }

    #[test]
    fn changes_are_dropped_or_retyped_columns_only() {
        let before = users();
        let mut after = before.clone();
        assert_eq!(after.changes_since(&before), None);
        after.columns.push(ColumnSchema {
            name: "added".into(),
            kind: ColumnKind::Regular,
            type_text: "text".into(),
            ty: Ok(CqlType::Text),
        });
        assert_eq!(
            after.changes_since(&before),
            None,
            "an added column is fine"
        );
        after.columns.retain(|c| c.name != "name");
        if let Some(seq) = after.columns.iter_mut().find(|c| c.name == "seq") {
            seq.type_text = "bigint".into();
        }
        assert_eq!(
            after.changes_since(&before).as_deref(),
            Some("column `seq` is now of type `bigint` (was `int`); column `name` was dropped")
        );
    }
}
