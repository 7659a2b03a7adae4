use super::Metrics;
use crate::connectors::SinkWriter;
use crate::connectors::kafka::{DeadLetterWriter, KafkaSource, RawMessage};
use crate::error::{Result, WorkerError};
use crate::exchange::{Frame, InboxKey, InboxMsg, Inboxes, Peers, Route, Router};
use crate::operators::{Chain, TaskInfo};
use crate::record::{FailedAt, Failure, Origin, Record};
use sluice_common::spec::{SourceFormat, SourceSpec};
use sluice_common::{JobId, JobSpec, TaskId};
use sluice_proto::TaskDeployment;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use vrl::value::Value;

/// Most records a source hands to its chain at once.
const SOURCE_BATCH: usize = 512;
const SOURCE_LINGER: Duration = Duration::from_millis(20);

/// What every subtask of this worker shares.
pub struct RuntimeContext {
    pub inboxes: Arc<Inboxes>,
    pub peers: Peers,
    pub own_address: String,
}

enum Input {
    Kafka {
        source: KafkaSource,
        format: SourceFormat,
    },
    Inbox {
        rx: mpsc::Receiver<InboxMsg>,
        _guard: InboxGuard,
        senders: usize,
        ended: std::collections::BTreeSet<u32>,
    },
}

enum Output {
    Router(Router),
    Sink(SinkWriter),
}

/// Removes the subtask's inbox however the subtask ends.
struct InboxGuard {
    inboxes: Arc<Inboxes>,
    key: InboxKey,
}

impl Drop for InboxGuard {
    fn drop(&mut self) {
        self.inboxes.close(&self.key);
    }
}

/// Runs one subtask until its input ends or it fails; `on_running` is called
/// once its connections are up.
pub async fn run_subtask(
    dep: TaskDeployment,
    ctx: Arc<RuntimeContext>,
    metrics: Arc<Metrics>,
    on_running: impl FnOnce(),
) -> Result<()> {
    let task = TaskId::new(dep.task_id.clone());
    let job = JobId::new(dep.job_id.clone());
    let spec = JobSpec::parse_resolved(&dep.spec_json).map_err(|e| WorkerError::Spec {
        task: task.clone(),
        reason: e.to_string(),
    })?;
    let (transforms, key_fields) = spec.stage_plan(dep.stage);
    let info = TaskInfo {
        job: dep.job_id.clone(),
        task: dep.task_id.clone(),
        stage: dep.stage,
        subtask: dep.index,
    };
    let mut chain = Chain::build(&transforms, &info).map_err(|reason| WorkerError::Spec {
        task: task.clone(),
        reason,
    })?;
    let SourceSpec::Kafka(source_spec) = &spec.source;
    // Open the inbox first: upstream subtasks look for it as soon as they start.
    let mut input = if dep.stage == 0 {
        Input::Kafka {
            source: KafkaSource::build(source_spec, &spec.name, &dep.partitions)?,
            format: source_spec.format,
        }
    } else {
        let key = InboxKey {
            job: job.clone(),
            attempt: dep.attempt,
            stage: dep.stage,
            index: dep.index,
        };
        let rx = ctx
            .inboxes
            .open(key.clone(), crate::exchange::INBOX_CAPACITY);
        Input::Inbox {
            rx,
            _guard: InboxGuard {
                inboxes: ctx.inboxes.clone(),
                key,
            },
            senders: dep.parallelism as usize,
            ended: Default::default(),
        }
    };
    let dead_letter = spec
        .dead_letter
        .as_ref()
        .map(|dl| DeadLetterWriter::build(dl, &source_spec.brokers, job.as_str()))
        .transpose()?;
    let mut output = match key_fields {
        Some(fields) => {
            let route = Route {
                job: &job,
                attempt: dep.attempt,
                index: dep.index,
                next_stage: dep.stage + 1,
                downstream: &dep.downstream,
                own_address: &ctx.own_address,
            };
            Output::Router(Router::connect(route, fields, &ctx.inboxes, &ctx.peers).await?)
        }
        None => Output::Sink(SinkWriter::build(&spec.sink).await?),
    };
    on_running();
    tracing::info!(task = %task, partitions = ?dep.partitions, "subtask running");

    loop {
        let mut failures = Vec::new();
        let Some(records) = input.next(&mut failures).await? else {
            tracing::info!(task = %task, "input ended");
            return Ok(());
        };
        Metrics::add(&metrics.records_in, records.len() + failures.len());
        let records = chain.process(records, &mut failures);
        let n = records.len();
        let failed_before = failures.len();
        match &mut output {
            Output::Router(router) => router.send(records, &mut failures).await?,
            Output::Sink(sink) => failures.extend(sink.write(records).await?),
        }
        Metrics::add(&metrics.records_out, n - (failures.len() - failed_before));
        if !failures.is_empty() {
            Metrics::add(&metrics.dead_lettered, failures.len());
            match &dead_letter {
                Some(dl) => dl.write(&failures).await?,
                None => {
                    for f in &failures {
                        tracing::warn!(task = %task, topic = %f.origin.topic, partition = f.origin.partition,
                            offset = f.origin.offset, failed_at = f.at.as_str(), error = %f.error,
                            "record dropped: job has no dead_letter");
                    }
                }
            }
        }
    }
}

impl Input {
    /// The next batch of records, `None` once every upstream subtask ended.
    async fn next(&mut self, failures: &mut Vec<Failure>) -> Result<Option<Vec<Record>>> {
        match self {
            Self::Kafka { source, format } => {
                let batch = source.next_batch(SOURCE_BATCH, SOURCE_LINGER).await?;
                Ok(Some(decode(batch, *format, failures)))
            }
            Self::Inbox {
                rx, senders, ended, ..
            } => loop {
                let Some(msg) = rx.recv().await else {
                    return Ok(None);
                };
                match msg.frame {
                    Frame::Records(records) => return Ok(Some(records)),
                    Frame::Barrier(_) => {}
                    Frame::End => {
                        ended.insert(msg.sender);
                        if ended.len() >= *senders {
                            return Ok(None);
                        }
                    }
                }
            },
        }
    }
}

fn decode(
    batch: Vec<RawMessage>,
    format: SourceFormat,
    failures: &mut Vec<Failure>,
) -> Vec<Record> {
    let mut out = Vec::with_capacity(batch.len());
    for m in batch {
        let origin = Origin {
            topic: m.topic,
            partition: m.partition,
            offset: m.offset,
        };
        let payload = m.payload.unwrap_or_default();
        let decoded = match format {
            SourceFormat::Json => {
                serde_json::from_slice::<Value>(&payload).map_err(|e| format!("not JSON: {e}"))
            }
            SourceFormat::Text => std::str::from_utf8(&payload)
                .map(|s| {
                    let mut map = vrl::value::ObjectMap::new();
                    map.insert("message".into(), Value::from(s));
                    Value::Object(map)
                })
                .map_err(|e| format!("not UTF-8: {e}")),
        };
        match decoded {
            Ok(value) => out.push(Record { value, origin }),
            Err(error) => failures.push(Failure {
                origin,
                at: FailedAt::Decode,
                error,
                payload: String::from_utf8_lossy(&payload).into_owned(),
            }),
        }
    }
    out
}
