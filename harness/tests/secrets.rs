//! Secrets a job spec references stay references everywhere the cluster
//! stores or shows the spec: the workers resolve them where they run (here
//! the S3 secret key from a `--secrets-dir` file, a SASL password from a
//! `--secrets-file`), the job writes every record once with them, and
//! neither value is in the coordinators' or workers' data directories, their
//! logs, `jobctl status` or the job's events. A secret no worker has fails
//! the job at once, naming the reference and the job.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    Infra, infra, jobctl, jobctl_json, submit, test_dir, unique, wait_checkpointed, wait_for,
    wait_running,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BUCKET: &str = "sluice";
const S3_SECRET: &str = "SLUICE_TEST_S3_SECRET";
const SASL_SECRET: &str = "SLUICE_TEST_SASL_PASSWORD";
const ABSENT_SECRET: &str = "SLUICE_TEST_ABSENT_SECRET";

fn spec(topic: &str, prefix: &str, sasl_reference: &str) -> String {
    format!(
        r#"
name: secrets
checkpoint: {{ interval: 500ms }}
source:
  kafka:
    brokers: "${{KAFKA_BROKER}}"
    topic: {topic}
    properties:
      sasl.username: sluice
      sasl.password: "${{{sasl_reference}}}"
sink:
  s3:
    bucket: {BUCKET}
    prefix: {prefix}
    batch_interval: 300ms
    endpoint: "${{S3_ENDPOINT}}"
    secret_access_key: "${{{S3_SECRET}}}"
"#
    )
}

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

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The files under `dir` that hold `needle`.
fn holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_resolved_on_workers_and_stored_nowhere() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("secrets");
    // The only place the values are written: what Kubernetes would mount.
    let mounted = test_dir("secrets-mounted");
    std::fs::write(
        mounted.join(S3_SECRET),
        format!("{}\n", sluice_harness::minio::SECRET_KEY),
    )?;
    let sasl_password = unique("sasl-password");
    let secrets_file = mounted.join("secrets.env");
    std::fs::write(&secrets_file, format!("{SASL_SECRET}={sasl_password}\n"))?;
    let options = ClusterOptions {
        env: infra.s3_env(),
        worker_args: vec![
            "--secrets-dir".into(),
            mounted.display().to_string(),
            "--secrets-file".into(),
            secrets_file.display().to_string(),
        ],
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 1, options).await?;
    let c = cluster.coordinator_address.clone();

    let topic = unique("secrets-in");
    let prefix = unique("secrets");
    admin::create_topic(&infra.kafka, &topic, 2).await?;
    let job = submit_spec(&c, &dir, &infra, &spec(&topic, &prefix, SASL_SECRET))?;
    wait_running(&c, &job).await?;
    let count = 200u64;
    let now = chrono::Utc::now().timestamp_millis();
    let events = (0..count).map(|n| format!(r#"{{"id":"e{n}","timestamp":{now}}}"#));
    producer::produce(&infra.kafka, &topic, events, None, 0).await?;
    wait_checkpointed(&c, &job, count).await?;

    // The secret key reached MinIO: every record was written once with it.
    let store = admin::s3_bucket(&infra.s3_endpoint, BUCKET)?;
    let seen = admin::events_by_id(store.as_ref(), &prefix, "id").await?;
    let once = (0..count).all(|n| seen.get(&format!("e{n}")) == Some(&1));
    assert!(
        once && seen.len() as u64 == count,
        "each of {count} events once: {seen:?}"
    );

    // Absent on the worker: the job fails at once, naming the reference.
    let missing = submit_spec(&c, &dir, &infra, &spec(&topic, &prefix, ABSENT_SECRET))?;
    let failed = wait_for(
        "the job without its secret to fail",
        Duration::from_secs(60),
        || {
            let (c, missing) = (&c, &missing);
            async move {
                let s = jobctl_json(c, &["status", missing])?;
                Ok((s["state"] == "FAILED").then_some(s))
            }
        },
    )
    .await?;
    let failure = failed["failure"].as_str().unwrap_or_default();
    println!("{failure}");
    assert!(
        failure.contains(ABSENT_SECRET)
            && failure.contains("source.kafka.properties.sasl.password")
            && failure.contains(&missing),
        "the failure names the reference, its field and the job: {failed}"
    );
    assert_eq!(failed["restarts"], 0, "no restarts: {failed}");

    // Nothing the cluster stored or shows holds a value.
    let mut shown = String::new();
    for job in [&job, &missing] {
        for args in [
            vec!["--output", "json", "status", job.as_str()],
            vec!["--output", "json", "events", job.as_str()],
            vec!["status", job.as_str()],
        ] {
            let out = jobctl(&c, &args, &[])?;
            assert!(out.success, "jobctl {args:?}: {}", out.stderr);
            shown.push_str(&out.stdout);
        }
    }
    let listed = jobctl(&c, &["--output", "json", "list"], &[])?;
    shown.push_str(&listed.stdout);
    assert!(
        listed.success && shown.contains(&job) && shown.contains(&missing),
        "jobctl showed the jobs: {shown}"
    );
    cluster.kill_worker(0);
    cluster.kill_coordinator(0);
    for value in [sluice_harness::minio::SECRET_KEY, sasl_password.as_str()] {
        assert!(!shown.contains(value), "jobctl shows a secret: {shown}");
        let found = holding(&dir, value);
        assert!(found.is_empty(), "{value} is stored in {found:?}");
    }
    // The stored spec is there to be found, with its references.
    let raft = holding(&dir, &format!("${{{SASL_SECRET}}}"));
    assert!(
        raft.iter()
            .any(|f| f.to_string_lossy().contains("coordinator-1-data")),
        "the coordinator's data holds the spec with its references: {raft:?}"
    );
    Ok(())
}
