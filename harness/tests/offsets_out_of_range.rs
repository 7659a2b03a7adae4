//! A source whose next offsets are gone from their partition goes on at the
//! earliest offset kept and says so where users look: `jobctl status` and
//! `jobctl events` name the partition and the offsets skipped, a counter
//! counts them, and what is left is read exactly once.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, task_metric, test_dir, unique, wait_for, wait_running,
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

fn spec(name: &str, kafka: &str, input: &str, output: &str) -> String {
    format!(
        r#"
name: {name}
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{kafka}", topic: {input} }} }}
sink: {{ kafka: {{ brokers: "{kafka}", topic: {output} }} }}
"#
    )
}

/// Produces `{"seq": s}` for each `(partition, seqs)`, in order.
async fn produce(topic: &str, batches: &[(i32, Range<i64>)]) -> anyhow::Result<()> {
    let messages = batches.iter().flat_map(|(p, seqs)| {
        seqs.clone()
            .map(move |s| (*p, serde_json::json!({"seq": s}).to_string()))
    });
    producer::produce_to_partitions(&infra()?.kafka, topic, messages).await?;
    Ok(())
}

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

/// Waits until `want` are all in `topic`, then checks each is there exactly
/// once and nothing else is.
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
        "{what}: {} distinct of {}, {} missing, {} duplicated, {} unexpected (first {:?})",
        seen.len(),
        want.len(),
        missing.len(),
        duplicated.len(),
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    assert!(missing.is_empty(), "{what}: missing {missing:?}");
    assert!(duplicated.is_empty(), "{what}: duplicated {duplicated:?}");
    assert!(unexpected.is_empty(), "{what}: unexpected {unexpected:?}");
    reached
}

fn all(ranges: &[Range<i64>]) -> BTreeSet<i64> {
    ranges.iter().flat_map(|r| r.clone()).collect()
}

