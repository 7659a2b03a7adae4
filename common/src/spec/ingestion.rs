//! Seed 004's job configuration, taken as it is: a JSON document naming a
//! Kafka source and an S3 sink the way that platform's users wrote them
//! (`jobId`, `source.kafkaIngestionUnit`, `sink.s3DeliveryUnit`), read into
//! the equivalent Sluice spec. Every field is read or refused at its own
//! path; nothing is silently ignored.
//!
//! ```json
//! {"jobId": "kafka-to-s3-job-001", "mode": "STREAMING",
//!  "source": {"type": "KAFKA", "bootstrapServers": "localhost:9092",
//!             "kafkaIngestionUnit": {"topic": "clickstream_data", "groupId": "flink-consumer-group-1"}},
//!  "sink": {"type": "S3", "bucketName": "clickstream",
//!           "s3DeliveryUnit": {"region": "us-east-1", "endpoint": "http://localhost:4566",
//!                              "pathPrefix": "raw-data/", "batchInterval": "60"}}}
//! ```

use super::reader::{Obj, Problems, render};
use serde_json::{Value, json};

/// Where each field of the Sluice spec comes from in an ingestion
/// configuration, so problems found in the Sluice spec (a topic that does
/// not exist, a name with spaces) are reported where the user wrote them.
const PATHS: &[(&str, &str)] = &[
    ("name", "jobId"),
    ("parallelism", "parallelism"),
    ("source.kafka.brokers", "source.bootstrapServers"),
    ("source.kafka.topic", "source.kafkaIngestionUnit.topic"),
    ("source.kafka.group_id", "source.kafkaIngestionUnit.groupId"),
    ("source.kafka", "source"),
    ("sink.s3.bucket", "sink.bucketName"),
    ("sink.s3.region", "sink.s3DeliveryUnit.region"),
    ("sink.s3.endpoint", "sink.s3DeliveryUnit.endpoint"),
    ("sink.s3.prefix", "sink.s3DeliveryUnit.pathPrefix"),
    (
        "sink.s3.batch_interval",
        "sink.s3DeliveryUnit.batchInterval",
    ),
    ("sink.s3", "sink"),
];

/// The field each record's time is read from for its `dt=/hour=` directory:
/// both event kinds of seed 004 (clickstream, CDC) carry it.
const TIME_FIELD: &str = "timestamp";

/// Whether `tree` is an ingestion configuration rather than a Sluice spec:
/// it names its job with `jobId`, a field Sluice specs do not have.
pub(crate) fn is_ingestion_config(tree: &Value) -> bool {
    tree.get("jobId").is_some()
}

/// The path in the ingestion configuration of a field of the Sluice spec
/// read from it: the longest known prefix is replaced.
pub(crate) fn config_path(spec_path: &str) -> String {
    for (spec, config) in PATHS {
        if spec_path == *spec {
            return (*config).to_string();
        }
        if let Some(rest) = spec_path.strip_prefix(spec)
            && rest.starts_with('.')
        {
            return format!("{config}{rest}");
        }
    }
    spec_path.to_string()
}

/// Reads an ingestion configuration into the tree of the equivalent Sluice
/// spec: exactly once, JSON records, the S3 sink writing JSON lines under
/// `dt=YYYY-MM-DD/hour=HH` of each record's `timestamp`. Problems are
/// reported at the configuration's own paths; what is missing or refused is
/// left out of the tree, so the Sluice spec's own checks still run on the rest.
pub(crate) fn to_spec_tree(tree: &Value, p: &mut Problems) -> Value {
    let mut spec = json!({ "delivery": "exactly_once" });
    let Some(mut job) = Obj::new("", tree, p).map(Obj::typed) else {
        return spec;
    };
    if let Some(name) = job.string("jobId", p) {
        spec["name"] = name.into();
    }
    let mode = job.string("mode", p);
    if let Some(mode) = mode
        .as_deref()
        .filter(|m| !m.eq_ignore_ascii_case("streaming"))
    {
        p.push(
            "mode",
            format!("`{mode}` is not supported: Sluice runs STREAMING jobs only"),
        );
    }
    if let Some(parallelism) = job.get("parallelism") {
        spec["parallelism"] = parallelism.clone();
    }
    if let Some(source) = job.required("source", p).and_then(|v| read_source(v, p)) {
        spec["source"] = source;
    }
    if let Some(sink) = job.required("sink", p).and_then(|v| read_sink(v, p)) {
        spec["sink"] = sink;
    }
    job.finish(p);
    spec
}

