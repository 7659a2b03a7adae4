//! The coordinator's HTTP API: each call does what `jobctl` does over gRPC
//! (submit with the same checks, inspect, savepoints, rescale, stop,
//! cancel), errors are JSON of one shape with proper status codes,
//! followers redirect to the leader, and the API holds to its own OpenAPI
//! document under schemathesis.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::pytools;
use sluice_harness::testing::{infra, jobctl, test_dir, unique, wait_for};
use std::time::Duration;

/// A `reqwest` client that shows redirects instead of following them.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// A call's status and JSON body.
async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<(StatusCode, Value)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    let body = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{status}: not JSON ({e}): {text}"))?;
    Ok((status, body))
}

/// Checks the API's error shape: status repeated, a code, a message.
fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["problems"].is_array(), "{body}");
}

/// A job's counter summed over its subtasks of `stage`.
fn stage_sum(job: &Value, stage: u64, field: &str) -> u64 {
    job["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["stage"] == stage)
        .filter_map(|t| t[field].as_u64())
        .sum()
}

/// A stateful job (keyed dedup) between two topics of its own, as YAML.
fn spec(brokers: &str, input: &str, output: &str) -> String {
    format!(
        r#"
name: api-job
parallelism: 2
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{brokers}", topic: {input} }} }}
transforms:
  - key_by: [id]
  - dedup: {{ ttl: 1h }}
sink: {{ kafka: {{ brokers: "{brokers}", topic: {output} }} }}
"#
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_does_what_it_says_with_errors_as_json() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("http-api");
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let url = cluster.http_url_of(0);
    let http = client()?;
    let (input, output) = (unique("api-in"), unique("api-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;

    // The document describes every call.
    let (status, doc) = call(http.get(format!("{url}/api/openapi.json"))).await?;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/jobs",
        "/api/jobs/{job_id}/savepoints",
        "/api/savepoints/{savepoint_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }

    // The submit checks of jobctl, each problem at its path.
    let bad = "name: a b\nparallelism: 0\nsource: { kafka: { brokers: x, topic: t } }\n";
    let refused = call(http.post(format!("{url}/api/jobs")).body(bad)).await?;
    assert_error(&refused, 422, "invalid_spec");
    let paths: Vec<&str> = refused.1["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["path"].as_str())
        .collect();
    for path in ["name", "parallelism", "sink"] {
        assert!(paths.contains(&path), "{path} not in {}", refused.1);
    }
    assert_error(
        &call(http.post(format!("{url}/api/jobs")).body("{ not yaml: [")).await?,
        400,
        "malformed_spec",
    );
    // Seed 004's configuration too, with what the broker says at its path.
    let mut seed: Value =
        serde_json::from_str(include_str!("../../deploy/jobs/kafka-to-s3-job-001.json"))?;
    seed["source"]["bootstrapServers"] = infra.kafka.clone().into();
    seed["source"]["kafkaIngestionUnit"]["topic"] = unique("absent").into();
    let refused = call(http.post(format!("{url}/api/jobs")).json(&seed)).await?;
    assert_error(&refused, 422, "invalid_spec");
    assert_eq!(
        refused.1["problems"][0]["path"], "source.kafkaIngestionUnit.topic",
        "{}",
        refused.1
    );
    let (_, jobs) = call(http.get(format!("{url}/api/jobs"))).await?;
    assert_eq!(jobs, json!([]), "nothing was deployed");

    // Submit, run, count.
    let response = http
        .post(format!("{url}/api/jobs"))
        .header("content-type", "application/yaml")
        .body(spec(&infra.kafka, &input, &output))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str()?.to_string();
    let job = response.json::<Value>().await?["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(location, format!("/api/jobs/{job}"));
    wait_state(&http, &url, &job, "RUNNING").await?;
    let records = (0..300).map(|i| json!({ "id": format!("r-{}", i % 200) }).to_string());
    producer::produce(&infra.kafka, &input, records, None, 0).await?;
    let running = wait_for("300 read, 200 written", Duration::from_secs(60), || {
        let (http, url, job) = (&http, &url, &job);
        async move {
            let (_, j) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
            Ok(
                (stage_sum(&j, 0, "records_in") == 300 && stage_sum(&j, 1, "records_out") == 200)
                    .then_some(j),
            )
        }
    })
    .await?;
    assert_eq!(running["name"], "api-job");
    // What the workers measure: the sources drained both partitions (lag 0
    // at offsets summing to what was produced), and each subtask's busy and
    // back-pressure shares are percentages.
    let drained = wait_for("the job's lag 0", Duration::from_secs(30), || {
        let (http, url, job) = (&http, &url, &job);
        async move {
            let (_, j) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
            let lags = j["partition_lag"].as_array().cloned().unwrap_or_default();
            let read: i64 = lags.iter().filter_map(|l| l["position"].as_i64()).sum();
            let ends: i64 = lags
                .iter()
                .filter_map(|l| l["high_watermark"].as_i64())
                .sum();
            Ok((j["lag"] == 0 && lags.len() == 2 && read == 300 && ends == 300).then_some(j))
        }
    })
    .await?;
    for lag in drained["partition_lag"].as_array().into_iter().flatten() {
        assert_eq!(lag["topic"], input.as_str(), "{lag}");
        assert_eq!(lag["lag"], 0, "{lag}");
        assert_eq!(lag["high_watermark"], lag["position"], "{lag}");
    }
    let tasks = drained["tasks"].as_array().cloned().unwrap_or_default();
    assert_eq!(tasks.len(), 4, "{drained}");
    for t in &tasks {
        for share in ["busy_percent", "back_pressure_percent"] {
            let v = t[share].as_f64();
            assert!(
                v.is_some_and(|v| (0.0..=100.0).contains(&v)),
                "{share}: {t}"
            );
        }
        for counter in ["busy_ms", "back_pressure_ms", "bytes_in", "bytes_out"] {
            assert!(t[counter].is_u64(), "{counter}: {t}");
        }
    }
    let sources: Vec<&Value> = tasks.iter().filter(|t| t["stage"] == 0).collect();
    // The producer may put all 300 records into one partition: a source
    // with nothing to read counts no bytes.
    assert!(
        sources
            .iter()
            .all(|t| (t["records_in"].as_u64() > Some(0)) == (t["bytes_in"].as_u64() > Some(0))),
        "sources count the bytes they read, and only those: {drained}"
    );
    let source_lags: usize = sources
        .iter()
        .map(|t| t["partition_lag"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        source_lags, 2,
        "each partition's lag from its source: {drained}"
    );
    assert_eq!(running["parallelism"], 2);
    assert_eq!(running["spec"]["source"]["kafka"]["topic"], input.as_str());
    let (_, jobs) = call(http.get(format!("{url}/api/jobs"))).await?;
    assert_eq!(jobs[0]["job_id"], job.as_str());
    let (_, workers) = call(http.get(format!("{url}/api/workers"))).await?;
    assert_eq!(workers[0]["state"], "ALIVE", "{workers}");
    assert_eq!(
        workers[0]["used_slots"], 2,
        "a slot per parallel instance: {workers}"
    );
    assert_eq!(
        workers[0]["tasks"].as_array().map(Vec::len),
        Some(4),
        "{workers}"
    );
    let (_, members) = call(http.get(format!("{url}/api/cluster"))).await?;
    assert_eq!(members["role"], "leader");
    assert_eq!(members["serving"], true);
    assert_eq!(
        format!(
            "http://{}",
            members["http_address"].as_str().unwrap_or_default()
        ),
        url
    );

    // Savepoints: trigger, list, checkpoints, delete.
    let (status, savepoint) = call(http.post(format!("{url}/api/jobs/{job}/savepoints"))).await?;
    assert_eq!(status, StatusCode::CREATED, "{savepoint}");
    let savepoint_id = savepoint["savepoint_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let offsets: i64 = savepoint["source_offsets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, o)| o.as_i64())
        .sum();
    assert_eq!(offsets, 300, "{savepoint}");
    let (_, of_job) = call(http.get(format!("{url}/api/jobs/{job}/savepoints"))).await?;
    assert_eq!(of_job[0]["savepoint_id"], savepoint_id.as_str());
    let (_, all) = call(http.get(format!("{url}/api/savepoints"))).await?;
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let (_, checkpoints) = call(http.get(format!("{url}/api/jobs/{job}/checkpoints"))).await?;
    assert!(
        checkpoints["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["size_bytes"].as_u64() > Some(0) && c["alignment_us"].is_u64()),
        "each checkpoint uploaded the dedup's keyed state, its alignment: {checkpoints}"
    );
    assert!(
        checkpoints["checkpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["checkpoint_id"] == savepoint["checkpoint_id"]),
        "{checkpoints}"
    );
    let (status, deleted) =
        call(http.delete(format!("{url}/api/savepoints/{savepoint_id}"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["savepoint_id"], savepoint_id.as_str());
    assert_error(
        &call(http.delete(format!("{url}/api/savepoints/{savepoint_id}"))).await?,
        404,
        "savepoint_not_found",
    );

    // Rescale, checked first; then it restarts at the new parallelism.
    let rescale = |body: Value| {
        http.post(format!("{url}/api/jobs/{job}/rescale"))
            .json(&body)
    };
    assert_error(
        &call(rescale(json!({ "parallelism": 0 }))).await?,
        422,
        "invalid_parallelism",
    );
    assert_error(
        &call(rescale(json!({ "workers": 1 }))).await?,
        400,
        "bad_request",
    );
    let (status, from) = call(rescale(json!({ "parallelism": 1 }))).await?;
    assert_eq!(status, StatusCode::OK, "{from}");
    let rescaled = wait_state(&http, &url, &job, "RUNNING").await?;
    assert_eq!(rescaled["parallelism"], 1);
    assert_eq!(rescaled["from_savepoint"], from["savepoint_id"]);

    // Stop with a savepoint; an ended job cannot be cancelled.
    let (status, last) = call(http.post(format!("{url}/api/jobs/{job}/stop"))).await?;
    assert_eq!(status, StatusCode::OK, "{last}");
    let stopped = wait_state(&http, &url, &job, "STOPPED").await?;
    assert_eq!(stopped["stopped_with_savepoint"], last["savepoint_id"]);
    assert_error(
        &call(http.post(format!("{url}/api/jobs/{job}/cancel"))).await?,
        409,
        "not_cancellable",
    );
    assert_error(
        &call(http.post(format!("{url}/api/jobs/{job}/savepoints"))).await?,
        409,
        "not_running",
    );
    let (status, events) = call(http.get(format!("{url}/api/jobs/{job}/events"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(events.is_array(), "{events}");

    // Started again from the stop's savepoint, then cancelled.
    let from = last["savepoint_id"].as_str().unwrap_or_default();
    let response = http
        .post(format!("{url}/api/jobs?from_savepoint={from}"))
        .body(spec(&infra.kafka, &input, &output))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);
    let resumed = response.json::<Value>().await?["job_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    wait_state(&http, &url, &resumed, "RUNNING").await?;
    let (status, cancelling) = call(http.post(format!("{url}/api/jobs/{resumed}/cancel"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelling["job_id"], resumed.as_str());
    wait_state(&http, &url, &resumed, "CANCELLED").await?;

    // Errors of the API itself.
    assert_error(
        &call(http.get(format!("{url}/api/jobs/nope"))).await?,
        404,
        "job_not_found",
    );
    assert_error(
        &call(http.get(format!("{url}/api/nothing"))).await?,
        404,
        "not_found",
    );
    assert_error(
        &call(http.delete(format!("{url}/api/jobs"))).await?,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(
            http.post(format!("{url}/api/jobs?parallelism=3"))
                .body("name: x"),
        )
        .await?,
        400,
        "bad_request",
    );
    Ok(())
}

/// An error answer's status and JSON body, and how many bytes it was.
async fn call_sized(
    request: reqwest::RequestBuilder,
) -> anyhow::Result<((StatusCode, Value), usize)> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{status}: not JSON ({e}): {}", &text[..text.len().min(500)])
    })?;
    Ok(((status, body), text.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_layers_refusals_are_api_errors_and_stay_small() -> anyhow::Result<()> {
    let dir = test_dir("http-api-refusals");
    let cluster = SluiceCluster::start(&dir, 0, ClusterOptions::default()).await?;
    let url = cluster.http_url_of(0);
    let http = client()?;

    // A body over the 2 MiB limit.
    let huge = "x".repeat(3 * 1024 * 1024);
    let (got, size) = call_sized(http.post(format!("{url}/api/jobs")).body(huge)).await?;
    assert_error(&got, 413, "body_too_large");
    assert!(size < 2_000, "{size} bytes: {}", got.1);
    // A spec under the limit whose problems quote large values: the answer
    // quotes a little of each.
    let long_name = "a b".repeat(150_000);
    let spec = format!(
        "name: {long_name}\nsource: {{ kafka: {{ brokers: x, topic: {long_name} }} }}\n\
         transforms:\n  - remap: '.x = {long_name}'\n"
    );
    let (got, size) = call_sized(http.post(format!("{url}/api/jobs")).body(spec)).await?;
    assert_error(&got, 422, "invalid_spec");
    assert!(
        size < 10_000,
        "{size} bytes: {}",
        &got.1.to_string()[..2_000]
    );
    // A URI over the limit; a route or method the API lacks; a body the
    // call cannot read.
    let long_id = "j".repeat(10_000);
    let (got, size) = call_sized(http.get(format!("{url}/api/jobs/{long_id}"))).await?;
    assert_error(&got, 414, "uri_too_long");
    assert!(size < 2_000, "{size} bytes");
    assert_error(
        &call(http.get(format!("{url}/api/jobs/j/nothing"))).await?,
        404,
        "not_found",
    );
    assert_error(
        &call(http.put(format!("{url}/api/savepoints"))).await?,
        405,
        "method_not_allowed",
    );
    assert_error(
        &call(
            http.post(format!("{url}/api/jobs/j/rescale"))
                .header("content-type", "text/plain")
                .body("{ nope"),
        )
        .await?,
        400,
        "bad_request",
    );

    // Query parameters and body fields a call cannot take: each refused at
    // its name, on every route (none ignored), before the job is looked up.
    let body_refused = |body: &'static str| {
        http.post(format!("{url}/api/jobs/j/rescale"))
            .header("content-type", "application/json")
            .body(body)
    };
    for (request, status, code, path) in [
        (
            http.post(format!("{url}/api/jobs?from_savepoint="))
                .body("name: x"),
            400,
            "bad_request",
            "from_savepoint",
        ),
        (
            http.post(format!("{url}/api/jobs?parallelism=3"))
                .body("name: x"),
            400,
            "bad_request",
            "parallelism",
        ),
        (
            http.get(format!("{url}/api/jobs?state=RUNNING")),
            400,
            "bad_request",
            "state",
        ),
        (
            http.post(format!("{url}/api/jobs/j/rescale?x=1"))
                .json(&json!({ "parallelism": 1 })),
            400,
            "bad_request",
            "x",
        ),
        (
            body_refused(r#"{"parallelism": "3"}"#),
            400,
            "bad_request",
            "parallelism",
        ),
        (body_refused(r#"{}"#), 400, "bad_request", "parallelism"),
        (
            body_refused(r#"{"parallelism": 2, "workers": 1}"#),
            400,
            "bad_request",
            "workers",
        ),
        (
            body_refused(r#"{"parallelism": 0}"#),
            422,
            "invalid_parallelism",
            "parallelism",
        ),
    ] {
        let got = call(request).await?;
        assert_error(&got, status, code);
        assert!(problem_paths(&got.1).contains(&path), "{path}: {}", got.1);
    }
    let out = jobctl(
        &cluster.coordinator_address_of(0),
        &["submit", "spec.yaml", "--from-savepoint", ""],
        &[],
    )?;
    assert!(!out.success, "{out:?}");
    assert!(out.stderr.contains("--from-savepoint"), "{out:?}");
    // jobctl's environment variables set but empty count as unset (the CA
    // and token only when the run is not one with TLS and tokens on, which
    // needs them).
    let mut empty = vec![("SLUICE_TLS_CERT", ""), ("SLUICE_TLS_KEY", "")];
    if sluice_harness::tls::test_security()?.is_none() {
        empty.extend([("SLUICE_TLS_CA", ""), ("SLUICE_TOKEN", "")]);
    }
    let out = jobctl(&cluster.coordinator_address_of(0), &["list"], &empty)?;
    assert!(out.success, "{out:?}");

    // A key written twice: refused at its path, not the last value taken.
    let (status, refused) = call(http.post(format!("{url}/api/jobs")).body(
        r#"{"name": "j", "source": {"kafka": {"brokers": "b", "topic": "t", "topic": "u"}}}"#,
    ))
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        problem_paths(&refused).contains(&"source.kafka.topic"),
        "{refused}"
    );

    // A spec nested 50,000 deep is refused before it is parsed (parsing it
    // held the coordinator's threads for seconds, and its workers' heartbeats
    // with them); a name 100,000 characters long is refused at `name`.
    let deep = format!("a: {}{}", "[".repeat(50_000), "]".repeat(50_000));
    let got = call(http.post(format!("{url}/api/jobs")).body(deep)).await?;
    assert_error(&got, 400, "malformed_spec");
    assert!(
        got.1.to_string().contains("deeper than 64 levels"),
        "{}",
        got.1
    );
    let long_name = format!(
        "name: {}\nsource: {{ kafka: {{ brokers: \"127.0.0.1:9\", topic: t }} }}\nsink: {{ blackhole: {{}} }}\n",
        "n".repeat(100_000)
    );
    let (status, refused) = call(http.post(format!("{url}/api/jobs")).body(long_name)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(problem_paths(&refused), vec!["name"], "{refused}");

    // A broker that does not answer is the outside world's fault, worth a
    // retry: 503 with Retry-After, the field naming it among the problems.
    let unreachable = "name: j\nsource: { kafka: { brokers: \"127.0.0.1:9\", topic: t } }\n\
                       sink: { blackhole: {} }\n";
    let response = http
        .post(format!("{url}/api/jobs"))
        .body(unreachable)
        .send()
        .await?;
    let retry_after = response.headers().get("retry-after").cloned();
    let got = (response.status(), response.json::<Value>().await?);
    assert_error(&got, 503, "unavailable");
    assert!(retry_after.is_some(), "{}", got.1);
    assert_eq!(
        problem_paths(&got.1),
        vec!["source.kafka.brokers"],
        "{}",
        got.1
    );
    let file = dir.join("unreachable.yaml");
    std::fs::write(&file, unreachable)?;
    let out = jobctl(
        &cluster.coordinator_address_of(0),
        &["submit", &file.to_string_lossy()],
        &[],
    )?;
    assert!(
        !out.success
            && out.stderr.contains("did not answer")
            && out.stderr.contains("source.kafka.brokers"),
        "{out:?}"
    );
    // A spec with problems of its own is refused as such (422) before any
    // system is asked.
    let (status, refused) = call(
        http.post(format!("{url}/api/jobs"))
            .body(format!("{unreachable}parallelism: 0\n")),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    Ok(())
}

fn problem_paths(body: &Value) -> Vec<&str> {
    body["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["path"].as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_send_callers_on_to_the_leader() -> anyhow::Result<()> {
    let dir = test_dir("http-api-followers");
    let options = ClusterOptions {
        coordinators: 3,
        ..Default::default()
    };
    let cluster = SluiceCluster::start(&dir, 0, options).await?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let follower = (leader + 1) % 3;
    let http = client()?;
    let (leader_url, follower_url) = (cluster.http_url_of(leader), cluster.http_url_of(follower));
    let target = wait_for("a redirect to the leader", Duration::from_secs(20), || {
        let (http, url) = (&http, &follower_url);
        async move {
            let response = http.get(format!("{url}/api/jobs?x=1")).send().await?;
            Ok((response.status() == StatusCode::TEMPORARY_REDIRECT)
                .then(|| response.headers()["location"].to_str().map(String::from))
                .transpose()?)
        }
    })
    .await?;
    assert_eq!(target, format!("{leader_url}/api/jobs?x=1"));
    let response = http
        .post(format!("{follower_url}/api/jobs"))
        .body("name: x")
        .send()
        .await?;
    assert_eq!(
        response.status(),
        StatusCode::TEMPORARY_REDIRECT,
        "the method is kept"
    );
    // Any member shows the group.
    let (status, view) = call(http.get(format!("{follower_url}/api/cluster"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["role"], "follower", "{view}");
    assert_eq!(view["leader_id"], leader as u64 + 1);
    // Followed, the redirect answers.
    let following = reqwest::Client::new();
    let (status, jobs) = call(following.get(format!("{follower_url}/api/jobs"))).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(jobs, json!([]));
    Ok(())
}

/// The checks every answer must pass against the document: no server
/// errors, documented status codes, content types, headers and bodies.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_holds_to_its_openapi_document() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("http-api-schemathesis");
    let bin = pytools::venv("schemathesis", &["schemathesis==4.32.5"])?;
    let cluster = SluiceCluster::start(&dir, 1, ClusterOptions::default()).await?;
    let url = cluster.http_url_of(0);
    let http = client()?;
    let (input, output) = (unique("api-fuzz-in"), unique("api-fuzz-out"));
    admin::create_topic(&infra.kafka, &input, 1).await?;
    admin::create_topic(&infra.kafka, &output, 1).await?;
    // A real job, for the reading calls to find.
    let (_, submitted) = call(http.post(format!("{url}/api/jobs")).body(spec(
        &infra.kafka,
        &input,
        &output,
    )))
    .await?;
    let job = submitted["job_id"].as_str().unwrap_or_default().to_string();
    wait_state(&http, &url, &job, "RUNNING").await?;
    let config = dir.join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[[operations]]\ninclude-method = \"GET\"\nparameters = {{ \"path.job_id\" = \"{job}\" }}\n"
        ),
    )?;
    let out = tokio::process::Command::new(bin.join("schemathesis"))
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{url}/api/openapi.json")])
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--no-color",
        ])
        .current_dir(&dir)
        .output()
        .await?;
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 14"), "every operation tested");
    // The stateful phase follows the ids answers hold (job ids from
    // GET /api/jobs into cancel, stop, ...): the job may have ended, but the
    // coordinator still serves it.
    let (status, j) = call(http.get(format!("{url}/api/jobs/{job}"))).await?;
    assert_eq!(status, StatusCode::OK, "{j}");
    Ok(())
}
