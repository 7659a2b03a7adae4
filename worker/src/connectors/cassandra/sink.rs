//! Cassandra sink: the INSERT is prepared once from the table's schema, each
//! record is converted and checked column by column, and a flush writes one
//! unlogged batch per partition and size limit, several at a time.
//!
//! No record can stop the job: a value that does not convert, a key the
//! server would refuse, or a row the server refuses goes to the dead-letter
//! topic naming its column; when the server refuses a batch, its rows are
//! written one by one so that only the refused ones are dead-lettered. A
//! table that changed under the job fails it at once (the spec's fault);
//! timeouts and unreachable nodes are retried, then restart the job.

use super::batches::{self, MAX_BATCH_BYTES, MAX_BATCH_ROWS, Row};
use super::refusal::write_fault;
use super::row::{Column, RowBuilder};
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use chrono_tz::Tz;
use futures::StreamExt;
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use sluice_common::Fault;
use sluice_common::cassandra::{self, TableSchema};
use sluice_common::spec::CassandraSinkSpec;
use std::time::Duration;

/// How long connecting and reading the schema may take at sink build.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a write the cluster could not take for a while (timeouts,
/// unavailable replicas, broken connections) before the job restarts.
const WRITE_ATTEMPTS: u32 = 5;

/// Writes records as rows of one table: built from its validated spec with
/// [`CassandraSink::build`], then [`CassandraSink::write`] per batch.
pub struct CassandraSink {
    session: Session,
    insert: PreparedStatement,
    /// The table when the INSERT was prepared: a refused write is the
    /// record's only if the table is still so.
    schema: TableSchema,
    rows: RowBuilder,
    max_concurrency: usize,
    batch_size: usize,
    table: String,
}

impl CassandraSink {
    /// Connects, reads the table's schema (refusing a table that does not
    /// exist or has a column Sluice cannot write: the spec's fault) and
    /// prepares the INSERT. Zone-less times are read in `timezone`.
    pub async fn build(spec: &CassandraSinkSpec, timezone: Tz) -> Result<Self> {
        let table = format!("{}.{}", spec.keyspace, spec.table);
        let session = cassandra::connect(&spec.contact_points, CONNECT_TIMEOUT).await?;
        let schema = cassandra::writable_schema(&session, spec, CONNECT_TIMEOUT).await?;
        // `writable_schema` refused every column without a type Sluice writes.
        let columns: Vec<Column> = schema
            .columns
            .iter()
            .filter_map(|c| {
                let field = spec.columns.get(&c.name).unwrap_or(&c.name);
                Some(Column {
                    name: c.name.clone(),
                    type_text: c.type_text.clone(),
                    ty: c.ty.clone().ok()?,
                    kind: c.kind,
                    field: field.split('.').map(String::from).collect(),
                })
            })
            .collect();
        let names: Vec<String> = columns
            .iter()
            .map(|c| format!("\"{}\"", c.name.replace('"', "\"\"")))
            .collect();
        let cql = format!(
            "INSERT INTO \"{}\".\"{}\" ({}) VALUES ({})",
            spec.keyspace,
            spec.table,
            names.join(", "),
            vec!["?"; columns.len()].join(", ")
        );
        let insert =
            session
                .prepare(cql)
                .await
                .map_err(|source| WorkerError::CassandraPrepare {
                    table: table.clone(),
                    source: Box::new(source),
                })?;
        let single_partition_key = schema.partition_key().count() == 1;
        tracing::info!(table = %table, columns = columns.len(), "cassandra sink prepared");
        Ok(Self {
            session,
            insert,
            schema,
            rows: RowBuilder {
                columns,
                single_partition_key,
                timezone,
            },
            max_concurrency: spec.max_concurrency,
            batch_size: spec.batch_size,
            table,
        })
    }

