//! Rows grouped into the batches the sink sends: one partition per batch
//! (an unlogged batch of one partition is one mutation), bounded by rows and
//! by encoded bytes, so that no batch comes near Cassandra's largest
//! mutation (half of `commitlog_segment_size`, 16 MiB by default) or its
//! largest request frame (`native_transport_max_frame_size`, 16 MiB).

use scylla::value::{CqlValue, MaybeUnset};
use std::collections::HashMap;

/// Most rows in one batch.
pub const MAX_BATCH_ROWS: usize = 16;
/// Most encoded bytes of values in one batch; a larger row goes alone.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// A record converted into the values of the sink's INSERT.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index of its record in the batch being flushed.
    pub record: usize,
    pub values: Vec<MaybeUnset<CqlValue>>,
    /// Its partition key, encoded: rows with equal keys share a partition.
    pub partition: Vec<u8>,
    /// Encoded size of its values in bytes.
    pub size: usize,
}

/// Groups `rows` by partition, in their order within each partition, into
/// batches of at most `max_rows` rows and `max_bytes` bytes.
pub fn plan(rows: Vec<Row>, max_rows: usize, max_bytes: usize) -> Vec<Vec<Row>> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut partitions: HashMap<Vec<u8>, Vec<Row>> = HashMap::new();
    for row in rows {
        let rows = partitions.entry(row.partition.clone()).or_insert_with(|| {
            order.push(row.partition.clone());
            Vec::new()
        });
        rows.push(row);
    }
    let mut batches = Vec::new();
    for key in order {
        let mut batch: Vec<Row> = Vec::new();
        let mut bytes = 0;
        for row in partitions.remove(&key).unwrap_or_default() {
            if !batch.is_empty() && (batch.len() == max_rows || bytes + row.size > max_bytes) {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += row.size;
            batch.push(row);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(record: usize, partition: u8, size: usize) -> Row {
        Row {
            record,
            values: Vec::new(),
            partition: vec![partition],
            size,
        }
    }

    fn shape(batches: &[Vec<Row>]) -> Vec<Vec<usize>> {
        batches
            .iter()
            .map(|b| b.iter().map(|r| r.record).collect())
            .collect()
    }

    #[test]
    fn one_partition_per_batch_in_record_order() {
        let rows = vec![row(0, 1, 10), row(1, 2, 10), row(2, 1, 10), row(3, 2, 10)];
        assert_eq!(shape(&plan(rows, 16, 1000)), [vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn batches_are_bounded_by_rows() {
        let rows = (0..5).map(|i| row(i, 1, 1)).collect();
        assert_eq!(
            shape(&plan(rows, 2, 1000)),
            [vec![0, 1], vec![2, 3], vec![4]]
        );
    }

    #[test]
    fn batches_are_bounded_by_bytes_and_a_large_row_goes_alone() {
        // Case 010 variant B: 20 rows of 1.1 MB in one partition never make
        // a batch over the limit, and 16 of them (17.6 MB) never travel together.
        let rows: Vec<Row> = (0..20).map(|i| row(i, 1, 1_100_000)).collect();
        let batches = plan(rows, MAX_BATCH_ROWS, MAX_BATCH_BYTES);
        assert!(
            batches
                .iter()
                .all(|b| b.iter().map(|r| r.size).sum::<usize>() <= MAX_BATCH_BYTES)
        );
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 20);
        assert_eq!(batches[0].len(), 3);
        let rows = vec![row(0, 1, 10), row(1, 1, 5000), row(2, 1, 10)];
        assert_eq!(shape(&plan(rows, 16, 1000)), [vec![0], vec![1], vec![2]]);
    }
}
