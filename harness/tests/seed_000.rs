//! Seed 000 end to end: the shipped job over real Kafka and Cassandra, on a
//! real coordinator and two workers, every output checked against its input.

use chrono::NaiveDate;
use scylla::value::{CqlDate, CqlTimestamp};
use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::{producer, user_events::UserEvents};
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, task_metric, test_dir, unique, wait_for,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use uuid::Uuid;

const EVENTS: usize = 10_000;
const MALFORMED_EVERY: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_user_events_land_in_cassandra_and_malformed_in_dead_letters() -> anyhow::Result<()>
{
    let infra = infra()?;
    let dir = test_dir("seed-000");
    let cluster = SluiceCluster::start(&dir, 2, ClusterOptions::default()).await?;
    let coordinator = cluster.coordinator_address.clone();

    // The shipped spec, with topics of this run so earlier runs cannot leak in.
    let source = unique("user-events");
    let dlq = unique("user-events-dlq");
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/jobs/user-events-to-cassandra.yaml"
    ))?;
    let spec = shipped
        .replace("topic: user-events-dlq", &format!("topic: {dlq}"))
        .replace("topic: user-events\n", &format!("topic: {source}\n"));
    assert_ne!(
        spec, shipped,
        "the shipped spec names its topics as expected"
    );

    admin::create_topic(&infra.kafka, &source, 3).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let session = admin::cassandra_session(&infra.cassandra).await?;
    admin::run_cql(
        &session,
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/cql/user_events.cql"
        ))?,
    )
    .await?;
    session
        .query_unpaged("TRUNCATE event_streaming.user_events", ())
        .await?;

    let job = submit(
        &coordinator,
        &dir,
        &spec,
        &[
            ("KAFKA_BROKER", &infra.kafka),
            ("CASSANDRA_HOST", &infra.cassandra),
        ],
    )?;

    let generated: Vec<_> = UserEvents::new(7, 300, Some(MALFORMED_EVERY))
        .take(EVENTS)
        .collect();
    producer::produce(
        &infra.kafka,
        &source,
        generated.iter().map(|g| g.payload.clone()),
        None,
        0,
    )
    .await?;
    let valid: HashMap<Uuid, _> = generated
        .iter()
        .filter_map(|g| g.event.as_ref())
        .map(|e| (e.event_id, e))
        .collect();
    let malformed: BTreeSet<&str> = generated
        .iter()
        .filter(|g| g.event.is_none())
        .map(|g| g.payload.as_str())
        .collect();
    assert_eq!(valid.len(), 9_950);
    assert_eq!(malformed.len(), 50);

    let expected_rows = valid.len();
    wait_for(
        "9,950 rows in event_streaming.user_events",
        Duration::from_secs(180),
        || {
            let session = &session;
            async move {
                let rows = session
                    .query_unpaged("SELECT count(*) FROM event_streaming.user_events", ())
                    .await?
                    .into_rows_result()?;
                let (n,) = rows.first_row::<(i64,)>()?;
                Ok((n as usize >= expected_rows).then_some(()))
            }
        },
    )
    .await?;

    // Every row is exactly one valid input event, with its bucket, keys and values.
    let mut pager = session
        .query_iter(
            "SELECT user_id, bucket_date, event_time, event_type, event_id, metadata FROM event_streaming.user_events",
            (),
        )
        .await?
        .rows_stream::<(Uuid, CqlDate, CqlTimestamp, String, Uuid, BTreeMap<String, String>)>()?;
    let mut seen = BTreeSet::new();
    use futures::TryStreamExt;
    while let Some((user_id, bucket, time, event_type, event_id, metadata)) =
        pager.try_next().await?
    {
        let e = valid
            .get(&event_id)
            .unwrap_or_else(|| panic!("row for unknown event {event_id}"));
        assert!(seen.insert(event_id), "event {event_id} written twice");
        assert_eq!(user_id, e.user_id);
        assert_eq!(
            time.0,
            e.event_time.timestamp_millis(),
            "event_time of {event_id}"
        );
        let expected_bucket: NaiveDate = e.event_time.date_naive();
        assert_eq!(
            bucket,
            CqlDate::from(expected_bucket),
            "bucket_date of {event_id}"
        );
        assert_eq!(event_type, e.event_type);
        assert_eq!(
            metadata,
            e.metadata.iter().cloned().collect::<BTreeMap<_, _>>()
        );
    }
    assert_eq!(seen.len(), valid.len(), "every valid event is a row");

    // Every malformed message is in the dead-letter topic once, with its error
    // and the partition and offset it was read at.
    let source_messages = admin::read_topic(
        &infra.kafka,
        &source,
        EVENTS,
        Duration::from_secs(10),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?;
    let at: HashMap<(i32, i64), &str> = source_messages
        .iter()
        .map(|m| ((m.partition, m.offset), m.payload.as_str()))
        .collect();
    let dead = admin::read_topic(
        &infra.kafka,
        &dlq,
        50,
        Duration::from_secs(30),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?;
    assert_eq!(dead.len(), 50, "dead letters: {dead:?}");
    let mut dead_inputs = BTreeSet::new();
    let mut steps = BTreeMap::new();
    for d in &dead {
        let v: serde_json::Value = serde_json::from_str(&d.payload)?;
        assert_eq!(v["topic"], source.as_str());
        assert!(
            !v["error"].as_str().unwrap_or_default().is_empty(),
            "no error in {v}"
        );
        let key = (
            v["partition"].as_i64().unwrap_or(-1) as i32,
            v["offset"].as_i64().unwrap_or(-1),
        );
        let input = at
            .get(&key)
            .unwrap_or_else(|| panic!("dead letter names no source message: {v}"));
        assert!(
            malformed.contains(input),
            "a valid message was dead-lettered: {input}"
        );
        assert!(
            dead_inputs.insert(key),
            "message {key:?} dead-lettered twice"
        );
        *steps
            .entry(v["failed_at"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
        match v["failed_at"].as_str() {
            Some("decode") => assert!(v["error"].as_str().unwrap_or_default().contains("not JSON")),
            Some("transform") => assert!(
                v["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not-a-time")
            ),
            Some("sink") => {
                let error = v["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("column `user_id` (uuid): \"user-")
                        && error.contains("is not a UUID"),
                    "sink error names the column, its type and the value: {v}"
                );
            }
            other => panic!("unexpected failed_at {other:?} in {v}"),
        }
    }

    assert_eq!(
        steps.len(),
        3,
        "decode, transform and sink failures all dead-lettered: {steps:?}"
    );

    // jobctl shows the job running, its subtasks on both workers.
    // Task metrics reach the coordinator with heartbeats, so they trail the
    // dead-letter topic by a heartbeat or two.
    let status = wait_for("every dead letter counted", Duration::from_secs(30), || {
        let (coordinator, job) = (&coordinator, &job);
        async move {
            let status = jobctl_json(coordinator, &["status", job])?;
            Ok((task_metric(&status, None, "dead_lettered") >= 50).then_some(status))
        }
    })
    .await?;
    assert_eq!(status["state"], "RUNNING", "{status}");
    let workers: BTreeSet<&str> = status["tasks"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["worker_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(workers.len(), 2, "subtasks on both workers: {status}");
    let dead_lettered = task_metric(&status, None, "dead_lettered");
    assert_eq!(dead_lettered, 50, "{status}");
    let table = jobctl(&coordinator, &["status", &job], &[])?;
    assert!(table.stdout.contains("RUNNING"), "{}", table.stdout);
    drop(cluster);
    Ok(())
}
