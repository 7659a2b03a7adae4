//! What a topic or a file refuses is known before a record is sent: records
//! compressed with zstd are read and written, a keyless record for a
//! compacted topic is a dead letter (and a spec without key_field for one is
//! refused), a client setting librdkafka refuses is refused at submit with
//! its path, and a record read over several lines is one line in a file.

use serde_json::Value as Json;
use sluice_harness::admin::{self, RawRecord};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::testing::{
    files_under, infra, jobctl, jobctl_json, latest_checkpoint, submit, test_dir, unique, wait_for,
};
use std::time::Duration;

fn records(values: &[&str]) -> Vec<RawRecord> {
    values
        .iter()
        .map(|v| RawRecord {
            value: Some(v.as_bytes().to_vec()),
            ..Default::default()
        })
        .collect()
}

async fn wait_offset(c: &str, job: &str, offset: i64) -> anyhow::Result<()> {
    wait_for(
        &format!("{job} checkpointed offset {offset}"),
        Duration::from_secs(60),
        || async move { Ok((latest_checkpoint(c, job)?.1 >= offset).then_some(())) },
    )
    .await
}

async fn read(brokers: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    Ok(admin::read_topic(
        brokers,
        topic,
        usize::MAX,
        Duration::from_secs(3),
        Duration::from_secs(60),
        "read_committed",
    )
    .await?
    .into_iter()
    .map(|m| m.payload)
    .collect())
}

