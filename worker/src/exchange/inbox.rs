use crate::record::Record;
use sluice_common::JobId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// A receiving subtask: stages and attempts are part of it so a late sender of
/// an older attempt can never feed a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InboxKey {
    pub job: JobId,
    pub attempt: u32,
    pub stage: u32,
    pub index: u32,
}

#[derive(Debug)]
pub enum Frame {
    Records(Vec<Record>),
    Barrier(u64),
    End,
}

#[derive(Debug)]
pub struct InboxMsg {
    pub sender: u32,
    pub frame: Frame,
}

/// The inboxes of the subtasks running on this worker.
#[derive(Default)]
pub struct Inboxes {
    map: Mutex<HashMap<InboxKey, mpsc::Sender<InboxMsg>>>,
    changed: Notify,
}

impl Inboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<InboxKey, mpsc::Sender<InboxMsg>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open(&self, key: InboxKey, capacity: usize) -> mpsc::Receiver<InboxMsg> {
        let (tx, rx) = mpsc::channel(capacity);
        self.lock().insert(key, tx);
        self.changed.notify_waiters();
        rx
    }

    pub fn close(&self, key: &InboxKey) {
        self.lock().remove(key);
    }

    /// The inbox of `key`, waiting up to `patience` for its subtask to start:
    /// subtasks of one job are deployed on several workers at about the same
    /// time, in no set order.
    pub async fn get(&self, key: &InboxKey, patience: Duration) -> Option<mpsc::Sender<InboxMsg>> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.changed.notified();
            if let Some(tx) = self.lock().get(key).cloned() {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}
