//! Sluice's own processes: one coordinator and any number of workers.

use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use anyhow::Context;
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{ListWorkersRequest, WorkerState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub slots: u32,
    /// `FAILPOINTS` for the worker of each index given, such as
    /// `sink-before-commit=return`: named failpoints of the checkpoint protocol.
    pub failpoints: std::collections::BTreeMap<usize, String>,
    /// Extra environment of every process, such as the `AWS_*` settings of S3.
    pub env: Vec<(String, String)>,
    /// The checkpoint store of every process; a directory of the cluster's own
    /// when `None`.
    pub checkpoint_store: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(5),
            slots: 4,
            failpoints: Default::default(),
            env: Vec::new(),
            checkpoint_store: None,
        }
    }
}

pub struct SluiceCluster {
    pub coordinator_address: String,
    coordinator: ManagedChild,
    /// Coordinator restarts so far, naming each run's log.
    restarts: u32,
    workers: Vec<Option<ManagedChild>>,
    dir: PathBuf,
    options: ClusterOptions,
}

/// Where the workspace's binaries are: `SLUICE_BIN_DIR`, else beside the running
/// executable (tests run from `target/<profile>/deps`).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("SLUICE_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        anyhow::bail!(
            "{} not found: build it first (cargo build --workspace --bins) or set SLUICE_BIN_DIR",
            path.display()
        );
    }
    Ok(path)
}

/// Starts the coordinator on `port` with its data under `dir`, and waits
/// until it listens.
fn spawn_coordinator(
    dir: &Path,
    port: u16,
    options: &ClusterOptions,
    log: &str,
) -> anyhow::Result<ManagedChild> {
    let mut cmd = Command::new(binary("coordinator")?);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("coordinator-data"))
        .arg("--heartbeat-interval")
        .arg(format!("{}ms", options.heartbeat_interval.as_millis()))
        .arg("--heartbeat-timeout")
        .arg(format!("{}ms", options.heartbeat_timeout.as_millis()))
        .arg("--checkpoint-store")
        .arg(
            options
                .checkpoint_store
                .clone()
                .unwrap_or_else(|| dir.join("checkpoints").to_string_lossy().into_owned()),
        )
        .envs(options.env.iter().map(|(k, v)| (k, v)));
    let mut coordinator = ManagedChild::spawn("coordinator", cmd, &dir.join(log))?;
    let addr = format!("127.0.0.1:{port}").parse()?;
    wait_for_port(addr, Duration::from_secs(30), || coordinator.check_alive())?;
    Ok(coordinator)
}

impl SluiceCluster {
    /// Starts a coordinator and `workers` workers; returns once the coordinator
    /// answers and every worker has registered.
    pub async fn start(
        dir: &Path,
        workers: usize,
        options: ClusterOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        let coordinator = spawn_coordinator(dir, port, &options, "coordinator.log")?;
        let mut cluster = Self {
            coordinator_address: format!("127.0.0.1:{port}"),
            coordinator,
            restarts: 0,
            workers: Vec::new(),
            dir: dir.to_path_buf(),
            options,
        };
        for _ in 0..workers {
            cluster.add_worker()?;
        }
        cluster
            .wait_for_workers(workers, Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    /// SIGKILLs the coordinator and starts it again on the same address and
    /// data directory; returns once it listens.
    pub fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.kill();
        let port: u16 = self
            .coordinator_address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no port in {}", self.coordinator_address))?;
        self.restarts += 1;
        let log = format!("coordinator-{}.log", self.restarts);
        self.coordinator = spawn_coordinator(&self.dir, port, &self.options, &log)?;
        Ok(())
    }

    /// Starts one more worker; returns its index.
    pub fn add_worker(&mut self) -> anyhow::Result<usize> {
        let index = self.workers.len();
        let mut cmd = Command::new(binary("worker")?);
        cmd.arg("--coordinator")
            .arg(&self.coordinator_address)
            .arg("--slots")
            .arg(self.options.slots.to_string())
            .arg("--checkpoint-store")
            .arg(
                self.options
                    .checkpoint_store
                    .clone()
                    .unwrap_or_else(|| self.checkpoint_store().to_string_lossy().into_owned()),
            )
            .envs(self.options.env.iter().map(|(k, v)| (k, v)));
        if let Some(fp) = self.options.failpoints.get(&index) {
            cmd.env("FAILPOINTS", fp);
        }
        let log = self.dir.join(format!("worker-{index}.log"));
        self.workers.push(Some(ManagedChild::spawn(
            &format!("worker {index}"),
            cmd,
            &log,
        )?));
        Ok(index)
    }

    pub async fn client(&self) -> anyhow::Result<JobServiceClient<tonic::transport::Channel>> {
        Ok(JobServiceClient::connect(sluice_common::http_url(&self.coordinator_address)).await?)
    }

    /// Waits until `n` workers are registered and alive.
    pub async fn wait_for_workers(&mut self, n: usize, deadline: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(mut c) = self.client().await
                && let Ok(resp) = c.list_workers(ListWorkersRequest {}).await
            {
                let alive = resp
                    .into_inner()
                    .workers
                    .iter()
                    .filter(|w| w.state == WorkerState::Alive as i32)
                    .count();
                if alive >= n {
                    return Ok(());
                }
            }
            self.coordinator.check_alive()?;
            for w in self.workers.iter_mut().flatten() {
                w.check_alive()?;
            }
            if start.elapsed() > deadline {
                anyhow::bail!("{n} workers did not register within {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn worker_pid(&self, index: usize) -> Option<u32> {
        self.workers.get(index)?.as_ref().map(ManagedChild::pid)
    }

    /// SIGKILLs a worker, as a machine failure would.
    pub fn kill_worker(&mut self, index: usize) {
        if let Some(mut w) = self.workers.get_mut(index).and_then(Option::take) {
            w.kill();
        }
    }

    /// SIGSTOPs a worker: it neither works nor heartbeats until resumed.
    pub fn pause_worker(&self, index: usize) {
        if let Some(Some(w)) = self.workers.get(index) {
            w.signal(libc::SIGSTOP);
        }
    }

    pub fn resume_worker(&self, index: usize) {
        if let Some(Some(w)) = self.workers.get(index) {
            w.signal(libc::SIGCONT);
        }
    }

    pub fn worker_log(&self, index: usize) -> Option<PathBuf> {
        Some(self.workers.get(index)?.as_ref()?.log_path().to_path_buf())
    }

    /// The directory every process of this cluster keeps state snapshots in,
    /// unless its options name another store.
    pub fn checkpoint_store(&self) -> PathBuf {
        self.dir.join("checkpoints")
    }

    pub fn coordinator_log(&self) -> PathBuf {
        self.coordinator.log_path().to_path_buf()
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }
}
