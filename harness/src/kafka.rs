//! A single-broker Apache Kafka in KRaft mode, with the transaction settings a
//! one-broker cluster needs.

use crate::cache;
use crate::net::{free_port, wait_for_port};
use crate::process::ManagedChild;
use anyhow::Context;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct KafkaServer {
    pub bootstrap: String,
    pub process: ManagedChild,
}

impl KafkaServer {
    /// Formats a fresh log directory under `dir` and starts the broker.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let libs = cache::kafka_libs()?;
        let port = free_port()?;
        let controller = free_port()?;
        let data = dir.join("kafka-data");
        std::fs::create_dir_all(&data)?;
        let config = dir.join("kafka.properties");
        std::fs::write(
            &config,
            format!(
                "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
        let java = cache::java();
        let format = Command::new(&java)
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
        let mut cmd = Command::new(&java);
        cmd.args(["-Xms256m", "-Xmx768m", "-XX:+ExitOnOutOfMemoryError"])
            .args([
                "-cp",
                &classpath,
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            ])
            .arg("kafka.Kafka")
            .arg(&config);
        let mut process = ManagedChild::spawn("kafka", cmd, &dir.join("kafka.log"))?;
        let addr = format!("127.0.0.1:{port}").parse()?;
        wait_for_port(addr, Duration::from_secs(90), || process.check_alive())?;
        Ok(Self {
            bootstrap: format!("127.0.0.1:{port}"),
            process,
        })
    }
}
