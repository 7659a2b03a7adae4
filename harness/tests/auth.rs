//! A coordinator given a tokens file refuses JobService calls without an
//! accepted token, and operator calls with a read-only token, each with a
//! message naming the call; the operator token submits and cancels; the file
//! is read again when it changes. Calls go through jobctl to a group of three
//! coordinators, which find and follow the leader with the token given.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster, tokens_file};
use sluice_harness::testing::{JobctlOutput, infra, jobctl, test_dir, unique, wait_for};
use std::time::Duration;

const OPERATOR: &str = "op-3f9a1c7e52d04b8a";
const READ_ONLY: &str = "ro-8d2e6b0f14c37a95";

/// `jobctl ARGS` with `token` in `SLUICE_TOKEN` (or none).
fn ctl(coordinator: &str, token: Option<&str>, args: &[&str]) -> anyhow::Result<JobctlOutput> {
    let env: Vec<(&str, &str)> = token.map(|t| ("SLUICE_TOKEN", t)).into_iter().collect();
    jobctl(coordinator, args, &env)
}

/// The one line jobctl printed on a refusal, less `error: `.
fn refusal(out: &JobctlOutput, what: &str) -> String {
    assert!(!out.success, "{what}: accepted: {}", out.stdout);
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
    err.trim_start_matches("error: ").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_need_a_known_token_and_changes_need_an_operator_token() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("auth");
    let options = ClusterOptions {
        auth_tokens: Some(format!(
            "# test tokens\noperator {OPERATOR}\nread-only {READ_ONLY}\n"
        )),
        token: Some(READ_ONLY.into()),
        // A group of three: the member that initialises it asks its peers
        // with a token of the file.
        coordinators: 3,
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let coordinator = cluster.coordinator_address.clone();
    let (input, output) = (unique("auth-in"), unique("auth-out"));
    admin::create_topic(&infra.kafka, &input, 1).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let spec = dir.join("job.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: guarded\nsource: {{ kafka: {{ brokers: \"{k}\", topic: {input} }} }}\nsink: {{ kafka: {{ brokers: \"{k}\", topic: {output} }} }}\n",
            k = infra.kafka
        ),
    )?;
    let spec = spec.to_str().unwrap_or_default();

    let no_token = "authentication is on and the call carries no token \
                    (send the header `Authorization: Bearer TOKEN`; jobctl: --token or SLUICE_TOKEN)";
    assert_eq!(
        refusal(&ctl(&coordinator, None, &["list"])?, "list, no token"),
        format!("ListJobs refused: {no_token}")
    );
    assert_eq!(
        refusal(
            &ctl(&coordinator, None, &["submit", spec])?,
            "submit, no token"
        ),
        format!("SubmitJob refused: {no_token}")
    );
    let wrong = jobctl(
        &coordinator,
        &["--token", "op-guessed", "submit", spec],
        &[],
    )?;
    assert_eq!(
        refusal(&wrong, "submit, wrong token"),
        "SubmitJob refused: the token is not one this coordinator accepts"
    );
    assert_eq!(
        refusal(
            &ctl(&coordinator, Some(READ_ONLY), &["submit", spec])?,
            "submit, read-only token"
        ),
        "SubmitJob refused: it needs the operator role, and the token given has the read-only role"
    );

    // Nothing refused took effect; the read-only token reads.
    let list = ctl(&coordinator, Some(READ_ONLY), &["--output", "json", "list"])?;
    assert!(list.success, "{}", list.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list.stdout)?,
        serde_json::json!([])
    );

    let submitted = jobctl(&coordinator, &["--token", OPERATOR, "submit", spec], &[])?;
    assert!(submitted.success, "operator submit: {}", submitted.stderr);
    let job = submitted
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string();
    let state = |token: &'static str| {
        let (c, j) = (coordinator.clone(), job.clone());
        async move {
            let out = ctl(&c, Some(token), &["--output", "json", "status", &j])?;
            anyhow::ensure!(out.success, "status: {}", out.stderr);
            let status: serde_json::Value = serde_json::from_str(&out.stdout)?;
            Ok(status["state"].as_str().unwrap_or_default().to_string())
        }
    };
    wait_for("job running", Duration::from_secs(60), || async {
        Ok((state(READ_ONLY).await? == "RUNNING").then_some(()))
    })
    .await?;

    assert_eq!(
        refusal(
            &ctl(&coordinator, Some(READ_ONLY), &["cancel", &job])?,
            "cancel, read-only token"
        ),
        "CancelJob refused: it needs the operator role, and the token given has the read-only role"
    );
    assert_eq!(
        refusal(
            &ctl(&coordinator, None, &["cancel", &job])?,
            "cancel, no token"
        ),
        format!("CancelJob refused: {no_token}")
    );
    assert_eq!(state(READ_ONLY).await?, "RUNNING");

    // The HTTP API checks the same tokens, naming the call.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await?;
    let http = cluster.http_url_of(leader);
    let web = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let call = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&response.text().await?)?;
        anyhow::Ok((status, body))
    };
    let jobs = format!("{http}/api/jobs");
    let cancel = format!("{http}/api/jobs/{job}/cancel");
    let (status, body) = call(web.get(&jobs)).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["message"],
        format!("GET /api/jobs refused: {no_token}")
    );
    // A 401 names the scheme the token goes in, for HTTP clients.
    let refused = web.get(&jobs).send().await?;
    assert_eq!(
        refused
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let (status, body) = call(web.get(&jobs).bearer_auth("op-guessed")).await?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(web.get(&jobs).bearer_auth(READ_ONLY)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    let (status, body) = call(web.post(&cancel).bearer_auth(READ_ONLY)).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "POST /api/jobs/{job}/cancel refused: it needs the operator role, and the token given has the read-only role"
        )
    );
    // A follower checks the token, then sends the call on to the leader,
    // asking it where it serves HTTP with a token of its own file.
    let follower = (0..3).find(|i| *i != leader).unwrap_or_default();
    let response = web
        .get(format!("{}/api/jobs", cluster.http_url_of(follower)))
        .bearer_auth(READ_ONLY)
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 307);
    assert_eq!(
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok()),
        Some(jobs.as_str())
    );
    assert_eq!(state(READ_ONLY).await?, "RUNNING");

    // A new file replaces the tokens while the coordinator runs.
    let rotated = "ro-51c0e97d2a6f48b3";
    std::fs::write(
        tokens_file(&dir),
        format!("operator {OPERATOR}\nread-only {rotated}\n"),
    )?;
    wait_for(
        "rotated token accepted",
        Duration::from_secs(15),
        || async {
            Ok(ctl(&coordinator, Some(rotated), &["list"])?
                .success
                .then_some(()))
        },
    )
    .await?;
    assert_eq!(
        refusal(
            &ctl(&coordinator, Some(READ_ONLY), &["list"])?,
            "list, removed token"
        ),
        "ListJobs refused: the token is not one this coordinator accepts"
    );

    let cancelled = ctl(&coordinator, Some(OPERATOR), &["cancel", &job])?;
    assert!(cancelled.success, "operator cancel: {}", cancelled.stderr);
    wait_for("job cancelled", Duration::from_secs(30), || async {
        Ok((state(rotated).await? == "CANCELLED").then_some(()))
    })
    .await?;

    // Tokens are secrets: the coordinator logs none of them.
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path)?;
            for token in [OPERATOR, READ_ONLY, rotated, "op-guessed"] {
                assert!(!log.contains(token), "{} holds a token", path.display());
            }
        }
    }
    Ok(())
}
