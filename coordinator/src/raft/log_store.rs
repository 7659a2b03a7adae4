use super::TypeConfig;
use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The Raft log in a redb file: entries by index as JSON, and the vote,
/// the committed id and the last purged id. Every write is durable when
/// its call returns.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(io::Error::other)
}

fn encode<T: serde::Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(io::Error::other)
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> io::Result<Self> {
        let tx = db.begin_write().map_err(io::Error::other)?;
        tx.open_table(LOG).map_err(io::Error::other)?;
        tx.open_table(META).map_err(io::Error::other)?;
        tx.commit().map_err(io::Error::other)?;
        Ok(Self { db })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        let tx = self.db.begin_read().map_err(io::Error::other)?;
        let table = tx.open_table(META).map_err(io::Error::other)?;
        match table.get(key).map_err(io::Error::other)? {
            Some(v) => decode(v.value()).map(Some),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        let bytes = encode(value)?;
        let tx = self.db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = tx.open_table(META).map_err(io::Error::other)?;
            table
                .insert(key, bytes.as_slice())
                .map_err(io::Error::other)?;
        }
        tx.commit().map_err(io::Error::other)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<EntryOf<TypeConfig>>> {
        let tx = self.db.begin_read().map_err(io::Error::other)?;
        let table = tx.open_table(LOG).map_err(io::Error::other)?;
        let mut out = Vec::new();
        for item in table.range(range).map_err(io::Error::other)? {
            let (_, v) = item.map_err(io::Error::other)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<VoteOf<TypeConfig>>> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged: Option<LogIdOf<TypeConfig>> = self.get_meta(LAST_PURGED)?;
        let last = {
            let tx = self.db.begin_read().map_err(io::Error::other)?;
            let table = tx.open_table(LOG).map_err(io::Error::other)?;
            match table.last().map_err(io::Error::other)? {
                Some((_, v)) => Some(decode::<EntryOf<TypeConfig>>(v.value())?.log_id),
                None => None,
            }
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> io::Result<()> {
        self.put_meta(VOTE, vote)
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogIdOf<TypeConfig>>> {
        Ok(self
            .get_meta::<Option<LogIdOf<TypeConfig>>>(COMMITTED)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let tx = self.db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = tx.open_table(LOG).map_err(io::Error::other)?;
            for entry in entries {
                let bytes = encode(&entry)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(io::Error::other)?;
            }
        }
        tx.commit().map_err(io::Error::other)?;
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<TypeConfig>>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let tx = self.db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = tx.open_table(LOG).map_err(io::Error::other)?;
            table
                .retain_in(from.., |_, _| false)
                .map_err(io::Error::other)?;
        }
        tx.commit().map_err(io::Error::other)
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> io::Result<()> {
        self.put_meta(LAST_PURGED, &log_id)?;
        let tx = self.db.begin_write().map_err(io::Error::other)?;
        {
            let mut table = tx.open_table(LOG).map_err(io::Error::other)?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(io::Error::other)?;
        }
        tx.commit().map_err(io::Error::other)
    }
}
