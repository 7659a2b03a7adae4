//! What the coordinator refuses before it deploys anything: a job whose
//! stateful transforms do not fit the savepoint it starts from (at the
//! transform's path, over HTTP and in jobctl), and a rescale the cluster's
//! task slots cannot hold; a job waiting for slots takes any parallelism,
//! and an ended job is told to start from its savepoint.
//! States keep their documented names in errors, and jobctl ends quietly
//! when its reader goes away.

use reqwest::StatusCode;
use serde_json::Value;
use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster, bin_dir};
use sluice_harness::testing::{infra, jobctl, test_dir, unique, wait_for};
use std::time::Duration;

/// A call's status and JSON body.
async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    let body = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{status}: not JSON ({e}): {text}"))?;
    Ok((status, body))
}

/// A job between two topics with `transforms` (YAML list items).
fn spec(brokers: &str, input: &str, output: &str, parallelism: u32, transforms: &str) -> String {
    format!(
        "name: checked\nparallelism: {parallelism}\ncheckpoint: {{ interval: 500ms }}\n\
         source: {{ kafka: {{ brokers: \"{brokers}\", topic: {input} }} }}\n\
         sink: {{ kafka: {{ brokers: \"{brokers}\", topic: {output} }} }}\n\
         transforms:\n{transforms}"
    )
}

async fn wait_state(
    http: &reqwest::Client,
    url: &str,
    job: &str,
    state: &str,
) -> anyhow::Result<Value> {
    wait_for(
        &format!("{job} {state}"),
        Duration::from_secs(60),
        || async move {
            let (_, j) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
            Ok((j["state"] == state).then_some(j))
        },
    )
    .await
}

