use crate::record::Record;
use sluice_common::JobId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
    /// Records, and the bytes they took on the wire coming from another
    /// worker (0 from a subtask on this one).
    Records(Vec<Record>, usize),
    Barrier(u64),
    End,
}

/// The inboxes of the subtasks running on this worker: one bounded channel
/// per (receiver, sender), so a receiver can hold back one sender while it
/// aligns a barrier and still read the others.
#[derive(Default)]
pub struct Inboxes {
    map: Mutex<HashMap<(InboxKey, u32), mpsc::Sender<Frame>>>,
    changed: Notify,
}

impl Inboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(InboxKey, u32), mpsc::Sender<Frame>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the inbox of `key` for `senders` upstream subtasks.
    pub fn open(&self, key: InboxKey, senders: u32, capacity: usize) -> AlignedInput {
        let mut receivers = Vec::with_capacity(senders as usize);
        {
            let mut map = self.lock();
            for sender in 0..senders {
                let (tx, rx) = mpsc::channel(capacity);
                map.insert((key.clone(), sender), tx);
                receivers.push(rx);
            }
        }
        self.changed.notify_waiters();
        AlignedInput::new(receivers)
    }

    pub fn close(&self, key: &InboxKey) {
        self.lock().retain(|(k, _), _| k != key);
    }

    /// The channel from `sender` into the inbox of `key`, waiting up to
    /// `patience` for its subtask to start: subtasks of one job are deployed
    /// on several workers at about the same time, in no set order.
    pub async fn get(
        &self,
        key: &InboxKey,
        sender: u32,
        patience: Duration,
    ) -> Option<mpsc::Sender<Frame>> {
        let deadline = tokio::time::Instant::now() + patience;
        let slot = (key.clone(), sender);
        loop {
            let notified = self.changed.notified();
            if let Some(tx) = self.lock().get(&slot).cloned() {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// What an aligned input yields.
#[derive(Debug)]
pub enum Event {
    /// Records, and the bytes they took on the wire coming from another
    /// worker (0 from a subtask on this one).
    Records(Vec<Record>, usize),
    /// Every sender delivered barrier `id`; what came before it from each
    /// sender has been yielded, nothing after it. `alignment` is the time
    /// from the first sender's barrier to the last one's (zero with one
    /// sender): how long some senders were held back for this checkpoint.
    Barrier { id: u64, alignment: Duration },
    /// Every sender ended.
    End,
}

/// Reads all senders of an inbox, aligning barriers: once a sender delivered
/// barrier `n` it is not read again until every sender delivered it. A higher
/// barrier supersedes the one being aligned (that checkpoint was abandoned: a
/// source never got its trigger): every sender is released and alignment
/// starts over on the new one. A barrier lower than the one being aligned is
/// stale and ignored.
pub struct AlignedInput {
    receivers: Vec<mpsc::Receiver<Frame>>,
    blocked: Vec<bool>,
    ended: Vec<bool>,
    barrier: Option<u64>,
    /// When the first sender delivered the barrier being aligned.
    aligning_since: Option<Instant>,
    /// The last barrier released; anything at or below it is stale.
    released: u64,
    next: usize,
}

impl AlignedInput {
    fn new(receivers: Vec<mpsc::Receiver<Frame>>) -> Self {
        let n = receivers.len();
        Self {
            receivers,
            blocked: vec![false; n],
            ended: vec![false; n],
            barrier: None,
            aligning_since: None,
            released: 0,
            next: 0,
        }
    }

    /// Cancel-safe: a frame is only taken from a channel when it is returned
    /// or recorded in the alignment state.
    pub async fn next(&mut self) -> Event {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    fn aligned(&self) -> bool {
        (0..self.receivers.len()).all(|i| self.blocked[i] || self.ended[i])
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        let n = self.receivers.len();
        if n == 0 || self.ended.iter().all(|e| *e) {
            return Poll::Ready(Event::End);
        }
        // Every receiver that can be read is polled until it yields records,
        // blocks, ends or is pending (so its waker is registered). A
        // superseding barrier unblocks senders already passed: scan again.
        loop {
            let mut rescan = false;
            for step in 0..n {
                let i = (self.next + step) % n;
                while !self.blocked[i] && !self.ended[i] {
                    match self.receivers[i].poll_recv(cx) {
                        Poll::Ready(Some(Frame::Records(records, bytes))) => {
                            // Start at the next sender next time, so one busy
                            // sender cannot starve the rest.
                            self.next = (i + 1) % n;
                            return Poll::Ready(Event::Records(records, bytes));
                        }
                        Poll::Ready(Some(Frame::Barrier(id))) => rescan |= self.on_barrier(i, id),
                        Poll::Ready(Some(Frame::End)) | Poll::Ready(None) => self.ended[i] = true,
                        Poll::Pending => break,
                    }
                }
            }
            if self.aligned() {
                return Poll::Ready(self.release());
            }
            if !rescan {
                return Poll::Pending;
            }
        }
    }

    /// Records barrier `id` from sender `i`; `true` when it superseded an
    /// alignment in progress and released the senders held by it.
    fn on_barrier(&mut self, i: usize, id: u64) -> bool {
        if id <= self.released {
            return false;
        }
        match self.barrier {
            Some(current) if id < current => false,
            Some(current) if id > current => {
                self.blocked.iter_mut().for_each(|b| *b = false);
                self.blocked[i] = true;
                self.barrier = Some(id);
                self.aligning_since = Some(Instant::now());
                true
            }
            Some(_) => {
                self.blocked[i] = true;
                false
            }
            None => {
                self.blocked[i] = true;
                self.barrier = Some(id);
                self.aligning_since = Some(Instant::now());
                false
            }
        }
    }

    fn release(&mut self) -> Event {
        self.blocked.iter_mut().for_each(|b| *b = false);
        let alignment = self
            .aligning_since
            .take()
            .map_or(Duration::ZERO, |since| since.elapsed());
        match self.barrier.take() {
            Some(id) => {
                self.released = id;
                Event::Barrier { id, alignment }
            }
            None => Event::End,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn rec(n: i64) -> Record {
        Record::new(
            vrl::value::Value::from(n),
            Origin {
                topic: "t".into(),
                partition: 0,
                offset: n,
            },
        )
    }

    /// An inbox with two senders.
    async fn two_senders() -> (AlignedInput, mpsc::Sender<Frame>, mpsc::Sender<Frame>) {
        let inboxes = Inboxes::default();
        let key = InboxKey {
            job: JobId::new("j"),
            attempt: 0,
            stage: 1,
            index: 0,
        };
        let input = inboxes.open(key.clone(), 2, 8);
        let a = inboxes
            .get(&key, 0, Duration::ZERO)
            .await
            .expect("sender 0");
        let b = inboxes
            .get(&key, 1, Duration::ZERO)
            .await
            .expect("sender 1");
        (input, a, b)
    }

    #[tokio::test]
    async fn a_sender_past_its_barrier_is_held_until_all_delivered_it() {
        let (mut input, a, b) = two_senders().await;
        a.send(Frame::Records(vec![rec(1)], 0)).await.expect("open");
        a.send(Frame::Barrier(7)).await.expect("open");
        a.send(Frame::Records(vec![rec(2)], 0)).await.expect("open");
        b.send(Frame::Records(vec![rec(10)], 0))
            .await
            .expect("open");

        let mut seen = Vec::new();
        for _ in 0..2 {
            match input.next().await {
                Event::Records(rs, _) => seen.extend(rs.iter().map(|r| r.origin.offset)),
                other => panic!("expected records, got {other:?}"),
            }
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![1, 10],
            "record 2 of sender 0 waits behind its barrier"
        );
        let early = tokio::time::timeout(Duration::from_millis(50), input.next()).await;
        assert!(early.is_err(), "no barrier before sender 1 delivers it");

        b.send(Frame::Barrier(7)).await.expect("open");
        match input.next().await {
            Event::Barrier { id, alignment } => {
                assert_eq!(id, 7);
                assert!(
                    alignment >= Duration::from_millis(50),
                    "sender 0 was held from its barrier until sender 1's: {alignment:?}"
                );
            }
            other => panic!("expected barrier 7, got {other:?}"),
        }
        match input.next().await {
            Event::Records(rs, _) => assert_eq!(rs[0].origin.offset, 2),
            other => panic!("expected record 2, got {other:?}"),
        }
        a.send(Frame::End).await.expect("open");
        b.send(Frame::End).await.expect("open");
        assert!(matches!(input.next().await, Event::End));
    }

    #[tokio::test]
    async fn a_higher_barrier_supersedes_an_abandoned_alignment() {
        let (mut input, a, b) = two_senders().await;
        // Sender 0 got the trigger of checkpoint 4, sender 1 never did.
        a.send(Frame::Barrier(4)).await.expect("open");
        a.send(Frame::Records(vec![rec(1)], 0)).await.expect("open");
        a.send(Frame::Barrier(5)).await.expect("open");
        b.send(Frame::Barrier(5)).await.expect("open");
        // Record 1 came after barrier 4 but before barrier 5: it must be read
        // before checkpoint 5 is aligned.
        match input.next().await {
            Event::Records(rs, _) => assert_eq!(rs[0].origin.offset, 1),
            other => panic!("expected record 1 before barrier 5, got {other:?}"),
        }
        assert!(matches!(input.next().await, Event::Barrier { id: 5, .. }));
        // A stale barrier is ignored.
        b.send(Frame::Barrier(3)).await.expect("open");
        b.send(Frame::Records(vec![rec(2)], 0)).await.expect("open");
        match input.next().await {
            Event::Records(rs, _) => assert_eq!(rs[0].origin.offset, 2),
            other => panic!("expected record 2, got {other:?}"),
        }
    }
}
