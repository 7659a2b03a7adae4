//! JobService: submit, list, inspect and cancel jobs.

use crate::error::CoordinatorError;
use crate::meta::{Applied, Command, MetaStore, Savepoint};
use crate::raft::membership;
use crate::state::Shared;
use crate::{cassandra_meta, kafka_meta, submit_checks};
use sluice_common::spec::{self, MAX_PARALLELISM, SourceSpec, StartFrom};
use sluice_common::{JobId, JobSpec, SpecProblem};
use sluice_proto::job_service_server::JobService;
use sluice_proto::*;
use tonic::{Request, Response, Status};

pub struct JobApi<S> {
    pub state: Shared<S>,
    pub raft: crate::raft::Raft,
    /// Where this member serves its HTTP API (`--http-advertise`), for
    /// followers to send HTTP clients on to the leader.
    pub http_address: Option<String>,
}

impl<S> Clone for JobApi<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            raft: self.raft.clone(),
            http_address: self.http_address.clone(),
        }
    }
}

impl<S: MetaStore> JobApi<S> {
    /// The group as this member sees it; any member answers.
    pub fn cluster_view(&self) -> ClusterInfoResponse {
        ClusterInfoResponse {
            http_address: self.http_address.clone().unwrap_or_default(),
            ..membership::info(&self.raft, self.state.store.check_leader().is_ok())
        }
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
                state: state.name(),
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
                        state.name()
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

    /// Refuses a job the savepoint `id` cannot start: offsets of another
    /// topic, or keyed state of other stateful transforms than the job's
    /// (which its tasks could not restore, failing at every restart).
    /// Problems are at the paths of `spec_json`, the spec as submitted.
    fn check_savepoint_fits(
        &self,
        id: &str,
        spec: &JobSpec,
        spec_json: &str,
    ) -> Result<(), CoordinatorError> {
        let (savepoint, taken_of) = self
            .state
            .store
            .read(|m| {
                m.savepoints
                    .get(id)
                    .map(|s| (s.clone(), m.jobs.get(&s.job).map(|j| j.spec.clone())))
            })
            .ok_or_else(|| CoordinatorError::UnknownSavepoint(id.to_string()))?;
        let mut problems = Vec::new();
        let SourceSpec::Kafka(source) = &spec.source;
        if savepoint.topic != source.topic {
            problems.push(SpecProblem {
                path: "source.kafka.topic".into(),
                message: format!(
                    "the savepoint's offsets are of topic `{}`, the job reads `{}`",
                    savepoint.topic, source.topic
                ),
            });
        }
        match taken_of {
            Some(taken_of) => problems.extend(spec.state_mismatches(&taken_of)),
            None => problems.push(SpecProblem {
                path: String::new(),
                message: format!(
                    "the job `{}` the savepoint was taken of is not recorded, so its state cannot be matched",
                    savepoint.job
                ),
            }),
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(CoordinatorError::SavepointMismatch {
            savepoint: id.to_string(),
            problems: spec::in_submitted_terms(spec_json, problems),
        })
    }

    /// Rescales a job that waits for task slots (none of its tasks runs, so
    /// no savepoint is taken); answers with what it starts from: the savepoint
    /// it started from (`savepoint_id` empty when none) and its latest
    /// checkpoint's offsets.
    async fn resize_waiting(
        &self,
        job: JobId,
        parallelism: u32,
    ) -> Result<SavepointInfo, CoordinatorError> {
        let applied = self
            .state
            .store
            .apply(Command::ResizeWaiting {
                job: job.clone(),
                parallelism,
            })
            .await?;
        if applied != Applied::Done {
            return Err(CoordinatorError::SavepointFailed {
                job,
                reason: "the job was placed while it was rescaled; rescale it again".into(),
            });
        }
        tracing::info!(job = %job, parallelism, "waiting job rescaled");
        self.state.placement.notify_one();
        self.state
            .store
            .read(|m| {
                m.jobs.get(&job).map(|j| {
                    let latest = j.checkpoints.last();
                    SavepointInfo {
                        savepoint_id: j.from_savepoint.clone().unwrap_or_default(),
                        job_id: job.to_string(),
                        checkpoint_id: latest.map_or(0, |c| c.id),
                        created_at_ms: latest.map_or(0, |c| c.completed_at_ms),
                        parallelism,
                        source_offsets: latest
                            .map(|c| c.source_offsets.clone().into_iter().collect())
                            .unwrap_or_default(),
                        job_name: j.spec.name.clone(),
                        waiting_for_slots: true,
                    }
                })
            })
            .ok_or(CoordinatorError::UnknownJob(job))
    }

    fn find(&self, id: &str) -> Result<JobStatus, CoordinatorError> {
        let id = JobId::new(id);
        self.state
            .store
            .read(|m| m.jobs.get(&id).map(|j| self.state.job_status(j)))
            .ok_or(CoordinatorError::UnknownJob(id))
    }
}

/// What the gRPC service and the HTTP API both do, each call checking that
/// this member leads. Errors are [`CoordinatorError`]s; each front end turns
/// them into its own answers in one place.
impl<S: MetaStore> JobApi<S> {
    /// Validates a spec (YAML or JSON, `${VAR}` references resolved by the
    /// client) and the systems it names, and records the job.
    pub async fn submit(
        &self,
        spec_json: &str,
        from_savepoint: Option<String>,
    ) -> Result<JobId, CoordinatorError> {
        self.state.store.check_leader()?;
        // Off the async threads, which carry heartbeats: reading a large
        // spec takes a while.
        let text = spec_json.to_string();
        let spec = tokio::task::spawn_blocking(move || JobSpec::parse_resolved(&text))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("reading the spec stopped: {e}")))??;
        if let Some(id) = &from_savepoint {
            self.check_savepoint_fits(id, &spec, spec_json)?;
        }
        // Every problem the running systems show, in one answer.
        let ((source_partitions, mut found), table) = tokio::join!(
            submit_checks::check_topics(&spec),
            cassandra_meta::sink_table_problems(&spec)
        );
        found.extend(table);
        if let Some(e) = found.into_error(spec_json) {
            return Err(e);
        }
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
            // Only a savepoint deleted meanwhile keeps a job from being created.
            return Err(CoordinatorError::UnknownSavepoint(
                from_savepoint.unwrap_or_default(),
            ));
        };
        tracing::info!(job = %id, name = %name, source_partitions, from_savepoint = from_savepoint.as_deref().unwrap_or(""), "job submitted");
        self.state.placement.notify_one();
        Ok(id)
    }

    /// Every job, by id.
    pub fn jobs(&self) -> Result<Vec<JobStatus>, CoordinatorError> {
        self.state.store.check_leader()?;
        Ok(self
            .state
            .store
            .read(|m| m.jobs.values().map(|j| self.state.job_status(j)).collect()))
    }

    /// One job with its tasks and their metrics.
    pub fn job(&self, id: &str) -> Result<JobStatus, CoordinatorError> {
        self.state.store.check_leader()?;
        self.find(id)
    }

    pub async fn cancel(&self, id: &str) -> Result<JobStatus, CoordinatorError> {
        self.state.store.check_leader()?;
        let id = JobId::new(id);
        let state = self
            .state
            .store
            .read(|m| m.jobs.get(&id).map(|j| j.state))
            .ok_or_else(|| CoordinatorError::UnknownJob(id.clone()))?;
        if state.is_terminal() {
            return Err(CoordinatorError::NotCancellable {
                job: id,
                state: state.name(),
            });
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
        self.state.heartbeat_now(&self.state.workers_of(&id));
        self.find(id.as_str())
    }

    /// A job's retained completed checkpoints, newest first, and how many
    /// of its checkpoints failed.
    pub fn checkpoints(&self, id: &str) -> Result<ListCheckpointsResponse, CoordinatorError> {
        self.state.store.check_leader()?;
        let id = JobId::new(id);
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
                            alignment_us: c.alignment_us,
                        })
                        .collect()
                })
            })
            .ok_or_else(|| CoordinatorError::UnknownJob(id.clone()))?;
        Ok(ListCheckpointsResponse {
            checkpoints,
            failed: self.state.checkpoints.failed(&id),
            last_failure: self.state.checkpoints.last_failure(&id),
        })
    }

    /// Takes a savepoint of a running job; it runs on.
    pub async fn take_savepoint(&self, id: &str) -> Result<SavepointInfo, CoordinatorError> {
        self.state.store.check_leader()?;
        let savepoint = self.savepoint(&JobId::new(id), false).await?;
        Ok(savepoint_info(&savepoint))
    }

    /// Stops a running job after a final savepoint.
    pub async fn stop(&self, id: &str) -> Result<SavepointInfo, CoordinatorError> {
        self.state.store.check_leader()?;
        let job = JobId::new(id);
        let savepoint = self.savepoint(&job, true).await?;
        tracing::info!(job = %job, savepoint = %savepoint.id, "job stopped");
        Ok(savepoint_info(&savepoint))
    }

    /// Stops a job with a savepoint and restarts it from there at `parallelism`.
    pub async fn rescale(
        &self,
        id: &str,
        parallelism: u32,
    ) -> Result<SavepointInfo, CoordinatorError> {
        self.state.store.check_leader()?;
        let job = JobId::new(id);
        if parallelism == 0 || u64::from(parallelism) > MAX_PARALLELISM {
            return Err(CoordinatorError::Parallelism {
                found: parallelism,
                max: MAX_PARALLELISM,
            });
        }
        let (state, waiting, free, latest_savepoint) = self
            .state
            .store
            .read(|m| {
                m.jobs.get(&job).map(|j| {
                    let workers = self.state.placeable_workers();
                    let free = crate::scheduler::free_slots_but_for(m, &workers, Some(&job));
                    let latest_savepoint = m
                        .savepoints
                        .values()
                        .filter(|s| s.job == job)
                        .max_by_key(|s| (s.checkpoint.completed_at_ms, s.checkpoint.id))
                        .map(|s| s.id.clone());
                    (
                        j.state,
                        j.waits_for_slots(),
                        free.values().sum::<u32>(),
                        latest_savepoint,
                    )
                })
            })
            .ok_or_else(|| CoordinatorError::UnknownJob(job.clone()))?;
        // A waiting job holds no slot and reads nothing: it keeps waiting,
        // for as many slots as it now needs.
        if waiting {
            return self.resize_waiting(job, parallelism).await;
        }
        if state != JobState::Running {
            return Err(CoordinatorError::NotRescalable {
                job,
                state: state.name(),
                savepoint: latest_savepoint,
            });
        }
        // Refused before the stop: a job stopped for a parallelism no slots
        // hold would wait for slots with nothing read meanwhile.
        if parallelism > free {
            return Err(CoordinatorError::NotEnoughSlots {
                job,
                needed: parallelism,
                free,
            });
        }
        let savepoint = self.savepoint(&job, true).await?;
        let applied = self
            .state
            .store
            .apply(Command::Rescale {
                job: job.clone(),
                parallelism,
            })
            .await?;
        if applied != Applied::Done {
            return Err(CoordinatorError::SavepointFailed {
                job,
                reason: "the job changed while it was rescaled".into(),
            });
        }
        tracing::info!(job = %job, savepoint = %savepoint.id, parallelism, "job rescaled");
        self.state.placement.notify_one();
        Ok(savepoint_info(&savepoint))
    }

    /// Every savepoint, by id.
    pub fn savepoints(&self) -> Result<Vec<SavepointInfo>, CoordinatorError> {
        self.state.store.check_leader()?;
        Ok(self
            .state
            .store
            .read(|m| m.savepoints.values().map(savepoint_info).collect()))
    }

    /// Forgets a savepoint and deletes the snapshots only it held from the
    /// checkpoint store; answers with the savepoint deleted.
    pub async fn delete_savepoint(&self, id: &str) -> Result<SavepointInfo, CoordinatorError> {
        self.state.store.check_leader()?;
        let unknown = || CoordinatorError::UnknownSavepoint(id.to_string());
        let savepoint = self
            .state
            .store
            .read(|m| m.savepoints.get(id).cloned())
            .ok_or_else(unknown)?;
        let applied = self
            .state
            .store
            .apply(Command::DeleteSavepoint { id: id.to_string() })
            .await?;
        if applied != Applied::Done {
            return Err(unknown());
        }
        crate::snapshot_gc::delete_unreferenced(
            &self.state,
            std::slice::from_ref(&savepoint.checkpoint),
            id,
        );
        tracing::info!(savepoint = %id, job = %savepoint.job, "savepoint deleted");
        Ok(savepoint_info(&savepoint))
    }

    /// What happened to a job lately, oldest first.
    pub fn events(&self, id: &str) -> Result<Vec<sluice_proto::JobEvent>, CoordinatorError> {
        self.state.store.check_leader()?;
        let id = JobId::new(id);
        self.state
            .store
            .read(|m| {
                m.jobs
                    .get(&id)
                    .map(|j| j.events.iter().map(|e| e.to_proto()).collect())
            })
            .ok_or(CoordinatorError::UnknownJob(id))
    }

    /// The workers this leader knows, with their slots and tasks.
    pub fn workers(&self) -> Result<Vec<WorkerInfo>, CoordinatorError> {
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
        Ok(self
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
            .collect())
    }
}

