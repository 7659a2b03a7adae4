//! A worker that dies is declared lost once its heartbeat timeout has passed,
//! and the job's state shows why.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_declared_lost_and_its_job_shows_the_failure() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("worker-loss");
    let timeout = Duration::from_secs(3);
    let interval = Duration::from_millis(300);
    let options = ClusterOptions {
        heartbeat_interval: interval,
        heartbeat_timeout: timeout,
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 2, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("loss-in"), unique("loss-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            "name: doomed\nparallelism: 2\nrestart: {{ max_attempts: 0 }}\nsource: {{ kafka: {{ brokers: \"{k}\", topic: {input} }} }}\nsink: {{ kafka: {{ brokers: \"{k}\", topic: {output} }} }}\n",
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;

    let before = jobctl_json(&coordinator, &["workers"])?;
    assert_eq!(before.as_array().map(Vec::len), Some(2));
    cluster.kill_worker(0);
    let killed_at = Instant::now();

    let (lost_id, status) = wait_for(
        "worker declared lost and job failed",
        Duration::from_secs(30),
        || {
            let (c, j) = (&coordinator, &job);
            async move {
                let workers = jobctl_json(c, &["workers"])?;
                let lost = workers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|w| w["state"] == "LOST")
                    .and_then(|w| w["worker_id"].as_str().map(String::from));
                let status = jobctl_json(c, &["status", j])?;
                Ok(match lost {
                    Some(id) if status["state"] == "FAILED" => Some((id, status)),
                    _ => None,
                })
            }
        },
    )
    .await?;
    let declared_after = killed_at.elapsed();
    println!(
        "worker {lost_id} declared lost {declared_after:?} after SIGKILL (timeout {timeout:?})"
    );
    // The timeout runs from the last heartbeat, which came at most one
    // interval before the kill.
    assert!(
        declared_after + interval >= timeout,
        "declared lost {declared_after:?} after the kill, before the {timeout:?} timeout could pass"
    );
    let failure = status["failure"].as_str().unwrap_or_default();
    assert!(
        failure.contains(&format!("worker {lost_id} lost")) && failure.contains("no heartbeat"),
        "failure names the lost worker: {status}"
    );
    let failed_tasks: Vec<_> = status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "FAILED")
        .collect();
    assert!(!failed_tasks.is_empty(), "{status}");
    assert!(
        failed_tasks
            .iter()
            .all(|t| t["worker_id"] == lost_id.as_str()),
        "{status}"
    );
    // The survivor's subtasks are stopped once the job has failed.
    wait_for(
        "surviving subtasks stopped",
        Duration::from_secs(30),
        || {
            let c = &coordinator;
            async move {
                let workers = jobctl_json(c, &["workers"])?;
                Ok(workers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|w| w["state"] == "ALIVE")
                    .all(|w| w["tasks"].as_array().is_some_and(Vec::is_empty))
                    .then_some(()))
            }
        },
    )
    .await?;
    Ok(())
}

/// A second worker advertising the exchange address a live worker holds is
/// refused, and exits with an error naming the address and the worker that
/// holds it; the first worker runs on. Before, both registered, and the
/// job's records went to whichever answered at that address, so the job
/// restarted over and over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_advertising_a_live_workers_exchange_address_is_refused_and_exits()
-> anyhow::Result<()> {
    let dir = test_dir("exchange-address-in-use");
    let mut cluster = SluiceCluster::start(&dir, 0, ClusterOptions::default()).await?;
    let coordinator = cluster.coordinator_address.clone();
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let shared = listen(sluice_harness::net::free_port()?);
    let first = cluster.add_worker_with(
        &coordinator,
        &[
            "--data-listen".into(),
            shared.clone(),
            "--data-advertise".into(),
            shared.clone(),
        ],
        &[],
    )?;
    cluster.wait_for_workers(1, Duration::from_secs(30)).await?;
    let holder = jobctl_json(&coordinator, &["workers"])?[0]["worker_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let own = listen(sluice_harness::net::free_port()?);
    let second = cluster.add_worker_with(
        &coordinator,
        &[
            "--data-listen".into(),
            own,
            "--data-advertise".into(),
            shared.clone(),
        ],
        &[],
    )?;
    let exited = wait_for("the second worker exited", Duration::from_secs(30), || {
        let exited = cluster.check_worker(second).err();
        async move { Ok(exited) }
    })
    .await?;
    let reason = format!("{exited:#}");
    println!("{reason}");
    assert!(
        reason.contains(&format!(
            "exchange address {shared} is already advertised by live worker {holder}"
        )),
        "the worker's error names the address and the worker holding it: {reason}"
    );
    cluster.check_worker(first)?;
    let workers = jobctl_json(&coordinator, &["workers"])?;
    let listed: Vec<_> = workers.as_array().into_iter().flatten().collect();
    assert_eq!(listed.len(), 1, "{workers}");
    assert_eq!(listed[0]["worker_id"], holder.as_str(), "{workers}");
    Ok(())
}