    /// Writes the batch and returns the records that went to no row, each
    /// with its error. Returns only once every write is acknowledged.
    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for chunk in batch.chunks(self.batch_size) {
            self.flush(chunk, &mut failures).await?;
        }
        Ok(failures)
    }

    async fn flush(&self, records: &[Record], failures: &mut Vec<Failure>) -> Result<()> {
        let specs = self.insert.get_variable_col_specs();
        let mut rows = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            match self.rows.row(index, record, specs.as_slice()) {
                Ok(row) => rows.push(row),
                Err(e) => failures.push(Failure::of(record, FailedAt::Sink, e)),
            }
        }
        let batches = batches::plan(rows, MAX_BATCH_ROWS, MAX_BATCH_BYTES);
        tracing::debug!(table = %self.table, records = records.len(), batches = batches.len(), "cassandra flush");
        let mut writes = futures::stream::iter(batches)
            .map(|rows| self.write_rows(rows))
            .buffer_unordered(self.max_concurrency);
        while let Some(refused) = writes.next().await {
            for (index, error) in refused? {
                failures.push(Failure::of(&records[index], FailedAt::Sink, error));
            }
        }
        Ok(())
    }

    /// Writes rows of one partition; returns the rows the server refused,
    /// with its message. When it refuses the batch, the rows are written
    /// one by one, so only the refused ones are left out.
    async fn write_rows(&self, rows: Vec<Row>) -> Result<Vec<(usize, String)>> {
        let e = match self.send(&rows).await {
            Ok(()) => return Ok(Vec::new()),
            Err(e) => e,
        };
        if write_fault(&e) != Fault::Record {
            return Err(self.write_error(e));
        }
        self.check_table_unchanged(&e).await?;
        if rows.len() == 1 {
            return Ok(vec![(rows[0].record, refused(&e))]);
        }
        tracing::info!(table = %self.table, rows = rows.len(), error = %e, "cassandra refused a batch; writing its rows one by one");
        let mut refusals = Vec::new();
        for row in rows {
            match self.send(std::slice::from_ref(&row)).await {
                Ok(()) => {}
                Err(e) if write_fault(&e) == Fault::Record => {
                    refusals.push((row.record, refused(&e)));
                }
                Err(e) => return Err(self.write_error(e)),
            }
        }
        Ok(refusals)
    }

    /// Sends rows as one statement or one unlogged batch, again while the
    /// cluster cannot take it for a while; other errors return at once.
    async fn send(&self, rows: &[Row]) -> std::result::Result<(), ExecutionError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match rows {
                [row] => self
                    .session
                    .execute_unpaged(&self.insert, &row.values)
                    .await
                    .map(drop),
                _ => {
                    let mut batch = Batch::new(BatchType::Unlogged);
                    for _ in rows {
                        batch.append_statement(self.insert.clone());
                    }
                    let values: Vec<_> = rows.iter().map(|r| &r.values).collect();
                    self.session.batch(&batch, values).await.map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(()),
                // Upserts are idempotent, so a retried write cannot duplicate a row.
                Err(e) if write_fault(&e) == Fault::External && attempt < WRITE_ATTEMPTS => {
                    tracing::warn!(table = %self.table, attempt, error = %e, "cassandra write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A write refused as invalid is the record's only while the table is
    /// the one the sink prepared for; a dropped table or column, or a column
    /// of another type now, fails the job (the spec's fault).
    async fn check_table_unchanged(&self, refusal: &ExecutionError) -> Result<()> {
        let (keyspace, table) = (&self.schema.keyspace, &self.schema.table);
        let change = match TableSchema::read(&self.session, keyspace, table).await {
            Ok(now) => now.changes_since(&self.schema),
            Err(e) if e.fault() == Fault::Spec => Some(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        match change {
            Some(change) => Err(WorkerError::CassandraTableChanged {
                table: self.table.clone(),
                change,
                source: Box::new(refusal.clone()),
            }),
            None => Ok(()),
        }
    }

    fn write_error(&self, e: ExecutionError) -> WorkerError {
        WorkerError::CassandraWrite {
            table: self.table.clone(),
            source: Box::new(e),
        }
    }
}

/// The server's reason for refusing a row, for its dead letter.
fn refused(e: &ExecutionError) -> String {
    format!("Cassandra refused the row: {e}")
}
