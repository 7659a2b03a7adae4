//! The cluster a chaos scenario runs on: coordinators and workers of this
//! workspace, with a proxy on each link a fault can cut or slow (a worker's
//! link to the coordinator, the links into each worker's data exchange, every
//! process's link to the checkpoint store on S3, the sink's link to MinIO
//! or Cassandra, each worker's link to the program's own Kafka broker, and
//! with a group of coordinators one in front of each coordinator, which every
//! process reaches it through) and, for a full disk, the checkpoint store or
//! the file sink's directory on a small tmpfs of its own. Everything it
//! started or mounted goes when it is dropped.

use super::broker::OwnBroker;
use super::proxy::{LinkMode, Proxy};
use super::scenario::{Fault, Step, StoreKind};
use crate::cassandra::CassandraServer;
use crate::cluster::{ClusterOptions, SluiceCluster};
use crate::net::free_port;
use crate::process::Launcher;
use anyhow::Context;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a run's cluster is made.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub workers: usize,
    pub coordinators: usize,
    pub store: StoreKind,
    pub s3_endpoint: String,
    /// What the sink's proxy leads to: MinIO's or Cassandra's `HOST:PORT`.
    pub sink_upstream: String,
    pub heartbeat_interval: Duration,
    pub heartbeat_timeout: Duration,
    /// `FAILPOINTS` of every worker (such as a deliberate fault).
    pub worker_failpoints: Option<String>,
    /// `FAILPOINTS` of the first worker only, for its first run.
    pub first_worker_failpoints: Option<String>,
    /// The file sink's directory ([`Environment::files_dir`]) on a small
    /// tmpfs of its own.
    pub files_on_tmpfs: bool,
    /// The program's own Kafka broker, for the broker's faults.
    pub broker: Option<Arc<OwnBroker>>,
}

/// A worker's place in the cluster: the proxies stay while the process in
/// it is replaced.
struct Slot {
    /// Its index in the cluster while a process runs in the slot.
    index: Option<usize>,
    /// In front of its data exchange: what it advertises to the others.
    exchange: Proxy,
    /// Between it and the coordinator (with one coordinator).
    coordinator: Option<Proxy>,
}

/// A small file system of the run's own, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Size of the tmpfs of the checkpoint store with [`StoreKind::Tmpfs`], and
/// of the file sink's directory with [`Settings::files_on_tmpfs`].
const TMPFS_SIZE: &str = "32m";

impl Tmpfs {
    /// Mounts a tmpfs of [`TMPFS_SIZE`] on `path` (made if missing).
    fn mount(path: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(&path)
            .status()
            .context("cannot run mount (a full disk needs root)")?;
        anyhow::ensure!(
            status.success(),
            "cannot mount a tmpfs on {}",
            path.display()
        );
        Ok(Self { path })
    }
}

pub struct Environment {
    pub cluster: SluiceCluster,
    slots: Vec<Slot>,
    store_proxy: Option<Proxy>,
    /// Between the sink and MinIO or Cassandra.
    sink_proxy: Proxy,
    /// In front of each coordinator of a group, by index: its advertised
    /// address, where its peers, the workers and clients reach it.
    coordinator_proxies: Vec<Proxy>,
    tmpfs: Option<Tmpfs>,
    settings: Settings,
    /// The leader a coordinator fault took down or paused.
    struck_coordinator: Option<usize>,
    /// A Cassandra of the run's own, for [`Fault::CassandraRestart`], with
    /// the launcher that started it (and starts it again).
    cassandra: Option<(Arc<Mutex<CassandraServer>>, Launcher)>,
}

