//! The chaos program's own Kafka broker, for the scenarios that cut, slow or
//! restart it (the shared broker is never touched). It has two listeners:
//! one the harness's generator and reader use directly, and one behind a
//! [`Proxy`] that the job's spec names, so every worker's connections to the
//! broker go through that proxy (Kafka tells each client the advertised
//! address of the listener it connected on: the proxy's).
//!
//! A job's spec gives every worker the same broker address, so the proxy
//! tells the workers apart by the process that owns each connection: the
//! client's socket, found in `/proc/net/tcp`, is one of the worker's open
//! files. Each worker slot is a group of the proxy with its own mode; the
//! coordinator's connections (its checks at submit) belong to no group.

use super::proxy::{LinkMode, Proxy, Sorter};
use crate::kafka::{KafkaServer, ProxiedListener};
use crate::net::free_port;
use crate::process::Launcher;
use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The process id of the worker in each slot, `None` while a slot is empty.
type SlotPids = Arc<Mutex<Vec<Option<u32>>>>;

pub struct OwnBroker {
    server: Arc<Mutex<Option<KafkaServer>>>,
    /// In front of the listener the job's spec names.
    link: Proxy,
    pids: SlotPids,
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
    /// Starts a broker in `dir`, with a proxy that tells apart the workers
    /// of `slots` slots ([`OwnBroker::set_worker`]).
    pub async fn start(dir: PathBuf, slots: usize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        let pids: SlotPids = Arc::new(Mutex::new(vec![None; slots]));
        let sorter: Sorter = {
            let pids = pids.clone();
            Arc::new(move |client, proxy| {
                let pids: Vec<(usize, u32)> = lock(&pids)
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, pid)| Some((slot, (*pid)?)))
                    .collect();
                owner(client, proxy, &pids)
            })
        };
        let link =
            Proxy::start_sorted(format!("127.0.0.1:{port}").parse()?, slots, Some(sorter)).await?;
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
            pids,
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

    /// Names the process running in worker slot `slot` (`None`: none).
    pub fn set_worker(&self, slot: usize, pid: Option<u32>) {
        if let Some(p) = lock(&self.pids).get_mut(slot) {
            *p = pid;
        }
    }

    /// The mode of the link of the worker in `slot` to the broker.
    pub fn set_worker_mode(&self, slot: usize, mode: LinkMode) {
        self.link.set_group_mode(slot, mode);
    }

    /// The mode of every worker's link to the broker.
    pub fn set_workers_mode(&self, mode: LinkMode) {
        for slot in 0..self.link.group_count() {
            self.link.set_group_mode(slot, mode);
        }
    }

    /// Every link passes again and no worker is named: for the next run.
    pub fn reset(&self) {
        self.set_workers_mode(LinkMode::Pass);
        lock(&self.pids).iter_mut().for_each(|p| *p = None);
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

/// The slot whose process owns the client's end of the connection from
/// `client` to `proxy`, among `pids` (slot, process id).
fn owner(client: SocketAddr, proxy: SocketAddr, pids: &[(usize, u32)]) -> Option<usize> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = socket_inode(&tcp, client, proxy)?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().find_map(|(slot, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
            .then_some(*slot)
    })
}

/// The inode of the socket bound to `local` and connected to `remote`, from
/// the text of `/proc/net/tcp` (IPv4: addresses as the hex of the address in
/// memory order, then the port).
fn socket_inode(tcp: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(ip.octets()),
            a.port()
        )),
        IpAddr::V6(_) => None,
    };
    let (local, remote) = (hex(local)?, hex(remote)?);
    tcp.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_found_in_proc_net_tcp() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:3A98 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1
   1: 0100007F:1F90 0100007F:3A98 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
";
        let client: SocketAddr = "127.0.0.1:15000".parse().unwrap();
        let proxy: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(socket_inode(tcp, client, proxy), Some(4242));
        assert_eq!(socket_inode(tcp, proxy, client), Some(4343));
        assert_eq!(socket_inode(tcp, client, client), None);
    }

    #[tokio::test]
    async fn the_process_owning_a_connection_is_found() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(proxy).await.unwrap();
        let (_server, client) = listener.accept().await.unwrap();
        let me = std::process::id();
        let found = tokio::task::spawn_blocking(move || {
            (
                owner(client, proxy, &[(0, 1), (3, me)]),
                owner(client, proxy, &[(0, 1)]),
            )
        })
        .await
        .unwrap();
        assert_eq!(found, (Some(3), None));
    }
}
