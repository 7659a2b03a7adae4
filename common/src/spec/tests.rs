use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "KAFKA_BROKER" => Some("127.0.0.1:9092".into()),
        "CASSANDRA_HOST" => Some("127.0.0.1".into()),
        _ => None,
    }
}

const VALID: &str = r#"
name: user-events-to-cassandra
parallelism: 3
delivery: exactly_once
checkpoint: { interval: 5s }
source:
  kafka: { brokers: "${KAFKA_BROKER}", topic: user-events, group_id: sluice-user-events, format: json }
transforms:
  - remap: |
      .bucket_date = format_timestamp!(parse_timestamp!(.event_time, "%+"), "%F")
  - key_by: [user_id]
sink:
  cassandra: { contact_points: ["${CASSANDRA_HOST}:9042"], keyspace: event_streaming, table: user_events }
dead_letter:
  kafka: { topic: user-events-dlq }
"#;

fn problems(text: &str) -> Vec<SpecProblem> {
    match JobSpec::parse(text, &env) {
        Ok(spec) => panic!("expected problems, parsed {spec:?}"),
        Err(e) => e.problems(),
    }
}

fn has(problems: &[SpecProblem], path: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.path == path && p.message.contains(needle))
}

#[test]
fn parses_the_design_example() {
    let spec = JobSpec::parse(VALID, &env).expect("valid spec");
    assert_eq!(spec.parallelism, 3);
    assert_eq!(spec.delivery, Delivery::ExactlyOnce);
    assert_eq!(spec.checkpoint.interval, Duration::from_secs(5));
    assert_eq!(spec.checkpoint.retained, 3);
    assert_eq!(spec.restart, RestartSpec::default());
    let SourceSpec::Kafka(k) = &spec.source;
    assert_eq!(k.brokers, "127.0.0.1:9092");
    assert_eq!(spec.stage_count(), 2);
    let (chain0, key0) = spec.stage_plan(0);
    assert_eq!(chain0.len(), 1);
    assert_eq!(key0, Some(&["user_id".to_string()][..]));
    let (chain1, key1) = spec.stage_plan(1);
    assert!(chain1.is_empty() && key1.is_none());
}

#[test]
fn timezone_is_utc_unless_named_and_an_unknown_zone_is_refused() {
    let spec = JobSpec::parse(VALID, &env).expect("valid spec");
    assert_eq!(spec.timezone, chrono_tz::UTC);
    let named = format!("{VALID}timezone: America/New_York\n");
    let spec = JobSpec::parse(&named, &env).expect("valid spec");
    assert_eq!(spec.timezone, chrono_tz::America::New_York);
    let again = JobSpec::parse_resolved(&spec.to_json()).expect("round trip");
    assert_eq!(again.timezone, chrono_tz::America::New_York);
    for bad in ["Mars/Olympus", "local"] {
        let p = problems(&format!("{VALID}timezone: {bad}\n"));
        assert!(has(&p, "timezone", "unknown time zone"), "{p:?}");
    }
}

#[test]
fn canonical_json_round_trips() {
    let spec = JobSpec::parse(VALID, &env).expect("valid spec");
    let again = JobSpec::parse_resolved(&spec.to_json()).expect("canonical form parses");
    assert_eq!(spec, again);
}

#[test]
fn json_specs_are_accepted() {
    let json = r#"{"name": "j", "source": {"kafka": {"brokers": "b:1", "topic": "t"}},
                   "sink": {"kafka": {"brokers": "b:1", "topic": "out"}}}"#;
    let spec = JobSpec::parse(json, &env).expect("valid JSON spec");
    assert_eq!(spec.parallelism, 1);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let text = r#"
name: broken
parallelism: 0
checkpoint: { interval: soon }
transforms:
  - remap: |
      .a = 1
      .b = parse_json(.c)
  - explode: {}
sink:
  kafka: { brokers: "b:1", topic: out, compression: zstd }
"#;
    let p = problems(text);
    assert!(has(&p, "source", "is required"), "{p:?}");
    assert!(has(&p, "parallelism", "at least 1"), "{p:?}");
    assert!(has(&p, "checkpoint.interval", "not a duration"), "{p:?}");
    assert!(
        has(&p, "transforms[1].explode", "unknown kind `explode`"),
        "{p:?}"
    );
    assert!(
        has(&p, "sink.kafka.compression", "unknown option `compression`"),
        "{p:?}"
    );
    #[cfg(feature = "vrl")]
    assert!(has(&p, "transforms[0].remap", "line 2"), "{p:?}");
}

#[test]
fn unresolved_env_reference_is_a_problem() {
    let text = VALID.replace("${CASSANDRA_HOST}", "${NO_SUCH_HOST}");
    let p = problems(&text);
    assert!(
        has(&p, "sink.cassandra.contact_points[0]", "NO_SUCH_HOST"),
        "{p:?}"
    );
}

