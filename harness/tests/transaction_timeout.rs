//! The exactly-once Kafka sink's transaction timeout: a spec whose
//! `transaction.timeout.ms` the broker would refuse is refused at
//! submission, naming both values and the field to change; and a job whose
//! checkpoints stall while its sink holds an open transaction shows a
//! warning in `jobctl status` before the broker would abort it.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_checkpoint_after, wait_for,
    wait_running,
};
use std::path::Path;
use std::time::Duration;

fn spec(brokers: &str, input: &str, output: &str, properties: &str, checkpoint: &str) -> String {
    format!(
        r#"
name: txn-timeout
parallelism: 2
delivery: exactly_once
checkpoint: {checkpoint}
source: {{ kafka: {{ brokers: "{brokers}", topic: {input} }} }}
sink: {{ kafka: {{ brokers: "{brokers}", topic: {output}, properties: {properties} }} }}
"#
    )
}

fn submit_text(coordinator: &str, dir: &Path, text: &str) -> anyhow::Result<(bool, String)> {
    let path = dir.join(format!("{}.yaml", unique("job")));
    std::fs::write(&path, text)?;
    let out = jobctl(
        coordinator,
        &["submit", path.to_str().unwrap_or_default()],
        &[],
    )?;
    Ok((out.success, out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_timeout_above_the_brokers_maximum_is_refused_at_submission()
-> anyhow::Result<()> {
    let infra = infra()?;
    let k = infra.kafka.as_str();
    let dir = test_dir("txn-timeout-refused");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("txn-timeout-in"), unique("txn-timeout-out"));
    admin::create_topic(k, &input, 1).await?;
    admin::create_topic(k, &output, 1).await?;
    // The test broker keeps Kafka's default maximum, 15 minutes.
    let (accepted, error) = submit_text(
        &c,
        &dir,
        &spec(
            k,
            &input,
            &output,
            r#"{ transaction.timeout.ms: "900001" }"#,
            "{ interval: 1s }",
        ),
    )?;
    println!("{error}");
    assert!(!accepted, "a timeout the broker refuses is refused");
    for part in [
        "sink.kafka.properties.transaction.timeout.ms",
        "900001",
        "transaction.max.timeout.ms of 900000",
    ] {
        assert!(error.contains(part), "the error names {part}: {error}");
    }
    let (accepted, error) = submit_text(
        &c,
        &dir,
        &spec(
            k,
            &input,
            &output,
            r#"{ transaction.timeout.ms: "600000" }"#,
            "{ interval: 1s }",
        ),
    )?;
    assert!(accepted, "a timeout within the broker's maximum: {error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_checkpoint_shows_a_warning_before_the_transaction_times_out()
-> anyhow::Result<()> {
    let infra = infra()?;
    let k = infra.kafka.clone();
    let dir = test_dir("txn-timeout-warning");
    // Workers paused for a while are not declared lost meanwhile.
    let options = ClusterOptions {
        heartbeat_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 2, options).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output) = (unique("txn-timeout-in"), unique("txn-timeout-out"));
    admin::create_topic(&k, &input, 2).await?;
    admin::create_topic(&k, &output, 2).await?;
    let job = submit(
        &c,
        &dir,
        &spec(
            &k,
            &input,
            &output,
            r#"{ transaction.timeout.ms: "20000" }"#,
            "{ interval: 500ms, timeout: 60s }",
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;
    let producing = {
        let (k, input) = (k.clone(), input.clone());
        tokio::spawn(async move {
            let payloads = (0..6_000).map(|n| serde_json::json!({ "n": n }).to_string());
            producer::produce(&k, &input, payloads, Some(200), 0).await
        })
    };
    wait_checkpoint_after(&c, &job, 0).await?;
    assert_eq!(
        jobctl_json(&c, &["status", &job])?["warnings"],
        serde_json::json!([]),
        "no warning while checkpoints complete"
    );
    // The paused worker's subtask acknowledges no checkpoint: the other
    // subtask's sink keeps its pre-committed transaction open meanwhile.
    cluster.pause_worker(1);
    let warned = wait_for(
        "a warning about the open transaction",
        Duration::from_secs(30),
        || async {
            let s = jobctl_json(&c, &["status", &job])?;
            let warnings = s["warnings"].as_array().cloned().unwrap_or_default();
            Ok((!warnings.is_empty()).then_some(warnings))
        },
    )
    .await;
    let table = jobctl(&c, &["status", &job], &[])?;
    cluster.resume_worker(1);
    let warnings = warned?;
    println!("{warnings:?}\n{}", table.stdout);
    let warning = warnings[0].as_str().unwrap_or_default();
    assert!(
        warning.contains("transaction.timeout.ms (20.0s)") && warning.contains("sink subtask"),
        "{warning}"
    );
    assert!(
        table.stdout.contains("warning:     sink subtask"),
        "the table shows it: {}",
        table.stdout
    );
    // The checkpoint completes once the worker is back, and the warning goes.
    wait_for("no warning", Duration::from_secs(30), || async {
        let s = jobctl_json(&c, &["status", &job])?;
        Ok((s["warnings"] == serde_json::json!([])).then_some(()))
    })
    .await?;
    producing.abort();
    Ok(())
}