fn running_without_restarts(c: &str, job: &str) -> anyhow::Result<()> {
    let status = jobctl_json(c, &["status", job])?;
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_records_are_read_and_written() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("zstd");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, out) = (unique("zstd-in"), unique("zstd-out"));
    admin::create_topic(&infra.kafka, &input, 1).await?;
    admin::create_topic(&infra.kafka, &out, 1).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: zstd
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
sink: {{ kafka: {{ brokers: "{k}", topic: {out}, properties: {{ compression.type: zstd }} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    let values: Vec<String> = (0..50).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    admin::produce_raw_with(
        &infra.kafka,
        &input,
        &records(&refs),
        &[("compression.type", "zstd")],
    )
    .await?;
    wait_offset(&c, &job, 50).await?;
    assert_eq!(read(&infra.kafka, &out).await?, values);
    running_without_restarts(&c, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_record_for_a_compacted_topic_is_a_dead_letter() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("compacted");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let input = unique("compact-in");
    admin::create_topic(&infra.kafka, &input, 1).await?;
    admin::produce_raw(
        &infra.kafka,
        &input,
        &records(&[
            r#"{"id":"a"}"#,
            r#"{"n":2}"#,
            r#"{"id":null}"#,
            r#"{"id":"c"}"#,
        ]),
    )
    .await?;
    for delivery in ["at_least_once", "exactly_once"] {
        let (out, dlq) = (unique("compact-out"), unique("compact-dlq"));
        admin::create_topic_with(&infra.kafka, &out, 1, &[("cleanup.policy", "compact")]).await?;
        admin::create_topic(&infra.kafka, &dlq, 1).await?;
        let spec = |key_field: &str| {
            format!(
                r#"
name: compacted
delivery: {delivery}
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
sink: {{ kafka: {{ brokers: "{k}", topic: {out}{key_field} }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
                k = infra.kafka
            )
        };
        // Without a key_field, every message would be refused: the spec is.
        let path = dir.join(format!("{}.yaml", unique("nokey")));
        std::fs::write(&path, spec(""))?;
        let refused = jobctl(&c, &["submit", path.to_str().unwrap_or_default()], &[])?;
        assert!(!refused.success);
        assert!(
            refused.stderr.contains("sink.kafka.key_field") && refused.stderr.contains("compacted"),
            "{}",
            refused.stderr
        );
        let job = submit(&c, &dir, &spec(", key_field: id"), &[])?;
        wait_offset(&c, &job, 4).await?;
        let written = admin::read_topic(
            &infra.kafka,
            &out,
            usize::MAX,
            Duration::from_secs(3),
            Duration::from_secs(60),
            "read_committed",
        )
        .await?;
        let keys: Vec<Option<String>> = written.iter().map(|m| m.key.clone()).collect();
        assert_eq!(keys, vec![Some("a".into()), Some("c".into())], "{delivery}");
        let dead: Vec<Json> = read(&infra.kafka, &dlq)
            .await?
            .iter()
            .map(|p| serde_json::from_str(p).expect("JSON"))
            .collect();
        let offsets: Vec<i64> = dead.iter().filter_map(|d| d["offset"].as_i64()).collect();
        assert_eq!(offsets, vec![1, 2], "{delivery}");
        assert!(
            dead[0]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("compacted")
        );
        running_without_restarts(&c, &job)?;
        jobctl(&c, &["cancel", &job], &[])?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_settings_librdkafka_refuses_are_refused_at_submit() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("bad-properties");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, out, dlq) = (unique("props-in"), unique("props-out"), unique("props-dlq"));
    for t in [&input, &out, &dlq] {
        admin::create_topic(&infra.kafka, t, 1).await?;
    }
    let path = dir.join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            r#"
name: bad-properties
source: {{ kafka: {{ brokers: "{k}", topic: {input}, properties: {{ fetch.wait.max.ms: "-5" }} }} }}
sink: {{ kafka: {{ brokers: "{k}", topic: {out}, properties: {{ no.such.prop: "1", linger.ms: "5" }} }} }}
dead_letter: {{ kafka: {{ topic: {dlq}, properties: {{ message.max.bytes: abc }} }} }}
"#,
            k = infra.kafka
        ),
    )?;
    let out = jobctl(&c, &["submit", path.to_str().unwrap_or_default()], &[])?;
    assert!(!out.success);
    for path in [
        "source.kafka.properties.fetch.wait.max.ms",
        "sink.kafka.properties.no.such.prop",
        "dead_letter.kafka.properties.message.max.bytes",
    ] {
        assert!(out.stderr.contains(path), "{path} in {}", out.stderr);
    }
    assert!(!out.stderr.contains("linger.ms"), "{}", out.stderr);
    let jobs = jobctl_json(&c, &["list"])?;
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "nothing deployed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_read_over_several_lines_is_one_line_in_a_file() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("lines");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let input = unique("lines-in");
    admin::create_topic(&infra.kafka, &input, 1).await?;
    let files = dir.join("files");
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: lines
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
sink: {{ s3: {{ dir: "{files}", prefix: out, batch_interval: 200ms }} }}
"#,
            k = infra.kafka,
            files = files.display()
        ),
        &[],
    )?;
    let sent = [
        "{\n  \"i\": 1,\n  \"t\": \"2024-05-01T00:00:00Z\"\n}",
        "{\"i\": 2}\r\n",
        "\n\n{\"i\":3}\n\n",
        "{\"i\":4,  \"kept\": \"as read\"}",
    ];
    admin::produce_raw(&infra.kafka, &input, &records(&sent)).await?;
    wait_offset(&c, &job, 4).await?;
    let (after, _) = latest_checkpoint(&c, &job)?;
    wait_for("one more checkpoint", Duration::from_secs(30), || {
        let (c, job) = (&c, &job);
        async move { Ok((latest_checkpoint(c, job)?.0 > after).then_some(())) }
    })
    .await?;
    let mut lines = Vec::new();
    for dir in files_under(&files.join("out")) {
        lines.extend(std::fs::read_to_string(dir)?.lines().map(String::from));
    }
    lines.sort();
    assert_eq!(
        lines,
        vec![
            r#"{"i":1,"t":"2024-05-01T00:00:00Z"}"#,
            r#"{"i":2}"#,
            r#"{"i":3}"#,
            r#"{"i":4,  "kept": "as read"}"#,
        ]
    );
    running_without_restarts(&c, &job)
}
