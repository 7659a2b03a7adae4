use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 right now.
///
/// Ports come from below the kernel's ephemeral range: a port the kernel hands
/// out for port 0 can meanwhile become the local end of another process's
/// outgoing connection (a coordinator dialling its peers), and the process the
/// port was meant for then fails to listen. Each test process walks the range
/// from its own point, so two runs at once rarely try the same port.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1);
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOWEST + (start + n) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrNotAvailable,
        "no free port below the ephemeral range",
    ))
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
