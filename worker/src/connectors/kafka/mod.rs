mod dead_letter;
mod deliveries;
mod detached_drop;
mod sink;
mod source;
mod transactional_sink;

pub use dead_letter::DeadLetterWriter;
use detached_drop::DetachedDrop;
pub use sink::KafkaSink;
pub use source::{KafkaSource, RawMessage};
pub use transactional_sink::TransactionalKafkaSink;

use crate::error::WorkerError;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;

/// A client config with Sluice's `defaults`, then the user's `properties` over them.
pub(crate) fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        config.set(*k, *v);
    }
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Whether a produce error is the record's own fault (too large, say), so the
/// record goes to the dead-letter topic and the job goes on.
pub(crate) fn is_record_error(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        e.rdkafka_error_code(),
        Some(MessageSizeTooLarge | InvalidRecord | InvalidMessageSize | InvalidMessage)
    )
}

pub(crate) fn kafka_err(
    what: impl Into<String>,
    brokers: &str,
) -> impl FnOnce(rdkafka::error::KafkaError) -> WorkerError {
    let what = what.into();
    let brokers = brokers.to_string();
    move |source| WorkerError::Kafka {
        what,
        brokers,
        source: Box::new(source),
    }
}
