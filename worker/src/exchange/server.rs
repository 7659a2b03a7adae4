use super::inbox::{Frame, InboxKey, Inboxes};
use super::wire::from_batch;
use sluice_common::JobId;
use sluice_proto::exchange_frame::Kind;
use sluice_proto::exchange_service_server::ExchangeService;
use sluice_proto::{ExchangeFrame, PushAck};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// How long a sender may wait for its receiving subtask to be deployed.
const RECEIVER_PATIENCE: Duration = Duration::from_secs(30);

pub struct ExchangeServer {
    pub inboxes: Arc<Inboxes>,
}

#[tonic::async_trait]
impl ExchangeService for ExchangeServer {
    async fn push(
        &self,
        request: Request<Streaming<ExchangeFrame>>,
    ) -> Result<Response<PushAck>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await?.and_then(|f| f.kind) {
            Some(Kind::Header(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "an exchange stream must start with its header",
                ));
            }
        };
        let key = InboxKey {
            job: JobId::new(header.job_id.clone()),
            attempt: header.attempt,
            stage: header.stage,
            index: header.target_index,
        };
        let inbox = self
            .inboxes
            .get(&key, header.sender_index, RECEIVER_PATIENCE)
            .await
            .ok_or_else(|| Status::not_found(format!("no subtask {key:?} runs on this worker")))?;
        let gone = || Status::cancelled(format!("subtask {key:?} stopped"));
        while let Some(frame) = stream.message().await? {
            // The subtask's bytes in, measured as the sender measures its bytes out.
            let bytes = prost::Message::encoded_len(&frame);
            let frame = match frame.kind {
                Some(Kind::Records(batch)) => {
                    Frame::Records(from_batch(batch).map_err(Status::data_loss)?, bytes)
                }
                Some(Kind::Barrier(b)) => Frame::Barrier(b.checkpoint_id),
                Some(Kind::End(_)) => Frame::End,
                Some(Kind::Header(_)) | None => {
                    return Err(Status::invalid_argument(
                        "unexpected frame in an exchange stream",
                    ));
                }
            };
            let end = matches!(frame, Frame::End);
            inbox.send(frame).await.map_err(|_| gone())?;
            if end {
                break;
            }
        }
        Ok(Response::new(PushAck {}))
    }
}
