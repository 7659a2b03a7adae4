//! No record stops a Cassandra job: the records of real failures
//! (`tests/cases/`, from ../shared/cases 005, 007 and 010 variant B) against
//! the running Cassandra. A key Cassandra refuses, a null inside a
//! collection, a row the server refuses are dead letters naming their
//! column; every other record is a row; the job never restarts. A table
//! dropped under a running job fails it at once.

use serde_json::{Value, json};
use sluice_harness::admin;
use sluice_harness::checks::{
    create_large_message_topic, dead_letters, produce_large, running_without_restarts,
    unique_keyspace,
};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::{producer, users};
use sluice_harness::testing::{
    Infra, infra, jobctl_json, submit, test_dir, unique, wait_checkpointed, wait_for, wait_running,
};
use std::collections::BTreeMap;
use std::time::Duration;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cases");
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// A cluster of `workers` workers and a Cassandra session, for one test.
struct Stack {
    cluster: SluiceCluster,
    coordinator: String,
    dir: std::path::PathBuf,
    session: scylla::client::session::Session,
    infra: Infra,
}

async fn stack(name: &str, workers: usize) -> anyhow::Result<Stack> {
    let infra = infra()?;
    let dir = test_dir(name);
    let cluster = SluiceCluster::start(&dir, workers, ClusterOptions::default()).await?;
    Ok(Stack {
        coordinator: cluster.coordinator_address.clone(),
        cluster,
        dir,
        session: admin::cassandra_session(&infra.cassandra).await?,
        infra,
    })
}

impl Stack {
    /// Submits `spec` with the stack's addresses for `${KAFKA_BROKER}` and
    /// `${CASSANDRA_HOST}`, and waits until it runs.
    async fn run(&self, spec: &str) -> anyhow::Result<String> {
        let job = submit(
            &self.coordinator,
            &self.dir,
            spec,
            &[
                ("KAFKA_BROKER", self.infra.kafka.as_str()),
                ("CASSANDRA_HOST", self.infra.cassandra.as_str()),
            ],
        )?;
        wait_running(&self.coordinator, &job).await?;
        Ok(job)
    }

    /// Every row of `table` as `SELECT JSON` gives it.
    async fn rows(&self, table: &str) -> anyhow::Result<Vec<Value>> {
        let result = self
            .session
            .query_unpaged(format!("SELECT JSON * FROM {table}"), ())
            .await?
            .into_rows_result()?;
        let mut rows = Vec::new();
        for row in result.rows::<(String,)>()? {
            rows.push(serde_json::from_str(&row?.0)?);
        }
        Ok(rows)
    }
}