/// `type` of a source or sink: only `expected` is supported.
fn check_type(o: &mut Obj<'_>, expected: &str, what: &str, p: &mut Problems) {
    if let Some(t) = o
        .string("type", p)
        .filter(|t| !t.eq_ignore_ascii_case(expected))
    {
        p.push(
            &o.path_of("type"),
            format!("{what} type `{t}` is not supported (expected {expected})"),
        );
    }
}

fn read_source(v: &Value, p: &mut Problems) -> Option<Value> {
    let mut o = Obj::new("source", v, p)?.typed();
    check_type(&mut o, "KAFKA", "source", p);
    let mut kafka = json!({ "format": "json" });
    if let Some(brokers) = o.string("bootstrapServers", p) {
        kafka["brokers"] = brokers.into();
    }
    let unit = o
        .required("kafkaIngestionUnit", p)
        .and_then(|v| Obj::new("source.kafkaIngestionUnit", v, p))
        .map(Obj::typed);
    if let Some(mut unit) = unit {
        if let Some(topic) = unit.string("topic", p) {
            kafka["topic"] = topic.into();
        }
        if let Some(group_id) = unit.opt_string("groupId", p) {
            kafka["group_id"] = group_id.into();
        }
        unit.finish(p);
    }
    o.finish(p);
    Some(json!({ "kafka": kafka }))
}

fn read_sink(v: &Value, p: &mut Problems) -> Option<Value> {
    let mut o = Obj::new("sink", v, p)?.typed();
    check_type(&mut o, "S3", "sink", p);
    let mut sink = json!({ "path": super::DEFAULT_S3_PATH, "time_field": TIME_FIELD });
    if let Some(bucket) = o.string("bucketName", p) {
        sink["bucket"] = bucket.into();
    }
    let unit = o
        .required("s3DeliveryUnit", p)
        .and_then(|v| Obj::new("sink.s3DeliveryUnit", v, p))
        .map(Obj::typed);
    if let Some(mut unit) = unit {
        for (key, field) in [
            ("region", "region"),
            ("endpoint", "endpoint"),
            ("pathPrefix", "prefix"),
        ] {
            if let Some(value) = unit.opt_string(key, p) {
                sink[field] = value.into();
            }
        }
        let interval_path = unit.path_of("batchInterval");
        if let Some(v) = unit.get("batchInterval") {
            match batch_interval(v) {
                Some(interval) => sink["batch_interval"] = interval.into(),
                None => p.push(
                    &interval_path,
                    format!(
                        "expected seconds (such as \"60\") or a duration (such as \"60s\"), found {}",
                        render(v)
                    ),
                ),
            }
        }
        unit.finish(p);
    }
    o.finish(p);
    Some(json!({ "s3": sink }))
}

