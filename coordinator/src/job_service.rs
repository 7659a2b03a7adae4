//! JobService: submit, list, inspect and cancel jobs.

use crate::error::CoordinatorError;
use crate::kafka_meta;
use crate::meta::{Applied, Command, MetaStore};
use crate::state::Shared;
use sluice_common::spec::{SinkSpec, SourceSpec};
use sluice_common::{JobId, JobSpec, SpecError, SpecProblem};
use sluice_proto::job_service_server::JobService;
use sluice_proto::*;
use tonic::{Request, Response, Status};

pub struct JobApi<S> {
    pub state: Shared<S>,
}

impl<S: MetaStore> JobApi<S> {
    /// Checks what only the running systems can tell: that the topics exist.
    /// Returns the source topic's partition count.
    async fn check_topics(spec: &JobSpec) -> Result<i32, CoordinatorError> {
        let SourceSpec::Kafka(source) = &spec.source;
        let mut problems = Vec::new();
        let partitions = match kafka_meta::partition_count(&source.brokers, &source.topic).await {
            Ok(n) => n,
            Err(e) => {
                problems.push(SpecProblem {
                    path: "source.kafka.topic".into(),
                    message: e.to_string(),
                });
                0
            }
        };
        let mut outputs = Vec::new();
        if let SinkSpec::Kafka(k) = &spec.sink {
            outputs.push(("sink.kafka.topic", k.brokers.clone(), k.topic.clone()));
        }
        if let Some(dl) = &spec.dead_letter {
            let brokers = dl.kafka.brokers.clone().unwrap_or(source.brokers.clone());
            outputs.push(("dead_letter.kafka.topic", brokers, dl.kafka.topic.clone()));
        }
        for (path, brokers, topic) in outputs {
            if let Err(e) = kafka_meta::partition_count(&brokers, &topic).await {
                problems.push(SpecProblem {
                    path: path.into(),
                    message: e.to_string(),
                });
            }
        }
        if problems.is_empty() {
            Ok(partitions)
        } else {
            Err(SpecError::Invalid(problems).into())
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
        let spec = JobSpec::parse_resolved(&request.into_inner().spec_json)
            .map_err(CoordinatorError::from)?;
        let source_partitions = Self::check_topics(&spec).await?;
        let name = spec.name.clone();
        let applied = self.state.store.apply(Command::SubmitJob {
            uid: uuid::Uuid::new_v4().simple().to_string(),
            spec: Box::new(spec),
            source_partitions,
            submitted_at_ms: now_ms(),
        });
        let Applied::JobCreated(id) = applied else {
            return Err(Status::internal("job was not created"));
        };
        tracing::info!(job = %id, name = %name, source_partitions, "job submitted");
        Ok(Response::new(SubmitJobResponse {
            job_id: id.to_string(),
        }))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
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
        Ok(Response::new(self.find(&request.into_inner().job_id)?))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<JobStatus>, Status> {
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
        self.state.store.apply(Command::SetJobState {
            job: id.clone(),
            state: JobState::Cancelling,
            failure: Some("cancelled by request".into()),
        });
        tracing::info!(job = %id, "job cancelling");
        Ok(Response::new(self.find(id.as_str())?))
    }

    async fn list_checkpoints(
        &self,
        request: Request<ListCheckpointsRequest>,
    ) -> Result<Response<ListCheckpointsResponse>, Status> {
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

    async fn list_workers(
        &self,
        _request: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
