//! The worker's `/metrics`: each subtask it runs, read from the counters the
//! subtask keeps for its reports. Series carry the labels `job`, `job_name`,
//! `stage`, `subtask` and `operator` (the operators the subtask runs); a
//! source's partitions add `topic` and `partition`.

use super::TaskManager;
use super::metrics::Metrics;
use sluice_common::metrics::{Exposition, Labels, MetricSource};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a worker exposes: its subtasks, running or not ended long ago.
pub struct WorkerMetrics {
    pub tasks: Arc<TaskManager>,
}

fn labels(m: &Metrics) -> Option<Labels> {
    let l = m.labels.get()?;
    Some(vec![
        ("job", l.job.clone()),
        ("job_name", l.job_name.clone()),
        ("stage", l.stage.to_string()),
        ("subtask", l.subtask.to_string()),
        ("operator", l.operator.clone()),
    ])
}

impl MetricSource for WorkerMetrics {
    fn expose(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let tasks: Vec<(Labels, Arc<Metrics>)> = self
            .tasks
            .running_metrics()
            .into_iter()
            .filter_map(|m| Some((labels(&m)?, m)))
            .collect();
        out.gauge(
            "sluice_worker_subtasks",
            "Subtasks this worker runs.",
            [(Labels::new(), tasks.len() as i64)],
        )?;
        let counter = |get: fn(&Metrics) -> u64| {
            tasks
                .iter()
                .map(move |(l, m)| (l.clone(), get(m)))
                .collect::<Vec<_>>()
        };
        out.counter(
            "sluice_subtask_records_in",
            "Records the subtask read: from Kafka for a source stage, from the previous stage otherwise.",
            counter(|m| m.records_in.load(Ordering::Relaxed)),
        )?;
        out.counter(
            "sluice_subtask_records_out",
            "Records the subtask handed to the next stage or wrote to the sink.",
            counter(|m| m.records_out.load(Ordering::Relaxed)),
        )?;
        out.counter(
            "sluice_subtask_dead_lettered",
            "Records that failed and went to the dead-letter topic (or the log without one), by where they failed: decode, transform, key_by, sink.",
            tasks.iter().flat_map(|(l, m)| {
                m.dead_lettered_at().map(move |(at, n)| {
                    let mut l = l.clone();
                    l.push(("failed_at", at.as_str().to_string()));
                    (l, n)
                })
            }),
        )?;
        out.counter(
            "sluice_subtask_dead_letters_dropped",
            "Dead letters the dead-letter topic refused even cut down; only the worker's log has them.",
            counter(|m| m.dead_letters_dropped.load(Ordering::Relaxed)),
        )?;
        out.counter(
            "sluice_subtask_bytes_in",
            "Bytes a subtask read: of the Kafka messages (keys and values) for a source subtask, of the records received from subtasks on other workers otherwise.",
            counter(|m| m.bytes_in.load(Ordering::Relaxed)),
        )?;
        out.counter(
            "sluice_subtask_bytes_out",
            "Bytes of records the subtask sent to subtasks on other workers.",
            counter(|m| m.bytes_out.load(Ordering::Relaxed)),
        )?;
        let seconds = |back_pressure: bool| {
            tasks
                .iter()
                .map(move |(l, m)| {
                    let (busy, blocked) = m.busy_and_back_pressure();
                    let d = if back_pressure { blocked } else { busy };
                    (l.clone(), d.as_secs_f64())
                })
                .collect::<Vec<_>>()
        };
        out.counter(
            "sluice_subtask_busy_seconds",
            "Time the subtask spent handling input, back pressure included; waiting for input is not.",
            seconds(false),
        )?;
        out.counter(
            "sluice_subtask_back_pressure_seconds",
            "Time the subtask waited for the next stage or the sink to take its records.",
            seconds(true),
        )?;
        out.counter(
            "sluice_subtask_checkpoint_sync_seconds",
            "Time the subtask's data path stood still for checkpoints: barrier snapshot and sink pre-commit, sink commit, an exactly-once sink waiting for a free transactional id.",
            tasks
                .iter()
                .map(|(l, m)| (l.clone(), m.checkpoint_sync().as_secs_f64()))
                .collect::<Vec<_>>(),
        )?;
        let snapshots: Vec<(&Labels, sluice_proto::TaskMetrics)> =
            tasks.iter().map(|(l, m)| (l, m.snapshot())).collect();
        out.gauge(
            "sluice_subtask_open_transaction_age_seconds",
            "How long the sink subtask's open transaction has held records; 0 when it holds none.",
            snapshots.iter().map(|(l, s)| {
                (
                    (*l).clone(),
                    sluice_common::metrics::seconds_from_ms(s.open_transaction_age_ms),
                )
            }),
        )?;
        let partitions: Vec<(Labels, crate::connectors::kafka::PartitionState)> = tasks
            .iter()
            .flat_map(|(l, m)| {
                let topic = m.partitions.topic();
                m.partitions.states().into_iter().map(move |p| {
                    let mut l = l.clone();
                    l.push(("topic", topic.clone()));
                    l.push(("partition", p.partition.to_string()));
                    (l, p)
                })
            })
            .collect();
        out.gauge(
            "sluice_source_partition_lag",
            "Records of the partition the source has yet to read: its high watermark minus the source's position, measured live; 0 until the high watermark is known.",
            partitions.iter().map(|(l, p)| (l.clone(), p.lag)),
        )?;
        out.gauge(
            "sluice_source_partition_position",
            "The next offset the source reads in the partition.",
            partitions.iter().map(|(l, p)| (l.clone(), p.position)),
        )?;
        out.gauge(
            "sluice_source_partition_high_watermark",
            "The partition's high watermark as the broker last told it; -1 until known.",
            partitions
                .iter()
                .map(|(l, p)| (l.clone(), p.high_watermark)),
        )?;
        out.counter(
            "sluice_source_offsets_skipped",
            "Offsets the source went past unread because retention had deleted them.",
            partitions.iter().map(|(l, p)| (l.clone(), p.skipped)),
        )
    }
}