/// The job's events of `kind`, once there are `n` of them.
async fn wait_events(
    coordinator: &str,
    job: &str,
    kind: &str,
    n: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    wait_for(
        &format!("{n} {kind} events of {job}"),
        Duration::from_secs(60),
        || async move {
            let events = jobctl_json(coordinator, &["events", job])?;
            let found: Vec<serde_json::Value> = events
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["kind"] == kind)
                .cloned()
                .collect();
            Ok((found.len() >= n).then_some(found))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_before_a_resumed_job_read_them_are_reported_and_counted()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("offsets-deleted");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("retention-in"), unique("retention-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let spec = spec("retention", &infra.kafka, &input, &output);
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    produce(&input, &[(0, 0..100), (1, 100..200)]).await?;
    expect_exactly(&output, &(0..200).collect(), "before the stop").await?;
    let stopped = jobctl(&c, &["stop", &job, "--savepoint"], &[])?;
    assert!(stopped.success, "stop: {}", stopped.stderr);
    let savepoint = stopped
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sp-"))
        .map(String::from)
        .unwrap_or_default();

    // While the job is stopped, 100 more per partition arrive, and the first
    // 50 of them on partition 0 (offsets 100..149) are deleted unread.
    produce(&input, &[(0, 200..300), (1, 300..400)]).await?;
    admin::delete_records(&infra.kafka, &input, 0, 150).await?;

    let path = dir.join("resume.yaml");
    std::fs::write(&path, &spec)?;
    let resumed = jobctl(
        &c,
        &[
            "submit",
            path.to_str().unwrap_or_default(),
            "--from-savepoint",
            &savepoint,
        ],
        &[],
    )?;
    assert!(resumed.success, "resume: {}", resumed.stderr);
    let job2 = resumed
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string();
    wait_running(&c, &job2).await?;
    produce(&input, &[(0, 400..450), (1, 450..500)]).await?;
    expect_exactly(
        &output,
        &all(&[0..200, 250..300, 300..500]),
        "after the resume",
    )
    .await?;

    let skipped = wait_events(&c, &job2, "offsets_skipped", 1).await?;
    println!("events: {skipped:?}");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let e = &skipped[0];
    assert_eq!(
        (
            &e["topic"],
            &e["partition"],
            &e["from_offset"],
            &e["to_offset"],
            &e["count"]
        ),
        (
            &serde_json::json!(input),
            &serde_json::json!(0),
            &serde_json::json!(100),
            &serde_json::json!(150),
            &serde_json::json!(50)
        ),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("offsets 100..149"),
        "{e}"
    );
    let status = jobctl_json(&c, &["status", &job2])?;
    assert_eq!(status["offsets_skipped"], 50, "{status}");
    assert_eq!(status["state"], "RUNNING", "{status}");
    assert!(
        status["recent_events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["kind"] == "offsets_skipped"),
        "{status}"
    );
    let counted = wait_for(
        "the skip counted in the task metrics",
        Duration::from_secs(10),
        || {
            let (c, job2) = (&c, &job2);
            async move {
                let s = jobctl_json(c, &["status", job2])?;
                let n = task_metric(&s, Some(0), "offsets_skipped");
                Ok((n > 0).then_some(n))
            }
        },
    )
    .await?;
    assert_eq!(counted, 50);
    let table = jobctl(&c, &["status", &job2], &[])?;
    assert!(
        table.stdout.contains("offsets skipped: 50"),
        "{}",
        table.stdout
    );
    let events_table = jobctl(&c, &["events", &job2], &[])?;
    assert!(
        events_table.stdout.contains("offsets_skipped"),
        "{}",
        events_table.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_deleted_and_recreated_under_a_running_job_is_reported_and_read_on()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("offsets-recreated");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("recreated-in"), unique("recreated-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let job = submit(
        &c,
        &dir,
        &spec("recreated", &infra.kafka, &input, &output),
        &[],
    )?;
    wait_running(&c, &job).await?;
    produce(&input, &[(0, 0..100), (1, 100..200)]).await?;
    expect_exactly(
        &output,
        &(0..200).collect(),
        "before the topic is recreated",
    )
    .await?;

    admin::recreate_topic(&infra.kafka, &input, 2).await?;
    // Fewer records than the job had read: its positions are past the end.
    produce(&input, &[(0, 200..220), (1, 220..240)]).await?;
    expect_exactly(
        &output,
        &(0..240).collect(),
        "after the topic was recreated",
    )
    .await?;

    let resets = wait_events(&c, &job, "offsets_reset", 2).await?;
    println!("events: {resets:?}");
    let partitions: BTreeSet<i64> = resets
        .iter()
        .filter_map(|e| e["partition"].as_i64())
        .collect();
    assert_eq!(partitions, [0, 1].into(), "{resets:?}");
    for e in &resets {
        assert_eq!(
            (&e["from_offset"], &e["to_offset"]),
            (&serde_json::json!(100), &serde_json::json!(0)),
            "{e}"
        );
    }
    let status = wait_running(&c, &job).await?;
    assert_eq!(
        status["offsets_skipped"], 0,
        "nothing was skipped: {status}"
    );
    Ok(())
}

/// A job whose topic was deleted under it, with what the test needs next.
struct Deleted {
    /// Kept so the cluster runs on.
    _cluster: SluiceCluster,
    coordinator: String,
    job: String,
    input: String,
    output: String,
    dead_letters: String,
}

/// A running job from a 2-partition topic into a 1-partition one, with a
/// dead-letter topic and 200 records through it, committed; then `which`
/// topic is deleted and `more` records are produced (with a dead letter's
/// topic deleted, a record that is not JSON too); the job's last failure
/// must name that topic as deleted while the job ran, with the job not
/// failed.
async fn delete_under_running_job(
    name: &str,
    which: Role,
    more: &[(i32, Range<i64>)],
) -> anyhow::Result<Deleted> {
    let infra = infra()?;
    let dir = test_dir(name);
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output, dead_letters) = (
        unique(&format!("{name}-in")),
        unique(&format!("{name}-out")),
        unique(&format!("{name}-dlq")),
    );
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    admin::create_topic(&infra.kafka, &dead_letters, 1).await?;
    let spec = format!(
        "{}dead_letter: {{ kafka: {{ topic: {dead_letters} }} }}\n",
        spec(name, &infra.kafka, &input, &output)
    );
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    produce(&input, &[(0, 0..100), (1, 100..200)]).await?;
    // Committed output: the checkpoint covering these records completed.
    expect_exactly(&output, &(0..200).collect(), "before the topic is deleted").await?;

    let (role, topic) = match which {
        Role::Source => ("source", &input),
        Role::Sink => ("sink", &output),
        Role::DeadLetter => ("dead-letter", &dead_letters),
    };
    admin::delete_topic(&infra.kafka, topic).await?;
    if !more.is_empty() {
        produce(&input, more).await?;
    }
    if matches!(which, Role::DeadLetter) {
        let corrupt = std::iter::once((0, "not json".to_string()));
        producer::produce_to_partitions(&infra.kafka, &input, corrupt).await?;
    }
    let named = format!("{role} topic `{topic}`");
    let failure = wait_for(
        &format!("a failure naming {named}"),
        Duration::from_secs(90),
        || {
            let (c, job, named) = (&c, &job, &named);
            async move {
                let status = jobctl_json(c, &["status", job])?;
                let failure = status["last_failure"].as_str().unwrap_or_default();
                Ok(failure
                    .contains(named.as_str())
                    .then(|| failure.to_string()))
            }
        },
    )
    .await?;
    println!("last failure: {failure}");
    assert!(
        failure.contains("does not exist") && failure.contains("deleted while the job ran"),
        "{failure}"
    );
    let status = jobctl_json(&c, &["status", &job])?;
    assert_ne!(status["state"], "FAILED", "{status}");
    Ok(Deleted {
        _cluster: cluster,
        coordinator: c,
        job,
        input,
        output,
        dead_letters,
    })
}

enum Role {
    Source,
    Sink,
    DeadLetter,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_topic_deleted_under_a_running_job_is_named_and_read_once_it_is_back()
-> anyhow::Result<()> {
    let d = delete_under_running_job("source-deleted", Role::Source, &[]).await?;
    admin::create_topic(&infra()?.kafka, &d.input, 2).await?;
    produce(&d.input, &[(0, 200..220), (1, 220..240)]).await?;
    expect_exactly(&d.output, &(0..240).collect(), "after the topic is back").await?;
    wait_running(&d.coordinator, &d.job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_topic_deleted_under_a_running_job_is_named_and_written_once_it_is_back()
-> anyhow::Result<()> {
    let more = [(0, 200..250), (1, 250..300)];
    let d = delete_under_running_job("sink-deleted", Role::Sink, &more).await?;
    // Only the records after the last checkpoint before the deletion are
    // written again, into the new topic, each once.
    admin::create_topic(&infra()?.kafka, &d.output, 1).await?;
    expect_exactly(&d.output, &(200..300).collect(), "after the topic is back").await?;
    wait_running(&d.coordinator, &d.job).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_topic_deleted_under_a_running_job_is_named_and_written_once_it_is_back()
-> anyhow::Result<()> {
    let infra = infra()?;
    let d = delete_under_running_job("dlq-deleted", Role::DeadLetter, &[(1, 200..220)]).await?;
    admin::create_topic(&infra.kafka, &d.dead_letters, 1).await?;
    expect_exactly(&d.output, &(0..220).collect(), "after the topic is back").await?;
    let letters = wait_for("the dead letter", Duration::from_secs(60), || {
        let (kafka, topic) = (&infra.kafka, &d.dead_letters);
        async move {
            let read = admin::read_topic(
                kafka,
                topic,
                1,
                Duration::from_secs(2),
                Duration::from_secs(10),
                "read_uncommitted",
            )
            .await?;
            Ok((!read.is_empty()).then_some(read))
        }
    })
    .await?;
    // At least once: a dead letter sent before a restart may come twice.
    for letter in &letters {
        let v: serde_json::Value = serde_json::from_str(&letter.payload)?;
        assert_eq!(
            (v["partition"].as_i64(), v["offset"].as_i64()),
            (Some(0), Some(100)),
            "{v}"
        );
    }
    wait_running(&d.coordinator, &d.job).await?;
    Ok(())
}