impl Environment {
    /// Starts the coordinators and `settings.workers` workers, each behind
    /// its proxies; returns once every worker registered.
    pub async fn start(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.dir)?;
        let mut options = ClusterOptions {
            heartbeat_interval: settings.heartbeat_interval,
            heartbeat_timeout: settings.heartbeat_timeout,
            coordinators: settings.coordinators,
            ..Default::default()
        };
        let mut store_proxy = None;
        let mut tmpfs = None;
        let minio = socket_of(&settings.s3_endpoint)?;
        let sink_proxy = Proxy::start(socket_of(&settings.sink_upstream)?).await?;
        // The S3 sink's credentials and region; its endpoint is in the spec.
        options.env = crate::minio::client_env(&settings.s3_endpoint);
        match settings.store {
            StoreKind::Local => {}
            StoreKind::S3 => {
                let proxy = Proxy::start(minio).await?;
                options.env = crate::minio::client_env(&format!("http://{}", proxy.address()));
                options.checkpoint_store = Some(format!(
                    "s3://sluice/{}",
                    crate::testing::unique("chaos-checkpoints")
                ));
                store_proxy = Some(proxy);
            }
            StoreKind::Tmpfs => tmpfs = Some(Tmpfs::mount(settings.dir.join("checkpoints"))?),
        }
        let files = settings.dir.join("files");
        match settings.files_on_tmpfs {
            true => tmpfs = Some(Tmpfs::mount(files)?),
            false => std::fs::create_dir_all(&files)?,
        }
        let mut coordinator_proxies = Vec::new();
        if settings.coordinators > 1 {
            for _ in 0..settings.coordinators {
                let port = free_port()?;
                options.coordinator_ports.push(port);
                let proxy = Proxy::start(format!("127.0.0.1:{port}").parse()?).await?;
                options
                    .coordinator_advertise
                    .push(proxy.address().to_string());
                coordinator_proxies.push(proxy);
            }
        }
        let cluster = SluiceCluster::start(&settings.dir, 0, options).await?;
        let mut env = Self {
            cluster,
            slots: Vec::new(),
            store_proxy,
            sink_proxy,
            coordinator_proxies,
            tmpfs,
            settings,
            struck_coordinator: None,
            cassandra: None,
        };
        for slot in 0..env.settings.workers {
            // Sent to the worker's own port once it is started (`spawn`).
            let exchange = Proxy::start("127.0.0.1:9".parse()?).await?;
            let coordinator = match env.settings.coordinators {
                1 => Some(Proxy::start(socket_of(&env.cluster.coordinator_address)?).await?),
                _ => None,
            };
            env.slots.push(Slot {
                index: None,
                exchange,
                coordinator,
            });
            let failpoints = match slot {
                0 => env.settings.first_worker_failpoints.clone(),
                _ => None,
            };
            env.spawn(slot, failpoints)?;
        }
        let workers = env.settings.workers;
        env.cluster
            .wait_for_workers(workers, Duration::from_secs(60))
            .await?;
        Ok(env)
    }

    /// Starts a worker process in `slot`, with `failpoints` besides those
    /// of every worker.
    fn spawn(&mut self, slot: usize, failpoints: Option<String>) -> anyhow::Result<()> {
        let port = free_port()?;
        let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let s = &self.slots[slot];
        s.exchange.set_upstream(listen);
        let coordinator = match &s.coordinator {
            Some(p) => p.address().to_string(),
            None => self.cluster.coordinator_address.clone(),
        };
        let args = vec![
            "--data-listen".to_string(),
            listen.to_string(),
            "--data-advertise".to_string(),
            s.exchange.address().to_string(),
        ];
        let all: Vec<String> = self
            .settings
            .worker_failpoints
            .iter()
            .chain(failpoints.iter())
            .cloned()
            .collect();
        let env = match all.is_empty() {
            true => Vec::new(),
            false => vec![("FAILPOINTS".to_string(), all.join(";"))],
        };
        let index = self.cluster.add_worker_with(&coordinator, &args, &env)?;
        self.slots[slot].index = Some(index);
        if let Some(broker) = &self.settings.broker {
            broker.set_worker(slot, self.cluster.worker_pid(index));
        }
        Ok(())
    }

    /// Gives the run a Cassandra of its own to restart (the sink's proxy
    /// must lead to it), started by `launcher`.
    pub fn set_own_cassandra(&mut self, server: CassandraServer, launcher: Launcher) {
        self.cassandra = Some((Arc::new(Mutex::new(server)), launcher));
    }

    /// SIGKILLs the worker in `slot` and starts a new one there.
    fn replace(&mut self, slot: usize) -> anyhow::Result<()> {
        if let Some(index) = self.slots[slot].index.take() {
            self.cluster.kill_worker(index);
        }
        self.spawn(slot, None)
    }

    /// Starts a new worker in every slot whose process has exited (a worker
    /// that aborted at a failpoint, or gave up); returns how many.
    pub fn replace_exited(&mut self) -> anyhow::Result<usize> {
        let mut replaced = 0;
        for slot in 0..self.slots.len() {
            let exited = match self.slots[slot].index {
                Some(index) => self.cluster.check_worker(index).is_err(),
                None => true,
            };
            if exited {
                eprintln!("chaos: the worker in slot {slot} exited: starting a new one");
                self.replace(slot)?;
                replaced += 1;
            }
        }
        Ok(replaced)
    }

    /// Waits (at most `within`) until the worker of `slot` exited, as a
    /// failpoint makes it; `false` if it still runs.
    pub async fn wait_exit(&mut self, slot: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.slots[slot].index {
                Some(index) if self.cluster.check_worker(index).is_ok() => {}
                _ => return true,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Starts `step`'s fault.
    pub async fn inject(&mut self, step: &Step) -> anyhow::Result<()> {
        let slot = step.target.min(self.slots.len().saturating_sub(1));
        let index = self.slots.get(slot).and_then(|s| s.index);
        match step.fault {
            Fault::WorkerKill => {
                if let Some(index) = self.slots[slot].index.take() {
                    self.cluster.kill_worker(index);
                }
            }
            Fault::WorkerPause => {
                if let Some(index) = index {
                    self.cluster.pause_worker(index);
                }
            }
            Fault::LeaderKill | Fault::LeaderPause => {
                let leader = self
                    .cluster
                    .wait_leader(Duration::from_secs(30))
                    .await
                    .context("no leader to strike")?;
                match step.fault {
                    Fault::LeaderKill => self.cluster.kill_coordinator(leader),
                    _ => self.cluster.pause_coordinator(leader),
                }
                self.struck_coordinator = Some(leader);
            }
            Fault::PartitionWorkerCoordinator => {
                if let Some(p) = &self.slots[slot].coordinator {
                    p.set_mode(LinkMode::Cut);
                }
            }
            Fault::PartitionWorkerWorker => self.slots[slot].exchange.set_mode(LinkMode::Cut),
            Fault::PartitionCoordinatorMinority => self.cut_coordinator(step.target).await?,
            Fault::StoreOutage => self.store_link()?.set_mode(LinkMode::Cut),
            Fault::SlowStore => self.store_link()?.set_mode(LinkMode::Delay(step.delay)),
            Fault::DiskFull => self.fill_disk()?,
            Fault::SinkOutage | Fault::CassandraOutage => self.sink_proxy.set_mode(LinkMode::Cut),
            Fault::SlowSink => self.sink_proxy.set_mode(LinkMode::Delay(step.delay)),
            Fault::PartitionWorkerBroker => self.broker()?.cut_worker(slot, true),
            Fault::KafkaRestart => self.broker()?.kill().await?,
            Fault::SlowKafkaSink => self.broker()?.set_mode(LinkMode::Delay(step.delay)),
            Fault::CassandraRestart => {
                let (server, launcher) = self.own_cassandra()?;
                let server = server.clone();
                launcher
                    .run(move || server.lock().unwrap_or_else(|p| p.into_inner()).kill())
                    .await?;
            }
            Fault::WorkerDiskFull => self.fill_disk()?,
            Fault::Failpoint(_) => {}
        }
        Ok(())
    }

    /// Ends `step`'s fault: links pass again, paused processes go on,
    /// killed ones start again.
    pub async fn heal(&mut self, step: &Step) -> anyhow::Result<()> {
        let slot = step.target.min(self.slots.len().saturating_sub(1));
        match step.fault {
            // A process still in the slot would advertise the same exchange
            // address as its successor: it goes first.
            Fault::WorkerKill | Fault::Failpoint(_) => self.replace(slot)?,
            Fault::WorkerPause => {
                if let Some(index) = self.slots[slot].index {
                    self.cluster.resume_worker(index);
                }
            }
            Fault::LeaderKill => {
                if let Some(index) = self.struck_coordinator.take() {
                    self.cluster.start_coordinator(index)?;
                }
            }
            Fault::LeaderPause => {
                if let Some(index) = self.struck_coordinator.take() {
                    self.cluster.resume_coordinator(index);
                }
            }
            Fault::PartitionWorkerCoordinator => {
                if let Some(p) = &self.slots[slot].coordinator {
                    p.set_mode(LinkMode::Pass);
                }
            }
            Fault::PartitionWorkerWorker => self.slots[slot].exchange.set_mode(LinkMode::Pass),
            Fault::PartitionCoordinatorMinority => {
                for p in &self.coordinator_proxies {
                    p.cut_clients(BTreeSet::new());
                }
            }
            Fault::StoreOutage | Fault::SlowStore => self.store_link()?.set_mode(LinkMode::Pass),
            Fault::SinkOutage | Fault::SlowSink | Fault::CassandraOutage => {
                self.sink_proxy.set_mode(LinkMode::Pass)
            }
            Fault::PartitionWorkerBroker => self.broker()?.cut_worker(slot, false),
            Fault::KafkaRestart => self.broker()?.restart().await?,
            Fault::SlowKafkaSink => self.broker()?.set_mode(LinkMode::Pass),
            Fault::CassandraRestart => {
                let (server, launcher) = self.own_cassandra()?;
                let server = server.clone();
                launcher
                    .run(move || server.lock().unwrap_or_else(|p| p.into_inner()).restart())
                    .await??;
            }
            Fault::DiskFull | Fault::WorkerDiskFull => {
                let filler = self.filler()?;
                std::fs::remove_file(&filler)
                    .with_context(|| format!("cannot remove {}", filler.display()))?;
            }
        }
        Ok(())
    }

    /// Cuts one coordinator off from the others: the leader for `target`
    /// 0, else the `target`-th follower by index. Its proxy refuses the
    /// other coordinators' processes and theirs refuse its process, while
    /// workers and clients pass everywhere.
    async fn cut_coordinator(&mut self, target: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.coordinator_proxies.len() > 1,
            "cutting a coordinator off needs a group of coordinators"
        );
        let leader = self
            .cluster
            .wait_leader(Duration::from_secs(30))
            .await
            .context("no leader to find the coordinator to cut off")?;
        let count = self.coordinator_proxies.len();
        let cut = match target {
            0 => leader,
            n => (0..count)
                .filter(|i| *i != leader)
                .cycle()
                .nth(n - 1)
                .unwrap_or(leader),
        };
        let pid = |i: usize| self.cluster.coordinator_pid(i);
        let others: BTreeSet<u32> = (0..count).filter(|i| *i != cut).filter_map(pid).collect();
        let own: BTreeSet<u32> = pid(cut).into_iter().collect();
        let role = if cut == leader { "leader" } else { "follower" };
        eprintln!(
            "chaos: coordinator {} (the {role}) cut off from the others",
            cut + 1
        );
        for (i, p) in self.coordinator_proxies.iter().enumerate() {
            p.cut_clients(match i == cut {
                true => others.clone(),
                false => own.clone(),
            });
        }
        Ok(())
    }

    fn store_link(&self) -> anyhow::Result<&Proxy> {
        self.store_proxy
            .as_ref()
            .context("this scenario's checkpoint store has no proxy")
    }

    fn broker(&self) -> anyhow::Result<&OwnBroker> {
        self.settings
            .broker
            .as_deref()
            .context("this scenario has no Kafka broker of its own")
    }

    fn own_cassandra(&self) -> anyhow::Result<&(Arc<Mutex<CassandraServer>>, Launcher)> {
        self.cassandra
            .as_ref()
            .context("this scenario has no Cassandra of its own")
    }

    fn filler(&self) -> anyhow::Result<PathBuf> {
        let tmpfs = self
            .tmpfs
            .as_ref()
            .context("this scenario has no tmpfs to fill")?;
        Ok(tmpfs.path.join("filler"))
    }

    /// Writes a file until the tmpfs is full: in chunks of a MiB, then of a
    /// page, so not even a small file fits beside it.
    fn fill_disk(&self) -> anyhow::Result<()> {
        let mut file = std::fs::File::create(self.filler()?)?;
        for size in [1 << 20, 4 << 10] {
            let chunk = vec![0u8; size];
            loop {
                match file.write_all(&chunk) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(e) => anyhow::bail!("cannot fill the tmpfs: {e}"),
                }
            }
        }
        Ok(())
    }

    /// Where the sink reaches MinIO or Cassandra: `127.0.0.1:PORT` of its proxy.
    pub fn sink_address(&self) -> String {
        self.sink_proxy.address().to_string()
    }

    /// The directory the files job writes to.
    pub fn files_dir(&self) -> PathBuf {
        self.settings.dir.join("files")
    }
}

impl Drop for Environment {
    /// The broker outlives the run: its links pass again and name no worker.
    fn drop(&mut self) {
        if let Some(broker) = &self.settings.broker {
            broker.reset();
        }
    }
}

/// `127.0.0.1:PORT` of an address given as `http://127.0.0.1:PORT` or
/// `127.0.0.1:PORT` (the first of a comma-separated list).
fn socket_of(address: &str) -> anyhow::Result<SocketAddr> {
    let first = address.split(',').next().unwrap_or(address);
    let bare = first
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    bare.parse()
        .with_context(|| format!("`{address}` is no IP address and port"))
}
