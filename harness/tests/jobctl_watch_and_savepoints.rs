//! `jobctl status --watch` refreshes until Ctrl-C or the job's end, and
//! `jobctl savepoint delete` forgets a savepoint and deletes the state
//! snapshots nothing else holds from the checkpoint store.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster, bin_dir};
use sluice_harness::datagen::producer;
use sluice_harness::process::send_signal;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `jobctl --output json status JOB --watch --interval 200ms` in the
/// background, and the lines it prints.
fn watch(c: &str, job: &str) -> anyhow::Result<(Child, mpsc::Receiver<String>)> {
    let mut child = Command::new(bin_dir()?.join("jobctl"))
        .args(["--coordinator", c, "--output", "json", "status", job])
        .args(["--watch", "--interval", "200ms"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok((child, rx))
}

/// The next refresh a watch printed, parsed.
fn next_frame(lines: &mpsc::Receiver<String>) -> anyhow::Result<serde_json::Value> {
    let line = lines.recv_timeout(Duration::from_secs(10))?;
    Ok(serde_json::from_str(&line)?)
}

/// Waits for a watch to end by itself; its exit status.
async fn exited(child: &mut Child, what: &str) -> anyhow::Result<std::process::ExitStatus> {
    wait_for(what, Duration::from_secs(20), || {
        let status = child.try_wait();
        async move { Ok(status?) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_refreshes_and_savepoints_are_deleted_with_their_snapshots()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("jobctl-watch");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let store = cluster.checkpoint_store();
    let (input, output) = (unique("watch-in"), unique("watch-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let spec = format!(
        r#"
name: watched
parallelism: 2
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [id]
  - dedup: {{ ttl: 1h }}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
        k = infra.kafka
    );
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    let records = (0..200).map(|i| serde_json::json!({ "id": format!("r-{i}") }).to_string());
    producer::produce(&infra.kafka, &input, records, None, 0).await?;

    // A watch prints one status per refresh, the counts moving with the job.
    let (mut watcher, lines) = watch(&c, &job)?;
    let first = next_frame(&lines)?;
    assert_eq!(first["job_id"], job.as_str(), "{first}");
    assert_eq!(first["name"], "watched");
    wait_for(
        "the watch showing every record read, lag 0",
        Duration::from_secs(30),
        || {
            let frame = next_frame(&lines);
            async move {
                let frame = frame?;
                let read: u64 = frame["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["stage"] == 0)
                    .filter_map(|t| t["records_in"].as_u64())
                    .sum();
                let ends: i64 = frame["partition_lag"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["high_watermark"].as_i64())
                    .sum();
                Ok((read == 200 && frame["lag"] == 0 && ends == 200).then_some(()))
            }
        },
    )
    .await?;
    // Ctrl-C ends it, successfully.
    send_signal(watcher.id(), libc::SIGINT);
    assert!(
        exited(&mut watcher, "the watch ending on Ctrl-C")
            .await?
            .success()
    );

    // The table shows the lag too, in total and by partition.
    let table = jobctl(&c, &["status", &job], &[])?;
    assert!(table.success, "{}", table.stderr);
    let lag = format!("lag:         0 ({input}/0:0 {input}/1:0)");
    assert!(table.stdout.contains(&lag), "{lag} in:\n{}", table.stdout);

    // A savepoint, its snapshots in the store.
    let savepoint = jobctl_json(&c, &["savepoint", &job])?;
    let id = savepoint["savepoint_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let checkpoints = jobctl_json(&c, &["checkpoints", &job])?;
    let objects: Vec<String> = checkpoints["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|cp| cp["checkpoint_id"] == savepoint["checkpoint_id"])
        .and_then(|cp| cp["state_objects"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(String::from))
        .collect();
    assert!(
        !objects.is_empty(),
        "the savepoint's dedup state: {checkpoints}"
    );
    assert!(
        checkpoints["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|cp| cp["size_bytes"].as_u64() > Some(0)),
        "the size of each checkpoint's state: {checkpoints}"
    );
    assert!(objects.iter().all(|o| store.join(o).exists()));

    // A watch ends by itself when the job does, its last refresh the end.
    let (mut watcher, lines) = watch(&c, &job)?;
    next_frame(&lines)?;
    jobctl_json(&c, &["cancel", &job])?;
    assert!(
        exited(&mut watcher, "the watch ending with the job")
            .await?
            .success()
    );
    let last = lines.try_iter().last().unwrap_or_default();
    let last: serde_json::Value = serde_json::from_str(&last)?;
    assert_eq!(last["state"], "CANCELLED", "{last}");

    // Deleting the savepoint: it is gone from the list, and so are its
    // snapshots (the cancelled job holds none).
    let deleted = jobctl_json(&c, &["savepoint", "delete", &id])?;
    assert_eq!(deleted["savepoint_id"], id.as_str());
    let listed = jobctl_json(&c, &["savepoints"])?;
    assert!(
        !listed
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["savepoint_id"] == id.as_str()),
        "{listed}"
    );
    wait_for(
        "the savepoint's snapshots deleted",
        Duration::from_secs(20),
        || {
            let gone = objects.iter().all(|o| !store.join(o).exists());
            async move { Ok(gone.then_some(())) }
        },
    )
    .await?;
    // It cannot be deleted twice, nor started from.
    let again = jobctl(&c, &["savepoint", "delete", &id], &[])?;
    assert!(!again.success);
    assert!(again.stderr.contains(&id), "{}", again.stderr);
    let file = dir.join("from-deleted.yaml");
    std::fs::write(&file, &spec)?;
    let resumed = jobctl(
        &c,
        &[
            "submit",
            file.to_str().unwrap_or_default(),
            "--from-savepoint",
            &id,
        ],
        &[],
    )?;
    assert!(!resumed.success, "started from a deleted savepoint");
    Ok(())
}
