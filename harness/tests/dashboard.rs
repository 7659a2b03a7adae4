//! The coordinator's dashboard in a real browser: headless Chromium loads
//! its pages against a cluster running a real job, and what they show (job
//! name, state, record counts per stage, checkpoints, workers, the leader)
//! matches the job; a screenshot of the job's page is kept. Authentication
//! is on: the pages show a clear refusal without a token or with a wrong
//! one, and everything with a read-only token.

use serde_json::{Value, json};
use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{infra, test_dir, unique, wait_for};
use std::path::Path;
use std::time::Duration;

/// The cluster's tokens: an operator's for the test's own calls, a
/// read-only one for the dashboard.
const OPERATOR: &str = "op-9c41d0e7b25a";
const READ_ONLY: &str = "ro-3f82a6c1d94e";

/// Debian's Chromium, as `scripts/test` installs it.
const CHROMIUM: &str = "chromium";

/// Runs headless Chromium on `url` with `args` (such as `--dump-dom`), the
/// page's scripts given a few seconds; its standard output.
async fn chromium(dir: &Path, url: &str, args: &[&str]) -> anyhow::Result<String> {
    let profile = dir.join(unique("chromium-profile"));
    let run = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args(["--virtual-time-budget=5000", "--window-size=1440,1000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| anyhow::anyhow!("chromium did not finish with {url} within 60 s"))?
        .map_err(|e| anyhow::anyhow!("cannot run {CHROMIUM} (scripts/test installs it): {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The rendered part of a page's DOM (not its script).
fn view(dom: &str) -> anyhow::Result<&str> {
    let start = dom
        .find("<main id=\"view\">")
        .ok_or_else(|| anyhow::anyhow!("no view in the page:\n{dom}"))?;
    let end = dom[start..]
        .find("</main>")
        .map_or(dom.len(), |e| start + e);
    Ok(&dom[start..end])
}

/// The value of each `attr="..."` in `dom`, in order.
fn attrs<'a>(dom: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!("{attr}=\"");
    dom.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &dom[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// Sums `records` of the task rows of `stage` on a job page.
fn stage_records(dom: &str, stage: u32, records: &str) -> u64 {
    dom.split("data-task=\"")
        .skip(1)
        .filter(|row| row.contains(&format!("/s{stage}/")))
        .filter_map(|row| attrs(row, records).first()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_running_job_in_chromium() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("dashboard");
    let options = ClusterOptions {
        auth_tokens: Some(format!("operator {OPERATOR}\nread-only {READ_ONLY}\n")),
        token: Some(OPERATOR.into()),
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let url = cluster.http_url_of(0);
    let (input, output) = (unique("dash-in"), unique("dash-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let spec = format!(
        r#"
name: dashboard-job
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
    let http = reqwest::Client::new();
    let submitted: Value = http
        .post(format!("{url}/api/jobs"))
        .bearer_auth(OPERATOR)
        .body(spec)
        .send()
        .await?
        .json()
        .await?;
    let job = submitted["job_id"].as_str().unwrap_or_default().to_string();
    let records = (0..300).map(|i| json!({ "id": format!("r-{}", i % 200) }).to_string());
    producer::produce(&infra.kafka, &input, records, None, 0).await?;
    // The figures the pages must show: all read (lag 0 at both partitions'
    // ends), deduplicated, checkpointed.
    wait_for(
        "the job's counts final and checkpointed",
        Duration::from_secs(60),
        || {
            let (http, url, job) = (&http, &url, &job);
            async move {
                let j: Value = http
                    .get(format!("{url}/api/jobs/{job}"))
                    .bearer_auth(OPERATOR)
                    .send()
                    .await?
                    .json()
                    .await?;
                let stage = |s: u64, f: &str| -> u64 {
                    j["tasks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|t| t["stage"] == s)
                        .filter_map(|t| t[f].as_u64())
                        .sum()
                };
                let ends: i64 = j["partition_lag"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l["high_watermark"].as_i64())
                    .sum();
                Ok((j["state"] == "RUNNING"
                    && j["lag"] == 0
                    && ends == 300
                    && stage(0, "records_in") == 300
                    && stage(1, "records_out") == 200
                    && j["last_checkpoint_id"].as_u64() > Some(0))
                .then_some(()))
            }
        },
    )
    .await?;

    // Without a token, or with one the coordinator does not know, the page
    // says what is wrong instead of staying empty.
    for (token, says) in [
        ("", "Authentication is on: enter a token"),
        (
            "?token=guessed",
            "The coordinator does not accept the token",
        ),
    ] {
        let refused = chromium(&dir, &format!("{url}/#/{token}"), &["--dump-dom"]).await?;
        let refused = view(&refused)?;
        assert_eq!(attrs(refused, "data-refused"), ["401"], "{refused}");
        assert!(refused.contains(says), "{refused}");
        assert!(!refused.contains(&job), "{refused}");
    }

    // A link whose token is not valid percent-encoding: the page says so
    // and still renders (asking for a token) instead of staying at
    // "Loading…".
    let mangled = chromium(&dir, &format!("{url}/#/?token=%E0%A4%A"), &["--dump-dom"]).await?;
    let notice = mangled
        .find("<p id=\"notice\"")
        .map(|at| &mangled[at..])
        .and_then(|rest| rest.find("</p>").map(|end| &rest[..end]))
        .ok_or_else(|| anyhow::anyhow!("no notice in the page:\n{mangled}"))?;
    assert!(
        notice.contains("not valid percent-encoding") && !notice.contains("hidden"),
        "{notice}"
    );
    let page = view(&mangled)?;
    assert_eq!(attrs(page, "data-refused"), ["401"], "{page}");
    assert!(!page.contains("Loading"), "{page}");
    // The page itself takes any query in its address (the API's routes
    // refuse those they do not take).
    let queried = chromium(&dir, &format!("{url}/?utm_source=mail#/"), &["--dump-dom"]).await?;
    let page = view(&queried)?;
    assert_eq!(attrs(page, "data-refused"), ["401"], "{page}");
    assert!(!page.contains("Loading"), "{page}");

    // A read-only token given in the link (kept in the tab's
    // sessionStorage, as one typed into the field is) shows every page.
    let with_token = format!("?token={READ_ONLY}");
    let jobs = chromium(&dir, &format!("{url}/#/{with_token}"), &["--dump-dom"]).await?;
    let jobs = view(&jobs)?;
    let row = jobs
        .split("data-job=\"")
        .find(|r| r.starts_with(&format!("{job}\"")))
        .ok_or_else(|| anyhow::anyhow!("no row of {job} on the jobs page:\n{jobs}"))?;
    assert_eq!(attrs(row, "data-name").first(), Some(&"dashboard-job"));
    assert_eq!(attrs(row, "data-state").first(), Some(&"RUNNING"));
    assert_eq!(attrs(row, "data-records-in").first(), Some(&"300"));
    assert_eq!(attrs(row, "data-lag").first(), Some(&"0"), "the job's lag");

    let page = format!("{url}/#/job/{job}{with_token}");
    let detail = chromium(&dir, &page, &["--dump-dom"]).await?;
    let detail = view(&detail)?;
    assert_eq!(attrs(detail, "data-name").first(), Some(&"dashboard-job"));
    assert_eq!(attrs(detail, "data-stage"), ["0", "1"], "two stages");
    assert_eq!(stage_records(detail, 0, "data-records-in"), 300);
    assert_eq!(stage_records(detail, 1, "data-records-in"), 300);
    assert_eq!(stage_records(detail, 1, "data-records-out"), 200);
    assert_eq!(attrs(detail, "data-dead-letters"), ["0", "0"]);
    assert!(
        !attrs(detail, "data-checkpoint").is_empty(),
        "checkpoints listed"
    );
    let sizes = attrs(detail, "data-size");
    assert_eq!(sizes.len(), attrs(detail, "data-checkpoint").len());
    assert!(
        sizes.iter().all(|s| s.parse::<u64>().is_ok_and(|s| s > 0)),
        "each checkpoint's size, the dedup's keyed state: {sizes:?}"
    );
    let alignments = attrs(detail, "data-alignment");
    assert_eq!(alignments.len(), sizes.len());
    assert!(
        alignments.iter().all(|a| a.parse::<u64>().is_ok()),
        "each checkpoint's alignment in microseconds: {alignments:?}"
    );
    for share in ["data-busy", "data-back-pressure"] {
        let shares = attrs(detail, share);
        assert_eq!(shares.len(), 4, "{share} of each subtask");
        assert!(
            shares
                .iter()
                .all(|v| v.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v))),
            "{share} in percent: {shares:?}"
        );
    }
    assert_eq!(
        attrs(detail, "data-partition"),
        [format!("{input}/0"), format!("{input}/1")],
        "the lag of each partition"
    );
    assert_eq!(attrs(detail, "data-lag"), ["0", "0"]);
    assert_eq!(attrs(detail, "data-job-lag"), ["0"]);

    let group = chromium(
        &dir,
        &format!("{url}/#/cluster{with_token}"),
        &["--dump-dom"],
    )
    .await?;
    let group = view(&group)?;
    assert_eq!(attrs(group, "data-worker"), ["worker-1"]);
    assert_eq!(attrs(group, "data-member"), ["1"]);
    assert!(group.contains(">leader<"), "the leader is marked");

    let screenshot = dir.join("dashboard-job.png");
    chromium(
        &dir,
        &page,
        &[&format!("--screenshot={}", screenshot.display())],
    )
    .await?;
    let size = std::fs::metadata(&screenshot)?.len();
    assert!(size > 10_000, "a screenshot of the page: {size} bytes");
    println!("screenshot of the job's page: {}", screenshot.display());
    Ok(())
}
