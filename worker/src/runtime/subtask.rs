use super::Metrics;
use super::metrics::SubtaskLabels;
use crate::connectors::SinkWriter;
use crate::connectors::kafka::{DeadLetterWriter, KafkaSource, Polled, RawMessage};
use crate::connectors::sink::{PreCommit, SinkIdentity, SinkState};
use crate::error::{Result, WorkerError};
use crate::exchange::{AlignedInput, Event, InboxKey, Inboxes, Peers, Route, Router};
use crate::operators::{Chain, TaskInfo};
use crate::record::{FailedAt, Failure, Origin, Payload, Record, json};
use crate::state::{SnapshotTarget, SnapshotUpload, StateChain, restore_chain_state};
use sluice_common::secrets::Secrets;
use sluice_common::spec::{SourceFormat, SourceSpec};
use sluice_common::store::CheckpointStore;
use sluice_common::{JobId, JobSpec, TaskId};
use sluice_proto::{StateHandle, TaskDeployment};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use vrl::value::Value;

/// What the coordinator asks of a running subtask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskCommand {
    /// Sources: take checkpoint `id` and inject its barrier; with `stop`, end
    /// the input once it completed.
    Trigger { id: u64, stop: bool },
    /// Checkpoint `n` completed.
    Done(u64),
    /// Checkpoint `n` was abandoned.
    Abandoned(u64),
    /// What a heartbeat says of the job's attempt: its latest completed and
    /// latest abandoned checkpoints (0: none), read together, so a sink that
    /// missed a command learns how its checkpoint ended.
    Settled { completed: u64, abandoned: u64 },
    /// Sources: the Kafka partitions to read now; those not read yet were
    /// added to the topic and are read from their beginning.
    Partitions(Vec<i32>),
}

/// This subtask's part of a checkpoint.
#[derive(Debug, Default)]
pub struct AckParts {
    pub checkpoint: u64,
    /// A source's next offset per partition.
    pub source_offsets: BTreeMap<i32, i64>,
    /// What a sink needs to finish its commit.
    pub sink_state: String,
    /// Where keyed operator state was uploaded.
    pub state: Option<StateHandle>,
    /// Bytes of that upload.
    pub state_bytes: u64,
    /// Time from the first to the last of the subtask's inputs delivering
    /// the checkpoint's barrier (zero for a source or a single input).
    pub alignment: Duration,
    /// Why the subtask declines the checkpoint (its state snapshot was not
    /// stored); empty when it takes its part.
    pub declined: String,
}

/// Acknowledges this subtask's part of a checkpoint to the coordinator.
pub type Acker = Arc<dyn Fn(AckParts) + Send + Sync>;

/// Most records a source hands to its chain at once.
const SOURCE_BATCH: usize = 512;
const SOURCE_LINGER: Duration = Duration::from_millis(20);
/// How often operators may expire state while no record reaches them.
const TIMER_PERIOD: Duration = Duration::from_secs(1);

/// What every subtask of this worker shares.
pub struct RuntimeContext {
    pub inboxes: Arc<Inboxes>,
    pub peers: Peers,
    pub own_address: String,
    pub store: CheckpointStore,
    /// Where the secrets job specs refer to are looked up.
    pub secrets: Secrets,
}

enum Input {
    Kafka {
        source: KafkaSource,
        format: SourceFormat,
        /// Offsets of checkpoints taken and not yet completed.
        taken: BTreeMap<u64, BTreeMap<i32, i64>>,
    },
    Inbox {
        input: AlignedInput,
        _guard: InboxGuard,
    },
}

