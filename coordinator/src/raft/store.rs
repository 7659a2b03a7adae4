use super::network::Network;
use super::state_machine::AppliedState;
use super::{StateMachine, TypeConfig};
use crate::error::CoordinatorError;
use crate::meta::{Applied, ClusterMeta, Command, MetaStore};
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{Instant as _, SnapshotPolicy};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// A follower that heard nothing for a random time between these two
/// stands for election; followers also refuse to vote while the leader's
/// lease (the longer one) runs, so a failover takes about their sum.
const ELECTION_TIMEOUT_MIN_MS: u64 = 500;
const ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
/// Also the time a Raft RPC (a follower's durable append included) may take.
const HEARTBEAT_INTERVAL_MS: u64 = 150;

/// The coordinator's durable state as a Raft group member: writes go
/// through the leader's log, reads see what this member applied.
pub struct RaftStore {
    pub raft: Raft,
    state: Arc<RwLock<AppliedState>>,
}

impl RaftStore {
    /// Opens the Raft file under `data_dir` and starts this member; a member
    /// with new data comes into its group through
    /// [`super::bootstrap::join_or_initialize`]. `tls`: how to reach the
    /// other members (their certificate verified, this one's shown).
    pub async fn start(
        id: u64,
        data_dir: &Path,
        snapshot_every: u64,
        tls: Option<sluice_proto::tls::Tls>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let (log, sm) = super::open(&data_dir.join("raft.redb"))?;
        let state = sm.shared();
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: HEARTBEAT_INTERVAL_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
            // Members a little behind catch up from the log, not a snapshot.
            max_in_snapshot_log_to_keep: snapshot_every / 5,
            // A member cut off from the others asks before it stands for
            // election, so it does not raise its term alone and, once
            // back, depose the leader the others still follow (which
            // would make every worker register again).
            enable_pre_vote: Some(true),
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(id, Arc::new(config), Network::new(tls), log, sm).await?;
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

    /// Whether this member leads and may act now (see [`MetaStore::check_leader`]).
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        if !m.state.is_leader() {
            return false;
        }
        // Its own first entry applied: everything earlier leaders committed
        // is in the state machine, so it acts on no stale view.
        let applied_term = m.last_applied.map(|l| l.committed_leader_id().term);
        if applied_term != Some(m.current_term) {
            return false;
        }
        // A leader cut off from the others keeps its role until it hears of
        // a higher term; it stops acting once no quorum answered for longer
        // than a follower waits before it elects another.
        let alone = m.membership_config.membership().voter_ids().count() <= 1;
        alone
            || m.last_quorum_acked
                .is_some_and(|at| at.elapsed() < Duration::from_millis(ELECTION_TIMEOUT_MIN_MS))
    }
}

impl MetaStore for RaftStore {
    async fn apply(&self, cmd: Command) -> Result<Applied, CoordinatorError> {
        match self.raft.client_write(cmd).await {
            Ok(response) => Ok(response.data),
            // Only a proposal refused before it was appended is safe to send
            // elsewhere; a discarded entry may still commit, so it is an
            // error no client retries.
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(CoordinatorError::NotLeader {
                    leader: forward.leader_node.as_ref().map(|n| n.addr.clone()),
                })
            }
            Err(e) => Err(CoordinatorError::Raft(e.to_string())),
        }
    }

    fn check_leader(&self) -> Result<(), CoordinatorError> {
        if self.is_leader() {
            Ok(())
        } else {
            // A member that is the leader but not ready names no one: the
            // client tries again, here or elsewhere.
            let leader = self
                .leader_address()
                .filter(|_| self.leader_term().is_none());
            Err(CoordinatorError::NotLeader { leader })
        }
    }

    fn leader_term(&self) -> Option<u64> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state.is_leader().then_some(m.current_term)
    }

    fn read<R>(&self, f: impl FnOnce(&ClusterMeta) -> R) -> R {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        f(&state.meta)
    }
}
