//! Seed 002 on Sluice: the shipped pair_sum job keeps unmatched numbers in
//! keyed state. That state survives a killed worker, and a stop with a
//! savepoint at parallelism 2, a resume at 3 and a rescale to 1, with every
//! input accounted for exactly once in the committed output.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::numbers::{Numbers, expected_pairs, valid};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    Infra, files_under, infra, jobctl, jobctl_json, latest_checkpoint, submit, test_dir, unique,
    wait_checkpointed, wait_for, wait_running,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const TOTAL: u64 = 12;

struct Topics {
    input: String,
    output: String,
    dlq: String,
}

async fn topics() -> anyhow::Result<Topics> {
    let infra = infra()?;
    let t = Topics {
        input: unique("raw-topic"),
        output: unique("enriched-topic"),
        dlq: unique("raw-events-dlq"),
    };
    admin::create_topic(&infra.kafka, &t.input, 3).await?;
    admin::create_topic(&infra.kafka, &t.output, 3).await?;
    admin::create_topic(&infra.kafka, &t.dlq, 1).await?;
    Ok(t)
}

/// The shipped seed 002 job on this test's topics, checkpointing every 500 ms.
fn shipped_spec(t: &Topics, parallelism: u32) -> String {
    include_str!("../../deploy/jobs/pair-numbers-summing-to-12.yaml")
        .replace("topic: raw-topic", &format!("topic: {}", t.input))
        .replace("topic: enriched-topic", &format!("topic: {}", t.output))
        .replace("topic: raw-events-dlq", &format!("topic: {}", t.dlq))
        .replace("parallelism: 2", &format!("parallelism: {parallelism}"))
        .replace("interval: 1s", "interval: 500ms, timeout: 20s")
}

fn submit_shipped(
    coordinator: &str,
    dir: &Path,
    infra: &Infra,
    t: &Topics,
    parallelism: u32,
) -> anyhow::Result<String> {
    submit(
        coordinator,
        dir,
        &shipped_spec(t, parallelism),
        &[("KAFKA_BROKER", infra.kafka.as_str())],
    )
}

/// Produces `count` of seed 002's numbers, random ones (some left without
/// a partner), or with `paired` every one with a partner when `count` is
/// a whole number of blocks: then a pair must be found for every valid
/// input, and an input lost anywhere shows.
async fn produce(
    t: &Topics,
    seed: u64,
    count: usize,
    rate: Option<u64>,
    paired: bool,
) -> anyhow::Result<()> {
    let numbers = match paired {
        true => Numbers::paired(seed, TOTAL, 40),
        false => Numbers::new(seed, TOTAL, Some(40)),
    };
    producer::produce(&infra()?.kafka, &t.input, numbers.take(count), rate, 0).await?;
    Ok(())
}

/// A number as the output names it: its value and where it was read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ref {
    partition: i32,
    offset: i64,
    number: u64,
}

