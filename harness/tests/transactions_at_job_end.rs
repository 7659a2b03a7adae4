//! An exactly-once job into Kafka that ends (case 013) leaves no transaction
//! open: after a cancel mid-interval, after a final failure (its worker
//! SIGKILLed, no restarts allowed), and after a stop with a savepoint, a
//! `read_committed` consumer of the output partition sees records another,
//! non-transactional producer writes there within seconds, instead of after
//! the broker's 15-minute transaction timeout. Committed records of the job
//! stay (exactly those its latest checkpoint covers, including a
//! transaction left in doubt by a failure between that checkpoint and its
//! commit), and uncommitted ones never appear.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, latest_checkpoint, submit, test_dir, unique, wait_for, wait_running,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long markers may take to become visible: seconds, where an open
/// transaction would hold them back for the broker's 15 minutes.
const MARKERS_WITHIN: Duration = Duration::from_secs(30);

struct Topics {
    input: String,
    output: String,
    dlq: String,
}

impl Topics {
    async fn create(brokers: &str) -> anyhow::Result<Self> {
        let topics = Self {
            input: unique("txn-end-in"),
            output: unique("txn-end-out"),
            dlq: unique("txn-end-dlq"),
        };
        for t in [&topics.input, &topics.output, &topics.dlq] {
            admin::create_topic(brokers, t, 1).await?;
        }
        Ok(topics)
    }

    /// The case's job: one subtask, long checkpoint intervals, so a
    /// transaction with records is open most of the time.
    fn spec(&self, brokers: &str, interval: &str, restarts: u32) -> String {
        format!(
            r#"
name: txn-end
parallelism: 1
delivery: exactly_once
checkpoint: {{ interval: {interval} }}
restart: {{ max_attempts: {restarts}, backoff: 200ms }}
source: {{ kafka: {{ brokers: "{brokers}", topic: {input}, format: json }} }}
transforms:
  - remap: .seen = true
sink: {{ kafka: {{ brokers: "{brokers}", topic: {output} }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            input = self.input,
            output = self.output,
            dlq = self.dlq
        )
    }
}

/// Feeds `{"seq": n}` at 50 per second until stopped.
struct Feed {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<usize>>,
}

impl Feed {
    fn start(brokers: &str, topic: &str, from: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (brokers, topic, flag) = (brokers.to_string(), topic.to_string(), stop.clone());
        let task = tokio::spawn(async move {
            let payloads = (from..)
                .take_while(move |_| !flag.load(Ordering::SeqCst))
                .map(|n| serde_json::json!({ "seq": n }).to_string());
            producer::produce(&brokers, &topic, payloads, Some(50), 0).await
        });
        Self { stop, task }
    }

    /// Stops feeding; returns how many records were fed.
    async fn stop(self) -> anyhow::Result<usize> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await?
    }
}

/// The job's records (`seq`) and the markers (`marker`) in the output.
async fn output(
    brokers: &str,
    topic: &str,
    isolation: &str,
) -> anyhow::Result<(Vec<i64>, Vec<String>)> {
    let out = admin::read_topic(
        brokers,
        topic,
        usize::MAX,
        Duration::from_secs(2),
        Duration::from_secs(60),
        isolation,
    )
    .await?;
    let (mut seqs, mut markers) = (Vec::new(), Vec::new());
    for m in out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        match (v["seq"].as_i64(), v["marker"].as_str()) {
            (Some(seq), _) => seqs.push(seq),
            (None, Some(marker)) => markers.push(marker.to_string()),
            _ => anyhow::bail!("unexpected record in the output: {}", m.payload),
        }
    }
    Ok((seqs, markers))
}

/// Waits until a read_committed consumer sees at least one of the job's records.
async fn wait_first_commit(brokers: &str, topic: &str) -> anyhow::Result<()> {
    wait_for(
        "a first committed record",
        Duration::from_secs(60),
        || async move {
            let (seqs, _) = output(brokers, topic, "read_committed").await?;
            Ok((!seqs.is_empty()).then_some(()))
        },
    )
    .await
}

/// Writes 10 markers with a plain producer and waits until a read_committed
/// consumer sees them all; returns how long that took from `since`.
async fn markers_visible(
    brokers: &str,
    topic: &str,
    tag: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    let markers =
        (0..10).map(|k| serde_json::json!({ "marker": format!("{tag}-{k}") }).to_string());
    producer::produce(brokers, topic, markers, None, 0).await?;
    wait_for(
        &format!("the {tag} markers visible to read_committed"),
        MARKERS_WITHIN,
        || async move {
            let (_, markers) = output(brokers, topic, "read_committed").await?;
            let seen = markers.iter().filter(|m| m.starts_with(tag)).count();
            Ok((seen == 10).then_some(()))
        },
    )
    .await?;
    Ok(since.elapsed())
}

/// The job's committed records are exactly those its latest checkpoint
/// covers, each once; records of its aborted transaction (there was one
/// when `aborted` is `Some(true)`, none with `Some(false)`, either with
/// `None`) never show.
async fn check_committed(
    brokers: &str,
    topic: &str,
    coordinator: &str,
    job: &str,
    aborted: Option<bool>,
) -> anyhow::Result<()> {
    let (_, covered) = latest_checkpoint(coordinator, job)?;
    let (committed, _) = output(brokers, topic, "read_committed").await?;
    let (written, _) = output(brokers, topic, "read_uncommitted").await?;
    println!(
        "{} committed job records, {} written, the latest checkpoint covers {covered}",
        committed.len(),
        written.len()
    );
    let mut sorted = committed.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..covered).collect::<Vec<_>>(),
        "committed: each record its latest checkpoint covers, once"
    );
    if let Some(aborted) = aborted {
        assert_eq!(
            written.len() > committed.len(),
            aborted,
            "the job had records in an open transaction when it ended: {aborted}"
        );
    }
    Ok(())
}

