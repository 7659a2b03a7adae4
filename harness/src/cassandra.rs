//! A single-node Apache Cassandra 5.0 on Java 17, started from its jars with a
//! generated `cassandra.yaml` and the JVM options its launcher script would give.

use crate::cache;
use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a (re)started Cassandra may take to serve CQL.
const START_LIMIT: Duration = Duration::from_secs(180);

/// Module access Cassandra needs on Java 17 (from its `jvm17-server.options`).
const ADD_OPENS: &[&str] = &[
    "java.base/java.lang.module",
    "java.base/jdk.internal.loader",
    "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect",
    "java.base/jdk.internal.math",
    "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar",
    "jdk.management/com.sun.management.internal",
    "java.base/sun.nio.ch",
    "java.base/java.io",
    "java.base/java.nio",
    "java.base/java.util.concurrent",
    "java.base/java.util",
    "java.base/java.util.concurrent.atomic",
    "java.base/java.lang",
    "java.base/java.math",
    "java.base/java.lang.reflect",
    "java.base/java.net",
];
const ADD_EXPORTS: &[&str] = &[
    "java.base/jdk.internal.misc",
    "java.base/jdk.internal.ref",
    "java.base/sun.nio.ch",
    "java.management.rmi/com.sun.jmx.remote.internal.rmi",
    "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server",
    "java.sql/java.sql",
];

pub struct CassandraServer {
    /// `127.0.0.1:<native port>`.
    pub address: String,
    pub process: ManagedChild,
    dir: PathBuf,
    /// Starts so far, for the log of each.
    starts: u32,
}

impl CassandraServer {
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, false)
    }

    /// [`CassandraServer::start`]; with `durable_acks`, a write is
    /// acknowledged only once its commit log entry is on disk
    /// (`commitlog_sync: batch`). Without it (`periodic`, every 10 s), a
    /// SIGKILLed Cassandra comes back without writes it acknowledged in its
    /// last seconds: replay stops at the commit log's last sync marker.
    pub fn start_with(dir: &Path, durable_acks: bool) -> anyhow::Result<Self> {
        let commitlog_sync = match durable_acks {
            true => "commitlog_sync: batch",
            false => "commitlog_sync: periodic\ncommitlog_sync_period: 10000ms",
        };
        let native = free_port()?;
        let storage = free_port()?;
        let home = dir.join("cassandra");
        let conf = home.join("conf");
        std::fs::create_dir_all(&conf)?;
        let d = |sub: &str| home.join(sub).display().to_string();
        std::fs::write(
            conf.join("cassandra.yaml"),
            format!(
                "cluster_name: sluice-dev
num_tokens: 16
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [{data}]
commitlog_directory: {commitlog}
saved_caches_directory: {caches}
hints_directory: {hints}
cdc_raw_directory: {cdc}
{commitlog_sync}
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: \"127.0.0.1:{storage}\"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage}
native_transport_port: {native}
start_native_transport: true
endpoint_snitch: SimpleSnitch
",
                data = d("data"),
                commitlog = d("commitlog"),
                caches = d("saved_caches"),
                hints = d("hints"),
                cdc = d("cdc_raw"),
            ),
        )?;
        std::fs::write(
            conf.join("logback.xml"),
            r#"<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
  <logger name="org.apache.cassandra.service.CassandraDaemon" level="INFO"/>
</configuration>
"#,
        )?;
        let address = format!("127.0.0.1:{native}");
        let process = launch(&home, &dir.join("cassandra.log"), &address)?;
        Ok(Self {
            address,
            process,
            dir: dir.to_path_buf(),
            starts: 1,
        })
    }
}

impl CassandraServer {
    /// SIGKILLs Cassandra, as a machine failure would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts Cassandra again on the same data, ports and settings (after
    /// [`CassandraServer::kill`]: it replays its commit log); returns once it
    /// serves CQL. Each start logs to a file of its own (`cassandra-2.log`, ...).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.starts += 1;
        let log = self.dir.join(format!("cassandra-{}.log", self.starts));
        self.process = launch(&self.dir.join("cassandra"), &log, &self.address)?;
        Ok(())
    }
}

/// Runs the Cassandra of `home` (its `conf/cassandra.yaml`) and waits until
/// it serves CQL at `address`.
fn launch(home: &Path, log: &Path, address: &str) -> anyhow::Result<ManagedChild> {
    let libs = cache::cassandra_libs()?;
    let conf = home.join("conf");
    let mut cmd = Command::new(cache::java());
    cmd.args(["-Xms512m", "-Xmx1g", "-XX:+ExitOnOutOfMemoryError"]);
    for o in ADD_OPENS {
        cmd.arg("--add-opens").arg(format!("{o}=ALL-UNNAMED"));
    }
    for e in ADD_EXPORTS {
        cmd.arg("--add-exports").arg(format!("{e}=ALL-UNNAMED"));
    }
    cmd.arg("-Djdk.attach.allowAttachSelf=true")
        .arg(format!(
            "-Dcassandra.config=file://{}/cassandra.yaml",
            conf.display()
        ))
        .arg(format!("-Dcassandra.storagedir={}", home.display()))
        .arg("-Dcassandra-foreground=yes")
        .arg("-Dcassandra.skip_wait_for_gossip_to_settle=0")
        .arg("-Dcassandra.ring_delay_ms=1000")
        .arg("-cp")
        .arg(format!("{}:{}/*", conf.display(), libs.display()))
        .arg("org.apache.cassandra.service.CassandraDaemon");
    let mut process = ManagedChild::spawn("cassandra", cmd, log)?;
    let addr = address
        .parse()
        .with_context(|| format!("`{address}` is no IP address and port"))?;
    wait_for_port(addr, START_LIMIT, || process.check_alive())?;
    Ok(process)
}
