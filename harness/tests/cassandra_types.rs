//! What the Cassandra sink writes and refuses up front: every column type
//! Sluice supports reads back exactly as sent; times given with `+0530` /
//! `+0000` offsets, zone-less or as float epoch milliseconds mean the same
//! instant to the Cassandra sink and to the S3 sink's `time_field`; a table
//! the job cannot write is refused at submit with its field path.

use num_bigint::BigInt;
use scylla::value::{
    CqlDate, CqlDecimal, CqlDuration, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint, Row,
};
use serde_json::{Value, json};
use sluice_harness::admin;
use sluice_harness::checks::{dead_letters, running_without_restarts, unique_keyspace};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_checkpointed, wait_for, wait_running,
};
use std::str::FromStr;
use std::time::Duration;

fn create_keyspace(ks: &str) -> String {
    format!(
        "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};\n"
    )
}

fn decimal(digits: &str, scale: i32) -> CqlValue {
    let unscaled = BigInt::from_str(digits).unwrap_or_default();
    CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(
        unscaled.to_signed_bytes_be(),
        scale,
    ))
}

fn varint(digits: &str) -> CqlValue {
    let n = BigInt::from_str(digits).unwrap_or_default();
    CqlValue::Varint(CqlVarint::from_signed_bytes_be(n.to_signed_bytes_be()))
}

