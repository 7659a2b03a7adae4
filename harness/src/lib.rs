//! The local stack Sluice runs and is tested on: Apache Kafka and Apache
//! Cassandra installed from Maven Central, coordinators and workers from this
//! workspace, all on 127.0.0.1. The `devstack` binary, the end-to-end tests and
//! the benchmarks share this launcher.

pub mod admin;
pub mod cache;
pub mod cassandra;
pub mod chaos;
pub mod checks;
pub mod cluster;
pub mod datagen;
pub mod kafka;
pub mod minio;
pub mod net;
pub mod process;
pub mod prometheus;
pub mod pytools;
pub mod stack;
pub mod testing;
pub mod tls;

pub use cluster::SluiceCluster;
pub use stack::{DevStack, StackOptions};
