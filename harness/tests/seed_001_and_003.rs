//! Seeds 001 and 003 on Sluice, with their shipped job specs and schemas:
//! `users_created` into `spark_user_streams.created_users` (configured
//! through KAFKA_BROKER and CASSANDRA_HOST), and RandomUser results
//! flattened, cleaned and deduplicated on `login.uuid` into `user_data.users`.

use serde_json::Value;
use sluice_harness::admin;
use sluice_harness::cluster::SluiceCluster;
use sluice_harness::datagen::producer;
use sluice_harness::datagen::users::{CreatedUsers, RandomUsers, seed_003_row};
use sluice_harness::testing::{infra, submit, test_dir, unique, wait_for, wait_running};
use std::collections::BTreeMap;
use std::time::Duration;

/// Creates the schema of a shipped CQL file and empties its table.
async fn schema(
    session: &scylla::client::session::Session,
    file: &str,
    table: &str,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(format!(
        "{}/../deploy/cql/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))?;
    admin::run_cql(session, &text).await?;
    session
        .query_unpaged(format!("TRUNCATE {table}"), ())
        .await?;
    Ok(())
}

/// Every row of `table` as JSON (`SELECT JSON`), once there are `expected`.
async fn rows(
    session: &scylla::client::session::Session,
    table: &str,
    expected: usize,
) -> anyhow::Result<Vec<Value>> {
    let count = format!("SELECT count(*) FROM {table}");
    wait_for(
        &format!("{expected} rows in {table}"),
        Duration::from_secs(120),
        || {
            let count = &count;
            async move {
                let rows = session
                    .query_unpaged(count.as_str(), ())
                    .await?
                    .into_rows_result()?;
                let (n,) = rows.first_row::<(i64,)>()?;
                Ok((n as usize >= expected).then_some(()))
            }
        },
    )
    .await?;
    // Past the full count, a replay must not add rows.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = session
        .query_unpaged(format!("SELECT JSON * FROM {table}"), ())
        .await?
        .into_rows_result()?;
    let mut out = Vec::new();
    for row in result.rows::<(String,)>()? {
        out.push(serde_json::from_str(&row?.0)?);
    }
    Ok(out)
}

/// A running shipped job reading a fresh topic named after `topic`, writing
/// to an emptied `table`.
struct Seed {
    _cluster: SluiceCluster,
    session: scylla::client::session::Session,
    topic: String,
}

async fn start_seed(
    name: &str,
    cql: &str,
    table: &str,
    spec: &str,
    topic: &str,
) -> anyhow::Result<Seed> {
    let infra = infra()?;
    let dir = test_dir(name);
    let cluster = SluiceCluster::start(&dir, 2, Default::default()).await?;
    let c = cluster.coordinator_address.clone();
    let session = admin::cassandra_session(&infra.cassandra).await?;
    schema(&session, cql, table).await?;
    let fresh = unique(topic);
    admin::create_topic(&infra.kafka, &fresh, 3).await?;
    admin::create_topic(&infra.kafka, &format!("{topic}-dlq"), 1).await?;
    let spec = spec
        .replace(&format!("topic: {topic}\n"), &format!("topic: {fresh}\n"))
        .replace("interval: 5s", "interval: 500ms");
    // The seeds' own configuration: the broker and Cassandra from the environment.
    let job = submit(
        &c,
        &dir,
        &spec,
        &[
            ("KAFKA_BROKER", infra.kafka.as_str()),
            ("CASSANDRA_HOST", infra.cassandra.as_str()),
        ],
    )?;
    wait_running(&c, &job).await?;
    Ok(Seed {
        _cluster: cluster,
        session,
        topic: fresh,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_every_created_user_becomes_one_row_with_every_field() -> anyhow::Result<()> {
    let infra = infra()?;
    let seed = start_seed(
        "seed-001",
        "created_users.cql",
        "spark_user_streams.created_users",
        include_str!("../../deploy/jobs/users-created-to-cassandra.yaml"),
        "users_created",
    )
    .await?;
    let (session, topic) = (&seed.session, &seed.topic);
    let n = 2_000;
    let users: Vec<Value> = CreatedUsers::new(21).take(n).collect();
    producer::produce(
        &infra.kafka,
        topic,
        users.iter().map(Value::to_string),
        Some(2_000),
        0,
    )
    .await?;
    let got = rows(session, "spark_user_streams.created_users", n).await?;
    let by_id: BTreeMap<String, &Value> = got
        .iter()
        .map(|r| (r["id"].as_str().unwrap_or_default().to_string(), r))
        .collect();
    for u in &users {
        let row = by_id.get(u["id"].as_str().unwrap_or_default()).copied();
        let Some(row) = row else {
            panic!("no row for user {}", u["id"]);
        };
        for field in [
            "first_name",
            "last_name",
            "dob",
            "gender",
            "address",
            "username",
            "email",
            "phone",
            "registered_date",
            "picture",
        ] {
            assert_eq!(row[field], u[field], "{field} of user {}", u["id"]);
        }
        assert_eq!(
            row["postal_code"], u["post_code"],
            "postal_code of user {}",
            u["id"]
        );
    }
    println!("seed 001: {n} users, {} rows", got.len());
    assert_eq!(got.len(), n, "exactly one row per user");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_one_clean_row_per_login_uuid_without_credentials() -> anyhow::Result<()> {
    let infra = infra()?;
    let seed = start_seed(
        "seed-003",
        "random_users.cql",
        "user_data.users",
        include_str!("../../deploy/jobs/random-users-to-cassandra.yaml"),
        "random_users",
    )
    .await?;
    let (session, topic) = (&seed.session, &seed.topic);
    let users: Vec<Value> = RandomUsers::new(33, 10, 13).take(3_000).collect();
    // Keyed by login.uuid, as the generator produces them: repeats of a uuid
    // keep their order, so the first one is the one kept.
    let messages = users.iter().map(|u| {
        (
            u["login"]["uuid"].as_str().map(str::to_string),
            u.to_string(),
        )
    });
    producer::produce_keyed(&infra.kafka, topic, messages, Some(3_000), 0).await?;
    let mut first: BTreeMap<String, &Value> = BTreeMap::new();
    for u in &users {
        first
            .entry(u["login"]["uuid"].as_str().unwrap_or_default().to_string())
            .or_insert(u);
    }
    let got = rows(session, "user_data.users", first.len()).await?;
    let repeats = users.len() - first.len();
    println!(
        "seed 003: {} users with {repeats} repeated uuids, {} rows",
        users.len(),
        got.len()
    );
    assert_eq!(got.len(), first.len(), "one row per login.uuid");
    let secrets: Vec<String> = users
        .iter()
        .flat_map(|u| {
            ["password", "salt", "md5", "sha1", "sha256"]
                .map(|f| u["login"][f].as_str().unwrap_or_default().to_string())
        })
        .collect();
    for row in &got {
        let uuid = row["user_id"].as_str().unwrap_or_default();
        let want = seed_003_row(first[uuid]);
        assert_eq!(row, &want, "row of {uuid}");
        let all = row.to_string();
        assert!(
            !secrets.iter().any(|s| all.contains(s.as_str())),
            "a credential in {all}"
        );
    }
    Ok(())
}
