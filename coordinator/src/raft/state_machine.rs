use super::TypeConfig;
use crate::meta::{Applied, ClusterMeta};
use futures::TryStreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io;
use std::sync::{Arc, RwLock};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const CURRENT: &str = "current";

/// What the log has built: the cluster metadata, and how far it got.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppliedState {
    pub meta: ClusterMeta,
    pub last_applied: Option<LogIdOf<TypeConfig>>,
    pub membership: StoredMembershipOf<TypeConfig>,
}

/// A snapshot as stored: its meta and its data.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf<TypeConfig>,
    data: Vec<u8>,
}

/// The cluster metadata, in memory, built by applying committed log entries;
/// its snapshots are kept in the Raft file, so a restart rebuilds it from the
/// latest snapshot and the log after it. Services read it through
/// [`StateMachine::shared`].
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    state: Arc<RwLock<AppliedState>>,
}

impl StateMachine {
    pub fn new(db: Arc<Database>) -> io::Result<Self> {
        let tx = db.begin_write().map_err(io::Error::other)?;
        tx.open_table(SNAPSHOT).map_err(io::Error::other)?;
        tx.commit().map_err(io::Error::other)?;
        let sm = Self {
            db,
            state: Arc::default(),
        };
        if let Some(snap) = sm.stored()? {
            let meta: ClusterMeta = serde_json::from_slice(&snap.data).map_err(io::Error::other)?;
            *sm.write() = AppliedState {
                meta,
                last_applied: snap.meta.last_log_id,
                membership: snap.meta.last_membership.clone(),
            };
        }
        Ok(sm)
    }

    /// The metadata as applied so far, for reading.
    pub fn shared(&self) -> Arc<RwLock<AppliedState>> {
        self.state.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, AppliedState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn stored(&self) -> io::Result<Option<StoredSnapshot>> {
        let tx = self.db.begin_read().map_err(io::Error::other)?;
        let table = tx.open_table(SNAPSHOT).map_err(io::Error::other)?;
        match table.get(CURRENT).map_err(io::Error::other)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(io::Error::other),
            None => Ok(None),
        }
    }

    fn store(db: &Database, snap: &StoredSnapshot) -> io::Result<()> {
        let bytes = serde_json::to_vec(snap).map_err(io::Error::other)?;
        let tx = db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = tx.open_table(SNAPSHOT).map_err(io::Error::other)?;
            table
                .insert(CURRENT, bytes.as_slice())
                .map_err(io::Error::other)?;
        }
        tx.commit().map_err(io::Error::other)
    }
}

/// Builds a snapshot of the state as it was when the builder was made.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    state: AppliedState,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, Vec<u8>>> {
        let data = serde_json::to_vec(&self.state.meta).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<TypeConfig> {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        StateMachine::store(&self.db, &stored)?;
        Ok(SnapshotOf::<TypeConfig, Vec<u8>> {
            meta,
            snapshot: stored.data,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> io::Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>)> {
        let s = self.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let response = {
                let mut s = self.write();
                s.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Applied::Done,
                    EntryPayload::Normal(cmd) => s.meta.apply(cmd),
                    EntryPayload::Membership(m) => {
                        s.membership = StoredMembership::new(Some(entry.log_id), m);
                        Applied::Done
                    }
                }
            };
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.read().clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Vec<u8>,
    ) -> io::Result<()> {
        let cluster: ClusterMeta = serde_json::from_slice(&snapshot).map_err(io::Error::other)?;
        Self::store(
            &self.db,
            &StoredSnapshot {
                meta: meta.clone(),
                data: snapshot,
            },
        )?;
        *self.write() = AppliedState {
            meta: cluster,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>> {
        Ok(self.stored()?.map(|s| SnapshotOf::<TypeConfig, Vec<u8>> {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}
