//! Sources and sinks, one folder per system. Each is built from its validated
//! spec by an async `build`, which checks the system is reachable.

pub mod blackhole;
pub mod cassandra;
pub mod kafka;
pub mod s3;
pub mod sink;

pub use sink::SinkWriter;
