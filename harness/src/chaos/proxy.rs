//! A TCP proxy the chaos program puts on one link between Sluice's
//! processes, or between them and a service: it passes bytes through, cuts
//! the link (refuses new connections and drops the open ones) or delays
//! every chunk of data, as a network partition or a slow network would.

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

/// One link: listens on a free port of 127.0.0.1 and forwards each
/// connection to the upstream address it names at connection time. Stops
/// listening when dropped.
pub struct Proxy {
    address: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    mode: watch::Sender<LinkMode>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a link to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let (mode, _) = watch::channel(LinkMode::Pass);
        let accept = tokio::spawn(accept_loop(listener, upstream.clone(), mode.subscribe()));
        Ok(Self {
            address,
            upstream,
            mode,
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
        tokio::spawn(connection(client, target, mode.clone()));
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
    async fn a_delayed_link_answers_late() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(LinkMode::Delay(Duration::from_millis(300)));
        let start = std::time::Instant::now();
        assert_eq!(round_trip(proxy.address()).await.unwrap(), b"ping");
        assert!(start.elapsed() >= Duration::from_millis(600));
    }
}
