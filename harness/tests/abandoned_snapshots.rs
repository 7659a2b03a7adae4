//! A checkpoint cut short after its state snapshot was uploaded (here the
//! worker dies right after the upload, before its acknowledgement) leaves
//! a snapshot no checkpoint record refers to. Once the restarted job
//! completes checkpoints, the checkpoint store holds no snapshot of the
//! first attempt any more: the abandoned one is deleted as well as those of
//! checkpoints that left retention, and the retained ones are all there.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    count_numbers, files_under, infra, retained_state_objects, submit, test_dir, unique,
    wait_checkpointed, wait_for, wait_restarted, wait_running,
};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// The store's objects that the job's retained checkpoints refer to.
fn held(
    coordinator: &str,
    job: &str,
    store: &std::path::Path,
) -> anyhow::Result<BTreeSet<PathBuf>> {
    Ok(retained_state_objects(coordinator, job)?
        .iter()
        .map(|k| store.join(k))
        .collect())
}

/// Whether `path` is a snapshot of the job's first attempt (`chk-N-a0`).
fn of_first_attempt(path: &std::path::Path) -> bool {
    path.components().any(|c| {
        let part = c.as_os_str().to_string_lossy();
        part.starts_with("chk-") && part.ends_with("-a0")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_of_a_checkpoint_cut_short_are_deleted() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("abandoned-snapshots");
    let records = 6_000u64;
    let options = ClusterOptions {
        // The worker dies right after its fourth snapshot upload.
        failpoints: [(0, "snapshot-after-upload=3*off->1*return".to_string())].into(),
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 1, options).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("abandoned-in"), unique("abandoned-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: abandoned-snapshots
parallelism: 1
delivery: exactly_once
checkpoint: {{ interval: 300ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [n]
  - dedup: {{ ttl: 1h }}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka,
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;
    let brokers = infra.kafka.clone();
    let producing = tokio::spawn(async move {
        let payloads = (0..records).map(|n| serde_json::json!({ "n": n }).to_string());
        producer::produce(&brokers, &input, payloads, Some(1_000), 0).await
    });

    let cluster_ref = &mut cluster;
    wait_for(
        "the worker to die after an upload",
        Duration::from_secs(60),
        || {
            let dead = cluster_ref.check_worker(0).is_err();
            async move { Ok(dead.then_some(())) }
        },
    )
    .await?;
    // The cluster's own store: this job's snapshots only.
    let store = cluster.checkpoint_store();
    let held_then = held(&c, &job, &store)?;
    let abandoned: Vec<PathBuf> = files_under(&store)
        .into_iter()
        .filter(|p| !held_then.contains(p))
        .collect();
    println!("uploaded but never part of a checkpoint: {abandoned:?}");
    assert!(
        !abandoned.is_empty(),
        "the cut-short checkpoint's snapshot is in the store"
    );

    cluster.add_worker()?;
    wait_restarted(&c, &job).await?;
    producing.await??;
    wait_checkpointed(&c, &job, records).await?;
    let (store_ref, c_ref, job_ref) = (&store, c.as_str(), job.as_str());
    let left = wait_for(
        "no snapshot of the first attempt in the store",
        Duration::from_secs(30),
        || async move {
            let first: Vec<PathBuf> = files_under(store_ref)
                .into_iter()
                .filter(|p| of_first_attempt(p))
                .collect();
            let held_now = held(c_ref, job_ref, store_ref)?;
            // A retained checkpoint may still be of the first attempt.
            Ok(first
                .iter()
                .all(|p| held_now.contains(p))
                .then_some((first, held_now)))
        },
    )
    .await?;
    println!("first-attempt snapshots left, all retained: {:?}", left.0);
    for p in &abandoned {
        assert!(
            !p.exists() || left.1.contains(p),
            "{} is still in the store",
            p.display()
        );
    }
    let stored: BTreeSet<PathBuf> = files_under(&store).into_iter().collect();
    assert!(
        left.1.is_subset(&stored),
        "a retained checkpoint's object is missing"
    );

    let (_, lost, duplicated) =
        count_numbers(&infra.kafka, &output, records, "read_committed").await?;
    assert_eq!((lost, duplicated), (0, 0), "lost, duplicated");
    Ok(())
}
