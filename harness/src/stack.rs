//! The whole local stack: what `devstack up` starts.

use crate::cassandra::CassandraServer;
use crate::cluster::{ClusterOptions, SluiceCluster};
use crate::kafka::KafkaServer;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    pub workers: usize,
    /// Use this broker instead of starting Kafka.
    pub kafka: Option<String>,
    /// Use this Cassandra instead of starting one.
    pub cassandra: Option<String>,
    pub no_cassandra: bool,
    /// Start Kafka and Cassandra only.
    pub no_sluice: bool,
    pub cluster: ClusterOptions,
}

pub struct DevStack {
    pub kafka_broker: String,
    pub cassandra_host: Option<String>,
    pub cluster: Option<SluiceCluster>,
    pub dir: PathBuf,
    // Dropped last: Sluice stops before the systems it talks to.
    _kafka: Option<KafkaServer>,
    _cassandra: Option<CassandraServer>,
}

impl DevStack {
    pub async fn start(dir: PathBuf, options: StackOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let (kafka, kafka_broker) = match options.kafka {
            Some(b) => (None, b),
            None => {
                eprintln!("starting Kafka...");
                let k = KafkaServer::start(&dir)?;
                let b = k.bootstrap.clone();
                (Some(k), b)
            }
        };
        let (cassandra, cassandra_host) = match (options.cassandra, options.no_cassandra) {
            (Some(c), _) => (None, Some(c)),
            (None, true) => (None, None),
            (None, false) => {
                eprintln!("starting Cassandra...");
                let c = CassandraServer::start(&dir)?;
                let a = c.address.clone();
                (Some(c), Some(a))
            }
        };
        let cluster = if options.no_sluice {
            None
        } else {
            eprintln!("starting coordinator and {} worker(s)...", options.workers);
            Some(SluiceCluster::start(&dir.join("sluice"), options.workers, options.cluster).await?)
        };
        Ok(Self {
            kafka_broker,
            cassandra_host,
            cluster,
            dir,
            _kafka: kafka,
            _cassandra: cassandra,
        })
    }

    /// The `NAME=VALUE` lines `devstack up` prints.
    pub fn addresses(&self) -> Vec<(String, String)> {
        let mut out = vec![("KAFKA_BROKER".to_string(), self.kafka_broker.clone())];
        if let Some(c) = &self.cassandra_host {
            out.push(("CASSANDRA_HOST".into(), c.clone()));
        }
        if let Some(cl) = &self.cluster {
            out.push(("SLUICE_COORDINATOR".into(), cl.coordinator_address.clone()));
        }
        out
    }
}