#[tonic::async_trait]
impl<S: MetaStore> JobService for JobApi<S> {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let request = request.into_inner();
        let from_savepoint = Some(request.from_savepoint).filter(|s| !s.is_empty());
        let id = self.submit(&request.spec_json, from_savepoint).await?;
        Ok(Response::new(SubmitJobResponse {
            job_id: id.to_string(),
        }))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(ListJobsResponse { jobs: self.jobs()? }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        Ok(Response::new(self.job(&request.into_inner().job_id)?))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
        Ok(Response::new(
            self.cancel(&request.into_inner().job_id).await?,
        ))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
        Ok(Response::new(
            self.checkpoints(&request.into_inner().job_id)?,
        ))
    }

    async fn trigger_savepoint(
        &self,
        request: Request<TriggerSavepointRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        Ok(Response::new(
            self.take_savepoint(&request.into_inner().job_id).await?,
        ))
    }

    async fn stop_job(
        &self,
        request: Request<StopJobRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        Ok(Response::new(
            self.stop(&request.into_inner().job_id).await?,
        ))
    }

    async fn rescale_job(
        &self,
        request: Request<RescaleJobRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            self.rescale(&request.job_id, request.parallelism).await?,
        ))
    }

    async fn list_savepoints(
        &self,
        _request: Request<ListSavepointsRequest>,
    ) -> Result<Response<ListSavepointsResponse>, Status> {
        Ok(Response::new(ListSavepointsResponse {
            savepoints: self.savepoints()?,
        }))
    }

    async fn delete_savepoint(
        &self,
        request: Request<DeleteSavepointRequest>,
    ) -> Result<Response<SavepointInfo>, Status> {
        let id = request.into_inner().savepoint_id;
        Ok(Response::new(JobApi::delete_savepoint(self, &id).await?))
    }

    async fn list_job_events(
        &self,
        request: Request<ListJobEventsRequest>,
    ) -> Result<Response<ListJobEventsResponse>, Status> {
        Ok(Response::new(ListJobEventsResponse {
            events: self.events(&request.into_inner().job_id)?,
        }))
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
        Ok(Response::new(ListWorkersResponse {
            workers: self.workers()?,
        }))
    }
}

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
        waiting_for_slots: false,
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
