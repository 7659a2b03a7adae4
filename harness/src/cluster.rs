//! Sluice's own processes: one coordinator and any number of workers.

use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use crate::tls::TlsFiles;
use anyhow::Context;
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::tls::Tls;
use sluice_proto::{ClusterInfoRequest, ListWorkersRequest, WorkerState};
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
    /// Coordinators in the Raft group: 1 or 3.
    pub coordinators: usize,
    /// Every process serves Prometheus metrics on a free port of its own
    /// (`--metrics-listen`): see [`SluiceCluster::coordinator_metrics_address`].
    pub metrics: bool,
    /// Extra arguments of every worker, such as `--secrets-dir DIR`.
    pub worker_args: Vec<String>,
    /// Text of the coordinators' tokens file (`ROLE TOKEN` lines): turns
    /// authentication on. The file is `tokens.txt` in the cluster's directory.
    pub auth_tokens: Option<String>,
    /// The token the harness's own calls carry (`client_request`).
    pub token: Option<String>,
    /// TLS on every process (`--tls-ca`, `--tls-cert`, `--tls-key`); the
    /// harness's own clients then verify the coordinators with the CA.
    pub tls: Option<TlsFiles>,
    /// The workers' TLS files, when they differ from `tls` (such as
    /// certificates that name no address, with `--tls-peer-name`).
    pub worker_tls: Option<TlsFiles>,
    /// Each coordinator's `--advertise` address by index, such as a proxy
    /// in front of it: `--peers` names these, so the other coordinators,
    /// the workers and followers' redirects reach it there. Empty: each is
    /// reached where it listens.
    pub coordinator_advertise: Vec<String>,
    /// The port each coordinator listens on by index (such as the one a
    /// proxy of `coordinator_advertise` leads to); free ports when empty.
    pub coordinator_ports: Vec<u16>,
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
            coordinators: 1,
            metrics: false,
            worker_args: Vec::new(),
            auth_tokens: None,
            token: None,
            tls: None,
            worker_tls: None,
            coordinator_advertise: Vec::new(),
            coordinator_ports: Vec::new(),
        }
    }
}

pub struct SluiceCluster {
    /// Every coordinator's address, comma-separated, as `jobctl` and workers take them.
    pub coordinator_address: String,
    /// By index; `None` while stopped.
    coordinators: Vec<Option<ManagedChild>>,
    coordinator_ports: Vec<u16>,
    /// Each coordinator's and worker's metrics port, by index, with
    /// [`ClusterOptions::metrics`].
    coordinator_metrics_ports: Vec<u16>,
    worker_metrics_ports: Vec<u16>,
    /// Where each coordinator serves its HTTP API, by index.
    http_ports: Vec<u16>,
    /// Coordinator starts so far, naming each run's log.
    starts: u32,
    workers: Vec<Option<ManagedChild>>,
    dir: PathBuf,
    options: ClusterOptions,
    /// The harness's own clients' TLS: the CA and the member certificate.
    client_tls: Option<Tls>,
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

/// The path of Sluice's binary `name` (`worker`, `coordinator`, `jobctl`),
/// built beforehand.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        anyhow::bail!(
            "{} not found: build it first (cargo build --workspace --bins) or set SLUICE_BIN_DIR",
            path.display()
        );
    }
    Ok(path)
}

/// Starts coordinator `index` of the group on its port, with its data under
/// `dir`, and waits until it listens.
fn spawn_coordinator(
    dir: &Path,
    index: usize,
    ports: &[u16],
    http_port: u16,
    metrics_port: Option<u16>,
    options: &ClusterOptions,
    log: &str,
) -> anyhow::Result<ManagedChild> {
    let advertised = advertised(ports, &options.coordinator_advertise);
    let peers: Vec<String> = advertised
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect();
    let port = ports[index];
    let mut cmd = Command::new(binary("coordinator")?);
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--advertise")
        .arg(&advertised[index])
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--id")
        .arg((index + 1).to_string())
        .arg("--peers")
        .arg(peers.join(","))
        .arg("--data-dir")
        .arg(dir.join(format!("coordinator-{}-data", index + 1)))
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
    if let Some(tls) = &options.tls {
        cmd.args(tls.args());
    }
    if let Some(text) = &options.auth_tokens {
        let file = tokens_file(dir);
        if !file.exists() {
            std::fs::write(&file, text)?;
        }
        cmd.arg("--auth-tokens").arg(file);
    }
    if let Some(port) = metrics_port {
        cmd.arg("--metrics-listen").arg(format!("127.0.0.1:{port}"));
    }
    let mut coordinator =
        ManagedChild::spawn(&format!("coordinator {}", index + 1), cmd, &dir.join(log))?;
    let addr = format!("127.0.0.1:{port}").parse()?;
    wait_for_port(addr, Duration::from_secs(30), || coordinator.check_alive())?;
    Ok(coordinator)
}

