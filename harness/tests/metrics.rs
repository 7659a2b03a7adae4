//! The Prometheus endpoints of coordinator and workers, scraped and parsed
//! the way Prometheus reads them, while jobs run, stall and stop.

use sluice_harness::admin::{self, RawRecord};
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::prometheus::{Scrape, scrape};
use sluice_harness::testing::{
    infra, jobctl, jobctl_json, submit, test_dir, unique, wait_for, wait_running,
};
use std::collections::BTreeSet;
use std::time::Duration;

fn options() -> ClusterOptions {
    ClusterOptions {
        metrics: true,
        ..ClusterOptions::default()
    }
}

/// Every worker's metrics, scraped now.
async fn scrape_workers(cluster: &SluiceCluster) -> anyhow::Result<Vec<Scrape>> {
    let mut all = Vec::new();
    for i in 0..cluster.worker_count() {
        let address = cluster
            .worker_metrics_address(i)
            .ok_or_else(|| anyhow::anyhow!("worker {i} serves no metrics"))?;
        all.push(scrape(&address).await?);
    }
    Ok(all)
}

async fn scrape_coordinator(cluster: &SluiceCluster) -> anyhow::Result<Scrape> {
    let address = cluster
        .coordinator_metrics_address(0)
        .ok_or_else(|| anyhow::anyhow!("the coordinator serves no metrics"))?;
    scrape(&address).await
}

/// The sum of a sample over every worker.
fn total(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes.iter().map(|s| s.sum(name, labels)).sum()
}

/// The process metrics every Prometheus client exposes, with sane values.
fn assert_process_metrics(s: &Scrape, who: &str) {
    for (name, kind) in [
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        let family = s.family(name).unwrap_or_else(|| panic!("{who}: no {name}"));
        assert_eq!(family.kind, kind, "{who}: {name}");
        assert!(
            family.samples.iter().all(|x| x.value > 0.0),
            "{who}: {name} {:?}",
            family.samples
        );
    }
}

/// Every Sluice family is named `sluice_...`, documented, and of a known type.
fn assert_sluice_families(s: &Scrape, who: &str) {
    for f in &s.families {
        if f.name.starts_with("process_") {
            continue;
        }
        assert!(f.name.starts_with("sluice_"), "{who}: {}", f.name);
        assert!(!f.help.is_empty(), "{who}: {} has no help", f.name);
        assert!(
            ["counter", "gauge"].contains(&f.kind.as_str()),
            "{who}: {f:?}"
        );
        if f.kind == "counter" {
            assert!(
                f.samples
                    .iter()
                    .all(|x| x.name == format!("{}_total", f.name)),
                "{who}: {f:?}"
            );
        }
    }
}

