//! What a job spec is checked against at submission, beyond its own
//! validity: what only the running systems can tell (the topics exist, the
//! broker takes the spec's client settings and transaction timeout, a
//! compacted output gets keys). Every problem names its field.

use crate::error::CoordinatorError;
use crate::kafka_meta;
use sluice_common::kafka_txn;
use sluice_common::secrets::KAFKA_SECRET_PROPERTIES;
use sluice_common::spec;
use sluice_common::spec::{Delivery, SinkSpec, SourceSpec};
use sluice_common::{Fault, JobSpec, SpecError, SpecProblem};

const MAX_TIMEOUT: &str = "transaction.max.timeout.ms";

/// What the checks of the running systems found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Problems of the spec, each at its field path.
    pub problems: Vec<SpecProblem>,
    /// Systems that did not answer, each at the path of the field naming it.
    pub unanswered: Vec<SpecProblem>,
}

impl Findings {
    /// Files a topic lookup's error: a broker that did not answer (an
    /// external fault) under `unanswered` at `brokers_path`, the field
    /// naming it; anything else as a problem of the spec at `topic_path`.
    pub fn add(&mut self, topic_path: &str, brokers_path: &str, e: &CoordinatorError) {
        let external = e.fault() == Fault::External;
        let found = SpecProblem {
            path: if external { brokers_path } else { topic_path }.into(),
            message: e.to_string(),
        };
        match external {
            true => self.unanswered.push(found),
            false => self.problems.push(found),
        }
    }

    pub fn extend(&mut self, other: Findings) {
        self.problems.extend(other.problems);
        self.unanswered.extend(other.unanswered);
    }

    /// The error to answer a submit with, its paths those of `spec_json`
    /// (the spec as submitted): problems of the spec (with the systems that
    /// did not answer among them) refuse it for good; systems that did not
    /// answer alone are worth a retry. `None` when nothing was found.
    pub fn into_error(self, spec_json: &str) -> Option<CoordinatorError> {
        let at_paths = |found| spec::in_submitted_terms(spec_json, found);
        if !self.problems.is_empty() {
            let mut all = self.problems;
            all.extend(self.unanswered);
            return Some(SpecError::Invalid(at_paths(all)).into());
        }
        (!self.unanswered.is_empty())
            .then(|| CoordinatorError::Unavailable(at_paths(self.unanswered)))
    }
}

/// Checks what only the running systems can tell: that the topics exist.
/// Returns the source topic's partition count (0 when it was not read) and
/// what was found.
pub async fn check_topics(spec: &JobSpec) -> (i32, Findings) {
    let SourceSpec::Kafka(source) = &spec.source;
    let mut found = Findings::default();
    // (topic path, brokers path, brokers, topic), the source's first.
    let mut topics = vec![(
        "source.kafka.topic",
        "source.kafka.brokers",
        source.brokers.clone(),
        source.topic.clone(),
    )];
    if let SinkSpec::Kafka(k) = &spec.sink {
        topics.push((
            "sink.kafka.topic",
            "sink.kafka.brokers",
            k.brokers.clone(),
            k.topic.clone(),
        ));
    }
    if let Some(dl) = &spec.dead_letter {
        let (brokers_path, brokers) = match &dl.kafka.brokers {
            Some(b) => ("dead_letter.kafka.brokers", b.clone()),
            None => ("source.kafka.brokers", source.brokers.clone()),
        };
        topics.push((
            "dead_letter.kafka.topic",
            brokers_path,
            brokers,
            dl.kafka.topic.clone(),
        ));
    }
    // Together: a broker that does not answer costs its timeout once, not
    // once per topic.
    let counts = futures::future::join_all(
        topics
            .iter()
            .map(|(_, _, brokers, topic)| kafka_meta::partition_count(brokers, topic)),
    )
    .await;
    let mut partitions = 0;
    for (i, ((topic_path, brokers_path, _, _), count)) in topics.iter().zip(counts).enumerate() {
        match count {
            Ok(n) if i == 0 => partitions = n,
            Ok(_) => {}
            Err(e) => found.add(topic_path, brokers_path, &e),
        }
    }
    found.problems.extend(check_client_properties(spec).await);
    found.problems.extend(check_keys_for_compaction(spec).await);
    if found.problems.is_empty() && found.unanswered.is_empty() {
        found.problems.extend(check_transaction_timeout(spec).await);
    }
    (partitions, found)
}