enum Step {
    Command(Option<TaskCommand>),
    Source(Polled),
    Event(Event),
    Timer,
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
    mut commands: mpsc::UnboundedReceiver<TaskCommand>,
    ack: Acker,
) -> Result<()> {
    let task = TaskId::new(dep.task_id.clone());
    let job = JobId::new(dep.job_id.clone());
    let spec = JobSpec::parse_resolved(&dep.spec_json)
        .map_err(|e| WorkerError::Spec {
            task: task.clone(),
            reason: e.to_string(),
        })?
        .with_secrets(&ctx.secrets)
        .map_err(|source| WorkerError::Secret {
            job: job.clone(),
            source,
        })?;
    let _ = metrics.labels.set(SubtaskLabels {
        job: dep.job_id.clone(),
        job_name: spec.name.clone(),
        stage: dep.stage,
        subtask: dep.index,
        operator: SubtaskLabels::operators(&spec, dep.stage),
    });
    let (transforms, key_fields) = spec.stage_plan(dep.stage);
    let info = TaskInfo {
        job: dep.job_id.clone(),
        task: dep.task_id.clone(),
        stage: dep.stage,
        subtask: dep.index,
        timezone: spec.timezone,
    };
    let incoming_key = dep.stage.checked_sub(1).and_then(|s| spec.stage_plan(s).1);
    let mut chain =
        Chain::build(&transforms, &info, incoming_key).map_err(|reason| WorkerError::Spec {
            task: task.clone(),
            reason,
        })?;
    if !dep.restore_state.is_empty() {
        let states = restore_chain_state(
            &ctx.store,
            &dep.restore_state,
            dep.index,
            dep.parallelism,
            chain.len(),
        )
        .await?;
        chain
            .restore(states)
            .map_err(|reason| WorkerError::Restore {
                key: format!("checkpoint {}", dep.restored_checkpoint),
                reason,
            })?;
    }
    let SourceSpec::Kafka(source_spec) = &spec.source;
    // Input, dead-letter writer and output are made together: each waits
    // on round trips to Kafka (consumer, producers, transactional ids), so a
    // subtask starts, and a job restarts, in the time of the slowest. The
    // inbox is opened on the first poll, before any of them waits:
    // upstream subtasks look for it as soon as they start.
    let input = async {
        Ok(if dep.stage == 0 {
            let start: BTreeMap<i32, i64> =
                dep.start_offsets.iter().map(|(p, o)| (*p, *o)).collect();
            Input::Kafka {
                source: KafkaSource::build(
                    source_spec,
                    &spec.name,
                    &dep.partitions,
                    &start,
                    metrics.partitions.clone(),
                )
                .await?,
                format: source_spec.format,
                taken: BTreeMap::new(),
            }
        } else {
            let key = InboxKey {
                job: job.clone(),
                attempt: dep.attempt,
                stage: dep.stage,
                index: dep.index,
            };
            let input = ctx.inboxes.open(
                key.clone(),
                dep.parallelism,
                crate::exchange::INBOX_CAPACITY,
            );
            Input::Inbox {
                input,
                _guard: InboxGuard {
                    inboxes: ctx.inboxes.clone(),
                    key,
                },
            }
        })
    };
    let dead_letter = async {
        match &spec.dead_letter {
            Some(dl) => DeadLetterWriter::build(dl, &source_spec.brokers, job.as_str())
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let output = async {
        Ok(match key_fields {
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
            None => {
                let id = SinkIdentity {
                    job_uid: &dep.job_uid,
                    stage: dep.stage,
                    index: dep.index,
                    attempt: dep.attempt,
                };
                let sink = SinkWriter::build(
                    &spec.sink,
                    &spec.delivery,
                    spec.timezone,
                    &id,
                    &dep.sink_state,
                    dep.restored_checkpoint,
                )
                .await?;
                Output::Sink(sink)
            }
        })
    };
    let (mut input, dead_letter, mut output) = tokio::try_join!(input, dead_letter, output)?;
    on_running();
    tracing::info!(task = %task, partitions = ?dep.partitions, restored = dep.restored_checkpoint, "subtask running");

    let mut state_chain = StateChain::default();
    let mut step = Stepper {
        task: &task,
        chain: &mut chain,
        state_chain: &mut state_chain,
        output: &mut output,
        dead_letter: dead_letter.as_ref(),
        metrics: &metrics,
        store: &ctx.store,
        target: SnapshotTarget {
            job_uid: &dep.job_uid,
            attempt: dep.attempt,
            stage: dep.stage,
            index: dep.index,
            parallelism: dep.parallelism,
        },
        ack: &ack,
        heard_late: 0,
    };
    // A source's trigger that came while its own sink was blocked: taken
    // after. While the sink is blocked no input is read either: every
    // transaction it may hold waits for a checkpoint to complete or be
    // abandoned.
    let mut deferred_trigger: Option<(u64, bool)> = None;
    // Set while a source waits for its stop checkpoint: no input is read,
    // and the input ends once the checkpoint completed.
    let mut stopping: Option<u64> = None;
    // Set when the input ended while the sink still held what a checkpoint
    // has to complete for (the stop checkpoint, its word not heard yet): the
    // sink ends once that is committed.
    let mut ending = false;
    let mut timer = tokio::time::interval(TIMER_PERIOD);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = match &mut input {
            _ if step.output.blocked() && stopping.is_none() && !ending => {
                let waiting = Instant::now();
                let command = commands.recv().await;
                step.metrics.add_checkpoint_sync(waiting.elapsed());
                Step::Command(command)
            }
            _ if stopping.is_some() || ending => Step::Command(commands.recv().await),
            Input::Kafka { source, .. } => tokio::select! {
                biased;
                c = commands.recv() => Step::Command(c),
                _ = timer.tick() => Step::Timer,
                m = source.next_message() => Step::Source(m?),
            },
            Input::Inbox { input, .. } => tokio::select! {
                biased;
                c = commands.recv() => Step::Command(c),
                _ = timer.tick() => Step::Timer,
                e = input.next() => Step::Event(e),
            },
        };
        // What this step learnt: the latest checkpoint complete, the latest abandoned.
        let mut settled = (0, 0);
        match (next, &mut input) {
            (Step::Command(None), _) => return Ok(()),
            (
                Step::Command(Some(TaskCommand::Trigger { id, stop })),
                Input::Kafka { source, taken, .. },
            ) => {
                if step.output.blocked() {
                    deferred_trigger = Some((id, stop));
                } else {
                    checkpoint_source(&mut step, source, taken, id).await?;
                    stopping = stop.then_some(id);
                }
            }
            (Step::Command(Some(TaskCommand::Trigger { .. })), Input::Inbox { .. }) => {}
            (
                Step::Command(Some(TaskCommand::Partitions(partitions))),
                Input::Kafka { source, .. },
            ) => {
                let added = source.add_partitions(&partitions).await?;
                if !added.is_empty() {
                    tracing::info!(task = %task, added = ?added, reading = ?source.positions(), "source reads partitions added to the topic from their beginning");
                }
            }
            (Step::Command(Some(TaskCommand::Partitions(_))), Input::Inbox { .. }) => {}
            (Step::Command(Some(TaskCommand::Done(id))), input) => {
                completed(&mut step, input, id).await?;
                settled.0 = id;
            }
            (Step::Command(Some(TaskCommand::Abandoned(id))), _) => {
                step.output.abandoned(None, id);
                settled.1 = id;
            }
            (
                Step::Command(Some(TaskCommand::Settled {
                    completed: done,
                    abandoned,
                })),
                input,
            ) => {
                if done > 0 {
                    completed(&mut step, input, done).await?;
                }
                step.output.abandoned(Some(done), abandoned);
                settled = (done, abandoned);
            }
            (Step::Source(Polled::OutOfRange), Input::Kafka { source, .. }) => {
                let at_ms = now_ms();
                for r in source.recover_out_of_range().await? {
                    tracing::warn!(task = %task, topic = source.topic(), partition = r.partition, position = r.position,
                        low = r.low, high = r.high, skipped = (r.low - r.position).max(0),
                        "source position out of range: going on at the partition's earliest offset");
                    step.metrics.offset_reset(source.topic(), r, at_ms);
                }
            }
            (Step::Source(Polled::Message(first)), Input::Kafka { source, format, .. }) => {
                let mut batch = vec![first];
                source.fill(&mut batch, SOURCE_BATCH, SOURCE_LINGER).await?;
                let started = Instant::now();
                let read = batch.len();
                let bytes: usize = batch
                    .iter()
                    .map(|m| {
                        m.payload.as_ref().map_or(0, |p| p.len())
                            + m.key.as_ref().map_or(0, |k| k.len())
                    })
                    .sum();
                Metrics::add(&step.metrics.bytes_in, bytes);
                let handed_on: Vec<(i32, i64)> =
                    batch.iter().map(|m| (m.partition, m.offset)).collect();
                let mut failures = Vec::new();
                let records = decode(batch, *format, &mut failures);
                step.process(started, read, records, failures).await?;
                source.advance(&handed_on);
            }
            (Step::Event(Event::Records(records, bytes)), _) => {
                Metrics::add(&step.metrics.bytes_in, bytes);
                step.process(Instant::now(), records.len(), records, Vec::new())
                    .await?;
            }
            (Step::Event(Event::Barrier { id, alignment }), _) => {
                step.checkpoint(id, BTreeMap::new(), alignment).await?;
            }
            (Step::Event(Event::End), _) => {
                if step.output.uncommitted() {
                    tracing::info!(task = %task, "input ended: the sink ends once its last checkpoint completes");
                    ending = true;
                } else {
                    tracing::info!(task = %task, "input ended");
                    step.end().await?;
                    return Ok(());
                }
            }
            (Step::Source(_), Input::Inbox { .. }) => {}
            (Step::Timer, _) => step.chain.on_timer(now_ms()),
        }
        if ending && !step.output.uncommitted() {
            tracing::info!(task = %task, "input ended, and the sink committed its last checkpoint");
            step.end().await?;
            return Ok(());
        }
        if let Some(stop) = stopping {
            if settled.0 >= stop {
                tracing::info!(task = %task, checkpoint = stop, "stop checkpoint completed: input ends");
                step.end().await?;
                return Ok(());
            }
            if settled.1 >= stop && settled.0 < stop {
                tracing::warn!(task = %task, checkpoint = stop, "stop checkpoint abandoned: the job goes on");
                stopping = None;
            }
        }
        if !step.output.blocked()
            && stopping.is_none()
            && let Some((id, stop)) = deferred_trigger.take()
            && let Input::Kafka { source, taken, .. } = &mut input
        {
            checkpoint_source(&mut step, source, taken, id).await?;
            stopping = stop.then_some(id);
        }
    }
}

/// A source's part of checkpoint `id`: record its offsets, send the barrier
/// on, acknowledge.
async fn checkpoint_source(
    step: &mut Stepper<'_>,
    source: &KafkaSource,
    taken: &mut BTreeMap<u64, BTreeMap<i32, i64>>,
    id: u64,
) -> Result<()> {
    let offsets = source.positions().clone();
    taken.insert(id, offsets.clone());
    // A source has no inputs to align.
    step.checkpoint(id, offsets, Duration::ZERO).await
}

/// Checkpoint `id` completed: a source commits its offsets to the consumer
/// group, a sink commits what it pre-committed at `id`'s barrier or before.
async fn completed(step: &mut Stepper<'_>, input: &mut Input, id: u64) -> Result<()> {
    if let Input::Kafka { source, taken, .. } = input {
        if let Some(offsets) = taken.remove(&id) {
            source.commit_for_visibility(&offsets);
        }
        taken.retain(|n, _| *n > id);
    }
    if id <= step.heard_late {
        return Ok(());
    }
    if step.output.covers(id) {
        // As if the completion were heard late: the next barrier finds the
        // sink's transaction still waiting, and the coordinator's repeats of
        // this completion go unheard too.
        fail::fail_point!("sink-skip-commit", |_| {
            step.heard_late = id;
            Ok(())
        });
        fail::fail_point!("checkpoint-completed-before-sink-commit", |_| {
            std::process::abort();
        });
    }
    // Also with nothing to commit: a completion frees the ids of
    // transactions committed before its barrier.
    let committing = Instant::now();
    step.output.commit(id).await?;
    step.metrics.add_checkpoint_sync(committing.elapsed());
    step.note_open_transaction();
    Ok(())
}

/// The part of the loop shared by every kind of input: operators, output,
/// dead letters, counters.
struct Stepper<'a> {
    task: &'a TaskId,
    chain: &'a mut Chain,
    output: &'a mut Output,
    dead_letter: Option<&'a DeadLetterWriter>,
    metrics: &'a Metrics,
    store: &'a CheckpointStore,
    target: SnapshotTarget<'a>,
    /// This subtask's keyed state snapshots so far: a full one and deltas.
    state_chain: &'a mut StateChain,
    ack: &'a Acker,
    /// Completions up to this checkpoint are ignored (failpoint
    /// `sink-skip-commit`; 0 otherwise).
    heard_late: u64,
}