fn json_record(n: usize, partition: i32) -> RawRecord {
    RawRecord {
        partition,
        value: Some(format!(r#"{{"n":{n},"account":"acct-{}"}}"#, n % 13).into_bytes()),
        ..RawRecord::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_keyed_job_across_two_workers() -> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("metrics-keyed");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let c = cluster.coordinator_address.clone();
    let (input, output, dlq) = (unique("m-in"), unique("m-out"), unique("m-dlq"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    admin::create_topic(&infra.kafka, &dlq, 1).await?;
    let job = submit(
        &c,
        &dir,
        &format!(
            r#"
name: metered
parallelism: 2
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [account]
  - dedup: {{ fields: [n], ttl: 1h }}
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
dead_letter: {{ kafka: {{ topic: {dlq} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&c, &job).await?;
    let before = scrape_workers(&cluster).await?;
    let records_in = |s: &[Scrape]| {
        total(
            s,
            "sluice_subtask_records_in_total",
            &[("job", &job), ("stage", "0")],
        )
    };
    assert_eq!(records_in(&before), 0.0, "nothing read yet");
    let first_checkpoint = scrape_coordinator(&cluster)
        .await?
        .sum("sluice_job_last_checkpoint_id", &[("job", &job)]);

    // 300 records on two partitions, and 4 that are not JSON.
    let mut records: Vec<RawRecord> = (0..300).map(|n| json_record(n, (n % 2) as i32)).collect();
    for i in 0..4 {
        records.push(RawRecord {
            partition: i % 2,
            value: Some(format!("not json {i}").into_bytes()),
            ..RawRecord::default()
        });
    }
    let bytes: usize = records
        .iter()
        .map(|r| r.value.as_ref().map_or(0, Vec::len))
        .sum();
    admin::produce_raw(&infra.kafka, &input, &records).await?;
    let out = admin::read_topic(
        &infra.kafka,
        &output,
        300,
        Duration::from_secs(2),
        Duration::from_secs(60),
        "read_uncommitted",
    )
    .await?;
    let numbers: BTreeSet<i64> = out
        .iter()
        .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.payload).ok()?["n"].as_i64())
        .collect();
    assert_eq!((out.len(), numbers.len()), (300, 300), "every record once");
    assert_eq!(numbers, (0..300).collect::<BTreeSet<i64>>());

    // Counters reach exactly what went through, and the lag falls to 0 once
    // the statistics caught up with the partitions' ends.
    let job_l = [("job", job.as_str())];
    let workers = wait_for("worker metrics caught up", Duration::from_secs(30), || {
        let (cluster, job) = (&cluster, job.as_str());
        async move {
            let s = scrape_workers(cluster).await?;
            let l = |stage: &'static str| [("job", job), ("stage", stage)];
            let done = total(&s, "sluice_subtask_records_in_total", &l("0")) == 304.0
                && total(&s, "sluice_subtask_records_out_total", &l("1")) == 300.0
                && total(
                    &s,
                    "sluice_subtask_dead_lettered_total",
                    &[("job", job), ("failed_at", "decode")],
                ) == 4.0
                && total(
                    &s,
                    "sluice_source_partition_high_watermark",
                    &[("job", job)],
                ) == 304.0
                && total(&s, "sluice_source_partition_lag", &[("job", job)]) == 0.0;
            Ok(done.then_some(s))
        }
    })
    .await?;
    for (i, s) in workers.iter().enumerate() {
        let who = format!("worker {i}");
        assert_process_metrics(s, &who);
        assert_sluice_families(s, &who);
        assert_eq!(
            s.sum("sluice_worker_subtasks", &[]),
            2.0,
            "{who}: one subtask of each stage"
        );
    }
    assert_eq!(records_in(&workers), 304.0);
    assert_eq!(
        total(
            &workers,
            "sluice_subtask_records_out_total",
            &[("job", &job), ("stage", "0")]
        ),
        300.0,
        "the source stage hands on what decoded"
    );
    assert_eq!(
        total(&workers, "sluice_subtask_dead_lettered_total", &job_l),
        4.0
    );
    let stage = |s: &'static str| [("job", job.as_str()), ("stage", s)];
    assert_eq!(
        total(&workers, "sluice_subtask_bytes_in_total", &stage("0")),
        bytes as f64,
        "bytes of every message read"
    );
    let crossed_out = total(&workers, "sluice_subtask_bytes_out_total", &stage("0"));
    let crossed_in = total(&workers, "sluice_subtask_bytes_in_total", &stage("1"));
    assert!(
        crossed_out > 0.0,
        "keyed records crossed to the other worker"
    );
    // What the keyed stage received from the other worker, as sent (the
    // senders also count their barriers).
    assert!(
        crossed_in > 0.0 && crossed_in <= crossed_out,
        "received {crossed_in} of {crossed_out} bytes sent"
    );
    assert!(total(&workers, "sluice_subtask_busy_seconds_total", &job_l) > 0.0);
    assert!(
        total(
            &workers,
            "sluice_subtask_checkpoint_sync_seconds_total",
            &job_l
        ) > 0.0,
        "barriers held the data paths for a moment"
    );
    let positions: Vec<f64> = workers
        .iter()
        .flat_map(|s| s.samples("sluice_source_partition_position", &job_l))
        .map(|x| x.value)
        .collect();
    assert_eq!(
        positions,
        [152.0, 152.0],
        "both partitions read to their ends"
    );
    let labelled = workers
        .iter()
        .flat_map(|s| s.samples("sluice_subtask_records_in_total", &job_l))
        .next()
        .map(|x| x.labels.clone())
        .unwrap_or_default();
    assert_eq!(labelled["job_name"], "metered", "{labelled:?}");
    assert!(labelled.contains_key("subtask"), "{labelled:?}");
    for (stage, operator) in [
        ("0", "kafka_source -> key_by"),
        ("1", "dedup -> kafka_sink"),
    ] {
        let labels = [
            ("job", job.as_str()),
            ("stage", stage),
            ("operator", operator),
        ];
        assert_eq!(
            total(&workers, "sluice_subtask_records_in_total", &labels),
            if stage == "0" { 304.0 } else { 300.0 },
            "stage {stage} labelled {operator}"
        );
    }

    // The coordinator: the job running, its checkpoints moving on, the lag
    // reported by its sources, Raft and the workers.
    let coordinator = wait_for("a later checkpoint", Duration::from_secs(30), || {
        let (cluster, job) = (&cluster, job.as_str());
        async move {
            let s = scrape_coordinator(cluster).await?;
            let id = s.sum("sluice_job_last_checkpoint_id", &[("job", job)]);
            Ok((id > first_checkpoint).then_some(s))
        }
    })
    .await?;
    assert_process_metrics(&coordinator, "coordinator");
    assert_sluice_families(&coordinator, "coordinator");
    assert_eq!(
        coordinator.sum("sluice_job_state", &[("job", &job), ("state", "running")]),
        1.0
    );
    assert_eq!(coordinator.samples("sluice_job_state", &job_l).count(), 7);
    assert_eq!(
        coordinator.sum("sluice_job_state", &job_l),
        1.0,
        "one state at a time"
    );
    assert_eq!(coordinator.sum("sluice_job_restarts_total", &job_l), 0.0);
    assert!(coordinator.sum("sluice_job_last_checkpoint_duration_seconds", &job_l) > 0.0);
    assert!(
        coordinator
            .samples("sluice_job_last_checkpoint_age_seconds", &job_l)
            .count()
            == 1
    );
    assert!(
        coordinator.sum("sluice_job_last_checkpoint_size_bytes", &job_l) > 0.0,
        "the dedup's keyed state was uploaded"
    );
    // Each stage-1 subtask reads both sources (one per worker), so it aligns
    // their barriers; the longest alignment of the checkpoint is exposed.
    let alignments: Vec<f64> = coordinator
        .samples("sluice_checkpoint_alignment_seconds", &job_l)
        .map(|x| x.value)
        .collect();
    assert_eq!(alignments.len(), 1, "one alignment per job");
    assert!(
        alignments.iter().all(|a| a.is_finite() && *a >= 0.0),
        "{alignments:?}"
    );
    let checkpoints = jobctl_json(&c, &["checkpoints", &job])?;
    assert!(
        checkpoints["checkpoints"]
            .as_array()
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|cp| cp["alignment_us"].is_u64())),
        "each checkpoint's alignment: {checkpoints}"
    );
    assert_eq!(
        coordinator
            .samples("sluice_job_partition_lag", &job_l)
            .count(),
        2
    );
    assert_eq!(coordinator.sum("sluice_raft_is_leader", &[]), 1.0);
    assert_eq!(
        coordinator.sum("sluice_raft_leader", &[]),
        1.0,
        "coordinator 1 leads"
    );
    assert!(coordinator.sum("sluice_raft_term", &[]) >= 1.0);
    let applied = coordinator.sum("sluice_raft_applied_index", &[]);
    assert!(applied >= 1.0, "entries applied: {applied}");
    assert!(coordinator.sum("sluice_raft_commit_index", &[]) >= applied);
    assert!(coordinator.sum("sluice_raft_last_log_index", &[]) >= applied);
    assert_eq!(
        coordinator.sum("sluice_workers", &[("state", "alive")]),
        2.0
    );
    assert_eq!(coordinator.sum("sluice_workers", &[("state", "lost")]), 0.0);

    let cancelled = jobctl(&c, &["cancel", &job], &[])?;
    assert!(cancelled.success, "{}", cancelled.stderr);
    wait_for(
        "the job's subtasks gone from the workers' metrics",
        Duration::from_secs(30),
        || {
            let (cluster, job) = (&cluster, job.as_str());
            async move {
                let s = scrape_workers(cluster).await?;
                Ok((s.iter().all(|s| {
                    s.samples("sluice_subtask_records_in_total", &[("job", job)])
                        .count()
                        == 0
                }))
                .then_some(()))
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_and_back_pressure_rise_behind_a_slow_sink_and_lag_follows_a_stop_and_resume()
-> anyhow::Result<()> {
    let infra = infra()?;
    let dir = test_dir("metrics-lag");
    let cluster = SluiceCluster::start(&dir, 1, options()).await?;
    let c = cluster.coordinator_address.clone();
    let input = unique("lag-in");
    admin::create_topic(&infra.kafka, &input, 1).await?;
    let spec = format!(
        r#"
name: slow
parallelism: 1
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
sink: {{ blackhole: {{ records_per_second: 300 }} }}
"#,
        k = infra.kafka
    );
    let job = submit(&c, &dir, &spec, &[])?;
    wait_running(&c, &job).await?;
    let records: Vec<RawRecord> = (0..2000).map(|n| json_record(n, 0)).collect();
    admin::produce_raw(&infra.kafka, &input, &records).await?;

    // The sink takes 300 records a second: the source falls behind, and the
    // subtask spends its time waiting on the sink, until it caught up. It
    // hands on up to 512 records at a time, each batch taking the sink about
    // 1.7 s, so each step of the lag shows for a while.
    let job_l = [("job", job.as_str())];
    // The most lag the worker and the coordinator showed, and the back
    // pressure when the source was first seen behind.
    let seen = std::sync::Mutex::new((0.0f64, 0.0f64, None::<f64>));
    let end = wait_for("the slow sink caught up", Duration::from_secs(60), || {
        let (cluster, job_l, seen) = (&cluster, &job_l, &seen);
        async move {
            let w = scrape_workers(cluster).await?;
            let s = scrape_coordinator(cluster).await?;
            let lag = total(&w, "sluice_source_partition_lag", job_l);
            let reported = s.sum("sluice_job_partition_lag", job_l);
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.0 = seen.0.max(lag);
            seen.1 = seen.1.max(reported);
            if lag > 0.0 && seen.2.is_none() {
                seen.2 = Some(total(
                    &w,
                    "sluice_subtask_back_pressure_seconds_total",
                    job_l,
                ));
            }
            let done = total(&w, "sluice_subtask_records_out_total", job_l) == 2000.0
                && lag == 0.0
                && reported == 0.0;
            Ok(done.then_some(w))
        }
    })
    .await?;
    let (lag_seen, reported_seen, behind) = seen.into_inner().unwrap_or_else(|p| p.into_inner());
    println!(
        "slow sink: most lag seen {lag_seen} (worker) / {reported_seen} (coordinator); back pressure {behind:?}s when first behind, {:.2}s at the end, busy {:.2}s",
        total(&end, "sluice_subtask_back_pressure_seconds_total", &job_l),
        total(&end, "sluice_subtask_busy_seconds_total", &job_l),
    );
    assert!(lag_seen > 0.0, "the worker showed the source behind");
    assert!(reported_seen > 0.0, "the coordinator showed the job behind");
    let back_pressure = total(&end, "sluice_subtask_back_pressure_seconds_total", &job_l);
    let busy = total(&end, "sluice_subtask_busy_seconds_total", &job_l);
    let behind = behind.unwrap_or(f64::MAX);
    assert!(
        back_pressure > behind,
        "back pressure rose from {behind} to {back_pressure}"
    );
    assert!(
        busy >= back_pressure,
        "busy {busy} includes back pressure {back_pressure}"
    );
    assert_eq!(
        total(&end, "sluice_source_partition_position", &job_l),
        2000.0
    );
    let status = jobctl_json(&c, &["status", &job])?;
    assert_eq!(status["state"], "RUNNING", "{status}");

    // Stopped: input arriving meanwhile is the stopped job's lag.
    let stopped = jobctl(&c, &["stop", &job, "--savepoint"], &[])?;
    assert!(stopped.success, "stop: {}", stopped.stderr);
    let savepoint = stopped
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("sp-"))
        .map(String::from)
        .unwrap_or_default();
    let more: Vec<RawRecord> = (2000..2100).map(|n| json_record(n, 0)).collect();
    admin::produce_raw(&infra.kafka, &input, &more).await?;
    wait_for("the stopped job's lag", Duration::from_secs(30), || {
        let (cluster, job_l) = (&cluster, &job_l);
        async move {
            let s = scrape_coordinator(cluster).await?;
            let stopped = s.sum("sluice_job_state", &[job_l[0], ("state", "stopped")]) == 1.0;
            Ok((stopped && s.sum("sluice_job_partition_lag", job_l) == 100.0).then_some(()))
        }
    })
    .await?;

    // Resumed from the savepoint: the new job reads the 100 records, and
    // the stopped job no longer counts as behind.
    let path = dir.join("resume.yaml");
    std::fs::write(&path, &spec)?;
    let resumed = jobctl(
        &c,
        &[
            "submit",
            path.to_str().unwrap_or_default(),
            "--from-savepoint",
            &savepoint,
        ],
        &[],
    )?;
    assert!(resumed.success, "resume: {}", resumed.stderr);
    let job2 = resumed
        .stdout
        .trim()
        .trim_start_matches("submitted ")
        .to_string();
    wait_running(&c, &job2).await?;
    wait_for("the resumed job caught up", Duration::from_secs(30), || {
        let (cluster, job, job2) = (&cluster, job.as_str(), job2.as_str());
        async move {
            let w = scrape_workers(cluster).await?;
            let s = scrape_coordinator(cluster).await?;
            let l = [("job", job2)];
            let done = total(&w, "sluice_subtask_records_out_total", &l) == 100.0
                && total(&w, "sluice_source_partition_position", &l) == 2100.0
                && total(&w, "sluice_source_partition_lag", &l) == 0.0
                && s.samples("sluice_job_partition_lag", &[("job", job)])
                    .count()
                    == 0;
            Ok(done.then_some(()))
        }
    })
    .await?;
    Ok(())
}
