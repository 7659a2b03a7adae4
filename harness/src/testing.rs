//! End-to-end test support. Kafka and Cassandra start once per test run: the
//! test command starts them with `devstack up --no-sluice` and passes their
//! addresses as `KAFKA_BROKER`, `CASSANDRA_HOST` and `S3_ENDPOINT`; without those, the first
//! test that asks starts them for the whole test binary. Each test starts its
//! own coordinator and workers.

use crate::cluster::bin_dir;
use crate::stack::{DevStack, StackOptions};
use anyhow::Context;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Infra {
    pub kafka: String,
    pub cassandra: String,
    /// MinIO's endpoint (bucket `sluice` exists); S3 credentials are in the
    /// `AWS_*` environment variables the workers inherit.
    pub s3_endpoint: String,
}

impl Infra {
    /// The environment S3 clients (the checkpoint store, the S3 sink) need to
    /// reach the test run's MinIO: give it to the workers that use S3.
    pub fn s3_env(&self) -> Vec<(String, String)> {
        crate::minio::client_env(&self.s3_endpoint)
    }
}

static INFRA: OnceLock<Result<Infra, String>> = OnceLock::new();

pub fn infra() -> anyhow::Result<Infra> {
    INFRA
        .get_or_init(|| {
            match (
                std::env::var("KAFKA_BROKER"),
                std::env::var("CASSANDRA_HOST"),
                std::env::var("S3_ENDPOINT"),
            ) {
                (Ok(kafka), Ok(cassandra), Ok(s3_endpoint)) => Ok(Infra {
                    kafka,
                    cassandra,
                    s3_endpoint,
                }),
                _ => start_infra().map_err(|e| format!("{e:#}")),
            }
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Starts Kafka and Cassandra on a thread that lives as long as the test
/// binary: children die with the thread that started them.
fn start_infra() -> anyhow::Result<Infra> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let dir = std::env::temp_dir().join(format!("sluice-test-infra-{}", std::process::id()));
        let options = StackOptions {
            no_sluice: true,
            ..Default::default()
        };
        match runtime.block_on(DevStack::start(dir, options)) {
            Ok(stack) => {
                let _ = tx.send(Ok(Infra {
                    kafka: stack.kafka_broker.clone(),
                    cassandra: stack.cassandra_host.clone().unwrap_or_default(),
                    s3_endpoint: stack.s3_endpoint.clone().unwrap_or_default(),
                }));
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("{e:#}")));
            }
        }
    });
    rx.recv()?.map_err(|e| anyhow::anyhow!(e))
}

