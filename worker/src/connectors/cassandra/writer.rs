//! The sending half of the Cassandra sink, shared by the writes it keeps in
//! flight: one unlogged batch per partition, retried while the cluster
//! cannot take it for a while, row by row when the server refuses it.

use super::batches::Row;
use super::refusal::write_fault;
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use sluice_common::Fault;
use sluice_common::cassandra::TableSchema;
use std::sync::Arc;
use std::time::Duration;

/// Tries of a write the cluster could not take for a while (timeouts,
/// unavailable replicas, broken connections) before the job restarts.
const WRITE_ATTEMPTS: u32 = 5;

/// Sends rows of one table through a prepared INSERT whose last bound
/// marker is the row's write time (`USING TIMESTAMP ?`).
pub struct RowWriter {
    pub session: Session,
    pub insert: PreparedStatement,
    /// The table when the INSERT was prepared: a refused write is the
    /// record's only if the table is still so.
    pub schema: TableSchema,
    /// `keyspace.table`, for errors and logs.
    pub table: String,
}

impl RowWriter {
    /// Writes rows of one partition, taken from `records`; returns the
    /// records the server refused as failures. When it refuses the batch,
    /// the rows are written one by one, so only the refused ones are left
    /// out. Errors are the cluster's (retries spent) or the table's (it
    /// changed under the job).
    pub async fn write_rows(
        self: Arc<Self>,
        rows: Vec<Row>,
        records: Arc<Vec<Record>>,
    ) -> Result<Vec<Failure>> {
        let e = match self.send(&rows).await {
            Ok(()) => return Ok(Vec::new()),
            Err(e) => e,
        };
        if write_fault(&e) != Fault::Record {
            return Err(self.write_error(e));
        }
        self.check_table_unchanged(&e).await?;
        let refused = |row: &Row, e: &ExecutionError| {
            Failure::of(
                &records[row.record],
                FailedAt::Sink,
                format!("Cassandra refused the row: {e}"),
            )
        };
        if rows.len() == 1 {
            return Ok(vec![refused(&rows[0], &e)]);
        }
        tracing::info!(table = %self.table, rows = rows.len(), error = %e, "cassandra refused a batch; writing its rows one by one");
        let mut refusals = Vec::new();
        for row in &rows {
            match self.send(std::slice::from_ref(row)).await {
                Ok(()) => {}
                Err(e) if write_fault(&e) == Fault::Record => refusals.push(refused(row, &e)),
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
                // A row carries its write time, so a retried write lands as
                // the first would have, even after later ones.
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
