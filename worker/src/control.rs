//! The worker's side of ClusterService: register, heartbeat, apply what the
//! coordinator answers, and report task changes as they happen.

use crate::coordinators::Coordinators;
use crate::error::WorkerError;
use crate::runtime::{Outbound, TaskCommand, TaskManager};
use sluice_common::TaskId;
use sluice_proto::worker_command::Kind;
use sluice_proto::{HeartbeatRequest, RegisterWorkerRequest, SubscribeRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

pub struct Control {
    pub coordinators: Coordinators,
    pub data_address: String,
    pub slots: u32,
    pub tasks: Arc<TaskManager>,
}

/// Tries an ack this many times, a pause apart, following the leader: a
/// checkpoint whose ack is lost waits for its timeout with its sinks held.
const ACK_ATTEMPTS: u32 = 20;
const ACK_PAUSE: Duration = Duration::from_millis(250);

/// Sends a checkpoint ack until the leader took it. Acks are idempotent for
/// the coordinator, and one for a checkpoint it moved past is ignored.
async fn deliver_ack(coordinators: Coordinators, ack: sluice_proto::CheckpointAck) {
    for attempt in 1..=ACK_ATTEMPTS {
        match coordinators.client().ack_checkpoint(ack.clone()).await {
            Ok(_) => return,
            Err(status) => {
                coordinators.failed(&status);
                tracing::warn!(job = %ack.job_id, task = %ack.task_id, checkpoint = ack.checkpoint_id, attempt, error = %status.message(), "checkpoint ack not delivered; trying again");
            }
        }
        tokio::time::sleep(ACK_PAUSE).await;
    }
    tracing::warn!(job = %ack.job_id, task = %ack.task_id, checkpoint = ack.checkpoint_id, "checkpoint ack given up; the checkpoint times out");
}

/// How long a worker refused for its exchange address asks again before
/// it gives up: a worker restarted in place of one just killed may register
/// before the coordinator has seen the old process's connection close.
const REFUSED_GRACE: Duration = Duration::from_secs(3);

impl Control {
    /// Registers with the leader, retrying while no coordinator answers;
    /// fails when the coordinator refuses this worker for good (another
    /// live worker advertises its exchange address).
    async fn register(
        &mut self,
        previous: Option<&str>,
    ) -> Result<(String, Duration, Duration), WorkerError> {
        let mut backoff = Duration::from_millis(100);
        let mut refused_since: Option<tokio::time::Instant> = None;
        loop {
            let req = RegisterWorkerRequest {
                data_address: self.data_address.clone(),
                slots: self.slots,
                pid: std::process::id(),
                previous_worker_id: previous.unwrap_or_default().to_string(),
            };
            match self.coordinators.client().register_worker(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    tracing::info!(worker = %resp.worker_id, "registered with coordinator");
                    return Ok((
                        resp.worker_id,
                        Duration::from_millis(resp.heartbeat_interval_ms.max(50)),
                        Duration::from_millis(resp.heartbeat_timeout_ms.max(500)),
                    ));
                }
                Err(status) if status.code() == tonic::Code::AlreadyExists => {
                    let since = *refused_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= REFUSED_GRACE {
                        return Err(WorkerError::Refused {
                            reason: status.message().to_string(),
                        });
                    }
                    tracing::warn!(error = %status.message(), "registration refused; asking again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(status) => {
                    self.coordinators.failed(&status);
                    tracing::warn!(error = %status.message(), "cannot register with coordinator; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Reads the coordinator's command stream and hands each command to the
    /// tasks it concerns; opens the stream again when it breaks.
    fn subscribe(
        &self,
        worker_id: String,
        heartbeat_now: Arc<Notify>,
    ) -> tokio::task::JoinHandle<()> {
        let coordinators = self.coordinators.clone();
        let tasks = self.tasks.clone();
        tokio::spawn(async move {
            loop {
                let req = SubscribeRequest {
                    worker_id: worker_id.clone(),
                };
                match coordinators.client().subscribe(req).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        while let Ok(Some(cmd)) = stream.message().await {
                            match cmd.kind {
                                Some(Kind::Trigger(t)) => tasks.command(
                                    &t.job_id,
                                    t.attempt,
                                    TaskCommand::Trigger {
                                        id: t.checkpoint_id,
                                        stop: t.stop,
                                    },
                                ),
                                Some(Kind::Completed(c)) => tasks.command(
                                    &c.job_id,
                                    c.attempt,
                                    TaskCommand::Done(c.checkpoint_id),
                                ),
                                Some(Kind::Abandoned(c)) => tasks.command(
                                    &c.job_id,
                                    c.attempt,
                                    TaskCommand::Abandoned(c.checkpoint_id),
                                ),
                                Some(Kind::HeartbeatNow(_)) => heartbeat_now.notify_one(),
                                None => {}
                            }
                        }
                        tracing::warn!("coordinator command stream ended; reopening");
                    }
                    Err(status) => {
                        coordinators.failed(&status);
                        tracing::warn!(error = %status.message(), "cannot open the coordinator command stream; retrying");
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// Registers, heartbeats and hands on commands for as long as the
    /// worker runs; returns only when the coordinator refuses the worker.
    pub async fn run(
        mut self,
        mut outbound: mpsc::UnboundedReceiver<Outbound>,
    ) -> Result<(), WorkerError> {
        let mut previous: Option<String> = None;
        loop {
            let (worker_id, interval, timeout) = self.register(previous.as_deref()).await?;
            if previous.as_deref() == Some(worker_id.as_str()) {
                tracing::info!(worker = %worker_id, "registered again under the same id; its tasks run on");
            } else {
                // The tasks belonged to the id this worker had, which the
                // coordinator declared lost: they run elsewhere now.
                self.tasks.cancel_all();
                self.tasks.new_session();
            }
            previous = Some(worker_id.clone());
            let mut last_heartbeat = tokio::time::Instant::now();
            let heartbeat_now = Arc::new(Notify::new());
            let subscription = self.subscribe(worker_id.clone(), heartbeat_now.clone());
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = heartbeat_now.notified() => tick.reset(),
                    Some(out) = outbound.recv() => {
                        self.send(out, &worker_id).await;
                        continue;
                    }
                }
                let req = HeartbeatRequest {
                    worker_id: worker_id.clone(),
                    tasks: self.tasks.reports(&worker_id),
                };
                let resp = match self.coordinators.client().heartbeat(req).await {
                    Ok(r) => {
                        last_heartbeat = tokio::time::Instant::now();
                        r.into_inner()
                    }
                    Err(status) if last_heartbeat.elapsed() > timeout => {
                        // The coordinator has declared this worker lost by now and
                        // runs its tasks elsewhere: stop them here, register again.
                        tracing::warn!(error = %status.message(), "no heartbeat got through within the timeout; stopping every task");
                        self.tasks.cancel_all();
                        subscription.abort();
                        break;
                    }
                    Err(status) => {
                        // Tasks keep running while the coordinator is briefly away.
                        self.coordinators.failed(&status);
                        tracing::warn!(error = %status.message(), "heartbeat failed");
                        continue;
                    }
                };
                if resp.reregister {
                    // A new leader takes this worker back with its tasks; a
                    // leader that declared it lost gives it a new id instead.
                    tracing::warn!(worker = %worker_id, "coordinator does not know this worker; registering again");
                    subscription.abort();
                    break;
                }
                for id in resp.cancel {
                    self.tasks.cancel(&TaskId::new(id));
                }
                for dep in resp.deploy {
                    self.tasks.deploy(dep);
                }
                for sp in resp.source_partitions {
                    self.tasks
                        .assign_partitions(&TaskId::new(sp.task_id), sp.partitions);
                }
                // Repeats what the command stream said, in case it was lost:
                // the latest completed and abandoned checkpoint of each job.
                let mut settled: std::collections::BTreeMap<(String, u32), (u64, u64)> =
                    Default::default();
                for c in resp.completed {
                    settled.entry((c.job_id, c.attempt)).or_default().0 = c.checkpoint_id;
                }
                for a in resp.abandoned {
                    settled.entry((a.job_id, a.attempt)).or_default().1 = a.checkpoint_id;
                }
                for ((job, attempt), (completed, abandoned)) in settled {
                    self.tasks.command(
                        &job,
                        attempt,
                        TaskCommand::Settled {
                            completed,
                            abandoned,
                        },
                    );
                }
            }
        }
    }

    async fn send(&mut self, out: Outbound, worker_id: &str) {
        match out {
            Outbound::Report(mut report) => {
                report.worker_id = worker_id.to_string();
                if let Err(status) = self.coordinators.client().report_task_state(report).await {
                    self.coordinators.failed(&status);
                    tracing::warn!(error = %status.message(), "task report not delivered; the next heartbeat carries it");
                }
            }
            Outbound::Ack(mut ack) => {
                ack.worker_id = worker_id.to_string();
                tokio::spawn(deliver_ack(self.coordinators.clone(), ack));
            }
        }
    }
}
