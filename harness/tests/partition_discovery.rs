//! Partitions added to a source topic while a job runs are read from their
//! beginning within the discovery interval, kept across a rescale, a killed
//! worker and a stop with a savepoint, exactly once; a `start_from: latest`
//! job reads them from their beginning too (case 011).

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_for, wait_restarted, wait_running,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

fn options() -> ClusterOptions {
    ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

/// An exactly-once job copying `input` to `output`; `discovery` is extra
/// source settings, such as how often to look for new partitions (the
/// default is on).
fn spec(
    name: &str,
    kafka: &str,
    input: &str,
    output: &str,
    start_from: &str,
    discovery: &str,
) -> String {
    format!(
        r#"
name: {name}
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{kafka}", topic: {input}, start_from: {start_from}{discovery} }} }}
sink: {{ kafka: {{ brokers: "{kafka}", topic: {output} }} }}
"#
    )
}

/// Produces `{"seq": s, "p": p}` for each `(p, seqs)`, in order.
async fn produce(topic: &str, batches: &[(i32, Range<i64>)]) -> anyhow::Result<()> {
    let messages = batches.iter().flat_map(|(p, seqs)| {
        seqs.clone()
            .map(move |s| (*p, serde_json::json!({"seq": s, "p": p}).to_string()))
    });
    producer::produce_to_partitions(&infra()?.kafka, topic, messages).await?;
    Ok(())
}

/// How often each `seq` is in `topic` for a read_committed consumer.
async fn seqs(topic: &str, expected: usize) -> anyhow::Result<BTreeMap<i64, u32>> {
    let out = admin::read_topic(
        &infra()?.kafka,
        topic,
        expected,
        Duration::from_secs(3),
        Duration::from_secs(30),
        "read_committed",
    )
    .await?;
    let mut seen = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        *seen.entry(v["seq"].as_i64().unwrap_or(-1)).or_default() += 1;
    }
    Ok(seen)
}

/// Waits until `want` are all in `topic`, then reads it once more and
/// checks that each is there exactly once and nothing else is.
async fn expect_exactly(topic: &str, want: &BTreeSet<i64>, what: &str) -> anyhow::Result<()> {
    let reached = wait_for(what, Duration::from_secs(90), || async move {
        let seen = seqs(topic, want.len()).await?;
        Ok(want.iter().all(|s| seen.contains_key(s)).then_some(()))
    })
    .await;
    let seen = seqs(topic, usize::MAX).await?;
    let missing: Vec<&i64> = want.iter().filter(|s| !seen.contains_key(s)).collect();
    let duplicated: Vec<(&i64, &u32)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<&i64> = seen.keys().filter(|s| !want.contains(s)).collect();
    println!(
        "{what}: {} distinct of {}, {} missing (first {:?}), {} duplicated, {} unexpected",
        seen.len(),
        want.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        duplicated.len(),
        unexpected.len()
    );
    assert!(missing.is_empty(), "{what}: missing {missing:?}");
    assert!(duplicated.is_empty(), "{what}: duplicated {duplicated:?}");
    assert!(unexpected.is_empty(), "{what}: unexpected {unexpected:?}");
    reached
}

