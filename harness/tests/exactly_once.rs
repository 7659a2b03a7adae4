//! Exactly once: a keyed Kafka-to-Kafka job loses workers mid-run, once by
//! SIGKILL and once by dying between a completed checkpoint and its sink's
//! commit, and a read_committed consumer still sees every input exactly once.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::collections::BTreeMap;
use std::time::Duration;

struct Run {
    cluster: SluiceCluster,
    coordinator: String,
    job: String,
    output: String,
    producing: Option<tokio::task::JoinHandle<anyhow::Result<usize>>>,
}

/// The job's layout: workers at the start, parallelism, and whether a
/// `key_by` puts the sinks in a stage of their own.
struct Shape {
    workers: usize,
    parallelism: u32,
    keyed: bool,
}

const KEYED: Shape = Shape {
    workers: 3,
    parallelism: 3,
    keyed: true,
};

/// Starts the workers and the job, and begins producing `records`
/// uniquely numbered records at `rate` per second.
async fn start(
    name: &str,
    records: usize,
    rate: u64,
    options: ClusterOptions,
    shape: Shape,
) -> anyhow::Result<Run> {
    let infra = infra()?;
    let dir = test_dir(name);
    let cluster = SluiceCluster::start(&dir, shape.workers, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("eo-in"), unique("eo-out"));
    admin::create_topic(&infra.kafka, &input, 3).await?;
    admin::create_topic(&infra.kafka, &output, 3).await?;
    let job = submit(
        &coordinator,
        &dir,
        &format!(
            r#"
name: exactly-once
parallelism: {p}
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
restart: {{ backoff: 200ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - remap: .tag = "seen"
{key_by}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka,
            p = shape.parallelism,
            key_by = if shape.keyed { "  - key_by: [k]" } else { "" },
        ),
        &[],
    )?;
    wait_running(&coordinator, &job).await?;
    let brokers = infra.kafka.clone();
    let producing = tokio::spawn(async move {
        let payloads = (0..records).map(|n| serde_json::json!({"n": n, "k": n % 97}).to_string());
        producer::produce(&brokers, &input, payloads, Some(rate), 0).await
    });
    Ok(Run {
        cluster,
        coordinator,
        job,
        output,
        producing: Some(producing),
    })
}

async fn wait_checkpoint_after(run: &Run, restarts: u64) -> anyhow::Result<()> {
    let (c, j) = (&run.coordinator, &run.job);
    let first = jobctl_json(c, &["status", j])?["last_checkpoint_id"]
        .as_u64()
        .unwrap_or(0);
    wait_for("a new checkpoint", Duration::from_secs(60), || async move {
        let s = jobctl_json(c, &["status", j])?;
        let ok = s["state"] == "RUNNING"
            && s["restarts"].as_u64().unwrap_or(0) >= restarts
            && s["last_checkpoint_id"].as_u64().unwrap_or(0) > first + 1;
        Ok(ok.then_some(()))
    })
    .await
}

/// Reads the output as a read_committed consumer and requires every number
/// exactly once.
async fn check_exactly_once(mut run: Run, records: usize) -> anyhow::Result<()> {
    if let Some(producing) = run.producing.take() {
        producing.await??;
    }
    let infra = infra()?;
    let (c, j) = (run.coordinator.clone(), run.job.clone());
    // Everything produced is committed once a checkpoint whose offsets reach
    // the end of the input completed, and one more after it.
    wait_for(
        "checkpointed offsets at the end of the input",
        Duration::from_secs(240),
        || {
            let (c, j) = (&c, &j);
            async move {
                let cps = jobctl_json(c, &["checkpoints", j])?;
                let end: i64 = cps["checkpoints"][0]["source_offsets"]
                    .as_object()
                    .map(|o| o.values().filter_map(|v| v.as_i64()).sum())
                    .unwrap_or(0);
                Ok((end == records as i64).then_some(()))
            }
        },
    )
    .await?;
    wait_checkpoint_after(&run, 0).await?;
    let out = admin::read_topic(
        &infra.kafka,
        &run.output,
        usize::MAX,
        Duration::from_secs(10),
        Duration::from_secs(180),
        "read_committed",
    )
    .await?;
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    let mut at: BTreeMap<i64, Vec<(i32, i64)>> = BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let n = v["n"].as_i64().unwrap_or(-1);
        *seen.entry(n).or_default() += 1;
        at.entry(n).or_default().push((m.partition, m.offset));
    }
    let dup_examples: Vec<_> = at.iter().filter(|(_, p)| p.len() > 1).take(5).collect();
    let missing_examples: Vec<i64> = (0..records as i64)
        .filter(|n| !seen.contains_key(n))
        .take(5)
        .collect();
    if !dup_examples.is_empty() || !missing_examples.is_empty() {
        println!(
            "duplicated (number, [(partition, offset)]): {dup_examples:?}; missing: {missing_examples:?}"
        );
    }
    let lost = (0..records as i64)
        .filter(|n| !seen.contains_key(n))
        .count();
    let duplicated: u32 = seen.values().map(|c| c - 1).sum();
    let status = jobctl_json(&c, &["status", &j])?;
    println!(
        "exactly once: {records} in, {} committed out, {lost} lost, {duplicated} duplicated, {} restarts",
        out.len(),
        status["restarts"]
    );
    assert_eq!(lost, 0, "lost records");
    assert_eq!(duplicated, 0, "duplicated records");
    assert_eq!(seen.len(), records);
    drop(run.cluster);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_killed_one_after_the_other_and_every_record_is_written_once()
-> anyhow::Result<()> {
    let records = 100_000;
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let mut run = start("eo-kill", records, 8_000, options, KEYED).await?;
    wait_checkpoint_after(&run, 0).await?;
    run.cluster.kill_worker(1);
    println!("killed worker 1");
    wait_checkpoint_after(&run, 1).await?;
    run.cluster.kill_worker(2);
    println!("killed worker 2");
    wait_checkpoint_after(&run, 2).await?;
    check_exactly_once(run, records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_dying_after_its_checkpoint_completed_and_before_its_commit_loses_nothing()
-> anyhow::Result<()> {
    // Ten seconds of input: the tenth commit comes while records still flow,
    // also when the input starts late on a loaded machine.
    let records = 60_000;
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        // The first commits pass so the transaction left in doubt holds
        // records, even on a loaded machine where input starts late.
        failpoints: [(
            0,
            "checkpoint-completed-before-sink-commit=9*off->return".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    let run = start("eo-in-doubt", records, 6_000, options, KEYED).await?;
    // Worker 0 aborts at its tenth commit: its transaction is left in doubt.
    wait_checkpoint_after(&run, 1).await?;
    let status = jobctl_json(&run.coordinator, &["status", &run.job])?;
    println!("after the in-doubt failure: {}", status["last_failure"]);
    let logs: Vec<_> = (0..3).filter_map(|i| run.cluster.worker_log(i)).collect();
    check_exactly_once(run, records).await?;
    let recovered = logs
        .iter()
        .filter_map(|l| std::fs::read_to_string(l).ok())
        .any(|text| text.contains("committed a transaction left open by a failure"));
    assert!(
        recovered,
        "recovery committed the in-doubt transaction (see {logs:?})"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_worker_resumed_after_recovery_cannot_make_its_late_output_visible()
-> anyhow::Result<()> {
    let records = 30_000;
    let timeout = Duration::from_secs(2);
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: timeout,
        ..Default::default()
    };
    let run = start("eo-zombie", records, 6_000, options, KEYED).await?;
    wait_checkpoint_after(&run, 0).await?;
    // Paused mid-transaction, past its heartbeat timeout: the job recovers
    // elsewhere while this worker still holds open transactions and input.
    run.cluster.pause_worker(1);
    wait_checkpoint_after(&run, 1).await?;
    run.cluster.resume_worker(1);
    println!("zombie resumed after the job recovered");
    // Let the zombie run on: whatever it writes must stay invisible.
    tokio::time::sleep(timeout).await;
    let workers = jobctl_json(&run.coordinator, &["workers"])?;
    assert!(
        workers
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["state"] == "LOST"),
        "the paused worker was declared lost: {workers}"
    );
    check_exactly_once(run, records).await
}

/// A sink that has not yet heard its checkpoint completed when the next
/// barrier comes keeps both transactions open, and the checkpoint names
/// both; when it dies before committing them, recovery commits both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_dying_with_two_checkpoints_uncommitted_loses_nothing() -> anyhow::Result<()> {
    let records = 20_000;
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        // The fifth completion is not acted on, as if heard late: the sixth
        // barrier finds transaction five still waiting, and the process
        // dies at the sixth completion, before committing five and six.
        failpoints: [(
            0,
            "sink-skip-commit=4*off->1*return->off;checkpoint-completed-before-sink-commit=4*off->return"
                .to_string(),
        )]
        .into(),
        ..Default::default()
    };
    let shape = Shape {
        workers: 1,
        parallelism: 1,
        keyed: false,
    };
    let mut run = start("eo-two-waiting", records, 4_000, options, shape).await?;
    // Where the job goes once worker 0 is gone.
    run.cluster.add_worker()?;
    wait_checkpoint_after(&run, 1).await?;
    let second = run.cluster.worker_log(1).expect("worker 1 log");
    check_exactly_once(run, records).await?;
    let recovered = std::fs::read_to_string(&second)?;
    let committed = recovered
        .matches("committed a transaction left open by a failure")
        .count();
    assert_eq!(
        committed,
        2,
        "recovery committed both transactions the checkpoint named (see {})",
        second.display()
    );
    Ok(())
}

/// A subtask that panics (here at a barrier, before its snapshot) fails
/// like one that returned an error: the coordinator hears of it, restarts
/// the job from its checkpoint, and nothing is lost or duplicated. Before,
/// the panicked task was still counted as running and the job stood still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_panicking_at_a_barrier_fails_and_the_job_restarts_from_its_checkpoint()
-> anyhow::Result<()> {
    let records = 12_000;
    let options = ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        failpoints: [(
            0,
            "barrier-before-snapshot=6*off->1*panic(a bug at a barrier)->off".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    // Chains of their own: no other task notices the panicked one is gone.
    let shape = Shape {
        workers: 1,
        parallelism: 2,
        keyed: false,
    };
    let run = start("eo-task-panic", records, 3_000, options, shape).await?;
    wait_checkpoint_after(&run, 1).await?;
    let status = jobctl_json(&run.coordinator, &["status", &run.job])?;
    let failure = status["last_failure"].to_string();
    println!("after the panic: {failure}");
    assert!(
        failure.contains("panicked") && failure.contains("a bug at a barrier"),
        "the job's last failure is the task's panic: {status}"
    );
    check_exactly_once(run, records).await
}
