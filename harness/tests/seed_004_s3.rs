//! Seed 004 on Sluice: clickstream and CDC events into S3 (MinIO) under a
//! date/hour layout, exactly once with a worker SIGKILLed mid-run (keyed
//! dedup state in an S3 checkpoint store), and nothing visible under the
//! final prefix before its checkpoint completed.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::ingestion::{IngestionEvents, IngestionKind};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    Infra, infra, jobctl_json, submit, task_metric, test_dir, unique, wait_checkpointed, wait_for,
    wait_running,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const BUCKET: &str = "sluice";

/// A shipped seed 004 job on this test's topic, bucket and prefix.
fn spec(shipped: &str, topic: &str, prefix: &str, parallelism: u32, checkpoint: &str) -> String {
    let mut tree: serde_json::Value = serde_json::from_str(shipped).expect("shipped spec is JSON");
    tree["parallelism"] = parallelism.into();
    tree["checkpoint"]["interval"] = checkpoint.into();
    tree["checkpoint"]["timeout"] = "20s".into();
    tree["source"]["kafka"]["topic"] = topic.into();
    tree["sink"]["s3"]["bucket"] = BUCKET.into();
    tree["sink"]["s3"]["prefix"] = prefix.into();
    tree["sink"]["s3"]["batch_interval"] = "300ms".into();
    tree.to_string()
}

const CLICKSTREAM: &str = include_str!("../../deploy/jobs/clickstream-to-s3.json");
const CDC: &str = include_str!("../../deploy/jobs/cdc-to-s3.json");

fn submit_spec(c: &str, dir: &Path, infra: &Infra, text: &str) -> anyhow::Result<String> {
    submit(
        c,
        dir,
        text,
        &[
            ("KAFKA_BROKER", infra.kafka.as_str()),
            ("S3_ENDPOINT", infra.s3_endpoint.as_str()),
        ],
    )
}

async fn produce(
    infra: &Infra,
    topic: &str,
    kind: IngestionKind,
    count: u64,
    rate: u64,
) -> anyhow::Result<()> {
    let events = IngestionEvents::new(kind, 4, count)
        .take(count as usize)
        .map(|e| e.payload);
    producer::produce(&infra.kafka, topic, events, Some(rate), 0).await?;
    Ok(())
}

/// How often each event id is in the committed files under `prefix`, each
/// file checked to lie under its events' own date and hour.
async fn committed_events(
    infra: &Infra,
    prefix: &str,
    id_field: &str,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let store = admin::s3_bucket(&infra.s3_endpoint, BUCKET)?;
    admin::events_by_id(store.as_ref(), prefix, id_field).await
}

fn check_once(kind: &str, seen: &BTreeMap<String, u32>, id_prefix: &str, count: u64) {
    let lost = (0..count)
        .filter(|n| !seen.contains_key(&format!("{id_prefix}{n}")))
        .count();
    let duplicated: u32 = seen.values().map(|c| c - 1).sum();
    let hours: std::collections::BTreeSet<_> = seen.keys().collect();
    println!(
        "{kind}: {count} in, {} distinct out, {lost} lost, {duplicated} duplicated ({} ids)",
        seen.len(),
        hours.len()
    );
    assert_eq!(lost, 0, "{kind}: lost events");
    assert_eq!(duplicated, 0, "{kind}: duplicated events");
    assert_eq!(seen.len() as u64, count, "{kind}: unexpected events");
}

