//! What setting up and checking a pipeline needs: topics, CQL schemas, and
//! reading a topic back.

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use std::time::{Duration, Instant};

/// Creates `topic` with `partitions` partitions; an existing topic is fine.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(brokers, topic, partitions, &[]).await
}

/// Creates `topic` with topic-level `config` (such as `max.message.bytes`).
pub async fn create_topic_with(
    brokers: &str,
    topic: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create Kafka admin client")?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let results = admin
        .create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .with_context(|| format!("cannot create topic `{topic}` on {brokers}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => anyhow::bail!("cannot create topic `{t}`: {e}"),
        }
    }
    Ok(())
}

fn admin_client(brokers: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("cannot create Kafka admin client")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Grows `topic` to `partitions` partitions, as operators grow a busy topic.
pub async fn add_partitions(brokers: &str, topic: &str, partitions: usize) -> anyhow::Result<()> {
    let results = admin_client(brokers)?
        .create_partitions(&[NewPartitions::new(topic, partitions)], &admin_options())
        .await
        .with_context(|| format!("cannot add partitions to `{topic}`"))?;
    for r in results {
        if let Err((t, e)) = r {
            anyhow::bail!("cannot grow `{t}` to {partitions} partitions: {e}");
        }
    }
    Ok(())
}

/// Deletes the records of `topic`'s `partition` before `offset`, as retention does.
pub async fn delete_records(
    brokers: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    let result = admin_client(brokers)?
        .delete_records(&tpl, &admin_options())
        .await
        .with_context(|| format!("cannot delete records of `{topic}` [{partition}]"))?;
    for e in result.elements() {
        if let Err(err) = e.error() {
            anyhow::bail!("cannot delete records of `{topic}` [{partition}]: {err}");
        }
    }
    Ok(())
}

/// Deletes `topic` (the broker goes on deleting it in the background).
pub async fn delete_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin = admin_client(brokers)?;
    for r in admin.delete_topics(&[topic], &admin_options()).await? {
        if let Err((t, e)) = r {
            anyhow::bail!("cannot delete topic `{t}`: {e}");
        }
    }
    Ok(())
}

/// Deletes `topic` and creates it again with `partitions` partitions, empty;
/// returns once the new topic exists (the broker refuses the name while
/// the old topic is being deleted).
pub async fn recreate_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    delete_topic(brokers, topic).await?;
    let admin = admin_client(brokers)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &admin_options(),
            )
            .await?;
        match created.into_iter().next() {
            Some(Ok(_)) => return Ok(()),
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(Err((t, e))) => anyhow::bail!("cannot create topic `{t}` again: {e}"),
            None => anyhow::bail!("no answer creating topic `{topic}` again"),
        }
    }
}

pub async fn cassandra_session(host: &str) -> anyhow::Result<Session> {
    SessionBuilder::new()
        .known_node(host)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .await
        .with_context(|| format!("cannot connect to Cassandra at {host}"))
}

/// Runs the `;`-separated statements of a CQL file; `--` comments are ignored.
pub async fn run_cql(session: &Session, text: &str) -> anyhow::Result<usize> {
    let without_comments: String = text
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut n = 0;
    for stmt in without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        session
            .query_unpaged(stmt, ())
            .await
            .with_context(|| format!("CQL statement failed: {stmt}"))?;
        n += 1;
    }
    Ok(n)
}

/// A message to produce as it is: `None` as value is a tombstone (no value
/// at all), unlike an empty value.
#[derive(Debug, Clone, Default)]
pub struct RawRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Produces `records` in order with one producer and one flush, so they
/// land in one fetch; waits until every one is acknowledged.
pub async fn produce_raw(brokers: &str, topic: &str, records: &[RawRecord]) -> anyhow::Result<()> {
    produce_raw_with(brokers, topic, records, &[]).await
}

/// [`produce_raw`] with producer settings, such as `compression.type`.
pub async fn produce_raw_with(
    brokers: &str,
    topic: &str,
    records: &[RawRecord],
    settings: &[(&str, &str)],
) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "500")
        .set("message.max.bytes", "10000000");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let producer: FutureProducer = config.create().context("cannot create producer")?;
    let mut deliveries = Vec::new();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &r.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        let mut msg = FutureRecord::<[u8], [u8]>::to(topic)
            .partition(r.partition)
            .headers(headers);
        if let Some(k) = &r.key {
            msg = msg.key(k);
        }
        if let Some(v) = &r.value {
            msg = msg.payload(v);
        }
        let delivery = producer
            .send_result(msg)
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to {topic}: {e}"))?;
        deliveries.push(delivery);
    }
    for d in deliveries {
        d.await
            .context("producer dropped a message")?
            .map_err(|(e, _)| anyhow::anyhow!("{topic} refused a message: {e}"))?;
    }
    Ok(())
}

