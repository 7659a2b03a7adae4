//! An S3-compatible server: MinIO built from the Go module proxy, serving a
//! data directory on 127.0.0.1.

use crate::cache;
use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "sluice";
pub const SECRET_KEY: &str = "sluice-secret";

/// What S3 clients read from the environment to reach a MinIO at `endpoint`.
pub fn client_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("S3_ENDPOINT", endpoint),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

pub struct MinioServer {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub data: PathBuf,
    pub process: ManagedChild,
}

impl MinioServer {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = cache::minio_binary()?;
        let port = free_port()?;
        let console = free_port()?;
        let data = dir.join("minio-data");
        std::fs::create_dir_all(&data)?;
        let mut cmd = Command::new(binary);
        cmd.arg("server")
            .arg(&data)
            .args(["--address", &format!("127.0.0.1:{port}")])
            .args(["--console-address", &format!("127.0.0.1:{console}")])
            .env("MINIO_ROOT_USER", ACCESS_KEY)
            .env("MINIO_ROOT_PASSWORD", SECRET_KEY)
            .env("MINIO_BROWSER", "off")
            .env("MINIO_UPDATE", "off");
        let mut process = ManagedChild::spawn("minio", cmd, &dir.join("minio.log"))?;
        let addr = format!("127.0.0.1:{port}").parse()?;
        wait_for_port(addr, Duration::from_secs(60), || process.check_alive())?;
        wait_ready(addr, Duration::from_secs(60))?;
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            data,
            process,
        })
    }

    /// Creates a bucket: MinIO serves each top-level directory of its data
    /// directory as one.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.data.join(name))?;
        Ok(())
    }
}

/// Waits for MinIO's readiness endpoint to answer 200.
fn wait_ready(addr: std::net::SocketAddr, deadline: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let ready = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                write!(
                    s,
                    "GET /minio/health/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                )?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)?;
                Ok(head.ends_with(b"200"))
            })
            .unwrap_or(false);
        if ready {
            return Ok(());
        }
        if start.elapsed() > deadline {
            anyhow::bail!("MinIO at {addr} not ready within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
