//! What `jobctl cluster` shows and changes: this member's view of the group.

use super::Raft;
use crate::error::CoordinatorError;
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState};
use sluice_proto::{ClusterInfoResponse, ClusterMember};
use std::collections::BTreeSet;

/// The group as `raft` sees it; `serving` says whether this member acts as
/// the leader now.
pub fn info(raft: &Raft, serving: bool) -> ClusterInfoResponse {
    let m = raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let members: Vec<ClusterMember> = membership
        .nodes()
        .map(|(id, node)| ClusterMember {
            id: *id,
            address: node.addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    let role = match m.state {
        ServerState::Leader => "leader",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
        ServerState::Follower => "follower",
    };
    let leader_address = m
        .current_leader
        .and_then(|l| membership.get_node(&l))
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    ClusterInfoResponse {
        id: m.id,
        role: role.into(),
        leader_id: m.current_leader.unwrap_or(0),
        leader_address,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map_or(0, |l| l.index),
        purged_index: m.purged.map_or(0, |l| l.index),
        serving,
        members,
        http_address: String::new(),
    }
}

fn failed(e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Raft(e.to_string())
}

/// Adds `id` as a learner and waits until it caught up with the log.
pub async fn add_learner(raft: &Raft, id: u64, address: &str) -> Result<(), CoordinatorError> {
    raft.add_learner(id, BasicNode::new(address), true)
        .await
        .map(drop)
        .map_err(failed)
}

fn voters(raft: &Raft) -> BTreeSet<u64> {
    raft.metrics()
        .borrow_watched()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

/// Makes learner `id` a voter.
pub async fn promote(raft: &Raft, id: u64) -> Result<(), CoordinatorError> {
    let mut set = voters(raft);
    set.insert(id);
    raft.change_membership(set, false)
        .await
        .map(drop)
        .map_err(failed)
}

/// Takes `id` out of the group.
pub async fn remove(raft: &Raft, id: u64) -> Result<(), CoordinatorError> {
    let mut set = voters(raft);
    if !set.remove(&id) {
        return Err(failed(format!("{id} is not a voting member")));
    }
    raft.change_membership(set, false)
        .await
        .map(drop)
        .map_err(failed)
}
