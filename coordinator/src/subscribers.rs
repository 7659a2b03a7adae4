//! The command stream of each worker: how the coordinator reaches a worker
//! without waiting for its next heartbeat.

use sluice_common::WorkerId;
use sluice_proto::WorkerCommand;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Commands queued per worker before the coordinator gives up on its stream.
const QUEUE: usize = 256;

#[derive(Default)]
pub struct Subscribers {
    streams: Mutex<HashMap<WorkerId, mpsc::Sender<WorkerCommand>>>,
}

impl Subscribers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkerId, mpsc::Sender<WorkerCommand>>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the stream of `worker`, replacing an older one.
    pub fn subscribe(&self, worker: WorkerId) -> mpsc::Receiver<WorkerCommand> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().insert(worker, tx);
        rx
    }

    /// Whether `worker` has a stream open.
    pub fn is_open(&self, worker: &WorkerId) -> bool {
        self.lock().get(worker).is_some_and(|tx| !tx.is_closed())
    }

    /// Closes every stream: workers open theirs again with whichever
    /// member leads.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Queues a command; `false` when the worker has no open stream or is
    /// too far behind, which the checkpoint timeout then covers.
    pub fn send(&self, worker: &WorkerId, command: WorkerCommand) -> bool {
        let mut streams = self.lock();
        match streams.get(worker).map(|tx| tx.try_send(command)) {
            Some(Ok(())) => true,
            Some(Err(mpsc::error::TrySendError::Closed(_))) => {
                streams.remove(worker);
                false
            }
            Some(Err(mpsc::error::TrySendError::Full(_))) | None => false,
        }
    }
}
