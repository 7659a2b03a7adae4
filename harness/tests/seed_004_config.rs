//! Seed 004's own job configuration (`jobId`, `kafkaIngestionUnit`,
//! `s3DeliveryUnit`) submitted with `jobctl submit` as the seed wrote it: it
//! runs as the equivalent exactly-once Kafka -> S3 job, and what Sluice
//! cannot honour is refused at the field the user wrote.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::ingestion::{IngestionEvents, IngestionKind};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    Infra, infra, jobctl, jobctl_json, test_dir, unique, wait_checkpointed, wait_running,
};
use std::collections::BTreeMap;
use std::path::Path;

/// The job configuration example of seed 004's README, unchanged.
const SEED_CONFIG: &str = include_str!("../../deploy/jobs/kafka-to-s3-job-001.json");
/// The bucket the seed's configuration names; the dev stack creates it.
const BUCKET: &str = "clickstream";

/// The seed's configuration pointed at this test run's broker and MinIO, on
/// a topic and under a path of this test's own (the seed's names with a
/// unique suffix, so test runs do not see each other's data).
fn config(infra: &Infra, topic: &str, prefix: &str) -> serde_json::Value {
    let mut tree: serde_json::Value = serde_json::from_str(SEED_CONFIG).expect("seed config");
    tree["source"]["bootstrapServers"] = infra.kafka.clone().into();
    tree["source"]["kafkaIngestionUnit"]["topic"] = topic.into();
    tree["sink"]["s3DeliveryUnit"]["endpoint"] = infra.s3_endpoint.clone().into();
    tree["sink"]["s3DeliveryUnit"]["pathPrefix"] = format!("{prefix}/").into();
    tree
}

/// `jobctl submit FILE` of `tree` written as a JSON file.
fn submit(c: &str, dir: &Path, tree: &serde_json::Value) -> anyhow::Result<(bool, String)> {
    let path = dir.join(format!("{}.json", unique("ingestion-job")));
    std::fs::write(&path, serde_json::to_string_pretty(tree)?)?;
    let out = jobctl(c, &["submit", path.to_str().unwrap_or_default()], &[])?;
    Ok(match out.success {
        true => (
            true,
            out.stdout.trim().trim_start_matches("submitted ").into(),
        ),
        false => (false, out.stderr.trim().to_string()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_job_configuration_runs_unchanged_into_s3() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("seed-004-config");
    let options = ClusterOptions {
        env: infra.s3_env(),
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let c = cluster.coordinator_address.clone();
    let topic = unique("clickstream_data");
    let prefix = format!("raw-data/{}", unique("seed-004-config"));
    admin::create_topic(&infra.kafka, &topic, 3).await?;

    // What Sluice cannot honour is refused at the configuration's own paths.
    let mut refused = config(&infra, &topic, &prefix);
    refused["mode"] = "BATCH".into();
    refused["sink"]["s3DeliveryUnit"]["compression"] = "gzip".into();
    let (ok, err) = submit(&c, &dir, &refused)?;
    assert!(!ok, "accepted: {refused}");
    assert!(err.contains("mode: `BATCH` is not supported"), "{err}");
    assert!(
        err.contains("sink.s3DeliveryUnit.compression: unknown option"),
        "{err}"
    );
    // Problems the running systems show, too.
    let (ok, err) = submit(&c, &dir, &config(&infra, &unique("absent"), &prefix))?;
    assert!(!ok, "a configuration reading a missing topic was accepted");
    assert!(
        err.contains("source.kafkaIngestionUnit.topic: ") && err.contains("does the topic exist"),
        "{err}"
    );
    assert_eq!(
        jobctl_json(&c, &["list"])?.as_array().map(Vec::len),
        Some(0)
    );

    let (ok, job) = submit(&c, &dir, &config(&infra, &topic, &prefix))?;
    assert!(ok, "the seed's configuration refused: {job}");
    let status = wait_running(&c, &job).await?;
    assert_eq!(status["name"], "kafka-to-s3-job-001");

    let count = 3_000;
    let events: Vec<_> = IngestionEvents::new(IngestionKind::Clickstream, 7, count)
        .take(count as usize)
        .collect();
    let sent: BTreeMap<String, serde_json::Value> = events
        .iter()
        .map(|e| Ok((e.id.clone(), serde_json::from_str(&e.payload)?)))
        .collect::<anyhow::Result<_>>()?;
    producer::produce(
        &infra.kafka,
        &topic,
        events.into_iter().map(|e| e.payload),
        None,
        0,
    )
    .await?;
    wait_checkpointed(&c, &job, count).await?;

    // Every event once, under the date and hour of its own timestamp.
    let bucket = admin::s3_bucket(&infra.s3_endpoint, BUCKET)?;
    let seen = admin::events_by_id(bucket.as_ref(), &prefix, "event_id").await?;
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "written more than once: {duplicated:?}"
    );
    let lost: Vec<_> = sent.keys().filter(|id| !seen.contains_key(*id)).collect();
    assert!(lost.is_empty(), "{} events lost: {lost:?}", lost.len());
    assert_eq!(seen.len(), sent.len(), "events that were never sent");
    // Written as they were read.
    let mut written = BTreeMap::new();
    for (key, body) in admin::read_objects(bucket.as_ref(), &prefix).await? {
        for line in String::from_utf8(body)?.lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let id = v["event_id"].as_str().unwrap_or_default().to_string();
            assert_eq!(sent.get(&id), Some(&v), "{id} in {key}");
            written.insert(id, v);
        }
    }
    assert_eq!(written, sent);
    println!(
        "{count} events of the seed's configuration in s3://{BUCKET}/{prefix}, each once and unchanged"
    );
    Ok(())
}
