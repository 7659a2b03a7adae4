use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`, or `deadline` passes.
/// `alive` is asked between attempts so a crashed process fails fast.
pub fn wait_for_port(
    addr: SocketAddr,
    deadline: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        alive()?;
        if start.elapsed() > deadline {
            anyhow::bail!("nothing answered on {addr} within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