#[test]
fn bad_values_are_named() {
    let text = r#"
name: "bad name!"
delivery: sometimes
checkpoint: { interval: 10ms }
source: { kafka: { brokers: "b:1", topic: t, format: xml } }
sink: { cassandra: { keyspace: k, table: t, batch_size: 0 } }
dead_letter: { kafka: {} }
"#;
    let p = problems(text);
    assert!(has(&p, "name", "may only hold"), "{p:?}");
    assert!(has(&p, "delivery", "unknown delivery"), "{p:?}");
    assert!(has(&p, "checkpoint.interval", "at least 100ms"), "{p:?}");
    assert!(has(&p, "source.kafka.format", "unknown format"), "{p:?}");
    assert!(
        has(&p, "sink.cassandra.contact_points", "is required"),
        "{p:?}"
    );
    assert!(
        has(&p, "sink.cassandra.batch_size", "between 1 and"),
        "{p:?}"
    );
    assert!(has(&p, "dead_letter.kafka.topic", "is required"), "{p:?}");
}

#[test]
fn checkpoints_can_be_turned_off_but_not_for_exactly_once() {
    let base = r#"{"name": "j", "source": {"kafka": {"brokers": "b:1", "topic": "t"}},
                   "sink": {"kafka": {"brokers": "b:1", "topic": "out"}}, "checkpoint": "off""#;
    let spec = JobSpec::parse(&format!("{base}}}"), &env).expect("off is valid");
    assert!(!spec.checkpoint.enabled);
    let again = JobSpec::parse_resolved(&spec.to_json()).expect("canonical form parses");
    assert!(!again.checkpoint.enabled, "off survives the canonical form");
    let p = problems(&format!(r#"{base}, "delivery": "exactly_once"}}"#));
    assert!(has(&p, "checkpoint", "needs checkpoints"), "{p:?}");
}

#[test]
fn restart_backoff_grows_to_its_cap() {
    let r = RestartSpec {
        max_attempts: 5,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(350),
    };
    assert_eq!(r.backoff_for(1), Duration::from_millis(100));
    assert_eq!(r.backoff_for(2), Duration::from_millis(200));
    assert_eq!(r.backoff_for(3), Duration::from_millis(350));
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        JobSpec::parse("name: [unclosed", &env),
        Err(SpecError::Syntax(_))
    ));
}

#[test]
fn partition_discovery_is_on_by_default_can_be_set_or_turned_off() {
    let with = |discovery: &str| {
        format!(
            r#"{{"name": "j", "source": {{"kafka": {{"brokers": "b:1", "topic": "t"{discovery}}}}},
                "sink": {{"kafka": {{"brokers": "b:1", "topic": "out"}}}}}}"#
        )
    };
    let discovery = |text: &str| {
        let spec = JobSpec::parse(text, &env).expect("valid spec");
        let again = JobSpec::parse_resolved(&spec.to_json()).expect("canonical form parses");
        let SourceSpec::Kafka(k) = &again.source;
        k.partition_discovery
    };
    assert_eq!(discovery(&with("")), Some(DEFAULT_PARTITION_DISCOVERY));
    assert_eq!(
        discovery(&with(r#", "partition_discovery": "2s""#)),
        Some(Duration::from_secs(2))
    );
    assert_eq!(discovery(&with(r#", "partition_discovery": "off""#)), None);
    assert_eq!(discovery(&with(r#", "partition_discovery": false"#)), None);
    let p = problems(&with(r#", "partition_discovery": "100ms""#));
    assert!(
        has(&p, "source.kafka.partition_discovery", "at least 1s"),
        "{p:?}"
    );
    let p = problems(&with(r#", "partition_discovery": "often""#));
    assert!(
        has(&p, "source.kafka.partition_discovery", "not a duration"),
        "{p:?}"
    );
}

#[test]
fn a_key_written_twice_is_refused_at_its_path_on_either_side() {
    let twice = "name: j\nparallelism: 1\nsource: { kafka: { brokers: b, topic: t } }\n\
                 sink: { kafka: { brokers: b, topic: o, topic: p } }\nparallelism: 2\n";
    let p = problems(twice);
    assert!(has(&p, "sink.kafka.topic", "more than once"), "{p:?}");
    assert!(has(&p, "parallelism", "more than once"), "{p:?}");
    assert_eq!(p.len(), 2, "{p:?}");
    // The client refuses it before its JSON (which keeps one value) is sent.
    let e = resolve_client_side(twice, &env).expect_err("refused");
    assert!(
        has(&e.problems(), "sink.kafka.topic", "more than once"),
        "{e}"
    );
    let seed = r#"{"jobId": "j", "jobId": "k", "mode": "STREAMING"}"#;
    assert!(has(&problems(seed), "jobId", "more than once"));
}

#[test]
fn long_job_names_are_refused_at_name_quoted_short() {
    let long = "n".repeat(100_000);
    let p = problems(&VALID.replace("user-events-to-cassandra", &long));
    assert!(
        has(
            &p,
            "name",
            "100000 characters long; a job name has at most 120"
        ),
        "{p:?}"
    );
    assert!(p.iter().all(|q| q.message.len() < 300), "{p:?}");
    let at_most = "n".repeat(MAX_NAME_LEN);
    assert!(JobSpec::parse(&VALID.replace("user-events-to-cassandra", &at_most), &env).is_ok());
}

#[test]
fn deeply_nested_specs_are_refused_before_parsing() {
    let deep = format!(
        "{VALID}extra: {}{}\n",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let e = JobSpec::parse(&deep, &env)
        .expect_err("too deep")
        .to_string();
    assert!(e.contains("nests deeper than 64 levels"), "{e}");
}