/// Where each coordinator of `ports` is reached: its `advertise` address,
/// else where it listens.
fn advertised(ports: &[u16], advertise: &[String]) -> Vec<String> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| match advertise.get(i) {
            Some(a) => a.clone(),
            None => format!("127.0.0.1:{p}"),
        })
        .collect()
}

/// The coordinators' tokens file of a cluster with authentication on.
pub fn tokens_file(dir: &Path) -> PathBuf {
    dir.join("tokens.txt")
}

impl SluiceCluster {
    /// Starts a coordinator and `workers` workers; returns once the coordinator
    /// answers and every worker has registered. With `SLUICE_TEST_TLS=1` and
    /// options that turn on neither TLS nor authentication, both are on (see
    /// [`crate::tls::test_security`]).
    pub async fn start(
        dir: &Path,
        workers: usize,
        options: ClusterOptions,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut options = options;
        if options.tls.is_none()
            && options.auth_tokens.is_none()
            && let Some(security) = crate::tls::test_security()?
        {
            options.tls = Some(security.tls.clone());
            options.auth_tokens = Some(security.tokens_file());
            options.token = Some(security.token.clone());
        }
        let ports = (0..options.coordinators.max(1))
            .map(|i| match options.coordinator_ports.get(i) {
                Some(port) => Ok(*port),
                None => free_port(),
            })
            .collect::<std::io::Result<Vec<u16>>>()?;
        let metrics_ports = match options.metrics {
            true => ports
                .iter()
                .map(|_| free_port())
                .collect::<std::io::Result<Vec<u16>>>()?,
            false => Vec::new(),
        };
        let http_ports = (0..ports.len())
            .map(|_| free_port())
            .collect::<std::io::Result<Vec<u16>>>()?;
        let mut coordinators = Vec::new();
        for (index, http_port) in http_ports.iter().enumerate() {
            let log = format!("coordinator-{}.log", index + 1);
            let metrics = metrics_ports.get(index).copied();
            coordinators.push(Some(spawn_coordinator(
                dir, index, &ports, *http_port, metrics, &options, &log,
            )?));
        }
        let mut cluster = Self {
            coordinator_address: advertised(&ports, &options.coordinator_advertise).join(","),
            coordinators,
            coordinator_ports: ports,
            coordinator_metrics_ports: metrics_ports,
            worker_metrics_ports: Vec::new(),
            http_ports,
            starts: 0,
            workers: Vec::new(),
            dir: dir.to_path_buf(),
            client_tls: options.tls.as_ref().map(TlsFiles::load).transpose()?,
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

    /// SIGKILLs the (first) coordinator and starts it again on the same
    /// address and data directory; returns once it listens.
    pub fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.kill_coordinator(0);
        self.start_coordinator(0)
    }

    /// SIGKILLs coordinator `index`, as a machine failure would.
    pub fn kill_coordinator(&mut self, index: usize) {
        if let Some(mut c) = self.coordinators.get_mut(index).and_then(Option::take) {
            c.kill();
        }
    }

    /// Starts coordinator `index` again on its address and data directory.
    pub fn start_coordinator(&mut self, index: usize) -> anyhow::Result<()> {
        self.starts += 1;
        let log = format!("coordinator-{}-{}.log", index + 1, self.starts);
        let c = spawn_coordinator(
            &self.dir,
            index,
            &self.coordinator_ports,
            self.http_ports[index],
            self.coordinator_metrics_ports.get(index).copied(),
            &self.options,
            &log,
        )?;
        self.coordinators[index] = Some(c);
        Ok(())
    }

    /// An error with the end of its log once coordinator `index` has exited
    /// (or was stopped here).
    pub fn check_coordinator(&mut self, index: usize) -> anyhow::Result<()> {
        match self.coordinators.get_mut(index) {
            Some(Some(c)) => c.check_alive(),
            _ => anyhow::bail!("coordinator {} is not running", index + 1),
        }
    }

    /// The cluster's TLS files, when TLS is on.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.options.tls.as_ref()
    }

