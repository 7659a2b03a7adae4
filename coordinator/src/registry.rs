//! Live workers: what they offer and when they were last heard from. Not
//! durable: workers register again after a coordinator restart.

use crate::error::CoordinatorError;
use sluice_common::{TaskId, WorkerId};
use sluice_proto::{TaskMetrics, TaskReport, WorkerState};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: WorkerId,
    pub data_address: String,
    /// The worker's process id on its host, as it registered.
    pub pid: u32,
    pub slots: u32,
    pub last_heartbeat: Instant,
    pub state: WorkerState,
    /// When a task last failed for not reaching this worker; it gets no new
    /// tasks until it heartbeats after that.
    pub suspected_at: Option<Instant>,
    /// Tasks the worker said it runs, with their metrics.
    pub reported: BTreeMap<TaskId, TaskReport>,
    /// `false` from its registration until its first heartbeat, while what
    /// it runs is not known: after a coordinator failover it may still be
    /// ending tasks of a job's last attempt.
    pub heard: bool,
}

/// What a worker offers as it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Where other workers reach its exchange (`--data-advertise`).
    pub data_address: String,
    pub slots: u32,
    /// Its process id on its host.
    pub pid: u32,
}

#[derive(Default)]
pub struct WorkerRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    workers: BTreeMap<WorkerId, WorkerEntry>,
    metrics: HashMap<TaskId, TaskMetrics>,
}