fn text(s: &str) -> CqlValue {
    CqlValue::Text(s.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_supported_column_type_reads_back_exactly_as_sent() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("cassandra-types");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let (source, dlq, ks) = (
        unique("types-in"),
        unique("types-dlq"),
        unique_keyspace("types"),
    );
    admin::create_topic(&infra.kafka, &source, 1).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &session,
        &format!(
            "{}CREATE TYPE {ks}.address (street text, zip int, tags frozen<set<text>>);
             CREATE TABLE {ks}.everything (
                id int PRIMARY KEY, d decimal, vi varint, ip inet, b blob, t time, du duration,
                tu frozen<tuple<int, text, boolean>>, home frozen<address>,
                homes list<frozen<address>>, fl frozen<list<int>>, fm frozen<map<text, bigint>>,
                si smallint, ti tinyint, a ascii, dt date, ts timestamp, tid timeuuid,
                f float, db double, bo boolean, s set<text>, m map<int, text>, v vector<float, 3>);",
            create_keyspace(&ks)
        ),
    )
    .await?;
    let records = [
        json!({
            "id": 1, "d": "123456789012345678901234567890.000000001",
            "vi": "-123456789012345678901234567890", "ip": "2001:db8::1", "b": "0xcafe",
            "t": "10:00:00.123456789", "du": "P1DT2H", "tu": [1, null, true],
            "home": {"street": "Main", "zip": 97477, "tags": ["a"]},
            "homes": [{"street": "Side"}], "fl": [1, 2], "fm": {"k": 9007199254740993_i64},
            "si": -32768, "ti": 127, "a": "plain", "dt": "2024-05-01",
            "ts": "2024-05-01 15:30:00.000+0530", "tid": "d2177dd0-eaa2-11de-a572-001b779c76e3",
            "f": 0.5, "db": -2.25, "bo": true, "s": ["x", "y"], "m": {"1": "one"},
            "v": [0.5, 1, -2]
        }),
        json!({
            "id": 2, "d": 0.1, "vi": 42, "ip": "10.0.0.1", "b": "yv4A", "t": "00:01",
            "du": "-1h30m", "tu": [null, "x", null], "si": "7", "ti": "-128", "ts": 1714557600000.5_f64,
            "dt": "2024-05-02T02:00:00+05:30", "bo": "false"
        }),
    ];
    let spec = format!(
        "name: {}\ncheckpoint: {{ interval: 500ms }}\n\
         source: {{ kafka: {{ brokers: \"{}\", topic: {source}, format: json }} }}\n\
         sink: {{ cassandra: {{ contact_points: [\"{}\"], keyspace: {ks}, table: everything }} }}\n\
         dead_letter: {{ kafka: {{ topic: {dlq} }} }}\n",
        unique("types"),
        infra.kafka,
        infra.cassandra
    );
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    producer::produce(
        &infra.kafka,
        &source,
        records.iter().map(Value::to_string),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&c, &job, 2).await?;
    assert!(dead_letters(&infra.kafka, &dlq).await?.is_empty());

    let columns =
        "d, vi, ip, b, t, du, tu, home, homes, fl, fm, si, ti, a, dt, ts, tid, f, db, bo, s, m, v";
    let read = |id: i32| {
        let session = &session;
        let query = format!("SELECT {columns} FROM {ks}.everything WHERE id = ?");
        async move {
            let rows = session
                .query_unpaged(query, (id,))
                .await?
                .into_rows_result()?;
            anyhow::Ok(rows.first_row::<Row>()?.columns)
        }
    };
    let address =
        |street: &str, zip: Option<i32>, tags: Option<Vec<&str>>| CqlValue::UserDefinedType {
            keyspace: ks.clone(),
            name: "address".into(),
            fields: vec![
                ("street".into(), Some(text(street))),
                ("zip".into(), zip.map(CqlValue::Int)),
                (
                    "tags".into(),
                    tags.map(|t| CqlValue::Set(t.into_iter().map(text).collect())),
                ),
            ],
        };
    let may = |day| {
        CqlValue::Date(CqlDate::from(
            chrono::NaiveDate::from_ymd_opt(2024, 5, day).unwrap_or_default(),
        ))
    };
    let ten_utc = CqlValue::Timestamp(CqlTimestamp(1_714_557_600_000));
    let one: Vec<Option<CqlValue>> = vec![
        Some(decimal("123456789012345678901234567890000000001", 9)),
        Some(varint("-123456789012345678901234567890")),
        Some(CqlValue::Inet("2001:db8::1".parse()?)),
        Some(CqlValue::Blob(vec![0xca, 0xfe])),
        Some(CqlValue::Time(CqlTime(36_000_123_456_789))),
        Some(CqlValue::Duration(CqlDuration {
            months: 0,
            days: 1,
            nanoseconds: 2 * 3_600_000_000_000,
        })),
        Some(CqlValue::Tuple(vec![
            Some(CqlValue::Int(1)),
            None,
            Some(CqlValue::Boolean(true)),
        ])),
        Some(address("Main", Some(97477), Some(vec!["a"]))),
        Some(CqlValue::List(vec![address("Side", None, None)])),
        Some(CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)])),
        Some(CqlValue::Map(vec![(
            text("k"),
            CqlValue::BigInt(9_007_199_254_740_993),
        )])),
        Some(CqlValue::SmallInt(-32768)),
        Some(CqlValue::TinyInt(127)),
        Some(CqlValue::Ascii("plain".into())),
        Some(may(1)),
        Some(ten_utc.clone()),
        Some(CqlValue::Timeuuid(CqlTimeuuid::from_str(
            "d2177dd0-eaa2-11de-a572-001b779c76e3",
        )?)),
        Some(CqlValue::Float(0.5)),
        Some(CqlValue::Double(-2.25)),
        Some(CqlValue::Boolean(true)),
        Some(CqlValue::Set(vec![text("x"), text("y")])),
        Some(CqlValue::Map(vec![(CqlValue::Int(1), text("one"))])),
        Some(CqlValue::Vector(vec![
            CqlValue::Float(0.5),
            CqlValue::Float(1.0),
            CqlValue::Float(-2.0),
        ])),
    ];
    assert_eq!(read(1).await?, one);
    let two: Vec<Option<CqlValue>> = vec![
        Some(decimal("1", 1)),
        Some(varint("42")),
        Some(CqlValue::Inet("10.0.0.1".parse()?)),
        Some(CqlValue::Blob(vec![0xca, 0xfe, 0x00])),
        Some(CqlValue::Time(CqlTime(60_000_000_000))),
        Some(CqlValue::Duration(CqlDuration {
            months: 0,
            days: 0,
            nanoseconds: -90 * 60_000_000_000,
        })),
        Some(CqlValue::Tuple(vec![None, Some(text("x")), None])),
        None,
        None,
        None,
        None,
        Some(CqlValue::SmallInt(7)),
        Some(CqlValue::TinyInt(-128)),
        None,
        // The job's zone is UTC: 02:00 at +05:30 is still 1 May there.
        Some(may(1)),
        Some(ten_utc),
        None,
        None,
        None,
        Some(CqlValue::Boolean(false)),
        None,
        None,
        None,
    ];
    assert_eq!(read(2).await?, two);
    running_without_restarts(&c, &job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_like_0530_and_float_epochs_are_one_instant_to_the_cassandra_and_s3_sinks()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("sink-timestamps");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let (source, dlq, ks) = (
        unique("times-in"),
        unique("times-dlq"),
        unique_keyspace("times"),
    );
    admin::create_topic(&infra.kafka, &source, 1).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    admin::run_cql(
        &session,
        &format!(
            "{}CREATE TABLE {ks}.events (id int PRIMARY KEY, ts timestamp, day date);",
            create_keyspace(&ks)
        ),
    )
    .await?;
    // 10:00 UTC on 1 May 2024, written seven ways; the jobs run in India's zone.
    let times = [
        json!("2024-05-01 15:30:00.000+0530"),
        json!("2024-05-01T10:00:00+0000"),
        json!(1_714_557_600_000.5_f64),
        json!("2024-05-01 10:00:00.000000+0000"),
        json!("2024-05-01T10:00Z"),
        json!("2024-05-01 15:30:00"),
        json!(1_714_557_600_000_i64),
    ];
    let records: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "ts": t, "day": t}).to_string())
        .collect();
    let files = dir.join("s3");
    let job = |sink: String| {
        format!(
            "name: {}\ntimezone: Asia/Kolkata\ncheckpoint: {{ interval: 500ms }}\n\
             source: {{ kafka: {{ brokers: \"{}\", topic: {source}, group_id: {}, format: json }} }}\n\
             sink: {sink}\ndead_letter: {{ kafka: {{ topic: {dlq} }} }}\n",
            unique("times"),
            infra.kafka,
            unique("times-group")
        )
    };
    let cassandra = submit(
        &c,
        &dir,
        &job(format!(
            "{{ cassandra: {{ contact_points: [\"{}\"], keyspace: {ks}, table: events }} }}",
            infra.cassandra
        )),
        &[],
    )?;
    let s3 = submit(
        &c,
        &dir,
        &job(format!(
            "{{ s3: {{ dir: \"{}\", prefix: out, time_field: ts, batch_interval: 300ms }} }}",
            files.display()
        )),
        &[],
    )?;
    wait_running(&c, &cassandra).await?;
    wait_running(&c, &s3).await?;
    producer::produce(&infra.kafka, &source, records.into_iter(), None, 0).await?;
    wait_checkpointed(&c, &cassandra, 7).await?;
    wait_checkpointed(&c, &s3, 7).await?;
    assert!(
        dead_letters(&infra.kafka, &dlq).await?.is_empty(),
        "no time was refused"
    );

    let rows = session
        .query_unpaged(format!("SELECT id, ts, day FROM {ks}.events"), ())
        .await?
        .into_rows_result()?;
    let mut got: Vec<(i32, CqlTimestamp, CqlDate)> = rows
        .rows::<(i32, CqlTimestamp, CqlDate)>()?
        .collect::<Result<_, _>>()?;
    got.sort_by_key(|r| r.0);
    let may1 = CqlDate::from(chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap_or_default());
    let expected: Vec<_> = (0..7)
        .map(|i| (i, CqlTimestamp(1_714_557_600_000), may1))
        .collect();
    assert_eq!(got, expected);

    // 10:00 UTC is 15:30 in Kolkata: the hour directory is the job zone's.
    let hour = files.join("out/dt=2024-05-01/hour=15");
    let ids = wait_for(
        "S3 files of all seven events",
        Duration::from_secs(60),
        || {
            let hour = hour.clone();
            async move {
                let mut ids = Vec::new();
                for file in std::fs::read_dir(&hour)? {
                    for line in std::fs::read_to_string(file?.path())?.lines() {
                        ids.push(
                            serde_json::from_str::<Value>(line)?["id"]
                                .as_i64()
                                .unwrap_or(-1),
                        );
                    }
                }
                ids.sort_unstable();
                Ok((ids.len() >= 7).then_some(ids))
            }
        },
    )
    .await?;
    assert_eq!(
        ids,
        (0..7).collect::<Vec<i64>>(),
        "each event once, in hour 15"
    );
    let days: Vec<_> = std::fs::read_dir(files.join("out"))?.collect();
    assert_eq!(days.len(), 1, "one day directory: {days:?}");
    running_without_restarts(&c, &cassandra)?;
    running_without_restarts(&c, &s3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_the_job_cannot_write_is_refused_at_submit_with_its_field() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("cassandra-submit");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let (topic, ks) = (unique("submit-in"), unique_keyspace("submit"));
    admin::create_topic(&infra.kafka, &topic, 1).await?;
    admin::run_cql(
        &session,
        &format!(
            "{}CREATE TABLE {ks}.counts (id text PRIMARY KEY, hits counter);
             CREATE TABLE {ks}.ok (id text PRIMARY KEY, v text);",
            create_keyspace(&ks)
        ),
    )
    .await?;
    let spec = |topic: &str, contact: &str, table: &str, columns: &str| {
        format!(
            "name: a\nsource: {{ kafka: {{ brokers: \"{}\", topic: {topic} }} }}\n\
             sink: {{ cassandra: {{ contact_points: [\"{contact}\"], keyspace: {ks}, table: {table}{columns} }} }}\n",
            infra.kafka
        )
    };
    let cassandra = infra.cassandra.as_str();
    let absent = unique("absent");
    let cases = [
        (
            "missing table",
            spec(&topic, cassandra, "nope", ""),
            vec![format!(
                "sink.cassandra.table: table {ks}.nope does not exist"
            )],
        ),
        (
            "counter column",
            spec(&topic, cassandra, "counts", ""),
            vec![format!(
                "sink.cassandra.table: column `hits` of {ks}.counts has type `counter`, which Sluice cannot write"
            )],
        ),
        (
            "mapped column that is none",
            spec(&topic, cassandra, "ok", ", columns: { nmae: name }"),
            vec![format!(
                "sink.cassandra.columns.nmae: `nmae` is not a column of {ks}.ok (its columns: id, v)"
            )],
        ),
        (
            "Cassandra unreachable",
            spec(&topic, "127.0.0.1:1", "ok", ""),
            vec!["sink.cassandra.contact_points: Cassandra unreachable at 127.0.0.1:1".to_string()],
        ),
        (
            "missing topic and table, in one answer",
            spec(&absent, cassandra, "nope", ""),
            vec![
                "source.kafka.topic: ".to_string(),
                format!("sink.cassandra.table: table {ks}.nope does not exist"),
            ],
        ),
    ];
    for (what, text, needles) in &cases {
        let file = dir.join(format!("{}.yaml", unique("spec")));
        std::fs::write(&file, text)?;
        let out = jobctl(&c, &["submit", file.to_str().unwrap_or_default()], &[])?;
        assert!(!out.success, "{what}: accepted");
        let err = out.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
        for needle in needles {
            assert!(
                err.contains(needle.as_str()),
                "{what}: {needle:?} not in {err:?}"
            );
        }
    }
    let jobs = jobctl_json(&c, &["list"])?;
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(0),
        "nothing was deployed: {jobs}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandras_own_keyspaces_are_refused_at_submit_as_what_they_are() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("cassandra-system");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let topic = unique("system-in");
    admin::create_topic(&infra.kafka, &topic, 1).await?;
    let spec = |keyspace: &str, table: &str| {
        format!(
            "name: {}\nsource: {{ kafka: {{ brokers: \"{}\", topic: {topic} }} }}\n\
             sink: {{ cassandra: {{ contact_points: [\"{}\"], keyspace: {keyspace}, table: {table} }} }}\n",
            unique("system"),
            infra.kafka,
            infra.cassandra
        )
    };
    let local = "a Cassandra system keyspace, holding each node's own data";
    let replicated =
        "a Cassandra system keyspace, holding data Cassandra replicates for its own use";
    let virtual_tables = "a keyspace of Cassandra's virtual tables: views of a node's state and \
                          settings computed when read, not stored data, which cannot be written";
    for (keyspace, table, what) in [
        ("system_schema", "tables", local),
        ("system", "peers_v2", local),
        ("system", "local", local),
        ("system_auth", "roles", replicated),
        ("system_distributed", "repair_history", replicated),
        ("system_traces", "sessions", replicated),
        ("system_views", "settings", virtual_tables),
        ("system_virtual_schema", "tables", virtual_tables),
        ("system_views", "no_such_table", virtual_tables),
    ] {
        let file = dir.join(format!("{}.yaml", unique("spec")));
        std::fs::write(&file, spec(keyspace, table))?;
        let out = jobctl(&c, &["submit", file.to_str().unwrap_or_default()], &[])?;
        assert!(!out.success, "{keyspace}.{table}: accepted");
        let err = out.stderr.trim();
        let expected =
            format!("sink.cassandra.keyspace: {keyspace}.{table} is in {keyspace}, {what}");
        assert!(err.contains(&expected), "{keyspace}.{table}: {err}");
        assert!(
            err.contains(
                "a job may not write to Cassandra's own keyspaces: name a keyspace of your own"
            ),
            "{keyspace}.{table}: {err}"
        );
    }
    let jobs = jobctl_json(&c, &["list"])?;
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(0),
        "nothing was deployed: {jobs}"
    );
    // A keyspace of the users' may start with `system`.
    let own = format!("system_{}", unique_keyspace("own"));
    admin::run_cql(
        &session,
        &format!(
            "{}CREATE TABLE {own}.t (id int PRIMARY KEY, v text);",
            create_keyspace(&own)
        ),
    )
    .await?;
    let job = submit(&c, &dir, &spec(&own, "t"), &[])?;
    wait_running(&c, &job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digits_in_text_are_a_date_or_epoch_milliseconds_or_refused_alike_by_both_sinks()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("digit-times");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let (source, cassandra_dlq, s3_dlq, ks) = (
        unique("digits-in"),
        unique("digits-cassandra-dlq"),
        unique("digits-s3-dlq"),
        unique_keyspace("digits"),
    );
    for topic in [&source, &cassandra_dlq, &s3_dlq] {
        admin::create_topic(&infra.kafka, topic, 1).await?;
    }
    admin::run_cql(
        &session,
        &format!(
            "{}CREATE TABLE {ks}.events (id int PRIMARY KEY, ts timestamp, day date);",
            create_keyspace(&ks)
        ),
    )
    .await?;
    // A basic ISO date, epoch seconds, epoch milliseconds, an eight-digit
    // date that does not exist, and epoch milliseconds from before 2001.
    let times = [
        "20240501",
        "1714557600",
        "1714557600000",
        "20241301",
        "986000000000",
    ];
    let records: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": i, "ts": t, "day": t}).to_string())
        .collect();
    let files = dir.join("s3");
    let job = |sink: String, dlq: &str| {
        format!(
            "name: {}\ncheckpoint: {{ interval: 500ms }}\n\
             source: {{ kafka: {{ brokers: \"{}\", topic: {source}, group_id: {}, format: json }} }}\n\
             sink: {sink}\ndead_letter: {{ kafka: {{ topic: {dlq} }} }}\n",
            unique("digits"),
            infra.kafka,
            unique("digits-group")
        )
    };
    let cassandra = submit(
        &c,
        &dir,
        &job(
            format!(
                "{{ cassandra: {{ contact_points: [\"{}\"], keyspace: {ks}, table: events }} }}",
                infra.cassandra
            ),
            &cassandra_dlq,
        ),
        &[],
    )?;
    let s3 = submit(
        &c,
        &dir,
        &job(
            format!(
                "{{ s3: {{ dir: \"{}\", prefix: out, time_field: ts, batch_interval: 300ms }} }}",
                files.display()
            ),
            &s3_dlq,
        ),
        &[],
    )?;
    wait_running(&c, &cassandra).await?;
    wait_running(&c, &s3).await?;
    producer::produce(&infra.kafka, &source, records.into_iter(), None, 0).await?;
    wait_checkpointed(&c, &cassandra, 5).await?;
    wait_checkpointed(&c, &s3, 5).await?;

    // The same records refused by both sinks, each saying why.
    for (dlq, field) in [
        (&cassandra_dlq, "column `day` (date): "),
        (&s3_dlq, "time field `ts`: "),
    ] {
        let letters = dead_letters(&infra.kafka, dlq).await?;
        let got: Vec<(i64, String)> = letters
            .iter()
            .map(|l| {
                (
                    l["offset"].as_i64().unwrap_or(-1),
                    l["error"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got.iter().map(|g| g.0).collect::<Vec<_>>(),
            [1, 3, 4],
            "{got:?}"
        );
        for ((_, error), why) in got.iter().zip([
            "`1714557600` is not a time: text of digits only is epoch milliseconds when it has 13 \
             digits and a date (`YYYYMMDD`) when it has 8; this has 10 digits",
            "`20241301` is not a time: there is no date 2024-13-01",
            "`986000000000` is not a time: text of digits only is epoch milliseconds when it has \
             13 digits and a date (`YYYYMMDD`) when it has 8; this has 12 digits",
        ]) {
            assert!(error.starts_with(field), "{error}");
            assert!(error.contains(why), "{error}");
        }
    }

    let rows = session
        .query_unpaged(format!("SELECT id, ts, day FROM {ks}.events"), ())
        .await?
        .into_rows_result()?;
    let mut got: Vec<(i32, CqlTimestamp, CqlDate)> = rows
        .rows::<(i32, CqlTimestamp, CqlDate)>()?
        .collect::<Result<_, _>>()?;
    got.sort_by_key(|r| r.0);
    let may1 = CqlDate::from(chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap_or_default());
    assert_eq!(
        got,
        [
            (0, CqlTimestamp(1_714_521_600_000), may1),
            (2, CqlTimestamp(1_714_557_600_000), may1),
        ]
    );
    // The S3 sink files them by the same times: midnight and 10:00 of 1 May.
    let day = files.join("out/dt=2024-05-01");
    let placed = wait_for("S3 files of both events", Duration::from_secs(60), || {
        let day = day.clone();
        async move {
            let mut placed = Vec::new();
            for hour in std::fs::read_dir(&day)? {
                let hour = hour?;
                for file in std::fs::read_dir(hour.path())? {
                    for line in std::fs::read_to_string(file?.path())?.lines() {
                        let id = serde_json::from_str::<Value>(line)?["id"]
                            .as_i64()
                            .unwrap_or(-1);
                        placed.push((hour.file_name().to_string_lossy().into_owned(), id));
                    }
                }
            }
            placed.sort();
            Ok((placed.len() >= 2).then_some(placed))
        }
    })
    .await?;
    assert_eq!(
        placed,
        [("hour=00".to_string(), 0), ("hour=10".to_string(), 2)]
    );
    let days: Vec<_> = std::fs::read_dir(files.join("out"))?.collect();
    assert_eq!(days.len(), 1, "one day directory: {days:?}");
    running_without_restarts(&c, &cassandra)?;
    running_without_restarts(&c, &s3)
}
