//! The whole local stack: what `devstack up` starts.

use crate::cassandra::CassandraServer;
use crate::cluster::{ClusterOptions, SluiceCluster};
use crate::kafka::KafkaServer;
use crate::minio::MinioServer;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    pub workers: usize,
    /// Use this broker instead of starting Kafka.
    pub kafka: Option<String>,
    /// Use this Cassandra instead of starting one.
    pub cassandra: Option<String>,
    pub no_cassandra: bool,
    /// Do not start the S3-compatible server.
    pub no_s3: bool,
    /// Start Kafka and Cassandra only.
    pub no_sluice: bool,
    pub cluster: ClusterOptions,
}

pub struct DevStack {
    pub kafka_broker: String,
    pub cassandra_host: Option<String>,
    /// MinIO's endpoint, with the buckets of [`BUCKETS`] created.
    pub s3_endpoint: Option<String>,
    pub cluster: Option<SluiceCluster>,
    pub dir: PathBuf,
    // Dropped last: Sluice stops before the systems it talks to.
    _kafka: Option<KafkaServer>,
    _cassandra: Option<CassandraServer>,
    _minio: Option<MinioServer>,
}

/// The buckets `devstack` creates: one for tests and checkpoint stores, and
/// the one the shipped seed 004 jobs write to.
pub const BUCKETS: &[&str] = &["sluice", "clickstream"];

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
        let minio = if options.no_s3 {
            None
        } else {
            eprintln!("starting MinIO...");
            let m = MinioServer::start(&dir)?;
            for bucket in BUCKETS {
                m.create_bucket(bucket)?;
            }
            Some(m)
        };
        let cluster = if options.no_sluice {
            None
        } else {
            eprintln!("starting coordinator and {} worker(s)...", options.workers);
            let mut cluster = options.cluster;
            if let Some(m) = &minio {
                // S3 sinks find MinIO and its credentials in their environment.
                cluster.env.extend(crate::minio::client_env(&m.endpoint));
            }
            Some(SluiceCluster::start(&dir.join("sluice"), options.workers, cluster).await?)
        };
        Ok(Self {
            kafka_broker,
            cassandra_host,
            s3_endpoint: minio.as_ref().map(|m| m.endpoint.clone()),
            cluster,
            dir,
            _kafka: kafka,
            _cassandra: cassandra,
            _minio: minio,
        })
    }

    /// The `NAME=VALUE` lines `devstack up` prints.
    pub fn addresses(&self) -> Vec<(String, String)> {
        let mut out = vec![("KAFKA_BROKER".to_string(), self.kafka_broker.clone())];
        if let Some(c) = &self.cassandra_host {
            out.push(("CASSANDRA_HOST".into(), c.clone()));
        }
        if let Some(endpoint) = &self.s3_endpoint {
            // What S3 clients (the checkpoint store, the S3 sink, the AWS CLI)
            // read from the environment.
            out.extend(crate::minio::client_env(endpoint));
        }
        if let Some(cl) = &self.cluster {
            out.push(("SLUICE_COORDINATOR".into(), cl.coordinator_address.clone()));
            // The HTTP API and dashboard of the first coordinator; a follower
            // sends the browser on to the leader.
            out.push(("SLUICE_HTTP".into(), cl.http_url_of(0)));
            if let Some(tls) = cl.tls() {
                out.push((
                    "SLUICE_TLS_CA".into(),
                    tls.ca.to_string_lossy().into_owned(),
                ));
            }
            let metrics: Vec<String> = (0..cl.coordinator_count())
                .filter_map(|i| cl.coordinator_metrics_address(i))
                .chain((0..cl.worker_count()).filter_map(|i| cl.worker_metrics_address(i)))
                .collect();
            if !metrics.is_empty() {
                out.push(("SLUICE_METRICS".into(), metrics.join(",")));
            }
        }
        out
    }
}