impl Stepper<'_> {
    /// This subtask's part of checkpoint `id`, at its barrier: snapshot the
    /// operators' state, hand the barrier on (a sink pre-commits), and ack
    /// once the snapshot is uploaded, which happens while processing goes
    /// on.
    /// `alignment` is how long the barrier took to arrive on all inputs.
    async fn checkpoint(
        &mut self,
        id: u64,
        source_offsets: BTreeMap<i32, i64>,
        alignment: Duration,
    ) -> Result<()> {
        let barrier_at = Instant::now();
        // Expired state stays out of the snapshot, also when idle.
        self.chain.on_timer(now_ms());
        // Serialised here, before any later record changes the state.
        let full = self.state_chain.wants_full();
        let upload = SnapshotUpload::prepare(
            self.store,
            &self.target,
            id,
            self.chain.snapshot(full),
            self.state_chain,
        );
        let pre_commit = self.output.barrier(id).await?;
        // Records the broker refused since the last batch are dead letters
        // before the checkpoint that covers their offsets is acknowledged.
        if !pre_commit.failures.is_empty() {
            self.not_out(pre_commit.failures.len());
            self.dead_letter(pre_commit.failures).await?;
        }
        self.metrics.add_checkpoint_sync(barrier_at.elapsed());
        let parts = AckParts {
            checkpoint: id,
            source_offsets,
            sink_state: String::new(),
            state: None,
            state_bytes: 0,
            alignment,
            declined: String::new(),
        };
        let sink_state = pre_commit.state;
        if upload.is_none() && !matches!(sink_state, Some(SinkState::Flushing(_))) {
            let sink_state = match sink_state {
                Some(SinkState::Ready(state)) => state,
                _ => String::new(),
            };
            (self.ack)(AckParts {
                sink_state,
                ..parts
            });
            return Ok(());
        }
        // Acknowledged once the sink's flush and the state upload are done,
        // while processing goes on.
        let ack = self.ack.clone();
        let task = self.task.clone();
        let broken = self.state_chain.failure_flag();
        let uploads_state = upload.is_some();
        let acking = tokio::spawn(async move {
            let resolving = async {
                match sink_state {
                    Some(state) => state.resolve().await,
                    None => Ok(String::new()),
                }
            };
            let uploading = async {
                match upload {
                    None => Ok((None, 0)),
                    Some(upload) => {
                        let bytes = upload.size() as u64;
                        upload.run().await.map(|handle| (Some(handle), bytes))
                    }
                }
            };
            match tokio::join!(resolving, uploading) {
                (Ok(sink_state), Ok((state, state_bytes))) => {
                    ack(AckParts {
                        sink_state,
                        state,
                        state_bytes,
                        ..parts
                    });
                    true
                }
                // Declined, the checkpoint is abandoned at once rather than
                // at its timeout; the job goes on, and its next snapshot is
                // a full one.
                (_, Err(e)) => {
                    broken.store(true, std::sync::atomic::Ordering::SeqCst);
                    tracing::warn!(task = %task, checkpoint = id, error = %e, "state snapshot upload failed: the checkpoint is declined");
                    ack(AckParts {
                        declined: format!("state snapshot upload failed: {e}"),
                        ..parts
                    });
                    false
                }
                // The sink fails with it at its next call; the snapshot
                // uploaded stays on the chain.
                (Err(e), Ok(_)) => {
                    tracing::warn!(task = %task, checkpoint = id, error = %e, "sink flush failed: the checkpoint is not acknowledged");
                    true
                }
            }
        });
        if uploads_state {
            self.state_chain.uploading(acking);
        }
        Ok(())
    }

    /// Publishes since when the sink's open transaction has held records.
    fn note_open_transaction(&self) {
        if let Output::Sink(sink) = &*self.output {
            self.metrics
                .set_open_transaction(sink.open_transaction_since());
        }
    }

    /// Handles `read` input records (decoded as `records`, or failed) from
    /// `started` on, when the subtask had them: counts its busy time, and of
    /// it the time the output kept it waiting.
    async fn process(
        &mut self,
        started: Instant,
        read: usize,
        records: Vec<Record>,
        mut failures: Vec<Failure>,
    ) -> Result<()> {
        Metrics::add(&self.metrics.records_in, read);
        let records = self.chain.process(records, &mut failures);
        Metrics::add(&self.metrics.records_out, records.len());
        let failed_before = failures.len();
        let handing_on = Instant::now();
        match self.output {
            Output::Router(router) => {
                router.send(records, &mut failures).await?;
                Metrics::add(&self.metrics.bytes_out, router.take_bytes_sent());
            }
            Output::Sink(sink) => failures.extend(sink.write(records).await?),
        }
        self.metrics
            .add_busy(started.elapsed(), handing_on.elapsed());
        self.note_open_transaction();
        // Refusals may be of records counted out by an earlier batch: a sink
        // keeps writes in flight.
        self.not_out(failures.len() - failed_before);
        self.dead_letter(failures).await
    }

    /// Records counted out that the output then refused.
    fn not_out(&self, refused: usize) {
        self.metrics
            .records_out
            .fetch_sub(refused as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The input ended: downstream subtasks learn it, a sink leaves nothing
    /// open or in flight, and what it refused meanwhile is dead-lettered.
    async fn end(&mut self) -> Result<()> {
        let refused = self.output.end().await?;
        self.not_out(refused.len());
        self.dead_letter(refused).await
    }

    /// Sends failed records to the dead-letter topic, and counts them.
    async fn dead_letter(&mut self, failures: Vec<Failure>) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        for f in &failures {
            self.metrics.add_dead_lettered(f.at, 1);
        }
        match self.dead_letter {
            Some(dl) => {
                let dropped = dl.write(&failures).await?;
                Metrics::add(&self.metrics.dead_letters_dropped, dropped);
            }
            None => {
                for f in &failures {
                    tracing::warn!(task = %self.task, topic = %f.origin.topic, partition = f.origin.partition,
                        offset = f.origin.offset, failed_at = f.at.as_str(), error = %f.error,
                        "record dropped: job has no dead_letter");
                }
            }
        }
        Ok(())
    }
}