fn options() -> ClusterOptions {
    ClusterOptions {
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

fn submit_from_savepoint(
    coordinator: &str,
    dir: &Path,
    spec: &str,
    savepoint: &str,
) -> anyhow::Result<String> {
    let path = dir.join(format!("{}.yaml", unique("job")));
    std::fs::write(&path, spec)?;
    let out = jobctl(
        coordinator,
        &[
            "submit",
            path.to_str().unwrap_or_default(),
            "--from-savepoint",
            savepoint,
        ],
        &[],
    )?;
    anyhow::ensure!(out.success, "submit failed: {}", out.stderr);
    Ok(out
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_and_then_a_cancelled_job_leave_no_transaction_open() -> anyhow::Result<()> {
    let infra = infra()?;
    let k = infra.kafka.as_str();
    let dir = test_dir("txn-cancel");
    let cluster = SluiceCluster::start(&dir, 1, options()).await?;
    let c = cluster.coordinator_address.clone();
    let topics = Topics::create(k).await?;
    let spec = topics.spec(k, "10s", 3);
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    let feed = Feed::start(k, &topics.input, 0);
    wait_first_commit(k, &topics.output).await?;

    // A stop commits the savepoint's transaction and leaves nothing open.
    let savepoint = jobctl_json(&c, &["stop", &job, "--savepoint"])?;
    let stopped = Instant::now();
    let fed = feed.stop().await?;
    let took = markers_visible(k, &topics.output, "stop", stopped).await?;
    println!("stop: markers visible after {took:?}");
    assert_eq!(jobctl_json(&c, &["status", &job])?["state"], "STOPPED");
    let (committed, _) = output(k, &topics.output, "read_committed").await?;
    let (_, covered) = latest_checkpoint(&c, &job)?;
    assert_eq!(
        committed.len() as i64,
        covered,
        "the stop savepoint's records"
    );

    // Resumed, then cancelled while its transaction holds records.
    let resumed = submit_from_savepoint(
        &c,
        &dir,
        &spec,
        savepoint["savepoint_id"].as_str().unwrap_or_default(),
    )?;
    wait_running(&c, &resumed).await?;
    let feed = Feed::start(k, &topics.input, fed);
    let before = output(k, &topics.output, "read_committed").await?.0.len();
    wait_for(
        "a commit of the resumed job",
        Duration::from_secs(60),
        || async {
            let (seqs, _) = output(k, &topics.output, "read_committed").await?;
            Ok((seqs.len() > before).then_some(()))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = jobctl(&c, &["cancel", &resumed], &[])?;
    assert!(out.success, "cancel: {}", out.stderr);
    let cancelled = Instant::now();
    feed.stop().await?;
    let took = markers_visible(k, &topics.output, "cancel", cancelled).await?;
    println!("cancel: markers visible after {took:?}");
    wait_for("CANCELLED", Duration::from_secs(30), || async {
        let s = jobctl_json(&c, &["status", &resumed])?;
        Ok((s["state"] == "CANCELLED").then_some(()))
    })
    .await?;
    check_committed(k, &topics.output, &c, &resumed, Some(true)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_for_good_with_its_worker_gone_leaves_no_transaction_open()
-> anyhow::Result<()> {
    let infra = infra()?;
    let k = infra.kafka.as_str();
    let dir = test_dir("txn-failed");
    let mut cluster = SluiceCluster::start(&dir, 1, options()).await?;
    let c = cluster.coordinator_address.clone();
    let topics = Topics::create(k).await?;
    let job = submit(&c, &dir, &topics.spec(k, "10s", 0), &[])?;
    wait_running(&c, &job).await?;
    let feed = Feed::start(k, &topics.input, 0);
    wait_first_commit(k, &topics.output).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill_worker(0);
    let killed = Instant::now();
    feed.stop().await?;
    let took = markers_visible(k, &topics.output, "fail", killed).await?;
    println!("final failure: markers visible after {took:?}");
    let status = jobctl_json(&c, &["status", &job])?;
    assert_eq!(status["state"], "FAILED", "{status}");
    check_committed(k, &topics.output, &c, &job, Some(true)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_for_good_before_its_last_commit_keeps_that_checkpoints_records()
-> anyhow::Result<()> {
    let infra = infra()?;
    let k = infra.kafka.as_str();
    let dir = test_dir("txn-failed-in-doubt");
    // The worker dies at its third commit, after the checkpoint completed:
    // its transaction is in doubt, and no restart will finish it.
    let options = ClusterOptions {
        failpoints: [(
            0,
            "checkpoint-completed-before-sink-commit=2*off->return".to_string(),
        )]
        .into(),
        ..options()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let c = cluster.coordinator_address.clone();
    let topics = Topics::create(k).await?;
    let job = submit(&c, &dir, &topics.spec(k, "1s", 0), &[])?;
    wait_running(&c, &job).await?;
    let feed = Feed::start(k, &topics.input, 0);
    wait_for("the job failed", Duration::from_secs(60), || async {
        let s = jobctl_json(&c, &["status", &job])?;
        Ok((s["state"] == "FAILED").then_some(()))
    })
    .await?;
    let failed = Instant::now();
    feed.stop().await?;
    let took = markers_visible(k, &topics.output, "in-doubt", failed).await?;
    println!("failure before a commit: markers visible after {took:?}");
    // The transaction opened at the last barrier may hold records of the
    // ongoing feed when the worker dies; aborted, they never show.
    check_committed(k, &topics.output, &c, &job, None).await?;
    let log = std::fs::read_to_string(dir.join("coordinator-1.log"))?;
    assert!(
        log.contains("committed the in-doubt transaction of the ended job's last checkpoint"),
        "the coordinator committed the in-doubt transaction (see {})",
        dir.join("coordinator-1.log").display()
    );
    Ok(())
}
