//! Live workers: what they offer and when they were last heard from. Not
//! durable: workers register again after a coordinator restart.

use sluice_common::{TaskId, WorkerId};
use sluice_proto::{TaskMetrics, TaskReport, WorkerState};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct WorkerEntry {
    pub id: WorkerId,
    pub data_address: String,
    pub slots: u32,
    pub last_heartbeat: Instant,
    pub state: WorkerState,
    /// When a task last failed for not reaching this worker; it gets no new
    /// tasks until it heartbeats after that.
    pub suspected_at: Option<Instant>,
    /// Tasks the worker said it runs, with their metrics.
    pub reported: BTreeMap<TaskId, TaskReport>,
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
    /// new worker must not get.
    pub fn register(
        &self,
        data_address: String,
        slots: u32,
        previous: Option<WorkerId>,
        used: impl Iterator<Item = WorkerId>,
    ) -> WorkerId {
        let mut inner = self.lock();
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
                slots,
                last_heartbeat: Instant::now(),
                state: WorkerState::Alive,
                suspected_at: None,
                reported: BTreeMap::new(),
            },
        );
        id
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
