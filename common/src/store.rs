//! The checkpoint store: where subtasks upload state snapshots and recovery
//! reads them back. One interface over two backends: a local directory (the
//! default on one machine) and S3-compatible object storage.

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("checkpoint store `{location}` cannot be opened: {reason}")]
    Open { location: String, reason: String },
    #[error("checkpoint store `{location}`: {op} of `{key}` failed: {reason}")]
    Io {
        location: String,
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "state snapshot `{key}` not stored: the snapshot before it in its chain was not stored"
    )]
    Chain { key: String },
}

/// Opens `location` as an object store rooted at a path: `s3://bucket/prefix`
/// (endpoint, region and credentials from the usual `AWS_*` variables, such as
/// `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for a local server), or a
/// local directory, created if missing, in which a directory whose last file
/// is deleted is removed as well.
pub fn open_location(location: &str) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let open_err = |reason: String| StoreError::Open {
        location: location.to_string(),
        reason,
    };
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(open_err("no bucket after s3://".into()));
        }
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        return Ok((Arc::new(store), Path::from(prefix)));
    }
    let dir = location.strip_prefix("file://").unwrap_or(location);
    std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
    // A directory whose last file is deleted goes too (up to the store's
    // own), so discarded checkpoints leave no empty `chk-N` directories.
    let store = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| open_err(e.to_string()))?
        .with_automatic_cleanup(true);
    Ok((Arc::new(store), Path::default()))
}

/// Where snapshots go when nothing else is configured: a directory every
/// process on this machine shares.
pub fn default_location() -> String {
    let base = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(".local/share/sluice/checkpoints")
        .to_string_lossy()
        .into_owned()
}

#[derive(Debug, Clone)]
pub struct CheckpointStore {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    location: String,
}

impl CheckpointStore {
    pub fn open(location: &str) -> Result<Self, StoreError> {
        let (inner, root) = open_location(location)?;
        Ok(Self {
            inner,
            root,
            location: location.to_string(),
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |p, part| p.join(part))
    }

    fn io_err(&self, op: &'static str, key: &str, e: object_store::Error) -> StoreError {
        StoreError::Io {
            location: self.location.clone(),
            op,
            key: key.to_string(),
            reason: e.to_string(),
        }
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner
            .put(&self.path(key), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| self.io_err("upload", key, e))
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let result = self
            .inner
            .get(&self.path(key))
            .await
            .map_err(|e| self.io_err("download", key, e))?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.io_err("download", key, e))?;
        Ok(bytes.to_vec())
    }

    /// The keys stored under `prefix` (a key's leading `/`-separated
    /// parts), in no particular order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        use futures::TryStreamExt;
        let metas: Vec<object_store::ObjectMeta> = self
            .inner
            .list(Some(&self.path(prefix)))
            .try_collect()
            .await
            .map_err(|e| self.io_err("listing", prefix, e))?;
        Ok(metas
            .iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&self.root)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(parts.join("/"))
            })
            .collect())
    }

    /// Deletes `key`; one already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self.inner.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.io_err("delete", key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_directory_round_trip() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", std::process::id()));
        let store = CheckpointStore::open(dir.to_str().expect("utf-8 path")).expect("opens");
        store
            .put("job/chk-1-a0/s1-0.json", b"{}".to_vec())
            .await
            .expect("put");
        assert_eq!(
            store.get("job/chk-1-a0/s1-0.json").await.expect("get"),
            b"{}"
        );
        store
            .put("other/chk-1-a0/s1-0.json", b"{}".to_vec())
            .await
            .expect("put");
        assert_eq!(
            store.list("job").await.expect("list"),
            vec!["job/chk-1-a0/s1-0.json".to_string()]
        );
        assert!(store.list("none").await.expect("list").is_empty());
        store
            .delete("job/chk-1-a0/s1-0.json")
            .await
            .expect("delete");
        store
            .delete("job/chk-1-a0/s1-0.json")
            .await
            .expect("gone is fine");
        let missing = store.get("job/chk-1-a0/s1-0.json").await.unwrap_err();
        assert!(missing.to_string().contains("s1-0.json"), "{missing}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn a_local_directory_goes_with_its_last_file() {
        let dir = std::env::temp_dir().join(format!("sluice-store-dirs-{}", std::process::id()));
        let store = CheckpointStore::open(dir.to_str().expect("utf-8 path")).expect("opens");
        for key in [
            "job/chk-1-a0/s1-0.json",
            "job/chk-1-a0/s1-1.json",
            "job/chk-2-a0/s1-0.json",
        ] {
            store.put(key, b"{}".to_vec()).await.expect("put");
        }
        store
            .delete("job/chk-1-a0/s1-0.json")
            .await
            .expect("delete");
        assert!(dir.join("job/chk-1-a0").is_dir(), "a file is left in it");
        store
            .delete("job/chk-1-a0/s1-1.json")
            .await
            .expect("delete");
        assert!(!dir.join("job/chk-1-a0").exists(), "its last file went");
        assert!(dir.join("job/chk-2-a0/s1-0.json").is_file());
        store
            .delete("job/chk-2-a0/s1-0.json")
            .await
            .expect("delete");
        assert!(!dir.join("job").exists(), "the job's directory went too");
        assert!(dir.is_dir(), "the store's own directory stays");
        std::fs::remove_dir_all(dir).ok();
    }
}
