//! Sends a stage's output to the next stage, each record to the subtask that
//! owns its key's group.

use super::inbox::{Frame, InboxKey, Inboxes};
use super::peers::Peers;
use super::wire::to_batches;
use crate::error::{Result, WorkerError};
use crate::record::{FailedAt, Failure, Record};
use crate::state::{group_of, key_of};
use sluice_common::JobId;
use sluice_common::keys::{DEFAULT_MAX_PARALLELISM, subtask_of_group};
use sluice_proto::exchange_frame::Kind;
use sluice_proto::exchange_service_client::ExchangeServiceClient;
use sluice_proto::{ExchangeFrame, ExchangeHeader};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

enum Out {
    Local(mpsc::Sender<Frame>),
    Remote {
        tx: mpsc::Sender<ExchangeFrame>,
        call: JoinHandle<std::result::Result<(), tonic::Status>>,
        peer: String,
    },
}

pub struct Router {
    key_fields: Vec<String>,
    outs: Vec<Out>,
    buffers: Vec<Vec<Record>>,
    next_stage: u32,
    /// Bytes of record frames sent to other workers since last taken.
    bytes_sent: usize,
}

/// Where this subtask sends: its job, attempt and index, and the next stage.
pub struct Route<'a> {
    pub job: &'a JobId,
    pub attempt: u32,
    pub index: u32,
    pub next_stage: u32,
    pub downstream: &'a [String],
    pub own_address: &'a str,
}

impl Router {
    pub async fn connect(
        route: Route<'_>,
        key_fields: &[String],
        inboxes: &Inboxes,
        peers: &Peers,
    ) -> Result<Self> {
        let mut outs = Vec::with_capacity(route.downstream.len());
        for (target, address) in route.downstream.iter().enumerate() {
            let target = target as u32;
            let exchange_err = |reason: String| WorkerError::Exchange {
                peer: address.clone(),
                stage: route.next_stage,
                index: target,
                reason,
            };
            if address == route.own_address {
                let key = InboxKey {
                    job: route.job.clone(),
                    attempt: route.attempt,
                    stage: route.next_stage,
                    index: target,
                };
                let tx = inboxes
                    .get(&key, route.index, Duration::from_secs(30))
                    .await
                    .ok_or_else(|| {
                        exchange_err("receiving subtask did not start within 30s".into())
                    })?;
                outs.push(Out::Local(tx));
                continue;
            }
            let channel = peers.channel(address).map_err(exchange_err)?;
            let (tx, rx) = mpsc::channel(super::INBOX_CAPACITY);
            tx.send(ExchangeFrame {
                kind: Some(Kind::Header(ExchangeHeader {
                    job_id: route.job.to_string(),
                    attempt: route.attempt,
                    stage: route.next_stage,
                    target_index: target,
                    sender_index: route.index,
                })),
            })
            .await
            .map_err(|_| exchange_err("stream closed before its header".into()))?;
            let call = tokio::spawn(async move {
                let mut client = ExchangeServiceClient::new(channel);
                client.push(ReceiverStream::new(rx)).await.map(drop)
            });
            outs.push(Out::Remote {
                tx,
                call,
                peer: address.clone(),
            });
        }
        let n = outs.len();
        Ok(Self {
            key_fields: key_fields.to_vec(),
            outs,
            buffers: (0..n).map(|_| Vec::new()).collect(),
            next_stage: route.next_stage,
            bytes_sent: 0,
        })
    }

    fn target(&self, record: &Record) -> std::result::Result<u32, String> {
        let key = key_of(record, &self.key_fields)?;
        Ok(subtask_of_group(
            group_of(&key),
            DEFAULT_MAX_PARALLELISM,
            self.outs.len() as u32,
        ))
    }

    /// Sends each record to its key's subtask; waits while a receiver is full.
    pub async fn send(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Result<()> {
        for record in records {
            match self.target(&record) {
                Ok(t) => self.buffers[t as usize].push(record),
                Err(e) => failures.push(Failure::of(&record, FailedAt::KeyBy, e)),
            }
        }
        for target in 0..self.outs.len() {
            if self.buffers[target].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.buffers[target]);
            self.deliver(target, Frame::Records(batch, 0)).await?;
        }
        Ok(())
    }

    /// Sends barrier `id` to every downstream subtask, after all records
    /// sent before it.
    pub async fn barrier(&mut self, id: u64) -> Result<()> {
        for target in 0..self.outs.len() {
            self.deliver(target, Frame::Barrier(id)).await?;
        }
        Ok(())
    }

    /// Tells every downstream subtask that this input ended.
    pub async fn end(&mut self) -> Result<()> {
        for target in 0..self.outs.len() {
            self.deliver(target, Frame::End).await?;
        }
        Ok(())
    }

    /// Bytes of record frames sent to subtasks on other workers since the
    /// last call; records for this worker's own subtasks are never encoded.
    pub fn take_bytes_sent(&mut self) -> usize {
        std::mem::take(&mut self.bytes_sent)
    }

    async fn deliver(&mut self, target: usize, frame: Frame) -> Result<()> {
        let stage = self.next_stage;
        match &mut self.outs[target] {
            Out::Local(tx) => tx.send(frame).await.map_err(|_| WorkerError::Exchange {
                peer: "this worker".into(),
                stage,
                index: target as u32,
                reason: "receiving subtask stopped".into(),
            }),
            Out::Remote { tx, call, peer } => {
                for wire in wire_frames(frame) {
                    self.bytes_sent += prost::Message::encoded_len(&wire);
                    if tx.send(wire).await.is_err() {
                        return Err(remote_failure(call, peer, stage, target).await);
                    }
                }
                Ok(())
            }
        }
    }
}

/// A frame as gRPC messages: records split so no message nears gRPC's limit,
/// whatever the record sizes.
fn wire_frames(frame: Frame) -> Vec<ExchangeFrame> {
    let wrap = |kind| ExchangeFrame { kind: Some(kind) };
    match frame_kind(frame) {
        Ok(kind) => vec![wrap(kind)],
        Err(records) => to_batches(&records, super::MAX_FRAME_BYTES)
            .into_iter()
            .map(|b| wrap(Kind::Records(b)))
            .collect(),
    }
}

/// The wire kind of a control frame, or the records of a data frame.
fn frame_kind(frame: Frame) -> std::result::Result<Kind, Vec<Record>> {
    match frame {
        Frame::Records(records, _) => Err(records),
        Frame::Barrier(id) => Ok(Kind::Barrier(sluice_proto::Barrier { checkpoint_id: id })),
        Frame::End => Ok(Kind::End(sluice_proto::EndOfStream {})),
    }
}

/// Why a remote exchange stream closed: what its gRPC call ended with.
async fn remote_failure(
    call: &mut JoinHandle<std::result::Result<(), tonic::Status>>,
    peer: &str,
    stage: u32,
    target: usize,
) -> WorkerError {
    let reason = match call.await {
        Ok(Err(status)) => status.message().to_string(),
        Ok(Ok(())) => "receiver closed the stream".into(),
        Err(e) => e.to_string(),
    };
    WorkerError::Exchange {
        peer: peer.to_string(),
        stage,
        index: target as u32,
        reason,
    }
}
