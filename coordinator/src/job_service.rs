//! JobService: submit, list, inspect and cancel jobs.

use crate::error::CoordinatorError;
use crate::meta::{Applied, Command, MetaStore, Savepoint};
use crate::raft::membership;
use crate::state::Shared;
use crate::{cassandra_meta, kafka_meta, submit_checks};
use sluice_common::spec::{MAX_PARALLELISM, SourceSpec, StartFrom};
use sluice_common::{JobId, JobSpec, SpecError};
use sluice_proto::job_service_server::JobService;
use sluice_proto::*;
use tonic::{Request, Response, Status};

pub struct JobApi<S> {
    pub state: Shared<S>,
    pub raft: crate::raft::Raft,
}

impl<S: MetaStore> JobApi<S> {
    fn cluster_view(&self) -> ClusterInfoResponse {
        membership::info(&self.raft, self.state.store.check_leader().is_ok())
    }

    /// Takes a savepoint of a running job as its next checkpoint and waits
    /// for it; with `stop`, also until the job's tasks finished.
    async fn savepoint(&self, job: &JobId, stop: bool) -> Result<Savepoint, CoordinatorError> {
        let what = if stop {
            "a stop with savepoint"
        } else {
            "a savepoint"
        };
        let (state, enabled, timeout) = self
            .state
            .store
            .read(|m| {
                m.jobs.get(job).map(|j| {
                    (
                        j.state,
                        j.spec.checkpoint.enabled,
                        j.spec.checkpoint.timeout,
                    )
                })
            })
            .ok_or_else(|| CoordinatorError::UnknownJob(job.clone()))?;
        if state != JobState::Running {
            return Err(CoordinatorError::NotRunning {
                job: job.clone(),
                state: state.as_str_name(),
                what,
            });
        }
        if !enabled {
            return Err(CoordinatorError::CheckpointsOff(job.clone()));
        }
        let failed = |reason: String| CoordinatorError::SavepointFailed {
            job: job.clone(),
            reason,
        };
        let reply = self.state.checkpoints.request_savepoint(job, stop);
        // A checkpoint in flight finishes first, then the savepoint's own runs.
        let savepoint = match tokio::time::timeout(2 * timeout + SAVEPOINT_SLACK, reply).await {
            Ok(Ok(Ok(savepoint))) => savepoint,
            Ok(Ok(Err(reason))) => return Err(failed(reason)),
            Ok(Err(_)) => return Err(failed("the job stopped running before it was taken".into())),
            Err(_) => {
                return Err(failed(format!(
                    "no answer within {:?}",
                    2 * timeout + SAVEPOINT_SLACK
                )));
            }
        };
        tracing::info!(job = %job, savepoint = %savepoint.id, checkpoint = savepoint.checkpoint.id, stop, "savepoint taken");
        if stop {
            self.wait_stopped(job).await.map_err(failed)?;
        }
        Ok(savepoint)
    }

