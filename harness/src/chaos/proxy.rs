//! A TCP proxy the chaos program puts on one link between Sluice's
//! processes, or between them and a service: it passes bytes through, cuts
//! the link (refuses new connections and drops the open ones) or delays
//! every chunk of data, as a network partition or a slow network would. It
//! can also cut the link for some client processes only: every process
//! reaches a coordinator at the one address the Raft membership names, so
//! the proxy in front of it tells who connects by the client socket's
//! owner (see [`owner`]).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    Pass,
    /// New connections are closed at once and open ones dropped.
    Cut,
    /// Every chunk read from either side waits this long before it is written.
    Delay(Duration),
}

/// One link: listens on a free port of 127.0.0.1 and forwards each
/// connection to the upstream address it names at connection time. Stops
/// listening when dropped.
pub struct Proxy {
    address: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<LinkMode>,
    /// Client processes (by pid) cut off while the link passes for others.
    cut_clients: watch::Sender<BTreeSet<u32>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a link to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let (mode, _) = watch::channel(LinkMode::Pass);
        let (cut_clients, _) = watch::channel(BTreeSet::new());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.clone(),
            mode.subscribe(),
            cut_clients.subscribe(),
        ));
        Ok(Self {
            address,
            upstream,
            mode,
            cut_clients,
            accept,
        })
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends new connections to `upstream` from now on, such as a restarted
    /// process's new port.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = upstream;
    }

    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// Cuts the link for the processes `pids` only: their open connections
    /// are dropped and new ones closed at once, while other clients pass.
    /// An empty set heals it.
    pub fn cut_clients(&self, pids: BTreeSet<u32>) {
        self.cut_clients.send_replace(pids);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set_mode(LinkMode::Cut);
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Receiver<LinkMode>,
    cut_clients: watch::Receiver<BTreeSet<u32>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if *mode.borrow() == LinkMode::Cut {
            drop(client);
            continue;
        }
        let target = *upstream.lock().unwrap_or_else(|p| p.into_inner());
        tokio::spawn(connection(
            client,
            target,
            mode.clone(),
            cut_clients.clone(),
        ));
    }
}

/// Whether the process at the client end of the connection `peer` ->
/// `local` is one of `pids` (read off `/proc` outside the async threads).
async fn client_is_among(peer: SocketAddr, local: SocketAddr, pids: BTreeSet<u32>) -> bool {
    if pids.is_empty() {
        return false;
    }
    tokio::task::spawn_blocking(move || owner(peer, local, &pids).is_some())
        .await
        .unwrap_or(false)
}

/// Returns once the process at the client end of the connection `peer` ->
/// `local` is among the cut clients.
async fn cut_for_client(
    peer: SocketAddr,
    local: SocketAddr,
    mut cut_clients: watch::Receiver<BTreeSet<u32>>,
) {
    loop {
        let pids = cut_clients.borrow_and_update().clone();
        if client_is_among(peer, local, pids).await {
            return;
        }
        if cut_clients.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Forwards one connection both ways until either side closes, the link
/// is cut, or it is cut for the client's process.
async fn connection(
    client: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<LinkMode>,
    cut_clients: watch::Receiver<BTreeSet<u32>>,
) {
    let (Ok(peer), Ok(local)) = (client.peer_addr(), client.local_addr()) else {
        return;
    };
    let pids = cut_clients.borrow().clone();
    if client_is_among(peer, local, pids).await {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(client_read, server_write, mode.clone());
    let down = pipe(server_read, client_write, mode.clone());
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = mode.wait_for(|m| *m == LinkMode::Cut) => {}
        _ = cut_for_client(peer, local, cut_clients) => {}
    }
}

/// The process among `pids` that holds the client end of the TCP
/// connection from `client` to `server` (an accepted connection's peer and
/// local address): the socket whose local address is `client` and remote
/// `server` in `/proc/net/tcp` or `tcp6` gives its inode, and the process
/// with `socket:[INODE]` among its `/proc/PID/fd` holds it. `None` when no
/// process of `pids` does (or another machine's process connected).
pub fn owner(client: SocketAddr, server: SocketAddr, pids: &BTreeSet<u32>) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            socket_inode(&text, client, server)
        })?;
    let link = std::path::PathBuf::from(format!("socket:[{inode}]"));
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == link))
        })
    })
}

