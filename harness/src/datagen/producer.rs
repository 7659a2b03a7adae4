use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};

/// Produces `payloads` to `topic`, at most `rate` per second when given, and
/// returns once the broker acknowledged every message. Prints progress to
/// stderr every `progress_every` messages (0: never).
pub async fn produce(
    brokers: &str,
    topic: &str,
    payloads: impl Iterator<Item = String>,
    rate: Option<u64>,
    progress_every: usize,
) -> anyhow::Result<usize> {
    produce_keyed(
        brokers,
        topic,
        payloads.map(|p| (None, p)),
        rate,
        progress_every,
    )
    .await
}

/// [`produce`] with a key per message: messages of one key keep their order
/// in one partition.
pub async fn produce_keyed(
    brokers: &str,
    topic: &str,
    messages: impl Iterator<Item = (Option<String>, String)>,
    rate: Option<u64>,
    progress_every: usize,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create Kafka producer")?;
    let start = Instant::now();
    let mut pending = Vec::new();
    let mut sent = 0usize;
    for (key, payload) in messages {
        if let Some(rate) = rate.filter(|r| *r > 0) {
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let mut record = FutureRecord::<String, String>::to(topic).payload(&payload);
        if let Some(key) = &key {
            record = record.key(key);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to `{topic}`: {e}"))?;
        pending.push(delivery);
        sent += 1;
        if pending.len() >= 10_000 {
            await_all(&mut pending, topic).await?;
        }
        if progress_every > 0 && sent.is_multiple_of(progress_every) {
            eprintln!("produced {sent} messages to {topic}");
        }
    }
    await_all(&mut pending, topic).await?;
    Ok(sent)
}

/// Produces each payload to the partition it names, in order, and returns
/// once the broker acknowledged every message.
pub async fn produce_to_partitions(
    brokers: &str,
    topic: &str,
    messages: impl Iterator<Item = (i32, String)>,
) -> anyhow::Result<usize> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create Kafka producer")?;
    let mut pending = Vec::new();
    for (partition, payload) in messages {
        let record = FutureRecord::<String, String>::to(topic)
            .payload(&payload)
            .partition(partition);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow::anyhow!("cannot produce to `{topic}` [{partition}]: {e}"))?;
        pending.push(delivery);
    }
    let sent = pending.len();
    await_all(&mut pending, topic).await?;
    Ok(sent)
}

async fn await_all(
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    topic: &str,
) -> anyhow::Result<()> {
    for d in pending.drain(..) {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => anyhow::bail!("message to `{topic}` not delivered: {e}"),
            Err(_) => anyhow::bail!("message to `{topic}` was dropped before delivery"),
        }
    }
    Ok(())
}