/// Partitions of each source task, by subtask index.
fn source_partitions(status: &serde_json::Value) -> BTreeMap<u64, Vec<i64>> {
    status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["stage"] == 0)
        .map(|t| {
            let parts = t["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.as_i64())
                .collect();
            (t["index"].as_u64().unwrap_or(0), parts)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_while_running_are_read_and_kept_across_rescale_and_a_killed_worker()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("discovery-grow");
    let mut cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("grow-in"), unique("grow-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let job = submit(
        &c,
        &dir,
        &spec(
            "grow",
            &infra.kafka,
            &input,
            &output,
            "earliest",
            ", partition_discovery: 1s",
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;

    // A: 100 to each of the two partitions.
    produce(&input, &[(0, 0..100), (1, 100..200)]).await?;
    expect_exactly(&output, &(0..200).collect(), "A: two partitions").await?;

    // B, C: the topic grows to four; 100 more to each of the four.
    admin::add_partitions(&infra.kafka, &input, 4).await?;
    produce(
        &input,
        &[(0, 200..300), (1, 300..400), (2, 400..500), (3, 500..600)],
    )
    .await?;
    expect_exactly(&output, &(0..600).collect(), "C: grown to four partitions").await?;
    let status = jobctl_json(&c, &["status", &job])?;
    assert_eq!(
        source_partitions(&status),
        [(0, vec![0, 2]), (1, vec![1, 3])].into(),
        "{status}"
    );
    let events = jobctl_json(&c, &["events", &job])?;
    let added: Vec<&serde_json::Value> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "partitions_added")
        .collect();
    assert_eq!(added.len(), 1, "{events}");
    assert_eq!(added[0]["count"], 2, "{events}");
    assert_eq!(
        status["restarts"], 0,
        "discovery restarts nothing: {status}"
    );

    // D: a third worker, rescale to three, then that worker dies.
    let before: BTreeSet<String> = jobctl_json(&c, &["workers"])?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["worker_id"].as_str().map(String::from))
        .collect();
    let extra = cluster.add_worker()?;
    cluster.wait_for_workers(3, Duration::from_secs(30)).await?;
    let rescaled = jobctl(&c, &["rescale", &job, "--parallelism", "3"], &[])?;
    assert!(rescaled.success, "rescale: {}", rescaled.stderr);
    println!("rescale: {}", rescaled.stdout.trim());
    let status = wait_running(&c, &job).await?;
    assert_eq!(
        source_partitions(&status),
        [(0, vec![0, 3]), (1, vec![1]), (2, vec![2])].into(),
        "{status}"
    );
    let third = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["stage"] == 0 && t["index"] == 2)
        .and_then(|t| t["worker_id"].as_str().map(String::from))
        .unwrap_or_default();
    assert!(
        !before.contains(&third),
        "subtask 2 on the new worker: {status}"
    );
    cluster.kill_worker(extra);
    wait_restarted(&c, &job).await?;
    let events = jobctl_json(&c, &["events", &job])?;
    let of = |kind: &str| -> Vec<serde_json::Value> {
        events
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    };
    let failed = of("task_failed");
    assert!(
        failed.iter().any(|e| e["fault"] == "external"
            && e["error"].as_str().unwrap_or_default().contains("lost")),
        "the lost worker's task failure is an event: {events}"
    );
    assert!(
        !of("restarted").is_empty(),
        "the restart is an event: {events}"
    );

    // E: 100 more to each of the four partitions.
    produce(
        &input,
        &[(0, 600..700), (1, 700..800), (2, 800..900), (3, 900..1000)],
    )
    .await?;
    expect_exactly(&output, &(0..1000).collect(), "E: after rescale and a kill").await?;
    let offsets = wait_for(
        "a checkpoint holding every partition's end",
        Duration::from_secs(30),
        || {
            let (c, job) = (&c, &job);
            async move {
                let cps = jobctl_json(c, &["checkpoints", job])?;
                let offsets = cps["checkpoints"][0]["source_offsets"].clone();
                Ok((offsets["3"] == 200).then_some(offsets))
            }
        },
    )
    .await?;
    assert_eq!(
        offsets,
        serde_json::json!({"0": 300, "1": 300, "2": 200, "3": 200})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_latest_reads_partitions_added_later_from_their_beginning() -> anyhow::Result<()>
{
    let infra = infra()?;
    let dir = test_dir("discovery-latest");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("latest-grow-in"), unique("latest-grow-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    // Before submission: not the job's.
    produce(&input, &[(0, 1000..1005), (1, 1005..1010)]).await?;
    let job = submit(
        &c,
        &dir,
        &spec("latest-grow", &infra.kafka, &input, &output, "latest", ""),
        &[],
    )?;
    wait_running(&c, &job).await?;
    produce(&input, &[(0, 0..10), (1, 10..20)]).await?;
    admin::add_partitions(&infra.kafka, &input, 4).await?;
    // At once, before the job can have seen the new partitions.
    produce(&input, &[(2, 20..30), (3, 30..40)]).await?;
    expect_exactly(&output, &(0..40).collect(), "latest: all 40").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_from_a_savepoint_reads_partitions_missing_from_it_from_their_beginning()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("discovery-savepoint");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("sp-grow-in"), unique("sp-grow-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let spec = spec("sp-grow", &infra.kafka, &input, &output, "latest", "");
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    produce(&input, &[(0, 0..10), (1, 10..20)]).await?;
    // Grown while the job runs: discovered, and in the savepoint.
    admin::add_partitions(&infra.kafka, &input, 3).await?;
    produce(&input, &[(2, 20..30)]).await?;
    expect_exactly(&output, &(0..30).collect(), "before the stop").await?;
    let stopped = jobctl(&c, &["stop", &job, "--savepoint"], &[])?;
    assert!(stopped.success, "stop: {}", stopped.stderr);
    let savepoint = stopped
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sp-"))
        .map(String::from)
        .unwrap_or_default();
    println!("stop: {}", stopped.stdout.trim());
    // Grown while the job is stopped: partition 3 is missing from the savepoint.
    admin::add_partitions(&infra.kafka, &input, 4).await?;
    produce(
        &input,
        &[(0, 30..40), (1, 40..50), (2, 50..60), (3, 60..70)],
    )
    .await?;
    let path = dir.join("resubmit.yaml");
    std::fs::write(&path, &spec)?;
    let resubmitted = jobctl(
        &c,
        &[
            "submit",
            path.to_str().unwrap_or_default(),
            "--from-savepoint",
            &savepoint,
        ],
        &[],
    )?;
    assert!(resubmitted.success, "resubmit: {}", resubmitted.stderr);
    let job2 = resubmitted
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string();
    wait_running(&c, &job2).await?;
    produce(
        &input,
        &[(0, 70..80), (1, 80..90), (2, 90..100), (3, 100..110)],
    )
    .await?;
    expect_exactly(&output, &(0..110).collect(), "after the resubmission").await
}