fn s3_options(infra: &Infra, checkpoint_store: Option<String>) -> ClusterOptions {
    ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        env: infra.s3_env(),
        checkpoint_store,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_and_cdc_land_once_under_date_and_hour_with_a_worker_killed()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("seed-004");
    let prefix = unique("seed-004");
    let store = format!("s3://{BUCKET}/{prefix}/checkpoints");
    let mut cluster = SluiceCluster::start(&dir, 3, s3_options(&infra, Some(store))).await?;
    let c = cluster.coordinator_address.clone();
    let (clicks, cdc) = (unique("clickstream_data"), unique("cdc_events"));
    admin::create_topic(&infra.kafka, &clicks, 3).await?;
    admin::create_topic(&infra.kafka, &cdc, 3).await?;
    admin::create_topic(&infra.kafka, "ingestion-dlq", 1).await?;
    let click_job = submit_spec(
        &c,
        &dir,
        &infra,
        &spec(
            CLICKSTREAM,
            &clicks,
            &format!("{prefix}/clickstream"),
            3,
            "500ms",
        ),
    )?;
    let cdc_job = submit_spec(
        &c,
        &dir,
        &infra,
        &spec(CDC, &cdc, &format!("{prefix}/cdc"), 2, "500ms"),
    )?;
    wait_running(&c, &click_job).await?;
    wait_running(&c, &cdc_job).await?;
    let (n_clicks, n_cdc) = (8_000, 5_000);
    let producing = {
        let infra = infra.clone();
        let (clicks, cdc) = (clicks.clone(), cdc.clone());
        tokio::spawn(async move {
            tokio::try_join!(
                produce(&infra, &clicks, IngestionKind::Clickstream, n_clicks, 2_000),
                produce(&infra, &cdc, IngestionKind::Cdc, n_cdc, 1_250),
            )
        })
    };
    wait_for(
        "input flowing through a checkpoint",
        Duration::from_secs(60),
        || {
            let (c, job) = (&c, &click_job);
            async move {
                let s = jobctl_json(c, &["status", job])?;
                Ok((task_metric(&s, Some(0), "records_in") > 1_000
                    && s["last_checkpoint_id"].as_u64() > Some(1))
                .then_some(()))
            }
        },
    )
    .await?;
    cluster.kill_worker(1);
    println!("killed worker 1");
    producing.await??;
    wait_checkpointed(&c, &click_job, n_clicks).await?;
    wait_checkpointed(&c, &cdc_job, n_cdc).await?;
    let status = jobctl_json(&c, &["status", &click_job])?;
    println!(
        "clickstream job: restarts {}, last failure {}",
        status["restarts"], status["last_failure"]
    );
    assert!(
        status["restarts"].as_u64() >= Some(1),
        "the killed worker ran clickstream subtasks"
    );
    check_once(
        "clickstream",
        &committed_events(&infra, &format!("{prefix}/clickstream"), "event_id").await?,
        "evt_",
        n_clicks,
    );
    check_once(
        "cdc",
        &committed_events(&infra, &format!("{prefix}/cdc"), "id").await?,
        "change_",
        n_cdc,
    );
    // The clickstream job's dedup state went to the S3 checkpoint store; the
    // job runs on, so older snapshots are being deleted: list, do not read.
    let snapshots = admin::list_objects(
        admin::s3_bucket(&infra.s3_endpoint, BUCKET)?.as_ref(),
        &format!("{prefix}/checkpoints"),
    )
    .await?;
    println!("state snapshots in S3: {}", snapshots.len());
    assert!(
        !snapshots.is_empty(),
        "keyed state snapshots in the S3 checkpoint store"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_stay_staged_until_their_checkpoint_completes() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("seed-004-staged");
    let prefix = unique("seed-004-staged");
    let cluster = SluiceCluster::start(&dir, 2, s3_options(&infra, None)).await?;
    let c = cluster.coordinator_address.clone();
    let topic = unique("cdc_events");
    admin::create_topic(&infra.kafka, &topic, 2).await?;
    admin::create_topic(&infra.kafka, "ingestion-dlq", 1).await?;
    // No checkpoint within the test unless asked for.
    let job = submit_spec(&c, &dir, &infra, &spec(CDC, &topic, &prefix, 2, "1h"))?;
    wait_running(&c, &job).await?;
    let count = 2_000;
    produce(&infra, &topic, IngestionKind::Cdc, count, 1_000).await?;
    wait_for("every event read", Duration::from_secs(60), || {
        let (c, job) = (&c, &job);
        async move {
            let s = jobctl_json(c, &["status", job])?;
            Ok((task_metric(&s, Some(0), "records_in") >= count).then_some(()))
        }
    })
    .await?;
    let status = jobctl_json(&c, &["status", &job])?;
    println!(
        "read {}, written {}, dead-lettered {}",
        task_metric(&status, None, "records_in"),
        task_metric(&status, None, "records_out"),
        task_metric(&status, None, "dead_lettered")
    );
    let bucket = admin::s3_bucket(&infra.s3_endpoint, BUCKET)?;
    let staged = admin::read_objects(bucket.as_ref(), &format!(".sluice-staging/{prefix}")).await?;
    let visible = admin::read_objects(bucket.as_ref(), &prefix).await?;
    println!(
        "before the checkpoint: {} staged files, {} visible",
        staged.len(),
        visible.len()
    );
    assert!(
        !staged.is_empty(),
        "files rolled at the batch interval are staged"
    );
    assert!(
        visible.is_empty(),
        "nothing visible before a checkpoint completed: {visible:?}"
    );

    let savepoint = jobctl_json(&c, &["savepoint", &job])?;
    println!("savepoint of the running job: {savepoint}");
    let listed = jobctl_json(&c, &["savepoints"])?;
    assert!(
        listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["savepoint_id"] == savepoint["savepoint_id"])
    );
    let seen = wait_for(
        "files committed after the checkpoint",
        Duration::from_secs(30),
        || {
            let infra = &infra;
            let prefix = &prefix;
            async move {
                let seen = committed_events(infra, prefix, "id").await?;
                Ok((seen.len() as u64 == count).then_some(seen))
            }
        },
    )
    .await?;
    check_once("cdc", &seen, "change_", count);
    assert_eq!(jobctl_json(&c, &["status", &job])?["state"], "RUNNING");
    let left = admin::read_objects(bucket.as_ref(), &format!(".sluice-staging/{prefix}")).await?;
    assert!(
        left.is_empty(),
        "committed files leave staging: {:?}",
        left.iter().map(|(k, _)| k).collect::<Vec<_>>()
    );
    Ok(())
}
