use super::{LogStore, StateMachine, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

/// A fresh Raft file per case of openraft's storage suite.
struct Builder;

/// Removes the case's directory when the case ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir =
            std::env::temp_dir().join(format!("sluice-raft-{}", uuid::Uuid::new_v4().simple()));
        let io = |e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let (log, sm) = super::open(&dir.join("raft.redb")).map_err(io)?;
        Ok((TempDir(dir), log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(Builder).await
}