fn problem_paths(body: &Value) -> Vec<String> {
    body["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["path"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_only_starts_jobs_with_its_stateful_transforms() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("savepoint-fit");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let url = cluster.http_url_of(0);
    let http = reqwest::Client::new();
    let (input, output) = (unique("fit-in"), unique("fit-out"));
    admin::create_topic(&infra.kafka, &input, 1).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    let job_spec = |transforms: &str| spec(&infra.kafka, &input, &output, 1, transforms);
    let dedup = "  - key_by: [id]\n  - dedup: { ttl: 1h }\n";

    let (status, submitted) =
        call(http.post(format!("{url}/api/jobs")).body(job_spec(dedup))).await?;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let job = submitted["job_id"].as_str().unwrap_or_default().to_string();
    wait_state(&http, &url, &job, "RUNNING").await?;
    let (status, savepoint) = call(http.post(format!("{url}/api/jobs/{job}/stop"))).await?;
    assert_eq!(status, StatusCode::OK, "{savepoint}");
    let from = savepoint["savepoint_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // States by their documented names, in errors too.
    let (status, refused) = call(http.post(format!("{url}/api/jobs/{job}/cancel"))).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("is STOPPED"), "{refused}");
    let out = jobctl(&cluster.coordinator_address_of(0), &["cancel", &job], &[])?;
    assert!(
        out.stderr.contains("is STOPPED") && !out.stderr.contains("JOB_STATE"),
        "{out:?}"
    );
    let (_, doc) = call(http.get(format!("{url}/api/openapi.json"))).await?;
    let states = &doc["components"]["schemas"]["JobState"]["enum"];
    assert!(
        states
            .as_array()
            .is_some_and(|s| s.contains(&"STOPPED".into())),
        "{states}"
    );
    assert!(!doc.to_string().contains("JOB_STATE_"), "{states}");
    let submit_from = |body: String| {
        http.post(format!("{url}/api/jobs?from_savepoint={from}"))
            .body(body)
    };

    // Another kind of state where the savepoint's dedup state is.
    let other_kind = job_spec("  - key_by: [id]\n  - pair_sum: { field: n }\n");
    let (status, refused) = call(submit_from(other_kind.clone())).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["code"], "savepoint_mismatch", "{refused}");
    assert_eq!(problem_paths(&refused), vec!["transforms[1]"], "{refused}");
    let message = refused["problems"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("pair_sum") && message.contains("dedup"),
        "{refused}"
    );
    // The dedup moved into a stage of its own: its state has no taker, and
    // the new place has no state.
    let moved = job_spec("  - key_by: [id]\n  - key_by: [id]\n  - dedup: { ttl: 1h }\n");
    let (status, refused) = call(submit_from(moved)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        problem_paths(&refused),
        vec!["transforms[2]", "transforms"],
        "{refused}"
    );
    // Another operator in the stage holding state: its state is stored by
    // operator position.
    let longer = job_spec("  - key_by: [id]\n  - dedup: { ttl: 1h }\n  - remap: '.x = 1'\n");
    let (status, refused) = call(submit_from(longer)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(problem_paths(&refused), vec!["transforms"], "{refused}");
    // jobctl says the same and nothing was deployed.
    let file = dir.join("other-kind.yaml");
    std::fs::write(&file, &other_kind)?;
    let out = jobctl(
        &cluster.coordinator_address_of(0),
        &["submit", &file.to_string_lossy(), "--from-savepoint", &from],
        &[],
    )?;
    assert!(!out.success, "{out:?}");
    assert!(
        out.stderr.contains(&from) && out.stderr.contains("transforms[1]"),
        "{out:?}"
    );
    let (_, jobs) = call(http.get(format!("{url}/api/jobs"))).await?;
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");

    // The same stateful transforms, other settings: it starts and runs.
    let (status, resumed) = call(submit_from(job_spec(
        "  - remap: '.y = 2'\n  - key_by: [id]\n  - dedup: { ttl: 2h }\n",
    )))
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{resumed}");
    let resumed = resumed["job_id"].as_str().unwrap_or_default().to_string();
    let running = wait_state(&http, &url, &resumed, "RUNNING").await?;
    assert_eq!(running["restarts"], 0, "{running}");
    let (status, _) = call(http.post(format!("{url}/api/jobs/{resumed}/cancel"))).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescales_check_the_state_first_and_a_waiting_job_takes_any_parallelism()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("rescale-slots");
    let options = ClusterOptions {
        slots: 2,
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 1, options).await?;
    let url = cluster.http_url_of(0);
    let http = reqwest::Client::new();
    let (input, output) = (unique("slots-in"), unique("slots-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;

    // More subtasks than the worker's two slots: the job waits for slots.
    let transforms = "  - key_by: [id]\n  - dedup: { ttl: 1h }\n";
    let body = spec(&infra.kafka, &input, &output, 3, transforms);
    let (status, submitted) = call(http.post(format!("{url}/api/jobs")).body(body)).await?;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let job = submitted["job_id"].as_str().unwrap_or_default().to_string();
    let rescale = |parallelism: u32| {
        http.post(format!("{url}/api/jobs/{job}/rescale"))
            .json(&serde_json::json!({ "parallelism": parallelism }))
    };
    let (_, waiting) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
    assert_eq!(waiting["state"], "SCHEDULING", "{waiting}");

    // Waiting, it takes any valid parallelism at once, even one the slots
    // cannot hold: it holds no slot, and keeps waiting.
    let (status, answer) = call(rescale(4)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["parallelism"], 4, "{answer}");
    let (_, still) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
    assert_eq!(
        (&still["state"], &still["parallelism"]),
        (&"SCHEDULING".into(), &4.into()),
        "{still}"
    );
    let address = cluster.coordinator_address_of(0);
    let out = jobctl(&address, &["rescale", &job, "--parallelism", "5"], &[])?;
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains("waits for task slots, now at parallelism 5")
            && out.stdout.contains("starts from the start of its input"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("checkpoint 0"), "{out:?}");
    // Down to what fits: the waiting job is placed and runs.
    let (status, answer) = call(rescale(2)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["parallelism"], 2, "{answer}");
    let running = wait_state(&http, &url, &job, "RUNNING").await?;
    assert_eq!(running["parallelism"], 2, "{running}");

    // Running, a parallelism the slots cannot hold is refused before it is
    // stopped, naming both numbers: it runs on as it was.
    let (status, refused) = call(rescale(3)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "not_enough_slots", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("needs 3 task slots") && message.contains("2 free"),
        "{refused}"
    );
    let (_, after) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
    assert_eq!(
        (&after["state"], &after["parallelism"], &after["attempt"]),
        (
            &running["state"],
            &running["parallelism"],
            &running["attempt"]
        ),
        "{after}"
    );
    let out = jobctl(&address, &["rescale", &job, "--parallelism", "5"], &[])?;
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("needs 5 task slots"), "{out:?}");

    // A second job waits while the first holds every slot, and takes a new
    // parallelism with no slot free.
    let second_out = unique("slots-out2");
    admin::create_topic(&infra.kafka, &second_out, 1).await?;
    let body = spec(&infra.kafka, &input, &second_out, 2, transforms);
    let (status, submitted) = call(http.post(format!("{url}/api/jobs")).body(body)).await?;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    let second = submitted["job_id"].as_str().unwrap_or_default().to_string();
    let rescale_second = |parallelism: u32| {
        http.post(format!("{url}/api/jobs/{second}/rescale"))
            .json(&serde_json::json!({ "parallelism": parallelism }))
    };
    let (status, answer) = call(rescale_second(3)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // The first stops with a savepoint; the second fits once down to 2.
    let (status, stopped) = call(http.post(format!("{url}/api/jobs/{job}/stop"))).await?;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    let savepoint = stopped["savepoint_id"].as_str().unwrap_or_default();
    wait_state(&http, &url, &job, "STOPPED").await?;
    let (status, answer) = call(rescale_second(2)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    wait_state(&http, &url, &second, "RUNNING").await?;

    // The stopped job, with the cluster full, is refused for not running
    // (not for slots), told how to start from its savepoint.
    let (status, refused) = call(rescale(1)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["code"], "not_running", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is STOPPED, not running")
            && message.contains(&format!("--from-savepoint {savepoint}"))
            && !message.contains("at most 0")
            && !message.contains("stop with savepoint"),
        "{refused}"
    );
    let out = jobctl(&address, &["rescale", &job, "--parallelism", "1"], &[])?;
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("is STOPPED, not running"), "{out:?}");
    let (status, _) = call(http.post(format!("{url}/api/jobs/{second}/cancel"))).await?;
    assert_eq!(status, StatusCode::OK);
    wait_state(&http, &url, &second, "CANCELLED").await?;
    let (status, refused) = call(rescale_second(1)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("is CANCELLED, not running") && m.contains("no savepoint")),
        "{refused}"
    );

    // A reader that went away (`jobctl list | head -1`): jobctl ends
    // quietly, as SIGPIPE would end it, without a panic.
    let mut list = std::process::Command::new(bin_dir()?.join("jobctl"))
        .args(["--coordinator", &cluster.coordinator_address_of(0), "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(list.stdout.take());
    let ended = list.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(141), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    Ok(())
}
