//! ClusterService: worker registration, heartbeats and task reports. A
//! heartbeat is reconciliation: the answer deploys the tasks a worker should
//! run but does not report, and cancels those it reports but should not run.

use crate::error::CoordinatorError;
use crate::meta::{Command, EventKind, JobEvent, MetaStore};
use crate::state::Shared;
use sluice_common::{JobId, TaskId, WorkerId};
use sluice_proto::cluster_service_server::ClusterService;
use sluice_proto::*;
use std::collections::BTreeSet;
use tonic::{Request, Response, Status};

pub struct ClusterApi<S> {
    pub state: Shared<S>,
}

impl<S: MetaStore> ClusterApi<S> {
    async fn record_report(&self, report: &TaskReport) {
        if !report.unreachable_peer.is_empty() {
            self.state.workers.suspect(&report.unreachable_peer);
        }
        if !report.offset_resets.is_empty() {
            self.record_offset_resets(report).await;
        }
        let state = report.state();
        if matches!(
            state,
            TaskState::Running | TaskState::Failed | TaskState::Finished | TaskState::Cancelled
        ) {
            let error = (!report.error.is_empty()).then(|| report.error.clone());
            self.state
                .set_task_state(
                    &JobId::new(report.job_id.clone()),
                    &TaskId::new(report.task_id.clone()),
                    state,
                    error,
                    report.fault().to_common(),
                    report.causes.clone(),
                )
                .await;
        }
    }

    /// Records as job events the offset resets of a source task that are not
    /// recorded yet: reports repeat them until the task ends.
    async fn record_offset_resets(&self, report: &TaskReport) {
        let (job, task) = (
            JobId::new(report.job_id.clone()),
            TaskId::new(report.task_id.clone()),
        );
        let Some((recorded, attempt)) = self.state.store.read(|m| {
            let j = m.jobs.get(&job)?;
            let t = j.tasks.iter().find(|t| t.id == task)?;
            Some((t.resets_recorded, j.attempt))
        }) else {
            return;
        };
        let resets: Vec<(u64, JobEvent)> = report
            .offset_resets
            .iter()
            .filter(|r| r.seq > recorded)
            .map(|r| {
                let event = JobEvent {
                    at_ms: r.at_ms,
                    attempt,
                    kind: EventKind::offset_reset(&task, r),
                };
                (r.seq, event)
            })
            .collect();
        if resets.is_empty() {
            return;
        }
        for (_, e) in &resets {
            tracing::warn!(job = %job, task = %task, event = %e.to_proto().message, "source offsets out of range");
        }
        let recorded = self
            .state
            .store
            .apply(Command::RecordOffsetResets { job, task, resets })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "offset resets not recorded; the next report repeats them");
        }
    }

    fn desired_tasks(&self, worker: &WorkerId) -> Vec<TaskDeployment> {
        let registry = &self.state.workers;
        self.state.store.read(|m| {
            let mut out = Vec::new();
            for job in m.jobs.values().filter(|j| j.wants_tasks_running()) {
                for t in job
                    .tasks
                    .iter()
                    .filter(|t| &t.worker == worker && !t.state.is_terminal())
                {
                    let downstream = job
                        .tasks
                        .iter()
                        .filter(|d| d.stage == t.stage + 1)
                        .map(|d| registry.data_address(&d.worker).unwrap_or_default())
                        .collect();
                    let restored = job.checkpoints.last();
                    // A `start_from: latest` job's partitions of submission
                    // start at the end they had then, unless the checkpoint
                    // says otherwise; others start at their earliest offset.
                    let start_offsets = job
                        .start_offsets
                        .iter()
                        .chain(restored.into_iter().flat_map(|c| &c.source_offsets))
                        .filter(|(p, _)| t.partitions.contains(p))
                        .map(|(p, o)| (*p, *o))
                        .collect();
                    out.push(TaskDeployment {
                        task_id: t.id.to_string(),
                        job_id: job.id.to_string(),
                        job_uid: job.uid.clone(),
                        spec_json: job.spec_json.clone(),
                        stage: t.stage,
                        index: t.index,
                        parallelism: job.spec.parallelism,
                        partitions: t.partitions.clone(),
                        downstream,
                        attempt: job.attempt,
                        start_offsets,
                        restored_checkpoint: restored.map_or(0, |c| c.id),
                        sink_state: restored
                            .filter(|_| t.stage + 1 == job.spec.stage_count())
                            .and_then(|c| c.sink_states.get(&t.index).cloned())
                            .unwrap_or_default(),
                        // Each subtask picks the snapshots holding its key groups.
                        restore_state: restored
                            .and_then(|c| c.state_handles.get(&t.stage))
                            .map(|refs| refs.iter().map(StateHandle::from).collect())
                            .unwrap_or_default(),
                    });
                }
            }
            out
        })
    }
}