/// A compacted output topic refuses every message without a key: a Kafka
/// sink writing to one must name the field its keys come from.
async fn check_keys_for_compaction(spec: &JobSpec) -> Option<SpecProblem> {
    let SinkSpec::Kafka(sink) = &spec.sink else {
        return None;
    };
    if sink.key_field.is_some() {
        return None;
    }
    let policy = kafka_meta::topic_config(&sink.brokers, &sink.topic, "cleanup.policy")
        .await
        .ok()
        .flatten()?;
    policy.contains("compact").then(|| SpecProblem {
        path: "sink.kafka.key_field".into(),
        message: format!(
            "topic `{}` is compacted (cleanup.policy={policy}) and refuses messages without a \
             key: name the record field the key comes from",
            sink.topic
        ),
    })
}

/// Every librdkafka setting the spec passes through is one the client
/// takes: refused at submit, each at its own path, rather than a job
/// that cannot create its clients. Secret settings hold only a reference
/// here (workers resolve them), so they are left for the workers' clients
/// to check.
async fn check_client_properties(spec: &JobSpec) -> Vec<SpecProblem> {
    use kafka_meta::ClientKind::{Consumer, Producer};
    let SourceSpec::Kafka(source) = &spec.source;
    let mut clients = vec![(
        "source.kafka.properties",
        source.brokers.clone(),
        Consumer,
        source.properties.clone(),
    )];
    if let SinkSpec::Kafka(k) = &spec.sink {
        clients.push((
            "sink.kafka.properties",
            k.brokers.clone(),
            Producer,
            k.properties.clone(),
        ));
    }
    if let Some(dl) = &spec.dead_letter {
        clients.push((
            "dead_letter.kafka.properties",
            dl.kafka.brokers.clone().unwrap_or(source.brokers.clone()),
            Producer,
            dl.kafka.properties.clone(),
        ));
    }
    let mut problems = Vec::new();
    for (path, brokers, kind, mut properties) in clients {
        properties.retain(|key, _| !KAFKA_SECRET_PROPERTIES.contains(&key.as_str()));
        for (key, reason) in kafka_meta::refused_properties(&brokers, kind, &properties).await {
            problems.push(SpecProblem {
                path: format!("{path}.{key}"),
                message: format!("librdkafka refuses it: {reason}"),
            });
        }
    }
    problems
}

/// An exactly-once Kafka sink's transactions must fit the broker's
/// `transaction.max.timeout.ms`, or the broker refuses every one of them
/// once the job runs. A broker that does not tell its settings (no
/// DescribeConfigs permission, say) is given the benefit of the doubt.
async fn check_transaction_timeout(spec: &JobSpec) -> Option<SpecProblem> {
    let SinkSpec::Kafka(sink) = &spec.sink else {
        return None;
    };
    if spec.delivery != Delivery::ExactlyOnce {
        return None;
    }
    let path = format!("sink.kafka.properties.{}", kafka_txn::TRANSACTION_TIMEOUT);
    let timeout = match kafka_txn::transaction_timeout_ms(&sink.properties) {
        Ok(ms) => ms,
        Err(message) => return Some(SpecProblem { path, message }),
    };
    let max = match kafka_meta::broker_config(&sink.brokers, &sink.topic, MAX_TIMEOUT).await {
        Ok(Some(value)) => value.trim().parse::<u64>().ok()?,
        Ok(None) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "transaction timeout not checked against the broker");
            return None;
        }
    };
    let whose = if sink.properties.contains_key(kafka_txn::TRANSACTION_TIMEOUT) {
        "set in the spec"
    } else {
        "Sluice's default"
    };
    (timeout > max).then(|| SpecProblem {
        path,
        message: format!(
            "transaction.timeout.ms is {timeout} ({whose}), above the broker's {MAX_TIMEOUT} of \
             {max}, so the broker would refuse every transaction of the sink: set \
             sink.kafka.properties.transaction.timeout.ms to at most {max}, or raise \
             {MAX_TIMEOUT} on the brokers"
        ),
    })
}
