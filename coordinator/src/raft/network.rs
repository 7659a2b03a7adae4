use super::TypeConfig;
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{BasicNode, OptionalSend};
use serde::{Deserialize, Serialize};
use sluice_proto::RaftMessage;
use sluice_proto::raft_service_client::RaftServiceClient;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// A snapshot on the wire: who sends it, its meta and its data.
#[derive(Serialize, Deserialize)]
pub struct SnapshotMessage {
    pub vote: VoteOf<TypeConfig>,
    pub meta: SnapshotMetaOf<TypeConfig>,
    pub data: Vec<u8>,
}

/// Connections to the other coordinators: one cached channel per peer,
/// over TLS when the cluster has it.
#[derive(Clone)]
pub struct Network {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<sluice_proto::tls::Tls>,
}

impl Network {
    pub fn new(tls: Option<sluice_proto::tls::Tls>) -> Self {
        Self {
            channels: Arc::default(),
            tls,
        }
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = sluice_proto::tls::endpoint(addr, self.tls.as_ref())
            .map_err(|e| e.to_string())?
            .configure(|e| e.connect_timeout(Duration::from_millis(500)))
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        Peer {
            target,
            channel: self.channel(&node.addr),
        }
    }
}

/// One other coordinator.
pub struct Peer {
    target: u64,
    channel: Result<Channel, String>,
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(e.to_string()))
}

impl Peer {
    /// Sends `req` as JSON through `call` and decodes the answer.
    async fn call<Req, Resp, F, Fut>(
        &self,
        req: &Req,
        ttl: Duration,
        call: F,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: serde::de::DeserializeOwned,
        F: FnOnce(RaftServiceClient<Channel>, tonic::Request<RaftMessage>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let channel = self.channel.clone().map_err(unreachable)?;
        let json = serde_json::to_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))?;
        let mut request = tonic::Request::new(RaftMessage { json });
        request.set_timeout(ttl);
        let response = call(RaftServiceClient::new(channel), request)
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::Unavailable {
                    unreachable(format!("coordinator {}: {}", self.target, s.message()))
                } else {
                    RPCError::Network(NetworkError::from_string(format!(
                        "coordinator {}: {}",
                        self.target,
                        s.message()
                    )))
                }
            })?;
        let result: Result<Resp, String> = serde_json::from_slice(&response.into_inner().json)
            .map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))?;
        result.map_err(|e| RPCError::Network(NetworkError::from_string(e)))
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.append_entries(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        // A member of an older version, without Pre-Vote, would vote as
        // before: its answer counts as granting, as openraft counts a
        // network without Pre-Vote.
        let granting: Result<VoteResponse<TypeConfig>, String> =
            Ok(VoteResponse::new(rpc.vote, None, true));
        let granting = serde_json::to_vec(&granting)
            .map_err(|e| RPCError::Network(NetworkError::from_string(e.to_string())))?;
        self.call(&rpc, option.hard_ttl(), |mut c, r| async move {
            match c.pre_vote(r).await {
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    Ok(tonic::Response::new(RaftMessage { json: granting }))
                }
                answer => answer,
            }
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let message = SnapshotMessage {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        self.call(&message, option.hard_ttl(), |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
        .map_err(StreamingError::from)
    }
}
