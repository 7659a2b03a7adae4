//! `dedup` keys past their TTL leave the operator's state on a timer, so an
//! idle job's checkpoints stop carrying a burst it saw long ago; every id
//! reaches the sink once, and an old id passes again once its TTL is over
//! (case 016, scaled down).

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{infra, submit, test_dir, unique, wait_for, wait_running};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const IDS: usize = 20_000;

/// Total size of the stage-1 snapshots of the newest checkpoint in the
/// store that has both subtasks' snapshots, with its directory name. The
/// running job deletes old checkpoints meanwhile: what vanished is skipped.
fn newest_stage1_snapshot(store: &Path) -> Option<(u64, String, u64)> {
    let mut best: Option<(u64, String, u64)> = None;
    for job_dir in std::fs::read_dir(store).ok()?.flatten() {
        for chk in std::fs::read_dir(job_dir.path()).ok()?.flatten() {
            let name = chk.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("chk-")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let sizes: Vec<u64> = (0..2)
                .filter_map(|i| std::fs::metadata(chk.path().join(format!("s1-{i}.json"))).ok())
                .map(|m| m.len())
                .collect();
            if sizes.len() == 2 && best.as_ref().is_none_or(|(b, _, _)| id > *b) {
                best = Some((id, name, sizes.iter().sum()));
            }
        }
    }
    best
}

async fn ids_in(topic: &str, expected: usize) -> anyhow::Result<BTreeMap<String, u32>> {
    let out = admin::read_topic(
        &infra()?.kafka,
        topic,
        expected,
        Duration::from_secs(3),
        Duration::from_secs(60),
        "read_committed",
    )
    .await?;
    let mut seen = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        *seen
            .entry(v["event_id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    Ok(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_dedup_keys_leave_the_checkpoints_of_an_idle_job() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("dedup-expiry");
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 2, options).await?;
    let c = cluster.coordinator_address.clone();
    let store = cluster.checkpoint_store();
    let (input, output) = (unique("dedup-in"), unique("dedup-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: dedup-expiry
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [event_id]
  - dedup: {{ ttl: 3s }}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;

    let event = |i: usize| serde_json::json!({"event_id": format!("e-{i}"), "n": i}).to_string();
    let brokers = infra.kafka.clone();
    let topic = input.clone();
    let burst = tokio::spawn(async move {
        producer::produce(&brokers, &topic, (0..IDS).map(event), None, 0).await
    });
    // The largest snapshot while the burst goes through, sampled often.
    let sampling = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut largest = 0;
            loop {
                if let Some((_, _, bytes)) = newest_stage1_snapshot(&store) {
                    largest = largest.max(bytes);
                }
                if largest >= 1_000
                    && newest_stage1_snapshot(&store).is_some_and(|(_, _, b)| b < 1_000)
                {
                    return largest;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let seen = wait_for(
        "every id of the burst at the sink",
        Duration::from_secs(180),
        || {
            let output = &output;
            async move {
                let seen = ids_in(output, IDS).await?;
                Ok((seen.len() >= IDS).then_some(seen))
            }
        },
    )
    .await?;
    burst.await??;
    let duplicated = seen.values().filter(|n| **n > 1).count();
    assert_eq!(seen.len(), IDS, "every id once");
    assert_eq!(duplicated, 0, "no id twice");

    // No input from here on: past the TTL, the snapshots hold nothing.
    let burst_bytes = tokio::time::timeout(Duration::from_secs(60), sampling)
        .await
        .map_err(|_| anyhow::anyhow!("the snapshots kept the expired keys for a minute"))??;
    println!("burst: largest stage-1 snapshot {burst_bytes} B");
    assert!(
        burst_bytes > 100_000,
        "the burst's keys were in the snapshots ({burst_bytes} B)"
    );
    let (id, name, idle_bytes) = wait_for(
        "an idle checkpoint without the expired keys",
        Duration::from_secs(60),
        || {
            let store = &store;
            async move { Ok(newest_stage1_snapshot(store).filter(|(_, _, bytes)| *bytes < 1_000)) }
        },
    )
    .await?;
    println!(
        "idle: checkpoint {id} ({name}) stage-1 snapshots {idle_bytes} B, {burst_bytes} B during the burst"
    );
    assert!(idle_bytes * 100 < burst_bytes);

    // The TTL is over: old ids pass again.
    let again: Vec<usize> = (0..10).map(|i| i * 1_000).collect();
    producer::produce(
        &infra.kafka,
        &input,
        again.iter().map(|i| event(*i)),
        None,
        0,
    )
    .await?;
    let seen = wait_for(
        "the re-sent old ids at the sink again",
        Duration::from_secs(60),
        || {
            let output = &output;
            async move {
                let seen = ids_in(output, IDS + 10).await?;
                Ok((seen.values().sum::<u32>() as usize >= IDS + 10).then_some(seen))
            }
        },
    )
    .await?;
    for i in &again {
        assert_eq!(seen.get(&format!("e-{i}")), Some(&2), "e-{i} passed again");
    }
    assert_eq!(seen.values().sum::<u32>() as usize, IDS + 10);
    Ok(())
}
