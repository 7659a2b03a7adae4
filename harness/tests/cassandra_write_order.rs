//! Records that update the same primary key in quick succession leave the
//! last record's values in Cassandra, although the sink batches rows of one
//! partition together and keeps many writes in flight: every row carries a
//! write time rising in record order.

use serde_json::json;
use sluice_harness::admin;
use sluice_harness::checks::{running_without_restarts, unique_keyspace};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{infra, submit, test_dir, unique, wait_checkpointed, wait_running};
use std::collections::BTreeMap;

const KEYS: usize = 20;
const UPDATES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_update_of_a_primary_key_wins_in_batches_and_in_flight() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("cassandra-write-order");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let coordinator = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    let (source, ks) = (unique("write-order-in"), unique_keyspace("write_order"));
    admin::create_topic(&infra.kafka, &source, 1).await?;
    // `v` falls while `seq` rises: of rows that share a write time,
    // Cassandra keeps the larger value, which is the earlier record's here.
    admin::run_cql(
        &session,
        &format!(
            "CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}};\n\
             CREATE TABLE {ks}.latest (id text, part int, seq int, v text, PRIMARY KEY (part, id));"
        ),
    )
    .await?;
    let records = (0..UPDATES).flat_map(|seq| {
        (0..KEYS).map(move |k| {
            json!({"id": format!("k{k}"), "part": k % 3, "seq": seq, "v": format!("{:06}", 999_999 - seq)})
                .to_string()
        })
    });
    producer::produce(&infra.kafka, &source, records, None, 0).await?;
    let spec = format!(
        "name: {}\ncheckpoint: {{ interval: 500ms }}\n\
         source: {{ kafka: {{ brokers: \"${{KAFKA_BROKER}}\", topic: {source}, format: json }} }}\n\
         sink: {{ cassandra: {{ contact_points: [\"${{CASSANDRA_HOST}}\"], keyspace: {ks}, table: latest, \
         batch_size: 64, max_concurrency: 64 }} }}\n",
        unique("write-order")
    );
    let job = submit(
        &coordinator,
        &dir,
        &spec,
        &[
            ("KAFKA_BROKER", infra.kafka.as_str()),
            ("CASSANDRA_HOST", infra.cassandra.as_str()),
        ],
    )?;
    wait_running(&coordinator, &job).await?;
    wait_checkpointed(&coordinator, &job, (KEYS * UPDATES) as u64).await?;

    let rows = session
        .query_unpaged(format!("SELECT id, seq, v FROM {ks}.latest"), ())
        .await?
        .into_rows_result()?;
    let got: BTreeMap<String, (i32, String)> = rows
        .rows::<(String, i32, String)>()?
        .map(|r| r.map(|(id, seq, v)| (id, (seq, v))))
        .collect::<Result<_, _>>()?;
    let last = (UPDATES - 1) as i32;
    let expected: BTreeMap<String, (i32, String)> = (0..KEYS)
        .map(|k| (format!("k{k}"), (last, format!("{:06}", 999_999 - last))))
        .collect();
    assert_eq!(got, expected, "each key holds its last record's values");
    running_without_restarts(&coordinator, &job)
}
