//! Bad job specs are refused whole, each problem named by its field, and
//! nothing is deployed.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::testing::{infra, jobctl, jobctl_json, test_dir, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_with_their_field_and_nothing_runs() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("invalid-specs");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let coordinator = cluster.coordinator_address.clone();
    let topic = unique("valid-topic");
    admin::create_topic(&infra.kafka, &topic, 1).await?;
    let source = format!(
        "source: {{ kafka: {{ brokers: \"{}\", topic: {topic} }} }}",
        infra.kafka
    );
    let sink = format!(
        "sink: {{ kafka: {{ brokers: \"{}\", topic: {topic} }} }}",
        infra.kafka
    );

    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "missing source",
            format!("name: a\n{sink}\n"),
            "source",
            "is required",
        ),
        (
            "unknown transform",
            format!("name: a\n{source}\ntransforms:\n  - explode: {{}}\n{sink}\n"),
            "transforms[0].explode",
            "unknown kind `explode`",
        ),
        (
            "VRL compile error",
            format!(
                "name: a\n{source}\ntransforms:\n  - remap: |\n      .a = 1\n      .b = parse_json(.c)\n{sink}\n"
            ),
            "transforms[0].remap",
            "line 2",
        ),
        (
            "bad duration",
            format!("name: a\ncheckpoint: {{ interval: soonish }}\n{source}\n{sink}\n"),
            "checkpoint.interval",
            "not a duration",
        ),
        (
            "parallelism 0",
            format!("name: a\nparallelism: 0\n{source}\n{sink}\n"),
            "parallelism",
            "at least 1",
        ),
        (
            "unknown sink option",
            format!(
                "name: a\n{source}\nsink: {{ kafka: {{ brokers: \"{}\", topic: {topic}, compresion: zstd }} }}\n",
                infra.kafka
            ),
            "sink.kafka.compresion",
            "unknown option",
        ),
        (
            "unset environment variable",
            format!(
                "name: a\nsource: {{ kafka: {{ brokers: \"${{NO_SUCH_BROKER_VAR}}\", topic: {topic} }} }}\n{sink}\n"
            ),
            "source.kafka.brokers",
            "NO_SUCH_BROKER_VAR",
        ),
        (
            "missing topic",
            format!(
                "name: a\nsource: {{ kafka: {{ brokers: \"{}\", topic: {} }} }}\n{sink}\n",
                infra.kafka,
                unique("absent")
            ),
            "source.kafka.topic",
            "does the topic exist",
        ),
    ];
    for (what, spec, path, needle) in &cases {
        let file = dir.join(format!("{}.yaml", unique("spec")));
        std::fs::write(&file, spec)?;
        let out = jobctl(
            &coordinator,
            &["submit", file.to_str().unwrap_or_default()],
            &[],
        )?;
        assert!(!out.success, "{what}: accepted");
        let err = out.stderr.trim();
        assert_eq!(
            err.lines().count(),
            1,
            "{what}: one line on stderr, got {err:?}"
        );
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(
            err.contains(&format!("{path}: ")),
            "{what}: field `{path}` not named in {err:?}"
        );
        assert!(err.contains(needle), "{what}: {needle:?} not in {err:?}");
    }

    // Several problems come back together, in one answer.
    let file = dir.join("many.yaml");
    std::fs::write(
        &file,
        "name: a\nparallelism: 0\ncheckpoint: { interval: later }\n",
    )?;
    let out = jobctl(
        &coordinator,
        &["submit", file.to_str().unwrap_or_default()],
        &[],
    )?;
    assert!(!out.success);
    for path in [
        "parallelism: ",
        "checkpoint.interval: ",
        "source: ",
        "sink: ",
    ] {
        assert!(
            out.stderr.contains(path),
            "{path} missing from {}",
            out.stderr
        );
    }

    let jobs = jobctl_json(&coordinator, &["list"])?;
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(0),
        "nothing was deployed: {jobs}"
    );
    let workers = jobctl_json(&coordinator, &["workers"])?;
    assert_eq!(workers[0]["used_slots"], 0, "{workers}");

    // An unreachable coordinator is one clear line and a failing exit code.
    let out = jobctl("127.0.0.1:1", &["list"], &[])?;
    assert!(!out.success);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("coordinator unreachable"),
        "{}",
        out.stderr
    );
    Ok(())
}