/// The inode of the socket from `local` to `remote` in a `/proc/net/tcp`
/// or `tcp6` table.
fn socket_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (l, r, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        let same = |text: &str, want: SocketAddr| {
            proc_address(text).is_some_and(|a| canonical(a) == canonical(want))
        };
        (same(l, local) && same(r, remote))
            .then(|| inode.parse().ok())
            .flatten()
            .filter(|i| *i != 0)
    })
}

/// An address of a `/proc/net/tcp(6)` table, `0100007F:1F90`: the IP
/// address as 32-bit words in the machine's byte order, the port in hex.
fn proc_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut octets = [0u8; 16];
            for i in 0..4 {
                octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// An IPv4 address mapped into IPv6 as the IPv4 address itself.
fn canonical(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), address.port()),
            None => address,
        },
        IpAddr::V4(_) => address,
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<LinkMode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let current = *mode.borrow();
        if let LinkMode::Delay(delay) = current {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(address).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut buf)).await??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_link_passes_cuts_and_heals() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.address()).await.unwrap();
        assert_eq!(round_trip(proxy.address()).await.unwrap(), b"ping");
        proxy.set_mode(LinkMode::Cut);
        assert!(round_trip(proxy.address()).await.is_err());
        // The connection opened before the cut is dropped too.
        let mut buf = [0u8; 4];
        let _ = open.write_all(b"ping").await;
        let read = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        proxy.set_mode(LinkMode::Pass);
        assert_eq!(round_trip(proxy.address()).await.unwrap(), b"ping");
    }

    #[tokio::test]
    async fn a_delayed_link_answers_late() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(LinkMode::Delay(Duration::from_millis(300)));
        let start = std::time::Instant::now();
        assert_eq!(round_trip(proxy.address()).await.unwrap(), b"ping");
        assert!(start.elapsed() >= Duration::from_millis(600));
    }

    #[tokio::test]
    async fn the_owner_of_a_client_socket_is_found_among_the_pids_given() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let (peer, local) = (
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        );
        assert_eq!(peer, client.local_addr().unwrap());
        let own = std::process::id();
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(
            owner(peer, local, &BTreeSet::from([child.id(), own])),
            Some(own)
        );
        assert_eq!(owner(peer, local, &BTreeSet::from([child.id()])), None);
        // The accepting end is not the client's.
        assert_eq!(owner(local, peer, &BTreeSet::from([child.id()])), None);
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn proc_net_tcp_addresses_are_read_in_the_machines_byte_order() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(
            proc_address(&format!("{v4:08X}:1F90")),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let words: String = [
            [0u8, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0xff, 0xff],
            [127, 0, 0, 1],
        ]
        .iter()
        .map(|w| format!("{:08X}", u32::from_ne_bytes(*w)))
        .collect();
        let mapped = proc_address(&format!("{words}:0050")).unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:80".parse().unwrap());
    }

    /// A child process (bash) that sends `ping` through `address` and prints
    /// what comes back, or nothing when the link is cut for it.
    fn child_round_trip(address: SocketAddr) -> String {
        let script = format!(
            "exec 3<>/dev/tcp/{}/{} && printf ping >&3 && timeout 2 head -c 4 <&3",
            address.ip(),
            address.port()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_link_cut_for_some_processes_passes_for_the_others() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let address = proxy.address();
        let mut open = TcpStream::connect(address).await.unwrap();
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        open.read_exact(&mut buf).await.unwrap();
        // Cut for another process: this one passes.
        proxy.cut_clients(BTreeSet::from([1]));
        assert_eq!(round_trip(address).await.unwrap(), b"ping");
        // Cut for this process: its open connection is dropped, new ones
        // are refused, while another process still passes.
        proxy.cut_clients(BTreeSet::from([std::process::id()]));
        let read = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
        assert!(round_trip(address).await.is_err());
        let other = tokio::task::spawn_blocking(move || child_round_trip(address))
            .await
            .unwrap();
        assert_eq!(other, "ping");
        proxy.cut_clients(BTreeSet::new());
        assert_eq!(round_trip(address).await.unwrap(), b"ping");
    }
}
