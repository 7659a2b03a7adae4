//! A TCP proxy the chaos program puts on one link between Sluice's
//! processes, or between them and a service: it passes bytes through, cuts
//! the link (refuses new connections and drops the open ones) or delays
//! every chunk of data, as a network partition or a slow network would.
//! A proxy with a [`Sorter`] tells its clients apart and gives each group
//! of them a mode of its own.

use std::net::SocketAddr;
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

/// Tells which group a client's connection belongs to, from the client's
/// address and the proxy's: `Some(group)` below the proxy's group count, or
/// `None` for a client of no group. Called off the async threads, once per
/// connection, so it may read files.
pub type Sorter = Arc<dyn Fn(SocketAddr, SocketAddr) -> Option<usize> + Send + Sync>;

/// One link: listens on a free port of 127.0.0.1 and forwards each
/// connection to the upstream address it names at connection time. Stops
/// listening when dropped.
pub struct Proxy {
    address: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    /// The mode of clients of no group (of every client without a sorter).
    mode: watch::Sender<LinkMode>,
    /// The mode of each group of clients the sorter tells apart.
    groups: Vec<watch::Sender<LinkMode>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a link to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::start_sorted(upstream, 0, None).await
    }

    /// Starts a link to `upstream` whose clients `sorter` sorts into
    /// `groups` groups, each with its own mode ([`Proxy::set_group_mode`]).
    pub async fn start_sorted(
        upstream: SocketAddr,
        groups: usize,
        sorter: Option<Sorter>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let (mode, _) = watch::channel(LinkMode::Pass);
        let groups: Vec<watch::Sender<LinkMode>> = (0..groups)
            .map(|_| watch::channel(LinkMode::Pass).0)
            .collect();
        let clients = Clients {
            default: mode.subscribe(),
            groups: groups.iter().map(watch::Sender::subscribe).collect(),
            sorter,
        };
        let accept = tokio::spawn(accept_loop(listener, upstream.clone(), Arc::new(clients)));
        Ok(Self {
            address,
            upstream,
            mode,
            groups,
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

    /// The mode of clients of no group, or of every client without a sorter.
    pub fn set_mode(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    /// The mode of the clients of `group`; no effect for a group the proxy
    /// does not have.
    pub fn set_group_mode(&self, group: usize, mode: LinkMode) {
        if let Some(g) = self.groups.get(group) {
            g.send_replace(mode);
        }
    }

    /// The number of groups of clients.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.set_mode(LinkMode::Cut);
        for g in &self.groups {
            g.send_replace(LinkMode::Cut);
        }
        self.accept.abort();
    }
}

/// How the accept loop finds a connection's mode.
struct Clients {
    default: watch::Receiver<LinkMode>,
    groups: Vec<watch::Receiver<LinkMode>>,
    sorter: Option<Sorter>,
}

impl Clients {
    async fn mode_of(&self, client: SocketAddr, proxy: SocketAddr) -> watch::Receiver<LinkMode> {
        let Some(sorter) = self.sorter.clone() else {
            return self.default.clone();
        };
        let group = tokio::task::spawn_blocking(move || sorter(client, proxy))
            .await
            .ok()
            .flatten();
        match group.and_then(|g| self.groups.get(g)) {
            Some(mode) => mode.clone(),
            None => self.default.clone(),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<SocketAddr>>,
    clients: Arc<Clients>,
) {
    loop {
        let Ok((client, peer)) = listener.accept().await else {
            continue;
        };
        let target = *upstream.lock().unwrap_or_else(|p| p.into_inner());
        let clients = clients.clone();
        tokio::spawn(async move {
            let Ok(local) = client.local_addr() else {
                return;
            };
            let mode = clients.mode_of(peer, local).await;
            if *mode.borrow() == LinkMode::Cut {
                return;
            }
            connection(client, target, mode).await;
        });
    }
}

/// Forwards one connection both ways until either side closes or the link
/// is cut.
async fn connection(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
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
    async fn each_group_of_clients_has_its_own_mode() {
        // Every other connection is of group 0, the others of no group.
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sorter: Sorter = Arc::new(move |_, _| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            n.is_multiple_of(2).then_some(0)
        });
        let proxy = Proxy::start_sorted(echo_server().await, 1, Some(sorter))
            .await
            .unwrap();
        proxy.set_group_mode(0, LinkMode::Cut);
        let mut passed = Vec::new();
        for _ in 0..6 {
            passed.push(round_trip(proxy.address()).await.is_ok());
        }
        assert_eq!(passed, [false, true, false, true, false, true]);
        proxy.set_group_mode(0, LinkMode::Pass);
        proxy.set_mode(LinkMode::Cut);
        passed.clear();
        for _ in 0..6 {
            passed.push(round_trip(proxy.address()).await.is_ok());
        }
        assert_eq!(passed, [true, false, true, false, true, false]);
    }

    #[tokio::test]
    async fn a_delayed_link_answers_late() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(LinkMode::Delay(Duration::from_millis(300)));
        let start = std::time::Instant::now();
        assert_eq!(round_trip(proxy.address()).await.unwrap(), b"ping");
        assert!(start.elapsed() >= Duration::from_millis(600));
    }
}
