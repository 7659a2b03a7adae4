//! RaftService: what the other coordinators of the group send this one.

use crate::raft::{Raft, SnapshotMessage, TypeConfig};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::type_config::alias::SnapshotOf;
use serde::Serialize;
use sluice_proto::RaftMessage;
use sluice_proto::raft_service_server::RaftService;
use tonic::{Request, Response, Status};

pub struct RaftApi {
    pub raft: Raft,
}

fn decode<T: serde::de::DeserializeOwned>(request: Request<RaftMessage>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

/// The handler's result, error included, as the sender decodes it.
fn encode<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let result = result.map_err(|e| e.to_string());
    let json = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage { json }))
}

#[tonic::async_trait]
impl RaftService for RaftApi {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request)?;
        encode(self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(request)?;
        encode(self.raft.vote(rpc).await)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(request)?;
        encode(self.raft.pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message: SnapshotMessage = decode(request)?;
        let snapshot = SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: message.meta,
            snapshot: message.data,
        };
        encode(
            self.raft
                .install_full_snapshot(message.vote, snapshot)
                .await,
        )
    }
}
