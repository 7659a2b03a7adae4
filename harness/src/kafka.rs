//! A single-broker Apache Kafka in KRaft mode, with the transaction settings a
//! one-broker cluster needs.

use crate::cache;
use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a (re)started broker may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(90);

pub struct KafkaServer {
    pub bootstrap: String,
    pub process: ManagedChild,
    dir: PathBuf,
    config: PathBuf,
    /// Starts so far, for the log of each.
    starts: u32,
}

/// A second listener for clients behind a proxy: the broker listens on
/// `port` and tells the clients that connected there to reach it at
/// `advertised` (the proxy's address), as Kafka names each client the
/// advertised address of the listener it connected on.
#[derive(Debug, Clone, Copy)]
pub struct ProxiedListener {
    pub port: u16,
    pub advertised: SocketAddr,
}

impl KafkaServer {
    /// Formats a fresh log directory under `dir` and starts the broker.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, None)
    }

    /// [`KafkaServer::start`], with a second listener for clients behind a
    /// proxy; `bootstrap` stays the first listener's address.
    pub fn start_with(dir: &Path, proxied: Option<ProxiedListener>) -> anyhow::Result<Self> {
        let libs = cache::kafka_libs()?;
        let port = free_port()?;
        let controller = free_port()?;
        let data = dir.join("kafka-data");
        std::fs::create_dir_all(&data)?;
        let config = dir.join("kafka.properties");
        let (listeners, advertised, protocols) = match proxied {
            None => (String::new(), String::new(), String::new()),
            Some(p) => (
                format!(",PROXIED://127.0.0.1:{}", p.port),
                format!(",PROXIED://{}", p.advertised),
                ",PROXIED:PLAINTEXT".to_string(),
            ),
        };
        std::fs::write(
            &config,
            format!(
                "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{listeners}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{advertised}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT{protocols}
log.dirs={data}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
transaction.max.timeout.ms=900000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
",
                data = data.display()
            ),
        )?;
        let classpath = format!("{}/*", libs.display());
        let format = Command::new(cache::java())
            .args([
                "-cp",
                &classpath,
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            ])
            .args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
            .args(["-t", "c2x1aWNlLWRldnN0YWNrAA"])
            .arg("-c")
            .arg(&config)
            .output()
            .context("cannot run Kafka's storage format tool")?;
        if !format.status.success() {
            anyhow::bail!(
                "formatting Kafka storage failed: {}",
                String::from_utf8_lossy(&format.stderr)
            );
        }
        let process = launch(&config, &dir.join("kafka.log"), port)?;
        Ok(Self {
            bootstrap: format!("127.0.0.1:{port}"),
            process,
            dir: dir.to_path_buf(),
            config,
            starts: 1,
        })
    }

    /// SIGKILLs the broker, as a machine failure would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the broker again on the same data, ports and settings (after
    /// [`KafkaServer::kill`]); returns once it accepts connections. Each
    /// start logs to a file of its own (`kafka-2.log`, ...).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.starts += 1;
        let port = self
            .bootstrap
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("the broker's address has no port")?;
        let log = self.dir.join(format!("kafka-{}.log", self.starts));
        self.process = launch(&self.config, &log, port)?;
        Ok(())
    }
}

/// Runs the broker of `config` and waits until it listens on `port`.
fn launch(config: &Path, log: &Path, port: u16) -> anyhow::Result<ManagedChild> {
    let classpath = format!("{}/*", cache::kafka_libs()?.display());
    let mut cmd = Command::new(cache::java());
    cmd.args(["-Xms256m", "-Xmx768m", "-XX:+ExitOnOutOfMemoryError"])
        .args([
            "-cp",
            &classpath,
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        ])
        .arg("kafka.Kafka")
        .arg(config);
    let mut process = ManagedChild::spawn("kafka", cmd, log)?;
    let addr = format!("127.0.0.1:{port}").parse()?;
    wait_for_port(addr, START_LIMIT, || process.check_alive())?;
    Ok(process)
}