/// The records of a case file, each built as the case says (its
/// `value_template` with 70,000 `X` for the placeholder).
fn case_records(file: &str) -> anyhow::Result<Vec<(Option<String>, String)>> {
    let text = std::fs::read_to_string(format!("{CASES}/{file}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: Value = serde_json::from_str(line)?;
        let value = match (m["value"].as_str(), m["value_template"].as_str()) {
            (Some(v), _) => v.to_string(),
            (None, Some(t)) => t.replace("<X repeated 70000 times>", &"X".repeat(70_000)),
            _ => anyhow::bail!("a record without value in {file}: {line}"),
        };
        out.push((m["key"].as_str().map(str::to_string), value));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_005_an_empty_and_a_70000_byte_user_id_are_dead_letters_and_every_other_user_a_row()
-> anyhow::Result<()> {
    let s = stack("case-005", 2).await?;
    let (source, dlq, ks) = (
        unique("random_users"),
        unique("random_users-dlq"),
        unique_keyspace("case005"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    let cql = std::fs::read_to_string(format!("{DEPLOY}/cql/random_users.cql"))?;
    admin::run_cql(&s.session, &cql.replace("user_data", &ks)).await?;
    // The shipped seed 003 job, on this test's topics and keyspace.
    let shipped = std::fs::read_to_string(format!("{DEPLOY}/jobs/random-users-to-cassandra.yaml"))?;
    let spec = shipped
        .replace("topic: random_users-dlq", &format!("topic: {dlq}"))
        .replace("topic: random_users\n", &format!("topic: {source}\n"))
        .replace("keyspace: user_data", &format!("keyspace: {ks}"))
        .replace("interval: 5s", "interval: 500ms");
    let job = s.run(&spec).await?;

    let file = case_records("005-cassandra-empty-or-oversized-key.jsonl")?;
    producer::produce_keyed(&s.infra.kafka, &source, file.clone().into_iter(), None, 0).await?;
    wait_checkpointed(&s.coordinator, &job, 6).await?;
    let generated: Vec<Value> = users::RandomUsers::new(7, 10, 13).take(20).collect();
    let keyed = generated.iter().map(|u| {
        (
            u["login"]["uuid"].as_str().map(str::to_string),
            u.to_string(),
        )
    });
    producer::produce_keyed(&s.infra.kafka, &source, keyed, None, 0).await?;
    wait_checkpointed(&s.coordinator, &job, 26).await?;

    // Every user with a usable uuid, first record of each, cleaned.
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let from_file = file.iter().map(|(_, v)| serde_json::from_str::<Value>(v));
    for user in from_file
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .chain(&generated)
    {
        let uuid = user["login"]["uuid"].as_str().unwrap_or_default();
        if !uuid.is_empty() && uuid.len() < 100 && !expected.contains_key(uuid) {
            expected.insert(uuid.to_string(), users::seed_003_row(user));
        }
    }
    assert_eq!(
        expected.len(),
        4 + 18,
        "4 users of the file and 18 generated uuids"
    );
    let rows = s.rows(&format!("{ks}.users")).await?;
    let got: BTreeMap<String, Value> = rows
        .into_iter()
        .map(|r| (r["user_id"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    assert_eq!(
        got, expected,
        "one cleaned row per usable uuid, nothing else"
    );

    let letters = dead_letters(&s.infra.kafka, &dlq).await?;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, offset, why) in [
        (&letters[0], 2, "partition key column `user_id` is empty"),
        (
            &letters[1],
            4,
            "primary key column `user_id` is 70000 bytes",
        ),
    ] {
        assert_eq!(letter["failed_at"], "sink", "{letter}");
        assert_eq!(letter["topic"], source.as_str(), "{letter}");
        assert_eq!(
            (letter["partition"].as_i64(), letter["offset"].as_i64()),
            (Some(0), Some(offset))
        );
        let error = letter["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "offset {offset}: {error}");
    }
    running_without_restarts(&s.coordinator, &job)
}

/// The spec of a one-subtask job from `source` into `keyspace.table`,
/// dead letters to `dlq`, checkpoints every 500 ms.
fn cassandra_job(source: &str, keyspace: &str, table: &str, dlq: &str) -> String {
    format!(
        "name: {}\ncheckpoint: {{ interval: 500ms }}\n\
         source: {{ kafka: {{ brokers: \"${{KAFKA_BROKER}}\", topic: {source}, format: json }} }}\n\
         sink: {{ cassandra: {{ contact_points: [\"${{CASSANDRA_HOST}}\"], keyspace: {keyspace}, table: {table} }} }}\n\
         dead_letter: {{ kafka: {{ topic: {dlq} }} }}\n",
        unique("cassandra-records")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_005_variant_an_empty_part_of_a_composite_key_is_written_a_long_one_is_not()
-> anyhow::Result<()> {
    let s = stack("case-005v", 1).await?;
    let (source, dlq, ks) = (
        unique("case005v-in"),
        unique("case005v-dlq"),
        unique_keyspace("case005v"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &s.session,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
             CREATE TABLE {ks}.users (tenant TEXT, user_id TEXT, seq INT, name TEXT, PRIMARY KEY ((tenant, user_id), seq));"
        ),
    )
    .await?;
    let job = s.run(&cassandra_job(&source, &ks, "users", &dlq)).await?;
    let records = [
        json!({"tenant": "t1", "user_id": "u1", "seq": 0, "name": "normal"}),
        json!({"tenant": "t1", "user_id": "", "seq": 1, "name": "empty user_id in composite key"}),
        json!({"tenant": "t1", "user_id": "u3", "seq": 2, "name": "normal after"}),
        json!({"tenant": "t1", "user_id": "X".repeat(70_000), "seq": 3, "name": "70,000-byte key component"}),
        json!({"tenant": "t1", "user_id": "u5", "seq": 4, "name": "normal after the long one"}),
    ];
    producer::produce(
        &s.infra.kafka,
        &source,
        records.iter().map(Value::to_string),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&s.coordinator, &job, 5).await?;

    let mut rows = s.rows(&format!("{ks}.users")).await?;
    rows.sort_by_key(|r| r["seq"].as_i64());
    let expected: Vec<Value> = [0, 1, 2, 4].iter().map(|&i| records[i].clone()).collect();
    assert_eq!(
        rows, expected,
        "the empty user_id is written, the long one is not"
    );
    let letters = dead_letters(&s.infra.kafka, &dlq).await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["offset"], 3);
    assert_eq!(letters[0]["failed_at"], "sink");
    let error = letters[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("primary key column `user_id` is 70000 bytes"),
        "{error}"
    );
    running_without_restarts(&s.coordinator, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_007_a_null_inside_any_collection_is_a_dead_letter_naming_column_and_element()
-> anyhow::Result<()> {
    let s = stack("case-007", 1).await?;
    let (source, dlq, ks) = (
        unique("case007-in"),
        unique("case007-dlq"),
        unique_keyspace("case007"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    let cql = std::fs::read_to_string(format!("{CASES}/007-cassandra-null-in-collections.cql"))?;
    admin::run_cql(&s.session, &cql.replace("case007", &ks)).await?;
    let spec = std::fs::read_to_string(format!("{CASES}/007-cassandra-null-in-collections.yaml"))?
        .replace("topic: case007-in", &format!("topic: {source}"))
        .replace("topic: case007-dlq", &format!("topic: {dlq}"))
        .replace("keyspace: case007", &format!("keyspace: {ks}"))
        .replace("interval: 1s", "interval: 500ms");
    let job = s.run(&spec).await?;
    let records = case_records("007-cassandra-null-in-collections.jsonl")?;
    producer::produce_keyed(
        &s.infra.kafka,
        &source,
        records.clone().into_iter(),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&s.coordinator, &job, 8).await?;

    // Rule (A) of the case, for every kind of collection: a dead letter
    // naming the column and the null element, no row.
    let letters = dead_letters(&s.infra.kafka, &dlq).await?;
    let got: Vec<(i64, String)> = letters
        .iter()
        .map(|l| {
            (
                l["offset"].as_i64().unwrap_or(-1),
                l["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        (0, "column `tags` (list<text>): element 1 is null"),
        (1, "column `labels` (set<text>): element 1 is null"),
        (2, "column `scores` (list<int>): element 1 is null"),
        (
            3,
            "column `attrs` (map<text, text>): the value of key `gone` is null",
        ),
        (4, "column `tags` (list<text>): element 0 is null"),
        (5, "column `refs` (frozen<list<uuid>>): element 1 is null"),
    ];
    assert_eq!(got.len(), expected.len(), "{got:?}");
    for ((offset, error), (want_offset, want)) in got.iter().zip(expected) {
        assert_eq!(*offset, want_offset);
        assert!(error.starts_with(want), "offset {offset}: {error}");
        assert!(error.contains("hold no null"), "offset {offset}: {error}");
    }
    let mut rows = s.rows(&format!("{ks}.profiles")).await?;
    rows.sort_by_key(|r| r["id"].as_i64());
    let sent = |i: usize| serde_json::from_str::<Value>(&records[i].1);
    let mut seven = sent(6)?;
    let mut eight = sent(7)?;
    // SELECT JSON shows the columns a record left out as null.
    for row in [&mut seven, &mut eight] {
        if let Some(columns) = row.as_object_mut() {
            for column in ["tags", "labels", "scores", "attrs", "refs"] {
                columns.entry(column).or_insert(Value::Null);
            }
        }
    }
    assert_eq!(rows, [seven, eight], "ids 7 and 8 as sent, no row for 1-6");
    running_without_restarts(&s.coordinator, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_010_b_twenty_rows_of_1_1_mb_in_one_partition_are_all_written() -> anyhow::Result<()> {
    // One worker: the rows reach the sink together, not through the exchange.
    let s = stack("case-010b", 1).await?;
    let (source, dlq, ks) = (
        unique("user-events"),
        unique("user-events-dlq"),
        unique_keyspace("case010b"),
    );
    create_large_message_topic(&s.infra.kafka, &source, 2_097_152).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    let cql = std::fs::read_to_string(format!("{DEPLOY}/cql/user_events.cql"))?;
    admin::run_cql(&s.session, &cql.replace("event_streaming", &ks)).await?;
    let user = uuid::Uuid::new_v4();
    let events: Vec<String> = (0..20)
        .map(|i| {
            json!({
                "event_id": uuid::Uuid::new_v4(),
                "user_id": user,
                "event_type": "page_view",
                "event_time": format!("2026-03-14T10:00:{i:02}.000Z"),
                "metadata": {"blob": "b".repeat(1_100_000)},
            })
            .to_string()
        })
        .collect();
    // All 20 are in the topic before the job starts, and the consumer may
    // fetch them at once: the sink gets 22 MB for one partition together.
    produce_large(&s.infra.kafka, &source, &events, 3_000_000).await?;
    let shipped = std::fs::read_to_string(format!("{DEPLOY}/jobs/user-events-to-cassandra.yaml"))?;
    let spec = shipped
        .replace("topic: user-events-dlq", &format!("topic: {dlq}"))
        .replace("topic: user-events\n", &format!("topic: {source}\n"))
        .replace("keyspace: event_streaming", &format!("keyspace: {ks}"))
        .replace(
            "delivery: at_least_once\n",
            "delivery: at_least_once\ncheckpoint: { interval: 500ms }\n",
        )
        .replace(
            "    format: json\n",
            "    format: json\n    properties: { max.partition.fetch.bytes: \"33554432\", queued.max.messages.kbytes: \"65536\" }\n",
        );
    let job = s.run(&spec).await?;
    wait_checkpointed(&s.coordinator, &job, 20).await?;
    let result = s
        .session
        .query_unpaged(
            format!("SELECT metadata FROM {ks}.user_events WHERE user_id = ? AND bucket_date = '2026-03-14'"),
            (user,),
        )
        .await?
        .into_rows_result()?;
    let blobs: Vec<usize> = result
        .rows::<(BTreeMap<String, String>,)>()?
        .map(|r| r.map(|(m,)| m.get("blob").map_or(0, String::len)))
        .collect::<Result<_, _>>()?;
    assert_eq!(blobs, vec![1_100_000; 20], "all 20 rows, each whole");
    assert!(dead_letters(&s.infra.kafka, &dlq).await?.is_empty());
    // Split by size before sending: Cassandra never had to refuse a batch
    // of 16 such rows (17.6 MB, over its 16 MiB request limit).
    let log = std::fs::read_to_string(s.cluster.worker_log(0).unwrap_or_default())?;
    assert!(
        !log.contains("cassandra refused a batch"),
        "a batch was too large"
    );
    running_without_restarts(&s.coordinator, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_server_refuses_in_a_batch_are_dead_letters_with_its_message() -> anyhow::Result<()>
{
    let s = stack("cassandra-refused", 1).await?;
    let (source, dlq, ks) = (
        unique("refused-in"),
        unique("refused-dlq"),
        unique_keyspace("refused"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &s.session,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
             CREATE TABLE {ks}.t (a TEXT, b TEXT, c INT, PRIMARY KEY ((a, b), c));"
        ),
    )
    .await?;
    // Each part of the key is under 65,535 bytes, but together they are
    // not: only the server says so, for the whole batch of that partition.
    let long = "X".repeat(40_000);
    let mut records: Vec<Value> = (0..3)
        .map(|c| json!({"a": long, "b": long, "c": c}))
        .collect();
    records.extend((0..3).map(|c| json!({"a": "t", "b": "u", "c": c})));
    producer::produce(
        &s.infra.kafka,
        &source,
        records.iter().map(Value::to_string),
        None,
        0,
    )
    .await?;
    let job = s.run(&cassandra_job(&source, &ks, "t", &dlq)).await?;
    wait_checkpointed(&s.coordinator, &job, 6).await?;

    let letters = dead_letters(&s.infra.kafka, &dlq).await?;
    let offsets: Vec<i64> = letters
        .iter()
        .filter_map(|l| l["offset"].as_i64())
        .collect();
    assert_eq!(offsets, [0, 1, 2], "{letters:?}");
    for letter in &letters {
        let error = letter["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("Cassandra refused the row"), "{error}");
        assert!(
            error.contains("Key length of 80000 is longer than maximum of 65535"),
            "{error}"
        );
    }
    let mut rows = s.rows(&format!("{ks}.t")).await?;
    rows.sort_by_key(|r| r["c"].as_i64());
    assert_eq!(rows, records[3..], "the other partition's rows are written");
    running_without_restarts(&s.coordinator, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_dropped_under_a_running_job_fails_it_at_once() -> anyhow::Result<()> {
    let s = stack("cassandra-dropped", 1).await?;
    let (source, dlq, ks) = (
        unique("dropped-in"),
        unique("dropped-dlq"),
        unique_keyspace("dropped"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &s.session,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
             CREATE TABLE {ks}.t (id INT PRIMARY KEY, v TEXT);"
        ),
    )
    .await?;
    let job = s.run(&cassandra_job(&source, &ks, "t", &dlq)).await?;
    producer::produce(
        &s.infra.kafka,
        &source,
        std::iter::once(json!({"id": 1, "v": "a"}).to_string()),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&s.coordinator, &job, 1).await?;
    admin::run_cql(&s.session, &format!("DROP TABLE {ks}.t")).await?;
    producer::produce(
        &s.infra.kafka,
        &source,
        std::iter::once(json!({"id": 2, "v": "b"}).to_string()),
        None,
        0,
    )
    .await?;
    let status = wait_for("the job failed", Duration::from_secs(60), || async {
        let status = jobctl_json(&s.coordinator, &["status", &job])?;
        Ok((status["state"] == "FAILED").then_some(status))
    })
    .await?;
    assert_eq!(
        status["restarts"], 0,
        "failed at once, not after restarts: {status}"
    );
    let failure = status["failure"].as_str().unwrap_or_default();
    assert!(failure.contains(&format!("table {ks}.t")), "{failure}");
    assert!(
        dead_letters(&s.infra.kafka, &dlq).await?.is_empty(),
        "not the record's fault"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_arrive_as_sent_or_are_dead_letters_never_silently_changed() -> anyhow::Result<()> {
    use scylla::value::{CqlDate, CqlTime, CqlTimestamp, CqlValue, Row};
    let s = stack("cassandra-values", 1).await?;
    let (source, dlq, ks) = (
        unique("values-in"),
        unique("values-dlq"),
        unique_keyspace("values"),
    );
    admin::create_topic(&s.infra.kafka, &source, 1).await?;
    admin::create_topic(&s.infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &s.session,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};
             CREATE TABLE {ks}.t (id int PRIMARY KEY, doc text, n text, m map<int, text>,
               mt map<timestamp, text>, s set<int>, d double, f float, tm time, dt date, ts timestamp);"
        ),
    )
    .await?;
    let job = s.run(&cassandra_job(&source, &ks, "t", &dlq)).await?;
    // Written by hand: each literal reaches the job as it is here.
    let records = [
        r#"{"id":0,"doc":{"order_id":18446744073709551616,"b":[1,2.5]},"n":1.50}"#,
        r#"{"id":1,"n":1E+2,"s":["1","01",2]}"#,
        r#"{"id":2,"m":{"1":"a","01":"b"}}"#,
        r#"{"id":3,"mt":{"2024-05-01T10:00:00Z":"a","2024-05-01T12:00:00+02:00":"b"}}"#,
        r#"{"id":4,"d":"1e400"}"#,
        r#"{"id":5,"d":"1e-400"}"#,
        r#"{"id":6,"f":1e39}"#,
        r#"{"id":7,"tm":"10:00:00.1234567891"}"#,
        r#"{"id":8,"tm":"23:59:60"}"#,
        r#"{"id":9,"dt":"20240501","ts":"20240501"}"#,
        r#"{"id":10,"ts":"1714557600"}"#,
        r#"{"id":11,"dt":"1714557600000","m":{"1":"a","2":"b"},"d":"2.5","f":"0.5","tm":"23:59:59.999999999","mt":{"1714557600000":"x"}}"#,
        r#"{"id":12,"n":1e21,"doc":[18446744073709551616,"x"]}"#,
    ];
    producer::produce(
        &s.infra.kafka,
        &source,
        records.iter().map(|r| r.to_string()),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&s.coordinator, &job, records.len() as u64).await?;

    let letters = dead_letters(&s.infra.kafka, &dlq).await?;
    let got: Vec<(i64, String)> = letters
        .iter()
        .map(|l| {
            (
                l["offset"].as_i64().unwrap_or(-1),
                l["error"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected = [
        (
            2,
            "column `m` (map<int, text>): keys `01` and `1` are the same int key",
        ),
        (
            3,
            "column `mt` (map<timestamp, text>): keys `2024-05-01T10:00:00Z` and \
             `2024-05-01T12:00:00+02:00` are the same timestamp key",
        ),
        (
            4,
            "column `d` (double): \"1e400\" is out of range for double",
        ),
        (
            5,
            "column `d` (double): \"1e-400\" is too small for double: it would be 0",
        ),
        (6, "column `f` (float): "),
        (
            7,
            "column `tm` (time): \"10:00:00.1234567891\" is not a time of day: a fraction of a \
             second has 1 to 9 digits",
        ),
        (
            8,
            "column `tm` (time): \"23:59:60\" is not a time of day: second 60 is a leap second",
        ),
        (
            10,
            "column `ts` (timestamp): `1714557600` is not a time: text of digits only is epoch \
             milliseconds when it has 13 digits",
        ),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for ((offset, error), (want_offset, want)) in got.iter().zip(expected) {
        assert_eq!(*offset, want_offset, "{error}");
        assert!(error.starts_with(want), "offset {offset}: {error}");
    }
    assert!(got[4].1.contains("is out of range for float"), "{got:?}");

    let result = s
        .session
        .query_unpaged(
            format!("SELECT id, doc, n, m, mt, s, d, f, tm, dt, ts FROM {ks}.t"),
            (),
        )
        .await?
        .into_rows_result()?;
    let mut rows: Vec<Vec<Option<CqlValue>>> = result
        .rows::<Row>()?
        .map(|r| r.map(|r| r.columns))
        .collect::<Result<_, _>>()?;
    rows.sort_by_key(|r| match r[0] {
        Some(CqlValue::Int(id)) => id,
        _ => -1,
    });
    let text = |s: &str| Some(CqlValue::Text(s.into()));
    let may1 = Some(CqlValue::Date(CqlDate::from(
        chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap_or_default(),
    )));
    let row = |id: i32, columns: &[(usize, Option<CqlValue>)]| {
        let mut row = vec![None; 11];
        row[0] = Some(CqlValue::Int(id));
        for (i, v) in columns {
            row[*i] = v.clone();
        }
        row
    };
    let expected_rows = vec![
        row(
            0,
            &[
                (1, text(r#"{"b":[1,2.5],"order_id":18446744073709551616}"#)),
                (2, text("1.5")),
            ],
        ),
        row(
            1,
            &[
                (2, text("100.0")),
                (
                    5,
                    Some(CqlValue::Set(vec![CqlValue::Int(1), CqlValue::Int(2)])),
                ),
            ],
        ),
        row(
            9,
            &[
                (9, may1.clone()),
                (
                    10,
                    Some(CqlValue::Timestamp(CqlTimestamp(1_714_521_600_000))),
                ),
            ],
        ),
        row(
            11,
            &[
                (
                    3,
                    Some(CqlValue::Map(vec![
                        (CqlValue::Int(1), CqlValue::Text("a".into())),
                        (CqlValue::Int(2), CqlValue::Text("b".into())),
                    ])),
                ),
                (
                    4,
                    Some(CqlValue::Map(vec![(
                        CqlValue::Timestamp(CqlTimestamp(1_714_557_600_000)),
                        CqlValue::Text("x".into()),
                    )])),
                ),
                (6, Some(CqlValue::Double(2.5))),
                (7, Some(CqlValue::Float(0.5))),
                (8, Some(CqlValue::Time(CqlTime(86_399_999_999_999)))),
                (9, may1),
            ],
        ),
        row(
            12,
            &[
                (1, text(r#"[18446744073709551616,"x"]"#)),
                (2, text("1e+21")),
            ],
        ),
    ];
    assert_eq!(rows, expected_rows);
    running_without_restarts(&s.coordinator, &job)
}