/// A message read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: String,
}

/// Reads `topic` from the beginning until `expected` messages arrived or no
/// new message came for `quiet`, whichever is first, within `deadline`.
/// `isolation` is `read_committed` or `read_uncommitted`.
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    quiet: Duration,
    deadline: Duration,
    isolation: &str,
) -> anyhow::Result<Vec<ReadMessage>> {
    let (brokers, topic, isolation) = (
        brokers.to_string(),
        topic.to_string(),
        isolation.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set(
                "group.id",
                format!("sluice-reader-{}", uuid::Uuid::new_v4()),
            )
            .set("enable.auto.commit", "false")
            .set("isolation.level", &isolation)
            .create()?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let partitions = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let start = Instant::now();
        let mut last = Instant::now();
        let mut out = Vec::new();
        while out.len() < expected && start.elapsed() < deadline && last.elapsed() < quiet {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    out.push(ReadMessage {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: String::from_utf8_lossy(m.payload().unwrap_or_default())
                            .into_owned(),
                    });
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        Ok(out)
    })
    .await?
}

/// Offsets the consumer group `group` has committed for `topic`, by partition.
pub async fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<std::collections::BTreeMap<i32, i64>> {
    let (brokers, group, topic) = (brokers.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        let partitions = md
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(0) as i32;
        for p in 0..partitions {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        Ok(committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect())
    })
    .await?
}

/// A bucket of the test run's MinIO at `endpoint`.
pub fn s3_bucket(
    endpoint: &str,
    bucket: &str,
) -> anyhow::Result<std::sync::Arc<dyn object_store::ObjectStore>> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(bucket)
        .with_access_key_id(crate::minio::ACCESS_KEY)
        .with_secret_access_key(crate::minio::SECRET_KEY)
        .build()?;
    Ok(std::sync::Arc::new(store))
}

/// Every object under `prefix`, with its body.
pub async fn read_objects(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    use object_store::ObjectStoreExt;
    let mut out = Vec::new();
    for key in list_objects(store, prefix).await? {
        let path = object_store::path::Path::parse(&key)?;
        let body = store.get(&path).await?.bytes().await?;
        out.push((key, body.to_vec()));
    }
    Ok(out)
}

/// The keys under `prefix`, sorted; for a store a running job still changes,
/// where an object listed may be gone by the time it would be read.
pub async fn list_objects(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    use futures::TryStreamExt;
    let prefix = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    Ok(keys)
}

/// Every JSON line of every file under `prefix`, counted by its `id_field`,
/// for checking a file sink's output. Each file must lie in
/// `<prefix>/dt=YYYY-MM-DD/hour=HH/part-*.jsonl` of its lines' own time, read
/// from their `timestamp` (epoch milliseconds or RFC 3339); an error names
/// the first line that does not.
pub async fn events_by_id(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
    id_field: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, u32>> {
    let mut seen = std::collections::BTreeMap::new();
    for (key, body) in read_objects(store, prefix).await? {
        let rest = key.strip_prefix(&format!("{prefix}/")).unwrap_or(&key);
        let parts: Vec<&str> = rest.split('/').collect();
        anyhow::ensure!(
            parts.len() == 3 && parts[2].starts_with("part-") && parts[2].ends_with(".jsonl"),
            "{key} is not a part file under dt=.../hour=.../"
        );
        for line in String::from_utf8(body)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let time = match &v["timestamp"] {
                serde_json::Value::Number(ms) => {
                    chrono::DateTime::from_timestamp_millis(ms.as_i64().unwrap_or(0))
                        .unwrap_or_default()
                }
                other => chrono::DateTime::parse_from_rfc3339(other.as_str().unwrap_or_default())
                    .with_context(|| format!("event {v} in {key} has no time"))?
                    .to_utc(),
            };
            let want = time.format("dt=%Y-%m-%d/hour=%H").to_string();
            anyhow::ensure!(
                format!("{}/{}", parts[0], parts[1]) == want,
                "event {v} in {key} belongs under {want}"
            );
            *seen
                .entry(v[id_field].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    Ok(seen)
}
