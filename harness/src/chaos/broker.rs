//! The chaos program's own Kafka broker, for the scenarios that cut, slow or
//! restart it (the shared broker is never touched). It has two listeners:
//! one the harness's generator and reader use directly, and one behind a
//! [`Proxy`] that the job's spec names, so every worker's connections to the
//! broker go through that proxy (Kafka tells each client the advertised
//! address of the listener it connected on: the proxy's).
//!
//! A job's spec gives every worker the same broker address, so one worker is
//! cut off by the process that owns each connection ([`Proxy::cut_clients`]);
//! a slow broker slows the whole link, the coordinator's checks included.

use super::proxy::{LinkMode, Proxy};
use crate::kafka::{KafkaServer, ProxiedListener};
use crate::net::free_port;
use crate::process::Launcher;
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub struct OwnBroker {
    server: Arc<Mutex<Option<KafkaServer>>>,
    /// In front of the listener the job's spec names.
    link: Proxy,
    /// The process id of the worker in each slot, `None` while a slot is empty.
    pids: Mutex<Vec<Option<u32>>>,
    /// The slots cut off from the broker.
    cut: Mutex<BTreeSet<usize>>,
    /// The broker's directory (data, settings, logs), deleted on drop.
    dir: PathBuf,
    bootstrap: String,
    /// Starts the broker's process, which would die with a passing thread.
    launcher: Launcher,
}

impl std::fmt::Debug for OwnBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnBroker")
            .field("bootstrap", &self.bootstrap)
            .field("job_bootstrap", &self.link.address())
            .finish()
    }
}

impl OwnBroker {
    /// Starts a broker in `dir`, for workers of `slots` slots
    /// ([`OwnBroker::set_worker`]).
    pub async fn start(dir: PathBuf, slots: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let link = Proxy::start(format!("127.0.0.1:{port}").parse()?).await?;
        let listener = ProxiedListener {
            port,
            advertised: link.address(),
        };
        let launcher = Launcher::new("chaos-kafka")?;
        let server = {
            let dir = dir.clone();
            launcher
                .run(move || KafkaServer::start_with(&dir, Some(listener)))
                .await??
        };
        Ok(Self {
            bootstrap: server.bootstrap.clone(),
            server: Arc::new(Mutex::new(Some(server))),
            link,
            pids: Mutex::new(vec![None; slots]),
            cut: Mutex::new(BTreeSet::new()),
            dir,
            launcher,
        })
    }

    /// The broker's own address, for the harness's generator and reader.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The proxy's address, for the job's spec: every connection of a
    /// worker to the broker passes the proxy.
    pub fn job_bootstrap(&self) -> String {
        self.link.address().to_string()
    }

    /// Names the process running in worker slot `slot` (`None`: none); a
    /// slot cut off stays cut off for its new process.
    pub fn set_worker(&self, slot: usize, pid: Option<u32>) {
        if let Some(p) = lock(&self.pids).get_mut(slot) {
            *p = pid;
        }
        self.apply_cuts();
    }

    /// Cuts the link of the worker in `slot` to the broker (`true`), or
    /// heals it (`false`).
    pub fn cut_worker(&self, slot: usize, cut: bool) {
        match cut {
            true => lock(&self.cut).insert(slot),
            false => lock(&self.cut).remove(&slot),
        };
        self.apply_cuts();
    }

    /// The mode of the whole link: every worker's (and the coordinator's).
    pub fn set_mode(&self, mode: LinkMode) {
        self.link.set_mode(mode);
    }

    /// Every link passes again and no worker is named: for the next run.
    pub fn reset(&self) {
        self.link.set_mode(LinkMode::Pass);
        lock(&self.cut).clear();
        lock(&self.pids).iter_mut().for_each(|p| *p = None);
        self.apply_cuts();
    }

    fn apply_cuts(&self) {
        let pids = lock(&self.pids);
        let cut = lock(&self.cut)
            .iter()
            .filter_map(|slot| *pids.get(*slot)?)
            .collect();
        self.link.cut_clients(cut);
    }

    /// SIGKILLs the broker.
    pub async fn kill(&self) -> anyhow::Result<()> {
        let server = self.server.clone();
        self.launcher
            .run(move || {
                if let Some(s) = lock(&server).as_mut() {
                    s.kill();
                }
            })
            .await
            .context("killing the broker")
    }

    /// Starts the broker again on its data and ports; returns once it
    /// accepts connections.
    pub async fn restart(&self) -> anyhow::Result<()> {
        let server = self.server.clone();
        self.launcher
            .run(move || match lock(&server).as_mut() {
                Some(s) => s.restart(),
                None => Ok(()),
            })
            .await?
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if let Some(mut server) = lock(&self.server).take() {
            server.process.stop(Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
