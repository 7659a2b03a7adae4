//! Cassandra sink: the INSERT is prepared once from the table's schema, each
//! record is converted column by column, and a flush writes one unlogged batch
//! per partition key, several partitions at a time.

use super::ColumnType;
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset};
use sluice_common::spec::CassandraSinkSpec;
use std::collections::BTreeMap;
use std::time::Duration;
use vrl::value::Value;

struct Column {
    name: String,
    cql_type: String,
    ty: ColumnType,
    /// Dotted path of the record field this column takes its value from.
    field: Vec<String>,
    primary_key: bool,
    partition_key: bool,
}

pub struct CassandraSink {
    session: Session,
    insert: PreparedStatement,
    columns: Vec<Column>,
    max_concurrency: usize,
    batch_size: usize,
    table: String,
}

type Row = Vec<MaybeUnset<CqlValue>>;

const WRITE_ATTEMPTS: u32 = 5;
const ROWS_PER_BATCH: usize = 16;

impl CassandraSink {
    pub async fn build(spec: &CassandraSinkSpec) -> Result<Self> {
        let table = format!("{}.{}", spec.keyspace, spec.table);
        let err = |what: &str, reason: String| WorkerError::Cassandra {
            what: format!("{what} ({table})"),
            reason,
        };
        let session = SessionBuilder::new()
            .known_nodes(&spec.contact_points)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .await
            .map_err(|e| {
                err(
                    &format!("connect to {}", spec.contact_points.join(", ")),
                    e.to_string(),
                )
            })?;
        let rows = session
            .query_unpaged(
                "SELECT column_name, kind, type FROM system_schema.columns \
                 WHERE keyspace_name = ? AND table_name = ?",
                (&spec.keyspace, &spec.table),
            )
            .await
            .map_err(|e| err("read schema", e.to_string()))?
            .into_rows_result()
            .map_err(|e| err("read schema", e.to_string()))?;
        let mut columns = Vec::new();
        for row in rows
            .rows::<(String, String, String)>()
            .map_err(|e| err("read schema", e.to_string()))?
        {
            let (name, kind, cql_type) = row.map_err(|e| err("read schema", e.to_string()))?;
            let ty = ColumnType::parse(&cql_type).ok_or_else(|| {
                err(
                    "prepare",
                    format!("column `{name}` has type `{cql_type}`, which the Cassandra sink cannot write"),
                )
            })?;
            let field = spec
                .columns
                .get(&name)
                .cloned()
                .unwrap_or_else(|| name.clone());
            columns.push(Column {
                field: field.split('.').map(String::from).collect(),
                name,
                cql_type,
                ty,
                primary_key: kind == "partition_key" || kind == "clustering",
                partition_key: kind == "partition_key",
            });
        }
        if columns.is_empty() {
            return Err(err("prepare", "table does not exist".into()));
        }
        for mapped in spec.columns.keys() {
            if !columns.iter().any(|c| &c.name == mapped) {
                return Err(err(
                    "prepare",
                    format!(
                        "sink.cassandra.columns names `{mapped}`, which is not a column of the table"
                    ),
                ));
            }
        }
        let names: Vec<String> = columns.iter().map(|c| format!("\"{}\"", c.name)).collect();
        let marks = vec!["?"; columns.len()].join(", ");
        let cql = format!(
            "INSERT INTO \"{}\".\"{}\" ({}) VALUES ({marks})",
            spec.keyspace,
            spec.table,
            names.join(", ")
        );
        let insert = session
            .prepare(cql)
            .await
            .map_err(|e| err("prepare insert", e.to_string()))?;
        Ok(Self {
            session,
            insert,
            columns,
            max_concurrency: spec.max_concurrency,
            batch_size: spec.batch_size,
            table,
        })
    }

    fn row(&self, record: &Record) -> Result<Row, String> {
        self.columns
            .iter()
            .map(|c| match lookup(&record.value, &c.field) {
                None | Some(Value::Null) if c.primary_key => Err(format!(
                    "primary key column `{}` has no value (field `{}`)",
                    c.name,
                    c.field.join(".")
                )),
                None | Some(Value::Null) => Ok(MaybeUnset::Unset),
                Some(v) => {
                    c.ty.convert(v)
                        .map(MaybeUnset::Set)
                        .map_err(|e| format!("column `{}` ({}): {e}", c.name, c.cql_type))
                }
            })
            .collect()
    }

    /// Writes the batch and returns the records that could not be converted.
    /// Returns only once every write is acknowledged.
    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for chunk in batch.chunks(self.batch_size) {
            self.flush(chunk, &mut failures).await?;
        }
        Ok(failures)
    }

    async fn flush(&self, batch: &[Record], failures: &mut Vec<Failure>) -> Result<()> {
        let mut by_partition: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for record in batch {
            match self.row(record) {
                Ok(row) => {
                    let key = self
                        .columns
                        .iter()
                        .zip(&row)
                        .filter(|(c, _)| c.partition_key)
                        .map(|(_, v)| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join("\u{1}");
                    by_partition.entry(key).or_default().push(row);
                }
                Err(e) => failures.push(Failure::of(record, FailedAt::Sink, e)),
            }
        }
        let session = &self.session;
        let insert = &self.insert;
        // Cassandra refuses batches past `batch_size_fail_threshold` (50 KiB by
        // default): a busy partition is written in several small batches.
        let chunks: Vec<Vec<Row>> = by_partition
            .into_values()
            .flat_map(|rows| {
                let mut rows = rows.into_iter().peekable();
                std::iter::from_fn(move || {
                    rows.peek()?;
                    Some(rows.by_ref().take(ROWS_PER_BATCH).collect())
                })
            })
            .collect();
        let mut writes = futures::stream::iter(chunks)
            .map(|rows| write_partition(session, insert, rows))
            .buffer_unordered(self.max_concurrency);
        while let Some(result) = writes.next().await {
            result.map_err(|reason| WorkerError::Cassandra {
                what: format!("write to {}", self.table),
                reason,
            })?;
        }
        Ok(())
    }
}

async fn write_partition(
    session: &Session,
    insert: &PreparedStatement,
    rows: Vec<Row>,
) -> Result<(), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = if rows.len() == 1 {
            session.execute_unpaged(insert, &rows[0]).await.map(drop)
        } else {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in &rows {
                batch.append_statement(insert.clone());
            }
            session.batch(&batch, &rows).await.map(drop)
        };
        match result {
            Ok(()) => return Ok(()),
            // Upserts are idempotent, so a retried write cannot duplicate a row.
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "cassandra write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            Err(e) => return Err(format!("{e} (after {attempt} attempts)")),
        }
    }
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = value;
    for part in path {
        match v {
            Value::Object(map) => v = map.get(part.as_str())?,
            _ => return None,
        }
    }
    Some(v)
}