impl Output {
    /// Hands barrier `id` on: downstream for a router; for a sink, everything
    /// before it is pre-committed, and the returned state, if any, is what
    /// the checkpoint must hold for the sink to commit once it completes.
    async fn barrier(&mut self, id: u64) -> Result<PreCommit> {
        fail::fail_point!("barrier-before-snapshot", |_| {
            std::process::abort();
        });
        match self {
            Self::Router(router) => router.barrier(id).await.map(|()| PreCommit::default()),
            Self::Sink(sink) => sink.pre_commit(id).await,
        }
    }

    fn covers(&self, completed: u64) -> bool {
        match self {
            Self::Router(_) => false,
            Self::Sink(sink) => sink.covers(completed),
        }
    }

    async fn commit(&mut self, completed: u64) -> Result<()> {
        match self {
            Self::Router(_) => Ok(()),
            Self::Sink(sink) => sink.commit(completed).await,
        }
    }

    fn abandoned(&mut self, completed: Option<u64>, abandoned: u64) {
        if let Self::Sink(sink) = self {
            sink.abandoned(completed, abandoned);
        }
    }

    /// `true` while a sink holds what a checkpoint still has to complete for.
    fn uncommitted(&self) -> bool {
        match self {
            Self::Router(_) => false,
            Self::Sink(sink) => sink.uncommitted(),
        }
    }

