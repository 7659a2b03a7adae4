//! Cassandra sink: the INSERT is prepared once from the table's schema, each
//! record is converted and checked column by column, and its row goes out in
//! one unlogged batch per partition and size limit, many writes in flight
//! while the next input is read; a barrier waits for all of them.
//!
//! No record can stop the job: a value that does not convert, a key the
//! server would refuse, or a row the server refuses goes to the dead-letter
//! topic naming its column; when the server refuses a batch, its rows are
//! written one by one so that only the refused ones are dead-lettered. A
//! table that changed under the job fails it at once (the spec's fault);
//! timeouts and unreachable nodes are retried, then restart the job.

use super::batches::{self, MAX_BATCH_BYTES, MAX_BATCH_ROWS};
use super::row::{Column, RowBuilder};
use super::writer::RowWriter;
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use chrono_tz::Tz;
use scylla::value::{CqlValue, MaybeUnset};
use sluice_common::cassandra;
use sluice_common::spec::CassandraSinkSpec;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// How long connecting and reading the schema may take at sink build.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Encoded bytes of a row's write time (a bigint with its length).
const WRITE_TIME_BYTES: usize = 12;

/// Writes records as rows of one table: built from its validated spec with
/// [`CassandraSink::build`], then [`CassandraSink::write`] per batch and
/// [`CassandraSink::drain`] at each barrier.
pub struct CassandraSink {
    writer: Arc<RowWriter>,
    rows: RowBuilder,
    /// Most writes (statements or batches) in flight at once.
    max_concurrency: usize,
    /// Records converted and handed to writes together.
    batch_size: usize,
    /// Writes in flight, each giving the records the server refused.
    in_flight: JoinSet<Result<Vec<Failure>>>,
    write_times: WriteTimes,
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
            "INSERT INTO \"{}\".\"{}\" ({}) VALUES ({}) USING TIMESTAMP ?",
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
            writer: Arc::new(RowWriter {
                session,
                insert,
                schema,
                table,
            }),
            rows: RowBuilder {
                columns,
                single_partition_key,
                timezone,
            },
            max_concurrency: spec.max_concurrency,
            batch_size: spec.batch_size,
            in_flight: JoinSet::new(),
            write_times: WriteTimes::default(),
        })
    }

    /// Converts the batch into rows and hands them to writes that run while
    /// the next input is read, at most `max_concurrency` at a time. Returns
    /// the records that went to no row, and those of earlier batches the
    /// server refused since the last call, each with its error. Errors are
    /// the cluster's (writes failed past their retries) or the table's.
    pub async fn write(&mut self, batch: Vec<Record>) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        while let Some(done) = self.in_flight.try_join_next() {
            failures.extend(self.joined(done)?);
        }
        let mut records = batch.into_iter();
        loop {
            let chunk: Vec<Record> = records.by_ref().take(self.batch_size).collect();
            if chunk.is_empty() {
                return Ok(failures);
            }
            self.flush(chunk, &mut failures).await?;
        }
    }

    /// At a barrier, or when the input ends: waits until every write handed
    /// out is acknowledged; returns the records the server refused.
    pub async fn drain(&mut self) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        while let Some(done) = self.in_flight.join_next().await {
            failures.extend(self.joined(done)?);
        }
        Ok(failures)
    }

    async fn flush(&mut self, chunk: Vec<Record>, failures: &mut Vec<Failure>) -> Result<()> {
        let specs = self.writer.insert.get_variable_col_specs();
        let mut rows = Vec::with_capacity(chunk.len());
        for (index, record) in chunk.iter().enumerate() {
            match self.rows.row(index, record, specs.as_slice()) {
                Ok(mut row) => {
                    row.values
                        .push(MaybeUnset::Set(CqlValue::BigInt(self.write_times.next())));
                    row.size += WRITE_TIME_BYTES;
                    rows.push(row);
                }
                Err(e) => failures.push(Failure::of(record, FailedAt::Sink, e)),
            }
        }
        let batches = batches::plan(rows, MAX_BATCH_ROWS, MAX_BATCH_BYTES);
        tracing::debug!(table = %self.writer.table, records = chunk.len(), batches = batches.len(), "cassandra flush");
        let records = Arc::new(chunk);
        for rows in batches {
            while self.in_flight.len() >= self.max_concurrency {
                if let Some(done) = self.in_flight.join_next().await {
                    failures.extend(self.joined(done)?);
                }
            }
            let write = self.writer.clone().write_rows(rows, records.clone());
            self.in_flight.spawn(write);
        }
        Ok(())
    }

    fn joined(
        &self,
        done: std::result::Result<Result<Vec<Failure>>, tokio::task::JoinError>,
    ) -> Result<Vec<Failure>> {
        done.map_err(|source| WorkerError::CassandraWriteTask {
            table: self.writer.table.clone(),
            source,
        })?
    }
}

/// Write times of rows in the order of their records, in microseconds
/// since the epoch: the worker's clock, one more than the last when the
/// clock has not moved on. With them, a later record of a primary key wins
/// over an earlier one however their writes are ordered in flight, retried
/// or batched (rows of one batch share no write time).
#[derive(Debug, Default)]
struct WriteTimes {
    last: i64,
}

impl WriteTimes {
    fn next(&mut self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        self.last = now.max(self.last.saturating_add(1));
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::WriteTimes;

    #[test]
    fn write_times_rise_strictly_in_record_order() {
        let mut times = WriteTimes::default();
        let taken: Vec<i64> = (0..10_000).map(|_| times.next()).collect();
        assert!(taken.windows(2).all(|w| w[0] < w[1]));
        assert!(
            taken[0] > 1_700_000_000_000_000,
            "microseconds since the epoch"
        );
    }
}