    /// The directory of the cluster's data and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Deletes the data directory of stopped coordinator `index`, as the loss
    /// of its machine would.
    pub fn wipe_coordinator(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.coordinators.get(index).is_some_and(Option::is_none),
            "coordinator {} still runs",
            index + 1
        );
        let data = self.dir.join(format!("coordinator-{}-data", index + 1));
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        Ok(())
    }

    /// Starts a new, empty coordinator on a new address, outside the group
    /// until a member adds it; returns its index (its id is index + 1).
    pub fn add_coordinator(&mut self) -> anyhow::Result<usize> {
        let index = self.coordinator_ports.len();
        self.coordinator_ports.push(free_port()?);
        if self.options.metrics {
            self.coordinator_metrics_ports.push(free_port()?);
        }
        self.http_ports.push(free_port()?);
        self.coordinators.push(None);
        self.start_coordinator(index)?;
        Ok(index)
    }

    /// SIGSTOPs coordinator `index`: to the others it is cut off.
    pub fn pause_coordinator(&self, index: usize) {
        if let Some(Some(c)) = self.coordinators.get(index) {
            c.signal(libc::SIGSTOP);
        }
    }

    pub fn resume_coordinator(&self, index: usize) {
        if let Some(Some(c)) = self.coordinators.get(index) {
            c.signal(libc::SIGCONT);
        }
    }

    /// Coordinators started in the group so far, running or not.
    pub fn coordinator_count(&self) -> usize {
        self.coordinator_ports.len()
    }

    /// Where coordinator `index` serves `/metrics`, with [`ClusterOptions::metrics`].
    pub fn coordinator_metrics_address(&self, index: usize) -> Option<String> {
        let port = self.coordinator_metrics_ports.get(index)?;
        Some(format!("127.0.0.1:{port}"))
    }

    /// Where worker `index` serves `/metrics`, with [`ClusterOptions::metrics`].
    pub fn worker_metrics_address(&self, index: usize) -> Option<String> {
        let port = self.worker_metrics_ports.get(index)?;
        Some(format!("127.0.0.1:{port}"))
    }

    /// The address of coordinator `index`.
    pub fn coordinator_address_of(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.coordinator_ports[index])
    }

    /// Where coordinator `index` serves its HTTP API:
    /// `http://127.0.0.1:PORT`, `https://` with [`ClusterOptions::tls`].
    pub fn http_url_of(&self, index: usize) -> String {
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.http_ports[index])
    }

    /// The index of the coordinator that serves as the leader: of those that
    /// say they do, the one of the highest term.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for index in 0..self.coordinator_ports.len() {
            if self.coordinators[index].is_none() {
                continue;
            }
            let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), self.client_of(index)).await
            else {
                continue;
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(1),
                c.cluster_info(self.client_request(ClusterInfoRequest {})),
            )
            .await;
            if let Ok(Ok(info)) = answer {
                let info = info.into_inner();
                if info.serving && best.is_none_or(|(term, _)| info.term > term) {
                    best = Some((info.term, index));
                }
            }
        }
        best.map(|(_, index)| index)
    }

    /// Starts one more worker; returns its index.
    pub fn add_worker(&mut self) -> anyhow::Result<usize> {
        let tls = self
            .options
            .worker_tls
            .clone()
            .or_else(|| self.options.tls.clone());
        self.add_worker_with_tls(tls.as_ref())
    }

    /// Starts one more worker with these TLS files instead of the cluster's
    /// (such as a certificate of another CA); returns its index.
    pub fn add_worker_with_tls(&mut self, tls: Option<&TlsFiles>) -> anyhow::Result<usize> {
        let coordinator = self.coordinator_address.clone();
        self.spawn_worker(&coordinator, tls, &[], &[])
    }

    /// Starts one more worker that reaches the coordinators at `coordinator`
    /// (comma-separated, such as a proxy's address), with extra arguments and
    /// environment (`FAILPOINTS` here is added to the options' own for the
    /// worker's index); returns its index.
    pub fn add_worker_with(
        &mut self,
        coordinator: &str,
        args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<usize> {
        let tls = self
            .options
            .worker_tls
            .clone()
            .or_else(|| self.options.tls.clone());
        self.spawn_worker(coordinator, tls.as_ref(), args, env)
    }

    fn spawn_worker(
        &mut self,
        coordinator: &str,
        tls: Option<&TlsFiles>,
        args: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<usize> {
        let index = self.workers.len();
        let mut cmd = Command::new(binary("worker")?);
        cmd.arg("--coordinator")
            .arg(coordinator)
            .arg("--slots")
            .arg(self.options.slots.to_string())
            .arg("--checkpoint-store")
            .arg(
                self.options
                    .checkpoint_store
                    .clone()
                    .unwrap_or_else(|| self.checkpoint_store().to_string_lossy().into_owned()),
            )
            .args(&self.options.worker_args)
            .args(args)
            .args(tls.map(TlsFiles::args).unwrap_or_default())
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .envs(
                env.iter()
                    .filter(|(k, _)| k != "FAILPOINTS")
                    .map(|(k, v)| (k, v)),
            );
        let failpoints: Vec<&str> = self
            .options
            .failpoints
            .get(&index)
            .map(String::as_str)
            .into_iter()
            .chain(
                env.iter()
                    .filter(|(k, _)| k == "FAILPOINTS")
                    .map(|(_, v)| v.as_str()),
            )
            .collect();
        if !failpoints.is_empty() {
            cmd.env("FAILPOINTS", failpoints.join(";"));
        }
        if self.options.metrics {
            let port = free_port()?;
            cmd.arg("--metrics-listen").arg(format!("127.0.0.1:{port}"));
            self.worker_metrics_ports.push(port);
        }
        let log = self.dir.join(format!("worker-{index}.log"));
        self.workers.push(Some(ManagedChild::spawn(
            &format!("worker {index}"),
            cmd,
            &log,
        )?));
        Ok(index)
    }

    /// Waits until a coordinator serves as the leader; returns its index.
    /// Polls often, so the time it took is a fair measure of an election.
    pub async fn wait_leader(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            anyhow::ensure!(Instant::now() < deadline, "no leader within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client of the leading coordinator.
    pub async fn client(&self) -> anyhow::Result<JobServiceClient<tonic::transport::Channel>> {
        let leader = self.leader().await.context("no coordinator leads")?;
        self.client_of(leader).await
    }

    /// A client of coordinator `index`, over TLS when the cluster has it.
    pub async fn client_of(
        &self,
        index: usize,
    ) -> anyhow::Result<JobServiceClient<tonic::transport::Channel>> {
        let address = self.coordinator_address_of(index);
        let channel = sluice_proto::tls::endpoint(&address, self.client_tls.as_ref())?
            .connect()
            .await?;
        Ok(JobServiceClient::new(channel))
    }

    /// A JobService request carrying the options' `token`, if any.
    pub fn client_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self
            .options
            .token
            .as_deref()
            .and_then(|t| sluice_common::auth::bearer(t).parse().ok())
        {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// Waits until `n` workers are registered and alive.
    pub async fn wait_for_workers(&mut self, n: usize, deadline: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(mut c) = self.client().await
                && let Ok(resp) = c
                    .list_workers(self.client_request(ListWorkersRequest {}))
                    .await
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
            for c in self.coordinators.iter_mut().flatten() {
                c.check_alive()?;
            }
            for w in self.workers.iter_mut().flatten() {
                w.check_alive()?;
            }
            if start.elapsed() > deadline {
                anyhow::bail!("{n} workers did not register within {deadline:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn coordinator_pid(&self, index: usize) -> Option<u32> {
        self.coordinators
            .get(index)?
            .as_ref()
            .map(ManagedChild::pid)
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

    /// An error with the end of its log once worker `index` has exited (or
    /// was stopped here).
    pub fn check_worker(&mut self, index: usize) -> anyhow::Result<()> {
        match self.workers.get_mut(index) {
            Some(Some(w)) => w.check_alive(),
            _ => anyhow::bail!("worker {index} is not running"),
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

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }
}
