//! How a coordinator with a new data directory comes into its group. The
//! member with the lowest id of `--peers` initialises the group, but only
//! once every other member said it belongs to none: a member that lost its
//! data (a new disk, a Kubernetes pod whose volume was replaced) must never
//! start a second group under the same ids beside the one its peers still run.

use super::Raft;
use openraft::BasicNode;
use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::tls::Tls;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one peer may take to answer, and the pause between rounds.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
const ROUND_PAUSE: Duration = Duration::from_millis(300);
/// How often the peers still silent are logged while waiting for them.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What a peer said of its group.
struct PeerGroup {
    peer: u64,
    address: String,
    leader: u64,
    members: BTreeSet<u64>,
}

/// Brings a member with new data into its group: the lowest id initialises
/// the group once every peer answered that it belongs to none. When a peer
/// already belongs to a group, nothing is initialised: a member that the
/// group still counts is refused (an error saying how to replace it); one it
/// does not count waits to be added. Returns at once for a member with data.
pub async fn join_or_initialize(
    raft: &Raft,
    id: u64,
    members: &BTreeMap<u64, String>,
    advertise: &str,
    data_dir: &Path,
    token: Option<&str>,
    tls: Option<&Tls>,
) -> anyhow::Result<()> {
    if raft.is_initialized().await? || members.keys().next() != Some(&id) {
        return Ok(());
    }
    let peers: BTreeMap<u64, &str> = members
        .iter()
        .filter(|(n, _)| **n != id)
        .map(|(n, a)| (*n, a.as_str()))
        .collect();
    match find_group(&peers, token, tls).await {
        None => {
            let nodes: BTreeMap<u64, BasicNode> = members
                .iter()
                .map(|(n, addr)| (*n, BasicNode::new(addr)))
                .collect();
            tracing::info!(id, members = ?members, "bootstrapping the coordinator group");
            raft.initialize(nodes).await?;
            Ok(())
        }
        Some(group) if group.members.contains(&id) => {
            let others: Vec<&str> = peers.values().copied().collect();
            anyhow::bail!(
                "coordinator {id} has no Raft data in {dir}, but its peers already form a group \
                 (coordinator {peer} at {address} knows members {members:?}, leader {leader}) \
                 that counts coordinator {id} as a member: initialising here would start a \
                 second group under the same ids. If this coordinator lost its data, replace it: \
                 `jobctl --coordinator {others} cluster remove {id}`, start it again on the empty \
                 data directory (it then waits to be added), then `jobctl cluster add-learner \
                 {id} {advertise}` and `jobctl cluster promote {id}`. If its data lives \
                 elsewhere, start it with that --data-dir.",
                dir = data_dir.display(),
                peer = group.peer,
                address = group.address,
                members = group.members,
                leader = group.leader,
                others = others.join(","),
            )
        }
        Some(group) => {
            tracing::warn!(
                id,
                group = ?group.members,
                leader = group.leader,
                "not a member of the running coordinator group: waiting to be added \
                 (`jobctl cluster add-learner {id} {advertise}`, then `jobctl cluster promote {id}`)"
            );
            Ok(())
        }
    }
}

/// Asks every peer until one names its group, or all answered that they
/// have none (`None`). Peers that do not answer are asked again: a group
/// is only initialised with the word of all of them. `token` goes with each
/// question when the peers check tokens; `tls` when they serve TLS.
async fn find_group(
    peers: &BTreeMap<u64, &str>,
    token: Option<&str>,
    tls: Option<&Tls>,
) -> Option<PeerGroup> {
    let mut answered = BTreeSet::new();
    let mut reported = Instant::now();
    while answered.len() < peers.len() {
        let pending: Vec<(u64, &str)> = peers
            .iter()
            .filter(|(n, _)| !answered.contains(*n))
            .map(|(n, a)| (*n, *a))
            .collect();
        for (peer, address) in pending {
            let Some(members) = ask(address, token, tls).await else {
                continue;
            };
            if let Some(group) = members {
                return Some(PeerGroup {
                    peer,
                    address: address.to_string(),
                    ..group
                });
            }
            answered.insert(peer);
        }
        if answered.len() < peers.len() {
            if reported.elapsed() >= REPORT_EVERY {
                let silent: Vec<&u64> = peers.keys().filter(|n| !answered.contains(*n)).collect();
                tracing::info!(
                    waiting_for = ?silent,
                    "new data directory: the group is initialised once every peer answered"
                );
                reported = Instant::now();
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }
    None
}

/// One peer's group (`Some(None)`: it has none), or `None` without an answer.
async fn ask(address: &str, token: Option<&str>, tls: Option<&Tls>) -> Option<Option<PeerGroup>> {
    let call = async {
        let channel = sluice_proto::tls::endpoint(address, tls)
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut client = JobServiceClient::new(channel);
        let mut request = tonic::Request::new(ClusterInfoRequest {});
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                sluice_common::auth::bearer(token).parse().ok()?,
            );
        }
        client.cluster_info(request).await.ok()
    };
    let info = tokio::time::timeout(ASK_TIMEOUT, call)
        .await
        .ok()??
        .into_inner();
    let members: BTreeSet<u64> = info.members.iter().map(|m| m.id).collect();
    Some((!members.is_empty()).then(|| PeerGroup {
        peer: info.id,
        address: String::new(),
        leader: info.leader_id,
        members,
    }))
}
