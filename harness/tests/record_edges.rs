//! Inputs that broke other pipelines, through real processes: corrupt JSON,
//! tombstones and odd bytes in one batch, integers beyond 64 bits, records
//! too large for the output and dead-letter topics, workers in another time
//! zone, and records that cross workers. Every record is sorted on its own
//! into the output or the dead-letter topic, values arrive as they were
//! sent, and no job restarts. Inputs are those of the reproductions under
//! `tests/cases/`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value as Json;
use sluice_harness::admin::{self, RawRecord, ReadMessage};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::testing::{
    Infra, files_under, infra, jobctl_json, latest_checkpoint, submit, test_dir, unique, wait_for,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The lines of a case's `messages.jsonl` that are records.
fn case_messages(case: &str) -> Vec<Json> {
    let path = format!(
        "{}/tests/cases/{case}/messages.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// A case line as the record it describes (`value`, `value_hex`, `value_null`).
fn raw(line: &Json) -> RawRecord {
    let value = if line["value_null"] == true {
        None
    } else if let Some(hex) = line["value_hex"].as_str() {
        Some(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect(),
        )
    } else {
        Some(line["value"].as_str().expect("value").as_bytes().to_vec())
    };
    RawRecord {
        partition: line["partition"].as_i64().unwrap_or(0) as i32,
        key: line["key"].as_str().map(|k| k.as_bytes().to_vec()),
        value,
        headers: Vec::new(),
    }
}

async fn read_all(infra: &Infra, topic: &str, isolation: &str) -> anyhow::Result<Vec<ReadMessage>> {
    admin::read_topic(
        &infra.kafka,
        topic,
        usize::MAX,
        Duration::from_secs(4),
        Duration::from_secs(60),
        isolation,
    )
    .await
}

/// Dead letters by the offset of the record they stand for.
async fn dead_letters(infra: &Infra, topic: &str) -> anyhow::Result<BTreeMap<i64, Json>> {
    let mut out = BTreeMap::new();
    for m in read_all(infra, topic, "read_uncommitted").await? {
        let letter: Json = serde_json::from_str(&m.payload)?;
        let offset = letter["offset"].as_i64().expect("offset");
        assert!(
            out.insert(offset, letter).is_none(),
            "offset {offset} dead-lettered twice"
        );
    }
    Ok(out)
}

async fn wait_offset(coordinator: &str, job: &str, offset: i64) -> anyhow::Result<()> {
    wait_for(
        &format!("{job} checkpointed offset {offset}"),
        Duration::from_secs(90),
        || async move { Ok((latest_checkpoint(coordinator, job)?.1 >= offset).then_some(())) },
    )
    .await
}

/// The job runs, has never restarted, and its subtasks counted `dead` dead letters.
async fn assert_running_without_restarts(coordinator: &str, job: &str) -> anyhow::Result<Json> {
    let status = jobctl_json(coordinator, &["status", job])?;
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert_eq!(status["restarts"], 0, "{status}");
    Ok(status)
}

fn pass_through(
    name: &str,
    kafka: &str,
    input: &str,
    output: &str,
    dlq: &str,
    format: &str,
) -> String {
    format!(
        r#"
name: {name}
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{kafka}", topic: {input}, format: {format} }} }}
sink: {{ kafka: {{ brokers: "{kafka}", topic: {output} }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_json_tombstones_and_odd_bytes_are_each_sorted_on_their_own() -> anyhow::Result<()>
{
    let infra = infra()?;
    let dir = test_dir("corrupt-json");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let input = unique("case001-in");
    admin::create_topic(&infra.kafka, &input, 1).await?;
    let lines = case_messages("001-corrupt-json-and-tombstones");
    let records: Vec<RawRecord> = lines.iter().map(raw).collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;

    // JSON: valid documents pass unchanged, everything else is a decode dead letter.
    let (out, dlq) = (unique("case001-out"), unique("case001-dlq"));
    admin::create_topic(&infra.kafka, &out, 1).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let job = submit(
        &c,
        &dir,
        &pass_through("case001-json", &infra.kafka, &input, &out, &dlq, "json"),
        &[],
    )?;
    wait_offset(&c, &job, 18).await?;
    let output = read_all(&infra, &out, "read_uncommitted").await?;
    let payloads: Vec<&str> = output.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(
        payloads,
        vec![
            r#"{"id":0,"name":"plain"}"#,
            r#"{"id":3}"#,
            r#"{"id":10,"id":11}"#,
            r#"{"id":12,"name":"after the bad ones"}"#,
            lines[13]["value"].as_str().expect("offset 13"),
            "null",
            r#"{"id":17,"name":"last"}"#,
        ],
        "output in offset order, each as it was sent: 0, 3 (its BOM skipped), 10, 11, 13, 15, 17"
    );
    let dead = dead_letters(&infra, &dlq).await?;
    assert_eq!(
        dead.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 4, 5, 6, 7, 8, 9, 12, 14, 16]
    );
    for (offset, letter) in &dead {
        assert_eq!(letter["failed_at"], "decode", "{letter}");
        assert_eq!(letter["topic"], input.as_str(), "{letter}");
        assert_eq!(letter["partition"], 0, "{letter}");
        assert_eq!(letter["fault"], "record", "{letter}");
        assert_eq!(
            letter["key"], lines[*offset as usize]["key"],
            "the record's key is kept: {letter}"
        );
    }
    assert_eq!(dead[&1]["tombstone"], true);
    assert_eq!(dead[&1]["payload"], Json::Null);
    assert!(
        dead[&1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("tombstone")
    );
    assert_eq!(
        dead[&2].get("tombstone"),
        None,
        "an empty value is not a tombstone"
    );
    assert_eq!(dead[&2]["payload"], "");
    assert!(
        dead[&2]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("empty")
    );
    for offset in [4, 14] {
        let raw = BASE64.decode(dead[&offset]["payload_base64"].as_str().expect("base64"))?;
        assert_eq!(
            Some(raw),
            records[offset as usize].value,
            "offset {offset}: the exact bytes"
        );
        assert!(
            dead[&offset]["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not UTF-8")
        );
    }
    assert_eq!(dead[&12]["payload"], lines[12]["value"]);
    assert!(
        dead[&12]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("out of range")
    );
    assert_running_without_restarts(&c, &job).await?;

    // Text: a tombstone is not an empty line; bytes that are not UTF-8 are dead letters.
    let (out, dlq) = (unique("case001-out-text"), unique("case001-dlq-text"));
    admin::create_topic(&infra.kafka, &out, 1).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let job = submit(
        &c,
        &dir,
        &pass_through("case001-text", &infra.kafka, &input, &out, &dlq, "text"),
        &[],
    )?;
    wait_offset(&c, &job, 18).await?;
    let output = read_all(&infra, &out, "read_uncommitted").await?;
    let expected: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| ![1, 4, 14].contains(i))
        .map(|(_, r)| {
            let text = String::from_utf8(r.value.clone().unwrap_or_default()).expect("UTF-8");
            serde_json::json!({ "message": text }).to_string()
        })
        .collect();
    let got: Vec<String> = output.into_iter().map(|m| m.payload).collect();
    assert_eq!(got, expected);
    let dead = dead_letters(&infra, &dlq).await?;
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), vec![1, 4, 14]);
    assert_eq!(dead[&1]["tombstone"], true);
    assert_running_without_restarts(&c, &job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integers_beyond_64_bits_pass_exactly_through_kafka_dedup_files_and_cassandra()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("big-integers");
    let cluster = SluiceCluster::start(&dir, 2, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let lines = case_messages("002-integers-beyond-i64");
    let sent: Vec<&str> = lines
        .iter()
        .map(|l| l["value"].as_str().expect("value"))
        .collect();
    let ids: Vec<String> = sent
        .iter()
        .map(|v| {
            let start = v.find(':').expect("event_id") + 1;
            v[start..v.find(',').expect("comma")].to_string()
        })
        .collect();

    let (input, out, dlq) = (
        unique("case002-in"),
        unique("case002-out"),
        unique("case002-dlq"),
    );
    for t in [&input, &out, &dlq] {
        admin::create_topic(&infra.kafka, t, 1).await?;
    }
    let pass = submit(
        &c,
        &dir,
        &pass_through("case002-pass", &infra.kafka, &input, &out, &dlq, "json"),
        &[],
    )?;

    // key_by on the id, across two subtasks and two workers, then dedup.
    let files = dir.join("files");
    let dedup = submit(
        &c,
        &dir,
        &format!(
            r#"
name: case002-dedup
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [event_id]
  - dedup: {{ ttl: 1h }}
sink: {{ s3: {{ dir: "{files}", prefix: out, time_field: timestamp, batch_interval: 200ms }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            k = infra.kafka,
            files = files.display()
        ),
        &[],
    )?;

    let keyspace = format!("case002_{}", uuid::Uuid::new_v4().simple());
    let session = admin::cassandra_session(&infra.cassandra).await?;
    admin::run_cql(
        &session,
        &format!(
            "CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
             CREATE TABLE {keyspace}.events (event_id TEXT PRIMARY KEY, n INT);"
        ),
    )
    .await?;
    let cassandra = submit(
        &c,
        &dir,
        &format!(
            r#"
name: case002-cassandra
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
sink: {{ cassandra: {{ contact_points: ["{h}"], keyspace: {keyspace}, table: events }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            k = infra.kafka,
            h = infra.cassandra
        ),
        &[],
    )?;
    let records: Vec<RawRecord> = lines.iter().map(raw).collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;
    for job in [&pass, &dedup, &cassandra] {
        wait_offset(&c, job, 9).await?;
    }
    // One more checkpoint commits the files of the last one.
    let (after, _) = latest_checkpoint(&c, &dedup)?;
    wait_for("one more checkpoint", Duration::from_secs(30), || {
        let (c, dedup) = (&c, &dedup);
        async move { Ok((latest_checkpoint(c, dedup)?.0 > after).then_some(())) }
    })
    .await?;

    let output: Vec<String> = read_all(&infra, &out, "read_uncommitted")
        .await?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(output, sent, "every id passes with its exact digits");

    let mut lines_in_files = BTreeSet::new();
    for entry in files_under(&files.join("out")) {
        for line in std::fs::read_to_string(entry)?.lines() {
            assert!(lines_in_files.insert(line.to_string()), "{line} twice");
        }
    }
    let expected: BTreeSet<String> = sent.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        lines_in_files, expected,
        "nine distinct ids, none dropped as a duplicate"
    );

    let rows = session
        .query_unpaged(format!("SELECT event_id, n FROM {keyspace}.events"), ())
        .await?
        .into_rows_result()?;
    let mut by_n: BTreeMap<i32, String> = BTreeMap::new();
    for row in rows.rows::<(String, i32)>()? {
        let (id, n) = row?;
        by_n.insert(n, id);
    }
    let expected: BTreeMap<i32, String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (i as i32 + 1, id.clone()))
        .collect();
    assert_eq!(by_n, expected, "one row per id, each with its exact digits");
    assert!(dead_letters(&infra, &dlq).await?.is_empty());
    for job in [&pass, &dedup, &cassandra] {
        assert_running_without_restarts(&c, job).await?;
    }
    Ok(())
}

/// Every file under `dir`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_cross_workers_keep_their_types() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("typed-exchange");
    let cluster = SluiceCluster::start(
        &dir,
        2,
        ClusterOptions {
            slots: 1,
            ..Default::default()
        },
    )
    .await?;
    let c = cluster.coordinator_address.clone();
    let (input, out) = (unique("typed-in"), unique("typed-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &out, 1).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: typed
parallelism: 2
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - remap: |
      .ts = parse_timestamp!(string!(.t), "%+")
      .from = %sluice.subtask
  - key_by: [k]
  - remap: |
      .to = %sluice.subtask
      .ts_is_timestamp = is_timestamp(.ts)
      .id_is_string = is_string(.id)
      .day = format_timestamp!(.ts, "%F")
sink: {{ kafka: {{ brokers: "{k}", topic: {out} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    let records: Vec<RawRecord> = (0..200)
        .map(|i| RawRecord {
            partition: i % 2,
            key: None,
            value: Some(
                format!(
                    r#"{{"k":{i},"id":1844674407370955{i:04},"t":"2024-12-31T23:30:00.{i:03}Z"}}"#
                )
                .into_bytes(),
            ),
            headers: Vec::new(),
        })
        .collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;
    wait_offset(&c, &job, 200).await?;
    let output = read_all(&infra, &out, "read_uncommitted").await?;
    assert_eq!(output.len(), 200);
    let mut crossed = 0;
    for m in &output {
        let v: Json = serde_json::from_str(&m.payload)?;
        let k = v["k"].as_i64().expect("k");
        crossed += usize::from(v["from"] != v["to"]);
        assert_eq!(v["ts_is_timestamp"], true, "{v}");
        assert_eq!(
            v["id_is_string"], true,
            "an exact number reads as a string in VRL: {v}"
        );
        let ts = match k {
            0 => "2024-12-31T23:30:00Z".to_string(),
            k => format!("2024-12-31T23:30:00.{k:03}Z"),
        };
        assert_eq!(v["ts"], ts, "{v}");
        assert_eq!(v["day"], "2024-12-31");
        assert!(
            m.payload
                .contains(&format!(r#""id":1844674407370955{k:04}"#)),
            "the id is still the same number: {}",
            m.payload
        );
    }
    assert!(crossed > 0, "some records crossed to the other worker");
    assert!(crossed < 200, "some records stayed on their worker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_time_zone_never_changes_a_record() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("worker-tz");
    let cluster = SluiceCluster::start(
        &dir,
        1,
        ClusterOptions {
            env: vec![("TZ".into(), "America/New_York".into())],
            ..Default::default()
        },
    )
    .await?;
    let c = cluster.coordinator_address.clone();
    let lines = case_messages("003-worker-timezone-leak");
    let input = unique("case003-in");
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::produce_raw(
        &infra.kafka,
        &input,
        &lines.iter().map(raw).collect::<Vec<_>>(),
    )
    .await?;
    let spec = |name: &str, zone: &str, out: &str, dlq: &str| {
        format!(
            r#"
name: {name}
parallelism: 2
checkpoint: {{ interval: 500ms }}
{zone}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - remap: |
      .ts = parse_timestamp!(string!(.local_time), "%Y-%m-%d %H:%M:%S")
      .day = format_timestamp!(.ts, "%F")
sink: {{ kafka: {{ brokers: "{k}", topic: {out} }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            k = infra.kafka
        )
    };
    let run = |name: &'static str, zone: &'static str| {
        let (c, dir, infra) = (c.clone(), dir.clone(), infra.clone());
        let spec = &spec;
        async move {
            let (out, dlq) = (unique("case003-out"), unique("case003-dlq"));
            admin::create_topic(&infra.kafka, &out, 1).await?;
            admin::create_topic(&infra.kafka, &dlq, 1).await?;
            let job = submit(&c, &dir, &spec(name, zone, &out, &dlq), &[])?;
            wait_offset(&c, &job, 5).await?;
            let mut got = BTreeMap::new();
            for m in read_all(&infra, &out, "read_uncommitted").await? {
                let v: Json = serde_json::from_str(&m.payload)?;
                got.insert(
                    v["id"].as_i64().expect("id"),
                    (
                        v["ts"].as_str().unwrap_or_default().to_string(),
                        v["day"].as_str().unwrap_or_default().to_string(),
                    ),
                );
            }
            let dead = dead_letters(&infra, &dlq).await?.len();
            anyhow::Ok((got, dead))
        }
    };
    // No zone in the spec: UTC, although every worker runs in New York.
    let (utc, dead) = run("case003-utc", "").await?;
    assert_eq!(dead, 0);
    let expected: BTreeMap<i64, (String, String)> = lines
        .iter()
        .map(|l| {
            let v: Json = serde_json::from_str(l["value"].as_str().expect("value")).expect("JSON");
            (
                v["id"].as_i64().expect("id"),
                (
                    l["expect"]["ts"].as_str().expect("ts").to_string(),
                    l["expect"]["day"].as_str().expect("day").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(utc, expected);
    // A zone the spec names is the zone of zone-less times; its DST gap and
    // overlap are errors, as VRL makes them.
    let (ny, dead) = run("case003-ny", "timezone: America/New_York").await?;
    assert_eq!(dead, 2, "the DST gap and overlap times: {ny:?}");
    assert_eq!(ny[&1].0, "2024-07-01T16:00:00Z");
    assert_eq!(ny[&4], ("2025-01-01T04:30:00Z".into(), "2025-01-01".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_too_large_for_the_output_and_dead_letter_topics_stop_nothing() -> anyhow::Result<()>
{
    let infra = infra()?;
    let dir = test_dir("oversized");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, out, dlq) = (
        unique("case010-in"),
        unique("case010-out"),
        unique("case010-dlq"),
    );
    admin::create_topic_with(&infra.kafka, &input, 1, &[("max.message.bytes", "5242880")]).await?;
    admin::create_topic(&infra.kafka, &out, 1).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let job = submit(
        &c,
        &dir,
        &pass_through("case010", &infra.kafka, &input, &out, &dlq, "json"),
        &[],
    )?;
    let m1 = format!(r#"{{"id":1,"blob":"{}"}}"#, "x".repeat(1_500_000));
    let m2 = "y".repeat(1_500_000);
    let m4 = format!(r#"{{"id":4,"blob":"{}"}}"#, "z".repeat(900_000));
    let values = [
        r#"{"id":0,"size":"small"}"#.to_string(),
        m1.clone(),
        m2.clone(),
        r#"{"id":3,"size":"small"}"#.to_string(),
        m4.clone(),
        r#"{"id":5,"size":"small"}"#.to_string(),
    ];
    let records: Vec<RawRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RawRecord {
            partition: 0,
            key: Some(format!("m{i}").into_bytes()),
            value: Some(v.clone().into_bytes()),
            headers: vec![("trace-id".into(), Some(format!("t{i}").into_bytes()))],
        })
        .collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;
    wait_offset(&c, &job, 6).await?;
    let output: Vec<String> = read_all(&infra, &out, "read_uncommitted")
        .await?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(
        output,
        vec![values[0].clone(), values[3].clone(), m4, values[5].clone()]
    );
    let raw_letters = read_all(&infra, &dlq, "read_uncommitted").await?;
    assert!(raw_letters.iter().all(|m| m.payload.len() < 1_000_000));
    let dead = dead_letters(&infra, &dlq).await?;
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(dead[&1]["failed_at"], "sink");
    assert!(
        dead[&1]["error"]
            .as_str()
            .unwrap_or_default()
            .contains(out.as_str()),
        "{}",
        dead[&1]["error"]
    );
    assert_eq!(dead[&1]["payload_size"], m1.len());
    assert!(m1.starts_with(dead[&1]["payload"].as_str().expect("payload")));
    assert_eq!(dead[&2]["failed_at"], "decode");
    assert_eq!(dead[&2]["payload_size"], m2.len());
    for (offset, letter) in &dead {
        assert_eq!(letter["truncated"], true);
        assert_eq!(letter["key"], format!("m{offset}"));
        assert_eq!(
            letter["headers"],
            serde_json::json!([{"name": "trace-id", "value": format!("t{offset}")}])
        );
    }
    assert_running_without_restarts(&c, &job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_runs_on_when_oversized_events_are_mixed_into_its_input() -> anyhow::Result<()> {
    use sluice_harness::datagen::user_events::UserEvents;
    let infra = infra()?;
    let dir = test_dir("seed-000-oversized");
    let cluster = SluiceCluster::start(&dir, 2, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let (source, dlq) = (unique("user-events"), unique("user-events-dlq"));
    let keyspace = format!("seed000_{}", uuid::Uuid::new_v4().simple());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/jobs/user-events-to-cassandra.yaml"
    ))?;
    let spec = shipped
        .replace("topic: user-events-dlq", &format!("topic: {dlq}"))
        .replace("topic: user-events\n", &format!("topic: {source}\n"))
        .replace(
            "keyspace: event_streaming",
            &format!("keyspace: {keyspace}"),
        )
        + "checkpoint: { interval: 500ms }\n";
    let cql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cql/user_events.cql"
    ))?
    .replace("event_streaming", &keyspace);
    let session = admin::cassandra_session(&infra.cassandra).await?;
    admin::run_cql(&session, &cql).await?;
    admin::create_topic_with(
        &infra.kafka,
        &source,
        2,
        &[("max.message.bytes", "4194304")],
    )
    .await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let job = submit(
        &c,
        &dir,
        &spec,
        &[
            ("KAFKA_BROKER", &infra.kafka),
            ("CASSANDRA_HOST", &infra.cassandra),
        ],
    )?;
    // 200 events; every 50th is 1.5 MB: a valid event with a large metadata
    // value (a legal row), then one whose event_time does not parse (a dead
    // letter larger than the dead-letter topic takes), in turn.
    let mut valid = BTreeSet::new();
    let mut bad = BTreeSet::new();
    let records: Vec<RawRecord> = UserEvents::new(3, 20, None)
        .take(200)
        .enumerate()
        .map(|(i, g)| {
            let mut event: Json = serde_json::from_str(&g.payload).expect("JSON");
            let id = event["event_id"].as_str().expect("event_id").to_string();
            if i % 50 == 25 {
                event["metadata"]["blob"] = "b".repeat(1_500_000).into();
            }
            if i % 50 == 49 {
                event["event_time"] = format!("not a time {}", "t".repeat(1_500_000)).into();
                bad.insert(i);
            } else {
                valid.insert(id);
            }
            RawRecord {
                partition: (i % 2) as i32,
                key: Some(format!("e{i}").into_bytes()),
                value: Some(event.to_string().into_bytes()),
                headers: Vec::new(),
            }
        })
        .collect();
    admin::produce_raw(&infra.kafka, &source, &records).await?;
    wait_offset(&c, &job, 200).await?;
    let rows = session
        .query_unpaged(
            format!("SELECT event_id, metadata FROM {keyspace}.user_events"),
            (),
        )
        .await?
        .into_rows_result()?;
    let mut written = BTreeSet::new();
    let mut large = 0;
    for row in rows.rows::<(uuid::Uuid, BTreeMap<String, String>)>()? {
        let (id, metadata) = row?;
        large += usize::from(metadata.get("blob").is_some_and(|b| b.len() == 1_500_000));
        written.insert(id.to_string());
    }
    assert_eq!(written, valid, "every valid event is one row");
    assert_eq!(large, 4, "the 1.5 MB metadata values are written whole");
    let dead = read_all(&infra, &dlq, "read_uncommitted").await?;
    assert_eq!(dead.len(), bad.len());
    for m in &dead {
        assert!(m.payload.len() < 1_000_000);
        let letter: Json = serde_json::from_str(&m.payload)?;
        assert_eq!(letter["failed_at"], "transform", "{}", &m.payload[..300]);
        assert_eq!(letter["truncated"], true);
        assert!(
            letter["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not a time")
        );
    }
    assert_running_without_restarts(&c, &job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_several_megabytes_cross_workers() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("large-exchange");
    let cluster = SluiceCluster::start(
        &dir,
        2,
        ClusterOptions {
            slots: 1,
            ..Default::default()
        },
    )
    .await?;
    let c = cluster.coordinator_address.clone();
    let (input, out) = (unique("large-in"), unique("large-out"));
    let large = [("max.message.bytes", "8388608")];
    admin::create_topic_with(&infra.kafka, &input, 2, &large).await?;
    admin::create_topic_with(&infra.kafka, &out, 1, &large).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: large
parallelism: 2
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [k]
sink: {{ kafka: {{ brokers: "{k}", topic: {out}, properties: {{ message.max.bytes: "8000000" }} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    let values: Vec<String> = (0..8)
        .map(|i| {
            format!(
                r#"{{"k":{i},"blob":"{}"}}"#,
                "b".repeat(if i % 2 == 0 { 5_000_000 } else { 10 })
            )
        })
        .collect();
    let records: Vec<RawRecord> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RawRecord {
            partition: (i % 2) as i32,
            key: None,
            value: Some(v.clone().into_bytes()),
            headers: Vec::new(),
        })
        .collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;
    wait_offset(&c, &job, 8).await?;
    let mut got: Vec<String> = read_all(&infra, &out, "read_uncommitted")
        .await?
        .into_iter()
        .map(|m| m.payload)
        .collect();
    got.sort();
    let mut expected = values;
    expected.sort();
    assert!(got == expected, "every record arrives whole");
    assert_running_without_restarts(&c, &job).await?;
    Ok(())
}
