//! Calls to Kafka's transaction coordinator under way in this worker, per
//! transactional id.
//!
//! Opening a producer session on a transactional id (InitProducerId) aborts
//! whatever transaction the id has open. A subtask that is stopped while
//! such a call waits on a blocking thread (its start abandoned because the
//! job restarts, is cancelled, or another part of the subtask failed to
//! start) must not have that call reach the broker after the job's next
//! attempt opened a transaction on the same id: the late call would abort
//! it, and with it the records of a checkpoint that may have completed. So
//! a subtask reports its end only once its calls returned
//! ([`TransactionCalls::settled`]), the coordinator places the next attempt
//! only once the old one's tasks ended, and a new session on an id waits
//! for any call still under way on it here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use tokio::sync::Notify;

/// The calls under way in this process, by transactional id.
#[derive(Default)]
pub struct TransactionCalls {
    under_way: Mutex<HashMap<String, usize>>,
    ended: Notify,
}

static CALLS: LazyLock<TransactionCalls> = LazyLock::new(TransactionCalls::default);

/// A call under way on one transactional id; it ends when this is dropped.
pub struct CallGuard {
    id: String,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let calls = &*CALLS;
        let mut under_way = calls.lock();
        if let Some(n) = under_way.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                under_way.remove(&self.id);
            }
        }
        drop(under_way);
        calls.ended.notify_waiters();
    }
}

impl TransactionCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.under_way.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a call on `id` under way until the guard is dropped: hold it
    /// for as long as the call may still reach the broker.
    pub fn begin(id: &str) -> CallGuard {
        *CALLS.lock().entry(id.to_string()).or_default() += 1;
        CallGuard { id: id.to_string() }
    }

    /// Returns once no call on any of `ids` is under way in this process.
    pub async fn settled(ids: &[String]) {
        let calls = &*CALLS;
        loop {
            // Created before the check, it hears an end that comes between
            // the check and the wait.
            let ended = calls.ended.notified();
            if !ids.iter().any(|id| calls.lock().contains_key(id)) {
                return;
            }
            ended.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn settled_waits_for_the_calls_on_the_ids_it_is_given() {
        let ids = vec!["tc-test-a".to_string(), "tc-test-b".to_string()];
        TransactionCalls::settled(&ids).await;
        let call = TransactionCalls::begin("tc-test-b");
        let other = TransactionCalls::begin("tc-test-c");
        let waiting = tokio::spawn({
            let ids = ids.clone();
            async move { TransactionCalls::settled(&ids).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a call on b is under way");
        std::thread::spawn(move || drop(call)).join().unwrap();
        tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("settled once the call ended")
            .unwrap();
        // A call on an id not asked for does not hold it up.
        TransactionCalls::settled(&ids).await;
        drop(other);
    }
}