/// `batchInterval` as the platform took it, whole seconds as a number or
/// text, or a duration with its unit; as a Sluice duration.
fn batch_interval(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_u64().filter(|s| *s > 0).map(|s| format!("{s}s")),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(0) => None,
                Ok(seconds) => Some(format!("{seconds}s")),
                Err(_) => humantime::parse_duration(s).ok().map(|_| s.to_string()),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::JobSpec;
    use crate::spec::{Delivery, S3Target, SinkSpec, SourceSpec};
    use std::time::Duration;

    /// The job configuration example of seed 004's README, as written there.
    const SEED: &str = include_str!("../../../deploy/jobs/kafka-to-s3-job-001.json");

    fn problems(text: &str) -> Vec<(String, String)> {
        match JobSpec::parse_resolved(text) {
            Ok(spec) => panic!("expected problems, parsed {spec:?}"),
            Err(e) => e
                .problems()
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect(),
        }
    }

    #[test]
    fn the_seed_configuration_reads_as_the_equivalent_sluice_job() {
        let spec = JobSpec::parse_resolved(SEED).expect("the seed's configuration is valid");
        assert_eq!(spec.name, "kafka-to-s3-job-001");
        assert_eq!(spec.delivery, Delivery::ExactlyOnce);
        assert_eq!(spec.parallelism, 1);
        let SourceSpec::Kafka(k) = &spec.source;
        assert_eq!(k.brokers, "localhost:9092");
        assert_eq!(k.topic, "clickstream_data");
        assert_eq!(k.group_id.as_deref(), Some("flink-consumer-group-1"));
        let SinkSpec::S3(s3) = &spec.sink else {
            panic!("an S3 sink: {:?}", spec.sink)
        };
        assert_eq!(s3.target, S3Target::Bucket("clickstream".into()));
        assert_eq!(s3.region.as_deref(), Some("us-east-1"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://localhost:4566"));
        assert_eq!(s3.prefix, "raw-data");
        assert_eq!(s3.path, "dt=%Y-%m-%d/hour=%H");
        assert_eq!(s3.time_field.as_deref(), Some("timestamp"));
        assert_eq!(s3.batch_interval, Duration::from_secs(60));
        // Stored as its Sluice form, which reads back the same.
        let again = JobSpec::parse_resolved(&spec.to_json()).expect("its Sluice form");
        assert_eq!(again, spec);
    }

    #[test]
    fn unknown_and_unsupported_fields_are_refused_at_their_path() {
        let mut tree: serde_json::Value = serde_json::from_str(SEED).expect("JSON");
        tree["mode"] = "BATCH".into();
        tree["source"]["type"] = "KINESIS".into();
        tree["source"]["kafkaIngestionUnit"]["startingOffsets"] = "latest".into();
        tree["sink"]["s3DeliveryUnit"]["batchInterval"] = "soon".into();
        tree["sink"]["format"] = "parquet".into();
        tree["owner"] = "data-team".into();
        let found = problems(&tree.to_string());
        let at =
            |path: &str, needle: &str| found.iter().any(|(p, m)| p == path && m.contains(needle));
        assert!(at("mode", "`BATCH` is not supported"), "{found:?}");
        assert!(at("source.type", "`KINESIS` is not supported"), "{found:?}");
        assert!(
            at(
                "source.kafkaIngestionUnit.startingOffsets",
                "unknown option"
            ),
            "{found:?}"
        );
        assert!(
            at("sink.s3DeliveryUnit.batchInterval", "expected seconds"),
            "{found:?}"
        );
        assert!(at("sink.format", "unknown option"), "{found:?}");
        assert!(at("owner", "unknown option"), "{found:?}");
        assert_eq!(found.len(), 6, "{found:?}");
    }

    #[test]
    fn wrong_types_are_refused_at_their_path_and_nowhere_else() {
        let mut tree: serde_json::Value = serde_json::from_str(SEED).expect("JSON");
        tree["jobId"] = 1.into();
        tree["mode"] = 2.into();
        tree["source"]["bootstrapServers"] = 9092.into();
        tree["source"]["kafkaIngestionUnit"]["topic"] = 42.into();
        tree["source"]["kafkaIngestionUnit"]["groupId"] = 7.into();
        tree["sink"]["bucketName"] = 5.into();
        tree["sink"]["s3DeliveryUnit"]["region"] = true.into();
        tree["sink"]["s3DeliveryUnit"]["pathPrefix"] = serde_json::json!(["raw"]);
        let found = problems(&tree.to_string());
        let mut paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            vec![
                "jobId",
                "mode",
                "sink.bucketName",
                "sink.s3DeliveryUnit.pathPrefix",
                "sink.s3DeliveryUnit.region",
                "source.bootstrapServers",
                "source.kafkaIngestionUnit.groupId",
                "source.kafkaIngestionUnit.topic",
            ],
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .all(|(_, m)| m.starts_with("expected a string")),
            "{found:?}"
        );
    }

    #[test]
    fn problems_of_the_sluice_job_are_named_at_the_configuration_path() {
        let mut tree: serde_json::Value = serde_json::from_str(SEED).expect("JSON");
        tree["jobId"] = "kafka to s3".into();
        tree["source"]["kafkaIngestionUnit"]
            .as_object_mut()
            .expect("object")
            .remove("topic");
        let found = problems(&tree.to_string());
        assert!(
            found
                .iter()
                .any(|(p, m)| p == "jobId" && m.contains("letters, digits")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|(p, m)| p == "source.kafkaIngestionUnit.topic" && m == "is required"),
            "{found:?}"
        );
        assert_eq!(
            super::config_path("sink.s3.batch_interval"),
            "sink.s3DeliveryUnit.batchInterval"
        );
    }
}
