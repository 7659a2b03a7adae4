use super::network::Network;
use super::state_machine::AppliedState;
use super::{StateMachine, TypeConfig};
use crate::error::CoordinatorError;
use crate::meta::{Applied, ClusterMeta, Command, MetaStore};
use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, SnapshotPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// The coordinator's durable state as a Raft group member: writes go
/// through the leader's log, reads see what this member applied.
pub struct RaftStore {
    pub raft: Raft,
    state: Arc<RwLock<AppliedState>>,
}

impl RaftStore {
    /// Opens the Raft file under `data_dir` and joins the group. A member
    /// whose file is new and whose id is the lowest of `members` bootstraps
    /// the group with them; every other member waits to be contacted.
    pub async fn start(
        id: u64,
        members: BTreeMap<u64, String>,
        data_dir: &Path,
        snapshot_every: u64,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let (log, sm) = super::open(&data_dir.join("raft.redb"))?;
        let state = sm.shared();
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: 150,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            // Members a little behind catch up from the log, not a snapshot.
            max_in_snapshot_log_to_keep: snapshot_every / 5,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(id, Arc::new(config), Network::default(), log, sm).await?;
        let bootstrap = members.keys().next() == Some(&id);
        if bootstrap && !raft.is_initialized().await? {
            let nodes: BTreeMap<u64, BasicNode> = members
                .iter()
                .map(|(n, addr)| (*n, BasicNode::new(addr)))
                .collect();
            tracing::info!(id, members = ?members, "bootstrapping the coordinator group");
            if let Err(e) = raft.initialize(nodes).await {
                tracing::info!(error = %e, "group already initialized");
            }
        }
        Ok(Self { raft, state })
    }

    /// The address of the current leader, if this member knows one.
    pub fn leader_address(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state.is_leader()
    }
}

impl MetaStore for RaftStore {
    async fn apply(&self, cmd: Command) -> Result<Applied, CoordinatorError> {
        match self.raft.client_write(cmd).await {
            Ok(response) => Ok(response.data),
            Err(e) => Err(match e.forward_to_leader() {
                Some(forward) => CoordinatorError::NotLeader {
                    leader: forward.leader_node.as_ref().map(|n| n.addr.clone()),
                },
                None => CoordinatorError::Raft(e.to_string()),
            }),
        }
    }

    fn check_leader(&self) -> Result<(), CoordinatorError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(CoordinatorError::NotLeader {
                leader: self.leader_address(),
            })
        }
    }

    fn read<R>(&self, f: impl FnOnce(&ClusterMeta) -> R) -> R {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&state.meta)
    }
}
