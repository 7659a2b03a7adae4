//! A subtask's keyed state in the checkpoint store as a chain: one full
//! snapshot, then at each checkpoint only what changed (a delta), so a
//! checkpoint costs what changed since the last one, not all the state. A
//! new full snapshot starts a new chain once the deltas outgrow it, so
//! restoring never reads much more than the state itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;

/// Deltas after which the next snapshot is full again, however small they are.
const MAX_DELTAS: usize = 32;

#[derive(Default)]
pub struct StateChain {
    /// The full snapshot the chain starts with, and its size in bytes.
    base: Option<(String, usize)>,
    /// The deltas after it, in order, and their size together.
    deltas: Vec<String>,
    delta_bytes: usize,
    /// The upload of the latest link; the next one is stored after it.
    last: Option<JoinHandle<bool>>,
    /// Set when an upload of the chain failed: a delta cannot stand on it.
    broken: Arc<AtomicBool>,
}

impl StateChain {
    /// Whether the next snapshot should be full: no chain yet, an upload of
    /// it failed, or its deltas outgrew the full snapshot.
    pub fn wants_full(&self) -> bool {
        match &self.base {
            None => true,
            Some((_, base_bytes)) => {
                self.broken.load(Ordering::SeqCst)
                    || self.deltas.len() >= MAX_DELTAS
                    || self.delta_bytes > *base_bytes
            }
        }
    }

    /// Adds the snapshot uploaded as `key` (`bytes` long, `full` or a delta);
    /// returns the chain a checkpoint of it records: the full snapshot, then
    /// the deltas.
    pub fn link(&mut self, key: &str, bytes: usize, full: bool) -> (String, Vec<String>) {
        if full || self.base.is_none() {
            self.base = Some((key.to_string(), bytes));
            self.deltas.clear();
            self.delta_bytes = 0;
            self.broken.store(false, Ordering::SeqCst);
        } else {
            self.deltas.push(key.to_string());
            self.delta_bytes += bytes;
        }
        let base = self
            .base
            .as_ref()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        (base, self.deltas.clone())
    }

    /// The upload of the latest link, for the next upload to wait on.
    pub fn take_last(&mut self) -> Option<JoinHandle<bool>> {
        self.last.take()
    }

    /// The upload of the link just added, and the flag it sets if it fails.
    pub fn uploading(&mut self, upload: JoinHandle<bool>) {
        self.last = Some(upload);
    }

    /// What an upload of this chain sets when it fails.
    pub fn failure_flag(&self) -> Arc<AtomicBool> {
        self.broken.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_follow_a_full_snapshot_until_they_outgrow_it() {
        let mut chain = StateChain::default();
        assert!(chain.wants_full());
        assert_eq!(chain.link("c1", 1000, true), ("c1".into(), vec![]));
        assert!(!chain.wants_full());
        assert_eq!(
            chain.link("c2.delta", 400, false),
            ("c1".into(), vec!["c2.delta".into()])
        );
        assert_eq!(
            chain.link("c3.delta", 400, false).1,
            vec!["c2.delta".to_string(), "c3.delta".into()]
        );
        assert!(!chain.wants_full());
        chain.link("c4.delta", 400, false);
        assert!(chain.wants_full(), "1,200 bytes of deltas on 1,000");
        assert_eq!(chain.link("c5", 900, true), ("c5".into(), vec![]));
        chain.failure_flag().store(true, Ordering::SeqCst);
        assert!(chain.wants_full(), "a failed upload breaks the chain");
    }
}