    /// `true` while a sink takes no input until a checkpoint is settled.
    fn blocked(&self) -> bool {
        match self {
            Self::Router(_) => false,
            Self::Sink(sink) => sink.blocked(),
        }
    }

    /// The input ended: downstream subtasks learn it; a sink, whose last
    /// checkpoint's commit is done, leaves nothing open. Returns the records
    /// the sink refused since its last batch.
    async fn end(&mut self) -> Result<Vec<Failure>> {
        match self {
            Self::Router(router) => router.end().await.map(|()| Vec::new()),
            Self::Sink(sink) => sink.end().await,
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
        let Some(payload) = m.payload else {
            failures.push(Failure {
                origin,
                at: FailedAt::Decode,
                error: "the message has no value (a tombstone)".into(),
                payload: Payload::Tombstone,
                key: m.key,
                headers: m.headers,
            });
            continue;
        };
        let decoded = match format {
            SourceFormat::Json => json::decode(&payload)
                .map(|(value, exact)| (value, exact, Some(json::without_bom(&payload)))),
            SourceFormat::Text => std::str::from_utf8(&payload)
                .map(|s| {
                    let mut map = vrl::value::ObjectMap::new();
                    map.insert("message".into(), Value::from(s));
                    (Value::Object(map), None, None)
                })
                .map_err(|e| format!("not UTF-8: {e}")),
        };
        match decoded {
            Ok((value, exact, raw)) => out.push(Record {
                value,
                origin,
                key: m.key,
                headers: m.headers,
                exact,
                raw,
            }),
            Err(error) => failures.push(Failure {
                origin,
                at: FailedAt::Decode,
                error,
                payload: Payload::Raw(payload),
                key: m.key,
                headers: m.headers,
            }),
        }
    }
    out
}

/// Wall-clock time in ms since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