impl WorkerRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a worker. One that names the id it had keeps it unless this
    /// registry declared it lost; `used` are ids tasks are assigned to, which a
    /// new worker must not get. Refused with
    /// [`CoordinatorError::ExchangeAddressInUse`] when another worker that
    /// is alive, heard from within `timeout` and `connected` (its command
    /// stream open) advertises the same `data_address`: a worker whose
    /// process ended gives its address up at once, so one restarted in its
    /// place registers without waiting for the timeout.
    pub fn register(
        &self,
        worker: Registration,
        previous: Option<WorkerId>,
        used: impl Iterator<Item = WorkerId>,
        timeout: Duration,
        connected: impl Fn(&WorkerId) -> bool,
    ) -> Result<WorkerId, CoordinatorError> {
        let Registration {
            data_address,
            slots,
            pid,
        } = worker;
        let mut inner = self.lock();
        if let Some(holder) = inner.workers.values().find(|w| {
            w.data_address == data_address
                && Some(&w.id) != previous.as_ref()
                && w.state == WorkerState::Alive
                && w.last_heartbeat.elapsed() <= timeout
                && connected(&w.id)
        }) {
            return Err(CoordinatorError::ExchangeAddressInUse {
                address: data_address,
                worker: holder.id.clone(),
                pid: holder.pid,
            });
        }
        let highest = used
            .chain(inner.workers.keys().cloned())
            .filter_map(|w| w.seq())
            .max()
            .unwrap_or(0);
        inner.next_id = inner.next_id.max(highest);
        let lost = |id: &WorkerId| {
            inner
                .workers
                .get(id)
                .is_some_and(|w| w.state == WorkerState::Lost)
        };
        let id = match previous.filter(|p| !lost(p)) {
            Some(previous) => previous,
            None => {
                inner.next_id += 1;
                WorkerId::from_seq(inner.next_id)
            }
        };
        inner.workers.insert(
            id.clone(),
            WorkerEntry {
                id: id.clone(),
                data_address,
                pid,
                slots,
                last_heartbeat: Instant::now(),
                state: WorkerState::Alive,
                suspected_at: None,
                reported: BTreeMap::new(),
                heard: false,
            },
        );
        Ok(id)
    }

    /// Records a heartbeat; `false` when the worker is unknown or was declared lost.
    pub fn heartbeat(&self, id: &WorkerId, tasks: &[TaskReport]) -> bool {
        let mut inner = self.lock();
        let Inner {
            workers, metrics, ..
        } = &mut *inner;
        let Some(w) = workers.get_mut(id) else {
            return false;
        };
        if w.state == WorkerState::Lost {
            return false;
        }
        w.last_heartbeat = Instant::now();
        w.heard = true;
        w.reported = tasks
            .iter()
            .map(|t| (TaskId::new(t.task_id.clone()), t.clone()))
            .collect();
        for t in tasks {
            if let Some(m) = &t.metrics {
                metrics.insert(TaskId::new(t.task_id.clone()), m.clone());
            }
        }
        true
    }

    /// Records the state of one task a worker reported between heartbeats,
    /// so that [`Self::tasks_not_ended`] sees an end at once.
    pub fn record_task(&self, id: &WorkerId, report: &TaskReport) {
        if let Some(w) = self.lock().workers.get_mut(id) {
            w.reported
                .insert(TaskId::new(report.task_id.clone()), report.clone());
        }
    }

    /// The tasks of `job` that workers not declared lost last reported as
    /// not ended (deploying or running): a job's next attempt waits for
    /// them, as a task may still be stopping (see `place_waiting_jobs`).
    pub fn tasks_not_ended(&self, job: &str) -> Vec<TaskId> {
        self.lock()
            .workers
            .values()
            .filter(|w| w.state != WorkerState::Lost)
            .flat_map(|w| w.reported.iter())
            .filter(|(_, t)| t.job_id == job && !t.state().is_terminal())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Workers not declared lost that have not heartbeated since they
    /// registered: whether they still run tasks of a job's last attempt is
    /// not known yet, so its next attempt waits for them as for
    /// [`Self::tasks_not_ended`] (one heartbeat interval).
    pub fn workers_not_heard(&self) -> Vec<WorkerId> {
        self.lock()
            .workers
            .values()
            .filter(|w| w.state != WorkerState::Lost && !w.heard)
            .map(|w| w.id.clone())
            .collect()
    }

    pub fn is_alive(&self, id: &WorkerId) -> bool {
        self.lock()
            .workers
            .get(id)
            .is_some_and(|w| w.state == WorkerState::Alive)
    }

    /// Alive workers heard from within `max_silence`: where new tasks may go.
    /// A worker that just died is alive until its timeout passes, but silent.
    pub fn placeable(&self, max_silence: Duration) -> Vec<WorkerEntry> {
        self.lock()
            .workers
            .values()
            .filter(|w| w.state == WorkerState::Alive && w.last_heartbeat.elapsed() <= max_silence)
            .filter(|w| w.suspected_at.is_none_or(|s| w.last_heartbeat > s))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<WorkerEntry> {
        self.lock().workers.values().cloned().collect()
    }

    /// Marks the worker serving `data_address` as suspect: a peer could not reach it.
    pub fn suspect(&self, data_address: &str) {
        let now = Instant::now();
        for w in self.lock().workers.values_mut() {
            if w.data_address == data_address && w.state == WorkerState::Alive {
                tracing::info!(worker = %w.id, %data_address, "worker unreachable from a peer; no new tasks until it heartbeats");
                w.suspected_at = Some(now);
            }
        }
    }

    pub fn data_address(&self, id: &WorkerId) -> Option<String> {
        self.lock().workers.get(id).map(|w| w.data_address.clone())
    }

    pub fn metrics(&self, task: &TaskId) -> Option<TaskMetrics> {
        self.lock().metrics.get(task).cloned()
    }

    /// Forgets every worker: on losing the lead, since what this member saw
    /// goes stale while others lead, and workers register again with
    /// whichever member leads next.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.workers.clear();
        inner.metrics.clear();
    }

    /// Declares lost every alive worker silent for longer than `timeout`, and
    /// returns them with how long each was silent.
    pub fn expire(&self, timeout: Duration) -> Vec<(WorkerId, Duration)> {
        let now = Instant::now();
        let mut lost = Vec::new();
        for w in self.lock().workers.values_mut() {
            let silent = now.saturating_duration_since(w.last_heartbeat);
            if w.state == WorkerState::Alive && silent > timeout {
                w.state = WorkerState::Lost;
                w.reported.clear();
                lost.push((w.id.clone(), silent));
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(address: &str, pid: u32) -> Registration {
        Registration {
            data_address: address.into(),
            slots: 2,
            pid,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(60);

    /// Registers a worker at `address` with `pid` whose streams are open.
    fn register(
        registry: &WorkerRegistry,
        address: &str,
        pid: u32,
        previous: Option<WorkerId>,
    ) -> Result<WorkerId, CoordinatorError> {
        registry.register(
            at(address, pid),
            previous,
            std::iter::empty(),
            TIMEOUT,
            |_| true,
        )
    }

    fn task(job: &str, id: &str, state: sluice_proto::TaskState) -> TaskReport {
        TaskReport {
            job_id: job.into(),
            task_id: id.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_task_counts_as_not_ended_until_its_worker_reports_the_end_or_is_lost() {
        use sluice_proto::TaskState;
        let registry = WorkerRegistry::default();
        let a = register(&registry, "10.0.0.1:7500", 41, None).unwrap();
        let b = register(&registry, "10.0.0.2:7500", 42, None).unwrap();
        registry.heartbeat(&a, &[task("job-1", "job-1/s0/0@0", TaskState::Running)]);
        registry.heartbeat(
            &b,
            &[
                task("job-1", "job-1/s0/1@0", TaskState::Deploying),
                task("job-2", "job-2/s0/0@0", TaskState::Running),
            ],
        );
        let mut ending = registry.tasks_not_ended("job-1");
        ending.sort();
        assert_eq!(
            ending,
            vec![TaskId::new("job-1/s0/0@0"), TaskId::new("job-1/s0/1@0")]
        );
        // An end reported between heartbeats counts at once.
        registry.record_task(&a, &task("job-1", "job-1/s0/0@0", TaskState::Cancelled));
        assert_eq!(
            registry.tasks_not_ended("job-1"),
            vec![TaskId::new("job-1/s0/1@0")]
        );
        // A lost worker's tasks are not waited for.
        std::thread::sleep(Duration::from_millis(5));
        registry.heartbeat(&a, &[]);
        let lost = registry.expire(Duration::from_millis(1));
        assert!(lost.iter().any(|(w, _)| *w == b), "{lost:?}");
        assert!(registry.tasks_not_ended("job-1").is_empty());
    }

    #[test]
    fn a_worker_is_not_heard_from_its_registration_until_its_first_heartbeat() {
        use sluice_proto::TaskState;
        // A new leader knows nothing of the tasks a worker still ends until
        // it heartbeats: registering says nothing of them.
        let registry = WorkerRegistry::default();
        let a = register(&registry, "10.0.0.1:7500", 41, None).unwrap();
        let b = register(&registry, "10.0.0.2:7500", 42, None).unwrap();
        let mut unheard = registry.workers_not_heard();
        unheard.sort();
        assert_eq!(unheard, vec![a.clone(), b.clone()]);
        assert!(registry.tasks_not_ended("job-1").is_empty());
        registry.heartbeat(&a, &[task("job-1", "job-1/s0/0@0", TaskState::Running)]);
        assert_eq!(registry.workers_not_heard(), vec![b.clone()]);
        assert_eq!(
            registry.tasks_not_ended("job-1"),
            vec![TaskId::new("job-1/s0/0@0")]
        );
        registry.heartbeat(&b, &[]);
        assert!(registry.workers_not_heard().is_empty());
        // A worker registering again with its id is not heard until it
        // heartbeats again.
        register(&registry, "10.0.0.2:7500", 42, Some(b.clone())).unwrap();
        assert_eq!(registry.workers_not_heard(), vec![b]);
    }

    #[test]
    fn a_second_worker_advertising_a_live_workers_exchange_address_is_refused() {
        let registry = WorkerRegistry::default();
        let first = register(&registry, "10.0.0.1:7500", 41, None).unwrap();
        let refused = register(&registry, "10.0.0.1:7500", 42, None).unwrap_err();
        let message = refused.to_string();
        assert!(
            matches!(&refused, CoordinatorError::ExchangeAddressInUse { worker, pid: 41, .. } if *worker == first),
            "{refused:?}"
        );
        assert!(
            message.contains("10.0.0.1:7500") && message.contains(first.as_str()),
            "{message}"
        );
        assert_eq!(registry.all().len(), 1);
        // Another address is taken.
        register(&registry, "10.0.0.2:7500", 42, None).unwrap();
    }

    #[test]
    fn the_address_of_a_worker_gone_or_registering_again_is_taken() {
        let registry = WorkerRegistry::default();
        let first = register(&registry, "10.0.0.1:7500", 41, None).unwrap();
        // The same worker again, under the id it had.
        let again = register(&registry, "10.0.0.1:7500", 41, Some(first.clone())).unwrap();
        assert_eq!(again, first);
        // Its process ended (its command stream closed): a new one in its
        // place takes the address at once.
        let replaced = registry
            .register(
                at("10.0.0.1:7500", 43),
                None,
                std::iter::empty(),
                TIMEOUT,
                |_| false,
            )
            .unwrap();
        assert_ne!(replaced, first);
        // Silent past the timeout.
        registry
            .register(
                at("10.0.0.1:7500", 44),
                None,
                std::iter::empty(),
                Duration::ZERO,
                |_| true,
            )
            .unwrap();
    }
}