/// A name no earlier test run used, for topics and jobs.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh directory for one test's logs.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("sluice-tests").join(unique(name));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// What a `jobctl` run printed and how it ended.
#[derive(Debug)]
pub struct JobctlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `jobctl` binary against `coordinator` with extra environment;
/// with `SLUICE_TEST_TLS=1`, with the test CA and token too (`env` may
/// override them).
pub fn jobctl(
    coordinator: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<JobctlOutput> {
    let mut cmd = Command::new(bin_dir()?.join("jobctl"));
    if let Some(security) = crate::tls::test_security()? {
        cmd.env("SLUICE_TLS_CA", &security.tls.ca)
            .env("SLUICE_TOKEN", &security.token);
    }
    let out = cmd
        .arg("--coordinator")
        .arg(coordinator)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .context("cannot run jobctl")?;
    Ok(JobctlOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `jobctl --output json ARGS`, parsed.
pub fn jobctl_json(coordinator: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = jobctl(coordinator, &all, &[])?;
    if !out.success {
        anyhow::bail!("jobctl {args:?} failed: {}", out.stderr.trim());
    }
    serde_json::from_str(&out.stdout)
        .with_context(|| format!("jobctl printed no JSON: {}", out.stdout))
}

/// Polls `check` until it returns `Some`, failing with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > deadline {
            match last_err {
                Some(e) => {
                    anyhow::bail!("{what}: not reached within {deadline:?}; last error: {e:#}")
                }
                None => anyhow::bail!("{what}: not reached within {deadline:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory of a process in bytes, from /proc.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}

/// Peak resident memory of a process in bytes (`VmHWM`), from /proc.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc status")?;
    Ok(kb * 1024)
}

/// Writes `spec` to a file under `dir`, submits it with `jobctl` (with `env`
/// for its `${VAR}` references) and returns the job id.
pub fn submit(
    coordinator: &str,
    dir: &std::path::Path,
    spec: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let path = dir.join(format!("{}.yaml", unique("job")));
    std::fs::write(&path, spec)?;
    let out = jobctl(
        coordinator,
        &["submit", path.to_str().unwrap_or_default()],
        env,
    )?;
    anyhow::ensure!(out.success, "submit failed: {}", out.stderr);
    Ok(out
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string())
}

/// Waits until the job is RUNNING and returns its status.
pub async fn wait_running(coordinator: &str, job: &str) -> anyhow::Result<serde_json::Value> {
    wait_for(
        &format!("{job} running"),
        Duration::from_secs(60),
        || async move {
            let s = jobctl_json(coordinator, &["status", job])?;
            Ok((s["state"] == "RUNNING").then_some(s))
        },
    )
    .await
}

/// The sum of a metric (`records_in`, `records_out`, `dead_lettered`) over a
/// job's subtasks, of one stage or of all.
pub fn task_metric(status: &serde_json::Value, stage: Option<u64>, metric: &str) -> u64 {
    status["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| stage.is_none_or(|s| t["stage"] == s))
        .filter_map(|t| t[metric].as_u64())
        .sum()
}

/// The job's latest completed checkpoint: its id and the sum of its source
/// offsets (the input records it covers).
pub fn latest_checkpoint(coordinator: &str, job: &str) -> anyhow::Result<(u64, i64)> {
    let cps = jobctl_json(coordinator, &["checkpoints", job])?;
    let cp = &cps["checkpoints"][0];
    let end = cp["source_offsets"]
        .as_object()
        .map(|o| o.values().filter_map(|v| v.as_i64()).sum())
        .unwrap_or(0);
    Ok((cp["checkpoint_id"].as_u64().unwrap_or(0), end))
}

/// Waits until the job restarted at least once and runs again; returns its status.
pub async fn wait_restarted(coordinator: &str, job: &str) -> anyhow::Result<serde_json::Value> {
    wait_for(
        &format!("{job} restarted and running"),
        Duration::from_secs(60),
        || async move {
            let s = jobctl_json(coordinator, &["status", job])?;
            Ok((s["restarts"].as_u64().unwrap_or(0) >= 1 && s["state"] == "RUNNING").then_some(s))
        },
    )
    .await
}

/// Waits until the job completed a checkpoint past `after` that covers
/// some input; returns its id.
pub async fn wait_checkpoint_after(
    coordinator: &str,
    job: &str,
    after: u64,
) -> anyhow::Result<u64> {
    wait_for(
        &format!("{job}: a checkpoint with input past checkpoint {after}"),
        Duration::from_secs(60),
        || async move {
            let (id, end) = latest_checkpoint(coordinator, job)?;
            Ok((id > after && end > 0).then_some(id))
        },
    )
    .await
}

/// Waits until a checkpoint covers `records` input records and a later one
/// completed, so everything read before is committed.
pub async fn wait_checkpointed(coordinator: &str, job: &str, records: u64) -> anyhow::Result<()> {
    let reached = wait_for(
        &format!("{job} checkpointed {records} input records"),
        Duration::from_secs(180),
        || async move {
            let (id, end) = latest_checkpoint(coordinator, job)?;
            Ok((end == records as i64).then_some(id))
        },
    )
    .await?;
    wait_for(
        "one more checkpoint",
        Duration::from_secs(60),
        || async move { Ok((latest_checkpoint(coordinator, job)?.0 > reached).then_some(())) },
    )
    .await
}

/// How often each number `n` (a JSON field) appears in `topic`, read to its
/// end with `isolation`, and how many of `0..records` are lost and how many
/// extra copies there are.
pub async fn count_numbers(
    brokers: &str,
    topic: &str,
    records: u64,
    isolation: &str,
) -> anyhow::Result<(std::collections::BTreeMap<i64, u32>, usize, u32)> {
    let out = crate::admin::read_topic(
        brokers,
        topic,
        usize::MAX,
        Duration::from_secs(8),
        Duration::from_secs(180),
        isolation,
    )
    .await?;
    let mut seen = std::collections::BTreeMap::new();
    for m in &out {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        *seen.entry(v["n"].as_i64().unwrap_or(-1)).or_default() += 1;
    }
    let lost = (0..records as i64)
        .filter(|n| !seen.contains_key(n))
        .count();
    let duplicated = seen.values().map(|c| c - 1).sum();
    Ok((seen, lost, duplicated))
}

/// Every file under `dir`, at any depth; none when `dir` is missing.
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The checkpoint store keys (relative to the store's root) that the
/// retained checkpoints of `job` refer to, from `jobctl checkpoints`.
pub fn retained_state_objects(
    coordinator: &str,
    job: &str,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    let checkpoints = jobctl_json(coordinator, &["checkpoints", job])?;
    Ok(checkpoints["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["state_objects"].as_array().cloned().unwrap_or_default())
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect())
}