#[tonic::async_trait]
impl<S: MetaStore> ClusterService for ClusterApi<S> {
    type SubscribeStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<WorkerCommand, Status>> + Send + 'static>,
    >;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.state.store.check_leader()?;
        let worker = WorkerId::new(request.into_inner().worker_id);
        if !self.state.workers.is_alive(&worker) {
            return Err(CoordinatorError::UnknownWorker(worker).into());
        }
        let rx = self.state.subscribers.subscribe(worker.clone());
        tracing::info!(worker = %worker, "worker subscribed to commands");
        let stream =
            tokio_stream::StreamExt::map(tokio_stream::wrappers::ReceiverStream::new(rx), Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn ack_checkpoint(
        &self,
        request: Request<CheckpointAck>,
    ) -> Result<Response<AckCheckpointResponse>, Status> {
        self.state.store.check_leader()?;
        // The last ack records the checkpoint and answers savepoint waiters:
        // a caller that gives up must not cut that short.
        let state = self.state.clone();
        let _ = tokio::spawn(async move {
            crate::checkpoints::ack(&state, request.into_inner()).await;
        })
        .await;
        Ok(Response::new(AckCheckpointResponse {}))
    }

    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        self.state.store.check_leader()?;
        let req = request.into_inner();
        if req.slots == 0 {
            return Err(Status::invalid_argument(
                "a worker must offer at least one slot",
            ));
        }
        let previous = Some(req.previous_worker_id.clone())
            .filter(|p| !p.is_empty())
            .map(WorkerId::new);
        let used: Vec<WorkerId> = self.state.store.read(|m| {
            m.jobs
                .values()
                .flat_map(|j| j.tasks.iter().map(|t| t.worker.clone()))
                .collect()
        });
        let registration = crate::registry::Registration {
            data_address: req.data_address.clone(),
            slots: req.slots,
            pid: req.pid,
        };
        let id = self
            .state
            .workers
            .register(
                registration,
                previous.clone(),
                used.into_iter(),
                self.state.timing.heartbeat_timeout,
                |w| self.state.subscribers.is_open(w),
            )
            .inspect_err(|e| {
                tracing::warn!(data_address = %req.data_address, pid = req.pid, error = %e, "worker registration refused");
            })?;
        let kept = previous.as_ref() == Some(&id);
        tracing::info!(worker = %id, data_address = %req.data_address, slots = req.slots, pid = req.pid, kept_id = kept, "worker registered");
        Ok(Response::new(RegisterWorkerResponse {
            worker_id: id.to_string(),
            heartbeat_interval_ms: self.state.timing.heartbeat_interval.as_millis() as u64,
            heartbeat_timeout_ms: self.state.timing.heartbeat_timeout.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.state.store.check_leader()?;
        let req = request.into_inner();
        let worker = WorkerId::new(req.worker_id.clone());
        if !self.state.workers.heartbeat(&worker, &req.tasks) {
            tracing::warn!(worker = %worker, "heartbeat from unknown or lost worker; asking it to register again");
            return Ok(Response::new(HeartbeatResponse {
                reregister: true,
                ..Default::default()
            }));
        }
        for report in &req.tasks {
            self.record_report(report).await;
        }
        let desired = self.desired_tasks(&worker);
        let desired_ids: BTreeSet<&str> = desired.iter().map(|d| d.task_id.as_str()).collect();
        let reported: BTreeSet<&str> = req.tasks.iter().map(|t| t.task_id.as_str()).collect();
        let cancel = req
            .tasks
            .iter()
            .filter(|t| !t.state().is_terminal() && !desired_ids.contains(t.task_id.as_str()))
            .map(|t| t.task_id.clone())
            .collect();
        let deploy = desired
            .iter()
            .filter(|d| !reported.contains(d.task_id.as_str()))
            .cloned()
            .collect();
        // Abandoned first: a checkpoint completed before the abandoned one
        // reported is then always among the completed ones read after, so a
        // task never takes a completed checkpoint for an abandoned one.
        let abandoned = self.state.store.read(|m| {
            m.jobs
                .values()
                .filter(|j| j.wants_tasks_running() && j.tasks.iter().any(|t| t.worker == worker))
                .filter_map(|j| {
                    self.state
                        .checkpoints
                        .last_abandoned(&j.id)
                        .map(|(attempt, id)| CheckpointDone {
                            job_id: j.id.to_string(),
                            attempt,
                            checkpoint_id: id,
                        })
                })
                .collect()
        });
        let completed = self.state.store.read(|m| {
            m.jobs
                .values()
                .filter(|j| j.wants_tasks_running() && j.tasks.iter().any(|t| t.worker == worker))
                .filter_map(|j| {
                    j.checkpoints.last().map(|c| CheckpointDone {
                        job_id: j.id.to_string(),
                        attempt: c.attempt,
                        checkpoint_id: c.id,
                    })
                })
                .collect()
        });
        let source_partitions = self.state.store.read(|m| {
            m.jobs
                .values()
                .filter(|j| j.wants_tasks_running())
                .flat_map(|j| &j.tasks)
                .filter(|t| t.worker == worker && t.stage == 0 && !t.state.is_terminal())
                .map(|t| SourcePartitions {
                    task_id: t.id.to_string(),
                    partitions: t.partitions.clone(),
                })
                .collect()
        });
        Ok(Response::new(HeartbeatResponse {
            deploy,
            cancel,
            reregister: false,
            completed,
            abandoned,
            source_partitions,
        }))
    }

    async fn report_task_state(
        &self,
        request: Request<TaskReport>,
    ) -> Result<Response<ReportTaskStateResponse>, Status> {
        self.state.store.check_leader()?;
        let report = request.into_inner();
        let worker = WorkerId::new(report.worker_id.clone());
        if !self.state.workers.is_alive(&worker) {
            return Err(CoordinatorError::UnknownWorker(worker).into());
        }
        self.state.workers.record_task(&worker, &report);
        self.record_report(&report).await;
        if report.state().is_terminal() {
            // The job's next attempt may have waited for this end.
            self.state.placement.notify_one();
        }
        Ok(Response::new(ReportTaskStateResponse {}))
    }
}