    /// After a stop savepoint: the sinks commit, then every task finishes.
    async fn wait_stopped(&self, job: &JobId) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STOP_PATIENCE;
        loop {
            let (state, stopping) = self
                .state
                .store
                .read(|m| m.jobs.get(job).map(|j| (j.state, j.stopped_with.is_some())))
                .unwrap_or((JobState::Unspecified, false));
            match state {
                JobState::Stopped => return Ok(()),
                _ if !stopping => {
                    return Err(format!(
                        "the savepoint completed, but the job is {} instead of stopping \
                         (a task failed while its sinks committed); it runs on from the savepoint",
                        state.as_str_name()
                    ));
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(format!(
                        "the savepoint completed, but the job's tasks did not finish within {STOP_PATIENCE:?}"
                    ));
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }

    fn find(&self, id: &str) -> Result<JobStatus, CoordinatorError> {
        let id = JobId::new(id);
        self.state
            .store
            .read(|m| m.jobs.get(&id).map(|j| self.state.job_status(j)))
            .ok_or(CoordinatorError::UnknownJob(id))
    }
}

#[tonic::async_trait]
impl<S: MetaStore> JobService for JobApi<S> {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        self.state.store.check_leader()?;
        let request = request.into_inner();
        let spec = JobSpec::parse_resolved(&request.spec_json).map_err(CoordinatorError::from)?;
        let from_savepoint = Some(request.from_savepoint).filter(|s| !s.is_empty());
        if let Some(id) = &from_savepoint {
            let savepoint = self
                .state
                .store
                .read(|m| m.savepoints.get(id).cloned())
                .ok_or_else(|| CoordinatorError::UnknownSavepoint(id.clone()))?;
            let SourceSpec::Kafka(source) = &spec.source;
            if savepoint.topic != source.topic {
                return Err(CoordinatorError::SavepointMismatch {
                    savepoint: id.clone(),
                    reason: format!(
                        "its offsets are of topic `{}`, the job reads `{}`",
                        savepoint.topic, source.topic
                    ),
                }
                .into());
            }
        }
        // Every problem the running systems show, in one answer.
        let (topics, table) = tokio::join!(
            submit_checks::check_topics(&spec),
            cassandra_meta::sink_table_problems(&spec)
        );
        let source_partitions = match topics {
            Ok(n) if table.is_empty() => n,
            Ok(_) => return Err(CoordinatorError::from(SpecError::Invalid(table)).into()),
            Err(CoordinatorError::InvalidSpec(SpecError::Invalid(mut problems))) => {
                problems.extend(table);
                return Err(CoordinatorError::from(SpecError::Invalid(problems)).into());
            }
            Err(e) => return Err(e.into()),
        };
        let SourceSpec::Kafka(source) = &spec.source;
        let start_offsets = if from_savepoint.is_none() && source.start_from == StartFrom::Latest {
            kafka_meta::end_offsets(&source.brokers, &source.topic, source_partitions).await?
        } else {
            Default::default()
        };
        let name = spec.name.clone();
        let applied = self
            .state
            .store
            .apply(Command::SubmitJob {
                uid: uuid::Uuid::new_v4().simple().to_string(),
                spec: Box::new(spec),
                source_partitions,
                submitted_at_ms: now_ms(),
                from_savepoint: from_savepoint.clone(),
                start_offsets,
            })
            .await?;
        let Applied::JobCreated(id) = applied else {
            return Err(Status::internal("job was not created"));
        };
        tracing::info!(job = %id, name = %name, source_partitions, from_savepoint = from_savepoint.as_deref().unwrap_or(""), "job submitted");
        Ok(Response::new(SubmitJobResponse {
            job_id: id.to_string(),
        }))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        self.state.store.check_leader()?;
        let jobs = self
            .state
            .store
            .read(|m| m.jobs.values().map(|j| self.state.job_status(j)).collect());
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        self.state.store.check_leader()?;
        Ok(Response::new(self.find(&request.into_inner().job_id)?))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        self.state.store.check_leader()?;
        let id = JobId::new(request.into_inner().job_id);
        let state = self
            .state
            .store
            .read(|m| m.jobs.get(&id).map(|j| j.state))
            .ok_or_else(|| CoordinatorError::UnknownJob(id.clone()))?;
        if state.is_terminal() {
            return Err(CoordinatorError::NotCancellable {
                job: id,
                state: state.as_str_name(),
            }
            .into());
        }
        self.state
            .store
            .apply(Command::SetJobState {
                job: id.clone(),
                state: JobState::Cancelling,
                failure: Some("cancelled by request".into()),
            })
            .await?;
        tracing::info!(job = %id, "job cancelling");
        Ok(Response::new(self.find(id.as_str())?))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        self.state.store.check_leader()?;
        let id = JobId::new(request.into_inner().job_id);
        let checkpoints = self
            .state
            .store
            .read(|m| {
                m.jobs.get(&id).map(|j| {
                    j.checkpoints
                        .iter()
                        .rev()
                        .map(|c| CheckpointInfo {
                            checkpoint_id: c.id,
                            completed_at_ms: c.completed_at_ms,
                            attempt: c.attempt,
                            source_offsets: c.source_offsets.clone().into_iter().collect(),
                            duration_ms: c.duration_ms,
                            state_objects: c.state_keys().map(str::to_string).collect(),
                            size_bytes: c.size_bytes,
                        })
                        .collect()
                })
            })
            .ok_or_else(|| CoordinatorError::UnknownJob(id.clone()))?;
        Ok(Response::new(ListCheckpointsResponse {
            checkpoints,
            failed: self.state.checkpoints.failed(&id),
        }))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<TriggerSavepointRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        self.state.store.check_leader()?;
        let job = JobId::new(request.into_inner().job_id);
        let savepoint = self.savepoint(&job, false).await?;
        Ok(Response::new(savepoint_info(&savepoint)))
    }

    async fn stop_job(
        &self,
        request: Request<StopJobRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        self.state.store.check_leader()?;
        let job = JobId::new(request.into_inner().job_id);
        let savepoint = self.savepoint(&job, true).await?;
        tracing::info!(job = %job, savepoint = %savepoint.id, "job stopped");
        Ok(Response::new(savepoint_info(&savepoint)))
    }

    async fn rescale_job(
        &self,
        request: Request<RescaleJobRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        self.state.store.check_leader()?;
        let request = request.into_inner();
        let job = JobId::new(request.job_id);
        if request.parallelism == 0 || u64::from(request.parallelism) > MAX_PARALLELISM {
            return Err(CoordinatorError::Parallelism {
                found: request.parallelism,
                max: MAX_PARALLELISM,
            }
            .into());
        }
        let savepoint = self.savepoint(&job, true).await?;
        let applied = self
            .state
            .store
            .apply(Command::Rescale {
                job: job.clone(),
                parallelism: request.parallelism,
            })
            .await?;
        if applied != Applied::Done {
            return Err(CoordinatorError::SavepointFailed {
                job,
                reason: "the job changed while it was rescaled".into(),
            }
            .into());
        }
        tracing::info!(job = %job, savepoint = %savepoint.id, parallelism = request.parallelism, "job rescaled");
        Ok(Response::new(savepoint_info(&savepoint)))
    }

    async fn list_savepoints(
        &self,
        _request: Request<ListSavepointsRequest>,
    ) -> Result<Response<ListSavepointsResponse>, Status> {
        self.state.store.check_leader()?;
        let savepoints = self
            .state
            .store
            .read(|m| m.savepoints.values().map(savepoint_info).collect());
        Ok(Response::new(ListSavepointsResponse { savepoints }))
    }

    async fn list_job_events(
        &self,
        request: Request<ListJobEventsRequest>,
    ) -> Result<Response<ListJobEventsResponse>, Status> {
        self.state.store.check_leader()?;
        let id = JobId::new(request.into_inner().job_id);
        let events = self
            .state
            .store
            .read(|m| {
                m.jobs
                    .get(&id)
                    .map(|j| j.events.iter().map(|e| e.to_proto()).collect())
            })
            .ok_or(CoordinatorError::UnknownJob(id))?;
        Ok(Response::new(ListJobEventsResponse { events }))
    }

    async fn cluster_info(
        &self,
        _request: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        Ok(Response::new(self.cluster_view()))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        self.state.store.check_leader()?;
        let request = request.into_inner();
        membership::add_learner(&self.raft, request.id, &request.address).await?;
        tracing::info!(member = request.id, address = %request.address, "learner added");
        Ok(Response::new(self.cluster_view()))
    }

    async fn promote_member(
        &self,
        request: Request<MemberRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        self.state.store.check_leader()?;
        let id = request.into_inner().id;
        membership::promote(&self.raft, id).await?;
        tracing::info!(member = id, "member promoted to voter");
        Ok(Response::new(self.cluster_view()))
    }

    async fn remove_member(
        &self,
        request: Request<MemberRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        self.state.store.check_leader()?;
        let id = request.into_inner().id;
        membership::remove(&self.raft, id).await?;
        tracing::info!(member = id, "member removed");
        Ok(Response::new(self.cluster_view()))
    }

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        self.state.store.check_leader()?;
        let tasks_by_worker = self.state.store.read(|m| {
            let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for j in m.jobs.values().filter(|j| j.wants_tasks_running()) {
                for t in j.tasks.iter().filter(|t| !t.state.is_terminal()) {
                    by.entry(t.worker.to_string())
                        .or_default()
                        .push(t.id.to_string());
                }
            }
            by
        });
        let free = self
            .state
            .store
            .read(|m| crate::scheduler::free_slots(m, &self.state.workers.all()));
        let workers = self
            .state
            .workers
            .all()
            .into_iter()
            .map(|w| WorkerInfo {
                worker_id: w.id.to_string(),
                data_address: w.data_address,
                slots: w.slots,
                used_slots: w.slots - free.get(&w.id).copied().unwrap_or(w.slots),
                state: w.state as i32,
                last_heartbeat_ms_ago: w.last_heartbeat.elapsed().as_millis() as u64,
                task_ids: tasks_by_worker
                    .get(w.id.as_str())
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListWorkersResponse { workers }))
    }
}

/// The broker setting that bounds a producer's `transaction.timeout.ms`.
/// How long a stop waits for a job's tasks to finish after its savepoint.
const STOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
/// Beyond the checkpoint timeout, for the trigger and the acks to travel.
const SAVEPOINT_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

fn savepoint_info(s: &Savepoint) -> SavepointInfo {
    SavepointInfo {
        savepoint_id: s.id.clone(),
        job_id: s.job.to_string(),
        checkpoint_id: s.checkpoint.id,
        created_at_ms: s.checkpoint.completed_at_ms,
        parallelism: s.parallelism,
        source_offsets: s.checkpoint.source_offsets.clone().into_iter().collect(),
        job_name: s.job_name.clone(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