fn parse_ref(v: &serde_json::Value) -> anyhow::Result<Ref> {
    Ok(Ref {
        partition: v["partition"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no partition in {v}"))? as i32,
        offset: v["offset"]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("no offset in {v}"))?,
        number: v["number"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no number in {v}"))?,
    })
}

/// Checks the committed output against the input: each pair sums to the
/// total and names two real inputs with those numbers, no input is in two
/// pairs, the pairs are exactly those the input's numbers allow, and every
/// corrupt input is in the dead-letter topic. Returns the pairs.
async fn check_pairs(t: &Topics, records: usize) -> anyhow::Result<Vec<(Ref, Ref)>> {
    let infra = infra()?;
    let input = admin::read_topic(
        &infra.kafka,
        &t.input,
        records,
        Duration::from_secs(10),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?;
    assert_eq!(input.len(), records, "the whole input read back");
    let by_place: BTreeMap<(i32, i64), &str> = input
        .iter()
        .map(|m| ((m.partition, m.offset), m.payload.as_str()))
        .collect();
    let expected = expected_pairs(input.iter().map(|m| m.payload.as_str()), TOTAL);
    let expected_count: u64 = expected.values().sum();
    let output = admin::read_topic(
        &infra.kafka,
        &t.output,
        usize::MAX,
        Duration::from_secs(8),
        Duration::from_secs(120),
        "read_committed",
    )
    .await?;
    let mut used: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut reused = Vec::new();
    let mut found: BTreeMap<u64, u64> = BTreeMap::new();
    let mut pairs = Vec::new();
    for m in &output {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let (a, b) = (parse_ref(&v["first"])?, parse_ref(&v["second"])?);
        assert_eq!(a.number + b.number, TOTAL, "pair {v}");
        for r in [&a, &b] {
            let read = by_place.get(&(r.partition, r.offset)).copied();
            assert_eq!(
                read.and_then(|p| valid(p, TOTAL)),
                Some(r.number),
                "pair {v} names input {}/{} holding {read:?}",
                r.partition,
                r.offset
            );
            if !used.insert((r.partition, r.offset)) {
                reused.push((r.partition, r.offset));
            }
        }
        *found.entry(a.number.min(b.number)).or_default() += 1;
        pairs.push((a, b));
    }
    let dead: BTreeSet<(i32, i64)> = admin::read_topic(
        &infra.kafka,
        &t.dlq,
        usize::MAX,
        Duration::from_secs(5),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?
    .iter()
    .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).ok())
    .filter_map(|v| Some((v["partition"].as_i64()? as i32, v["offset"].as_i64()?)))
    .collect();
    let corrupt: BTreeSet<(i32, i64)> = by_place
        .iter()
        .filter(|(_, p)| valid(p, TOTAL).is_none())
        .map(|(place, _)| *place)
        .collect();
    println!(
        "pair_sum: {records} in ({} corrupt), {} pairs committed (expected {expected_count}), {} inputs in two pairs, {} dead letters",
        corrupt.len(),
        output.len(),
        reused.len(),
        dead.len()
    );
    assert!(
        reused.is_empty(),
        "inputs in more than one pair: {reused:?}"
    );
    assert_eq!(found, expected, "pairs by their smaller number");
    assert_eq!(
        dead, corrupt,
        "every corrupt input dead-lettered, nothing else"
    );
    Ok(pairs)
}

fn options() -> ClusterOptions {
    ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_numbers_survive_a_killed_worker() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("pair-sum-kill");
    let mut cluster = SluiceCluster::start(&dir, 3, options()).await?;
    let c = cluster.coordinator_address.clone();
    let t = topics().await?;
    let job = submit_shipped(&c, &dir, &infra, &t, 3)?;
    wait_running(&c, &job).await?;
    let records = 30_000;
    let producing = {
        let t = Topics {
            input: t.input.clone(),
            output: t.output.clone(),
            dlq: t.dlq.clone(),
        };
        tokio::spawn(async move { produce(&t, 7, records, Some(5_000), true).await })
    };
    let first = wait_for("a checkpoint", Duration::from_secs(60), || {
        let c = &c;
        let job = &job;
        async move {
            let (id, end) = latest_checkpoint(c, job)?;
            Ok((id > 1 && end > 2_000).then_some(id))
        }
    })
    .await?;
    cluster.kill_worker(1);
    println!("killed worker 1 after checkpoint {first}");
    wait_for("recovery", Duration::from_secs(60), || {
        let (c, job) = (&c, &job);
        async move {
            let s = jobctl_json(c, &["status", job])?;
            Ok((s["restarts"].as_u64() >= Some(1) && s["state"] == "RUNNING").then_some(()))
        }
    })
    .await?;
    producing.await??;
    wait_checkpointed(&c, &job, records as u64).await?;
    let status = jobctl_json(&c, &["status", &job])?;
    println!(
        "restarts: {}, last failure: {}",
        status["restarts"], status["last_failure"]
    );
    assert!(status["restarts"].as_u64() >= Some(1));
    check_pairs(&t, records).await?;
    // Only what retained checkpoints hold: older snapshots were deleted
    // from the store. The job is cancelled first, so no checkpoint completes
    // meanwhile; deletions already under way may take a moment.
    jobctl(&c, &["cancel", &job], &[])?;
    let store = cluster.checkpoint_store();
    let checkpoints = jobctl_json(&c, &["checkpoints", &job])?;
    let held: BTreeSet<std::path::PathBuf> = checkpoints["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["state_objects"].as_array().cloned().unwrap_or_default())
        .filter_map(|k| k.as_str().map(|k| store.join(k)))
        .collect();
    assert!(!held.is_empty());
    let unheld = |store: &std::path::Path| -> Vec<std::path::PathBuf> {
        files_under(store)
            .into_iter()
            .filter(|p| !held.contains(p))
            .collect()
    };
    let snapshots = wait_for(
        "the store to hold only what retained checkpoints hold",
        Duration::from_secs(20),
        || {
            let (store, held) = (&store, &held);
            async move {
                let snapshots: BTreeSet<_> = files_under(store).into_iter().collect();
                Ok((snapshots.difference(held).next().is_none()).then_some(snapshots))
            }
        },
    )
    .await
    .map_err(|e| {
        e.context(format!(
            "held by retained checkpoints: {held:?}; in the store and not held: {:?}",
            unheld(&store)
        ))
    })?;
    println!(
        "snapshot objects left in the store: {}, held by retained checkpoints: {}",
        snapshots.len(),
        held.len()
    );
    assert!(
        held.is_subset(&snapshots),
        "a retained checkpoint's object is missing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_savepoint_at_2_resume_at_3_rescale_to_1() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("pair-sum-rescale");
    let cluster = SluiceCluster::start(&dir, 3, options()).await?;
    let c = cluster.coordinator_address.clone();
    let t = topics().await?;
    let batch = 8_000;

    let first_job = submit_shipped(&c, &dir, &infra, &t, 2)?;
    wait_running(&c, &first_job).await?;
    produce(&t, 11, batch, None, false).await?;
    wait_checkpointed(&c, &first_job, batch as u64).await?;
    let stopped = jobctl_json(&c, &["stop", &first_job, "--savepoint"])?;
    let savepoint = stopped["savepoint_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("stopped {first_job} with {stopped}");
    assert_eq!(
        jobctl_json(&c, &["status", &first_job])?["state"],
        "STOPPED"
    );
    let listed = jobctl_json(&c, &["savepoints"])?;
    assert!(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["savepoint_id"] == savepoint.as_str())
    );

    produce(&t, 12, batch, None, false).await?;
    let spec_path = dir.join("resume.yaml");
    std::fs::write(&spec_path, shipped_spec(&t, 2))?;
    let out = jobctl(
        &c,
        &[
            "submit",
            spec_path.to_str().unwrap_or_default(),
            "--from-savepoint",
            &savepoint,
            "--parallelism",
            "3",
        ],
        &[("KAFKA_BROKER", infra.kafka.as_str())],
    )?;
    assert!(out.success, "resume failed: {}", out.stderr);
    let second_job = out
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string();
    let running = wait_running(&c, &second_job).await?;
    assert_eq!(running["parallelism"], 3);
    assert_eq!(running["from_savepoint"], savepoint.as_str());
    wait_checkpointed(&c, &second_job, 2 * batch as u64).await?;

    let rescaled = jobctl_json(&c, &["rescale", &second_job, "--parallelism", "1"])?;
    println!("rescaled {second_job} through {rescaled}");
    let running = wait_running(&c, &second_job).await?;
    assert_eq!(running["parallelism"], 1);
    assert_eq!(running["tasks"].as_array().map(Vec::len), Some(2));
    produce(&t, 13, batch, None, false).await?;
    wait_checkpointed(&c, &second_job, 3 * batch as u64).await?;

    let pairs = check_pairs(&t, 3 * batch).await?;
    // Numbers left unmatched at a savepoint found partners after it: the
    // keyed state moved across both changes of parallelism.
    let at_savepoint: BTreeMap<i32, i64> = stopped["source_offsets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(p, o)| Some((p.parse().ok()?, o.as_i64()?)))
        .collect();
    let crossing = pairs
        .iter()
        .filter(|(a, b)| {
            let before = |r: &Ref| r.offset < at_savepoint.get(&r.partition).copied().unwrap_or(0);
            before(a) != before(b)
        })
        .count();
    println!("pairs across the first savepoint: {crossing}");
    assert!(
        crossing > 0,
        "no pair joined numbers from both sides of the savepoint"
    );
    drop(cluster);
    Ok(())
}
