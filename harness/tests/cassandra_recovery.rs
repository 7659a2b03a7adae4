//! Cassandra after a worker loss: replays after recovery are upserts on the
//! primary key, so the table ends with exactly the expected rows.

use scylla::value::CqlTimestamp;
use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::{producer, user_events::UserEvents};
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::collections::HashMap;
use std::time::Duration;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_leaves_exactly_the_expected_rows() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("cassandra-recovery");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 3, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let source = unique("cass-recovery");
    admin::create_topic(&infra.kafka, &source, 3).await?;
    let session = admin::cassandra_session(&infra.cassandra).await?;
    // A keyspace of its own, so it runs beside the seed 000 test.
    let keyspace = format!("recovery_{}", Uuid::new_v4().simple());
    let schema = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/cql/user_events.cql"
    ))?
    .replace("event_streaming", &keyspace);
    admin::run_cql(&session, &schema).await?;

    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: events-with-a-loss
parallelism: 3
checkpoint: {{ interval: 500ms }}
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {source} }} }}
transforms:
  - remap: |
      ts = parse_timestamp!(string!(.event_time), "%+")
      .event_time = ts
      .bucket_date = format_timestamp!(ts, "%F", timezone: "UTC")
  - key_by: [user_id]
sink: {{ cassandra: {{ contact_points: ["{c}"], keyspace: {keyspace}, table: user_events }} }}
"#,
            k = infra.kafka,
            c = infra.cassandra
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;
    let events: Vec<_> = UserEvents::new(11, 100, None)
        .take(20_000)
        .filter_map(|g| g.event.map(|e| (g.payload, e)))
        .collect();
    let brokers = infra.kafka.clone();
    let topic = source.clone();
    let payloads: Vec<String> = events.iter().map(|(p, _)| p.clone()).collect();
    let producing = tokio::spawn(async move {
        producer::produce(&brokers, &topic, payloads.into_iter(), Some(4_000), 0).await
    });
    wait_for("a checkpoint", Duration::from_secs(30), || {
        let (c, j) = (&coordinator, &job);
        async move {
            Ok((jobctl_json(c, &["status", j])?["last_checkpoint_id"]
                .as_u64()
                .unwrap_or(0)
                >= 2)
                .then_some(()))
        }
    })
    .await?;
    cluster.kill_worker(2);
    producing.await??;

    let count_query = format!("SELECT count(*) FROM {keyspace}.user_events");
    wait_for("every event a row", Duration::from_secs(180), || {
        let (session, q, n) = (&session, &count_query, events.len());
        async move {
            let rows = session
                .query_unpaged(q.as_str(), ())
                .await?
                .into_rows_result()?;
            let (count,) = rows.first_row::<(i64,)>()?;
            Ok((count as usize >= n).then_some(()))
        }
    })
    .await?;
    // Past the first full count, replays may still arrive: they must not add rows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let expected: HashMap<Uuid, i64> = events
        .iter()
        .map(|(_, e)| (e.event_id, e.event_time.timestamp_millis()))
        .collect();
    let rows = session
        .query_unpaged(
            format!("SELECT event_id, event_time FROM {keyspace}.user_events"),
            (),
        )
        .await?
        .into_rows_result()?;
    let mut seen = 0;
    for row in rows.rows::<(Uuid, CqlTimestamp)>()? {
        let (event_id, time) = row?;
        assert_eq!(
            expected.get(&event_id),
            Some(&time.0),
            "row for event {event_id}"
        );
        seen += 1;
    }
    let status = jobctl_json(&coordinator, &["status", &job])?;
    println!(
        "cassandra recovery: {seen} rows for {} events, {} restarts",
        expected.len(),
        status["restarts"]
    );
    assert!(status["restarts"].as_u64().unwrap_or(0) >= 1, "{status}");
    assert_eq!(seen, expected.len(), "exactly one row per event");
    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), ())
        .await?;
    Ok(())
}
