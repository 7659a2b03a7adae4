//! Three coordinators in a Raft group: losing the leader, losing leaders in
//! turn, or stopping the whole group loses no job and no checkpoint, and a
//! coordinator cut off from the others accepts no writes.

use sluice_harness::admin;
use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::datagen::producer;
use sluice_harness::testing::{
    count_numbers, infra, jobctl, jobctl_json, latest_checkpoint, submit, test_dir, unique,
    wait_checkpoint_after, wait_checkpointed, wait_for, wait_running,
};
use std::path::Path;
use std::time::{Duration, Instant};

/// One group of three at a time: several at once on a small machine starve
/// each other's heartbeats, which is not what these tests are about.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options() -> ClusterOptions {
    ClusterOptions {
        coordinators: 3,
        heartbeat_interval: Duration::from_millis(250),
        heartbeat_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

/// An exactly-once keyed Kafka job over fresh topics; returns (job, output topic).
async fn start_job(
    cluster: &SluiceCluster,
    dir: &Path,
) -> anyhow::Result<(String, String, String)> {
    let infra = infra()?;
    let (input, output) = (unique("ha-in"), unique("ha-out"));
    admin::create_topic(&infra.kafka, &input, 2).await?;
    admin::create_topic(&infra.kafka, &output, 2).await?;
    let job = submit(
        &cluster.coordinator_address,
        dir,
        &format!(
            r#"
name: survives-leader-loss
parallelism: 2
delivery: exactly_once
checkpoint: {{ interval: 500ms }}
source: {{ kafka: {{ brokers: "{k}", topic: {input} }} }}
transforms:
  - key_by: [k]
sink: {{ kafka: {{ brokers: "{k}", topic: {output} }} }}
"#,
            k = infra.kafka
        ),
        &[],
    )?;
    wait_running(&cluster.coordinator_address, &job).await?;
    Ok((job, input, output))
}

fn produce(input: &str, from: u64, count: u64) -> tokio::task::JoinHandle<anyhow::Result<usize>> {
    let (brokers, input) = (
        infra().map(|i| i.kafka).unwrap_or_default(),
        input.to_string(),
    );
    tokio::spawn(async move {
        let payloads =
            (from..from + count).map(|n| serde_json::json!({"n": n, "k": n % 31}).to_string());
        producer::produce(&brokers, &input, payloads, Some(4_000), 0).await
    })
}

async fn wait_leader(cluster: &SluiceCluster) -> anyhow::Result<usize> {
    cluster.wait_leader(Duration::from_secs(30)).await
}

async fn check_exactly_once(output: &str, records: u64) -> anyhow::Result<()> {
    let (_, lost, duplicated) =
        count_numbers(&infra()?.kafka, output, records, "read_committed").await?;
    println!("{records} in, {lost} lost, {duplicated} duplicated");
    assert_eq!((lost, duplicated), (0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_the_job_runs_on_without_a_restart() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-failover");
    let mut cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let (job, input, output) = start_job(&cluster, &dir).await?;
    let c = cluster.coordinator_address.clone();
    let records = 20_000;
    let producing = produce(&input, 0, records);
    let before = wait_checkpoint_after(&c, &job, 3).await?;
    let leader = wait_leader(&cluster).await?;
    let killed = Instant::now();
    cluster.kill_coordinator(leader);
    let next = wait_leader(&cluster).await?;
    let elected = killed.elapsed();
    let (c, job) = (&c, &job);
    let after = wait_checkpoint_after(c, job, before).await?;
    println!(
        "failover: coordinator {} killed after checkpoint {before}; coordinator {} leads after {:.2}s; checkpoint {after} completed {:.2}s after the kill",
        leader + 1,
        next + 1,
        elected.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    let status = jobctl_json(c, &["status", job])?;
    assert_eq!(status["restarts"], 0, "the job ran on: {status}");
    producing.await??;
    wait_checkpointed(c, job, records).await?;
    check_exactly_once(&output, records).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_killed_in_turn_and_restarted_converge() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-converge");
    let mut cluster = SluiceCluster::start(&dir, 1, options()).await?;
    let (job, _input, _output) = start_job(&cluster, &dir).await?;
    for round in 0..2 {
        let leader = wait_leader(&cluster).await?;
        cluster.kill_coordinator(leader);
        let next = wait_leader(&cluster).await?;
        println!(
            "round {round}: coordinator {} killed, coordinator {} leads",
            leader + 1,
            next + 1
        );
        // Writes go on without the killed member: checkpoints complete.
        let (c, job) = (&cluster.coordinator_address, &job);
        let seen = latest_checkpoint(c, job)?.0;
        wait_for("a checkpoint", Duration::from_secs(30), || async move {
            Ok((latest_checkpoint(c, job)?.0 > seen + 2).then_some(()))
        })
        .await?;
        cluster.start_coordinator(leader)?;
    }
    // Every member ends with the same log, applied.
    let views = wait_for(
        "all members at the same log index",
        Duration::from_secs(30),
        || {
            let c = &cluster.coordinator_address;
            async move {
                let views = jobctl_json(c, &["cluster"])?;
                let views = views.as_array().cloned().unwrap_or_default();
                let indexes: Vec<(u64, u64)> = views
                    .iter()
                    .filter_map(|v| {
                        Some((v["last_log_index"].as_u64()?, v["applied_index"].as_u64()?))
                    })
                    .collect();
                let converged = indexes.len() == 3
                    && indexes.windows(2).all(|w| w[0] == w[1])
                    && indexes[0].0 == indexes[0].1;
                Ok(converged.then_some(views))
            }
        },
    )
    .await;
    // The job keeps checkpointing, so the log moves: compare while paused.
    let views = match views {
        Ok(v) => v,
        Err(_) => {
            jobctl(&cluster.coordinator_address, &["cancel", &job], &[])?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let v = jobctl_json(&cluster.coordinator_address, &["cluster"])?;
            v.as_array().cloned().unwrap_or_default()
        }
    };
    println!("{}", serde_json::to_string(&views)?);
    let indexes: Vec<_> = views
        .iter()
        .map(|v| (v["last_log_index"].clone(), v["applied_index"].clone()))
        .collect();
    assert_eq!(indexes.len(), 3, "every member answers");
    assert!(
        indexes.windows(2).all(|w| w[0] == w[1]),
        "same log everywhere: {indexes:?}"
    );
    let leaders: Vec<_> = views.iter().filter(|v| v["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_group_stopped_and_started_keeps_jobs_and_checkpoints() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-full-restart");
    let mut cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let (job, input, output) = start_job(&cluster, &dir).await?;
    let c = cluster.coordinator_address.clone();
    let first = 8_000;
    produce(&input, 0, first).await??;
    wait_checkpointed(&c, &job, first).await?;
    let (before, _) = latest_checkpoint(&c, &job)?;
    for i in 0..3 {
        cluster.kill_coordinator(i);
    }
    for i in 0..3 {
        cluster.start_coordinator(i)?;
    }
    wait_leader(&cluster).await?;
    let cps = jobctl_json(&c, &["checkpoints", &job])?;
    let ids: Vec<u64> = cps["checkpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["checkpoint_id"].as_u64())
        .collect();
    println!("after the restart of all coordinators: checkpoints {ids:?} (last before: {before})");
    assert!(
        ids.first().is_some_and(|id| *id >= before),
        "latest checkpoint kept"
    );
    produce(&input, first, first).await??;
    wait_checkpointed(&c, &job, 2 * first).await?;
    check_exactly_once(&output, 2 * first).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_cut_off_from_the_others_accepts_no_writes() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-isolated");
    let cluster = SluiceCluster::start(&dir, 1, options()).await?;
    let leader = wait_leader(&cluster).await?;
    let isolated = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    cluster.pause_coordinator(leader);
    cluster.pause_coordinator(other);
    // Past its election timeout, it knows it leads nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spec = dir.join("job.yaml");
    std::fs::write(
        &spec,
        "name: nothing\nsource: { kafka: { brokers: \"127.0.0.1:1\", topic: t } }\nsink: { blackhole: {} }\n",
    )?;
    let alone = cluster.coordinator_address_of(isolated);
    let refused = jobctl(&alone, &["submit", spec.to_str().unwrap_or_default()], &[])?;
    println!(
        "submit to the cut-off coordinator: {}",
        refused.stderr.trim()
    );
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("not the leader"),
        "{}",
        refused.stderr
    );
    let listed = jobctl(&alone, &["list"], &[])?;
    assert!(
        !listed.success,
        "a member without a leader serves nothing: {}",
        listed.stdout
    );
    cluster.resume_coordinator(leader);
    cluster.resume_coordinator(other);
    // Pointed at a follower, jobctl is sent on to the leader.
    wait_leader(&cluster).await?;
    let follower = wait_for("a follower", Duration::from_secs(10), || async {
        Ok(cluster.leader().await.map(|l| (l + 1) % 3))
    })
    .await?;
    let out = jobctl(&cluster.coordinator_address_of(follower), &["list"], &[])?;
    assert!(out.success, "jobctl follows the leader: {}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_coordinator_is_replaced_by_a_new_member() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-replace");
    // Frequent snapshots: the log is compacted before the new member joins,
    // so it must catch up from a snapshot sent over RaftService.
    let options = ClusterOptions {
        env: vec![("SLUICE_SNAPSHOT_EVERY".into(), "20".into())],
        ..options()
    };
    let mut cluster = SluiceCluster::start(&dir, 1, options).await?;
    let (job, _input, _output) = start_job(&cluster, &dir).await?;
    let leader = wait_leader(&cluster).await?;
    let purged = wait_for("a compacted log", Duration::from_secs(60), || {
        let c = cluster.coordinator_address_of(leader);
        async move {
            let views = jobctl_json(&c, &["cluster"])?;
            let purged = views[0]["purged_index"].as_u64().unwrap_or(0);
            Ok((purged > 0).then_some(purged))
        }
    })
    .await?;
    println!("the leader's log is purged up to {purged}");
    // The member with the highest id that does not lead: its machine is lost.
    let lost = (0..3).rev().find(|i| *i != leader).unwrap_or(2);
    cluster.kill_coordinator(lost);
    cluster.wipe_coordinator(lost)?;
    let c = cluster.coordinator_address.clone();
    let removed = jobctl(&c, &["cluster", "remove", &(lost + 1).to_string()], &[])?;
    assert!(removed.success, "remove: {}", removed.stderr);
    let new = cluster.add_coordinator()?;
    let new_id = (new + 1).to_string();
    let new_address = cluster.coordinator_address_of(new);
    let added = jobctl(&c, &["cluster", "add-learner", &new_id, &new_address], &[])?;
    assert!(added.success, "add-learner: {}", added.stderr);
    let promoted = jobctl(&c, &["cluster", "promote", &new_id], &[])?;
    assert!(promoted.success, "promote: {}", promoted.stderr);
    println!("{}", promoted.stdout.trim());

    let everyone = (0..=new)
        .filter(|i| *i != lost)
        .map(|i| cluster.coordinator_address_of(i))
        .collect::<Vec<_>>()
        .join(",");
    let expected: Vec<u64> = (0..=new)
        .filter(|i| *i != lost)
        .map(|i| i as u64 + 1)
        .collect();
    let voters = |v: &serde_json::Value| -> Vec<u64> {
        let mut ids: Vec<u64> = v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["voter"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        ids.sort();
        ids
    };
    // Members learn the new configuration as the leader replicates it.
    let views = wait_for(
        "every member with the new voters",
        Duration::from_secs(30),
        || {
            let (everyone, expected) = (&everyone, &expected);
            async move {
                let views = jobctl_json(everyone, &["cluster"])?;
                let views = views.as_array().cloned().unwrap_or_default();
                let agreed = views.len() == 3 && views.iter().all(|v| voters(v) == *expected);
                Ok(agreed.then_some(views))
            }
        },
    )
    .await?;
    let table = jobctl(&everyone, &["cluster"], &[])?;
    println!("{}", table.stdout.trim());
    let joined = views
        .iter()
        .find(|v| v["id"].as_u64() == Some(new as u64 + 1))
        .cloned()
        .unwrap_or_default();
    assert!(
        joined["snapshot_index"].as_u64().unwrap_or(0) >= purged,
        "the new member caught up from a snapshot: {joined}"
    );

    // The new member votes: with the old leader gone, the group of three
    // still has a majority only with it.
    let leader = wait_leader(&cluster).await?;
    cluster.kill_coordinator(leader);
    let next = wait_leader(&cluster).await?;
    println!(
        "coordinator {} killed, coordinator {} leads",
        leader + 1,
        next + 1
    );
    let seen = latest_checkpoint(&everyone, &job)?.0;
    wait_for(
        "a checkpoint under the new group",
        Duration::from_secs(30),
        || {
            let (c, job) = (&everyone, &job);
            async move { Ok((latest_checkpoint(c, job)?.0 > seen).then_some(())) }
        },
    )
    .await?;
    let status = jobctl_json(&everyone, &["status", &job])?;
    assert_eq!(status["restarts"], 0, "the job ran on: {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_acts_on_nothing_once_resumed() -> anyhow::Result<()> {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-paused-leader");
    let cluster = SluiceCluster::start(&dir, 2, options()).await?;
    let (job, input, output) = start_job(&cluster, &dir).await?;
    let c = cluster.coordinator_address.clone();
    let records = 16_000;
    let producing = produce(&input, 0, records);
    let before = wait_checkpoint_after(&c, &job, 3).await?;
    let leader = wait_leader(&cluster).await?;
    // Paused past the workers' heartbeat timeout: they must have moved on.
    cluster.pause_coordinator(leader);
    tokio::time::sleep(options().heartbeat_timeout + Duration::from_secs(2)).await;
    let (c, job) = (&c, &job);
    let during = wait_checkpoint_after(c, job, before).await?;
    cluster.resume_coordinator(leader);
    let next = wait_leader(&cluster).await?;
    println!(
        "coordinator {} paused after checkpoint {before}, checkpoint {during} completed meanwhile; coordinator {} leads",
        leader + 1,
        next + 1
    );
    producing.await??;
    wait_checkpointed(c, job, records).await?;
    let status = jobctl_json(c, &["status", job])?;
    assert_eq!(status["restarts"], 0, "the job ran on: {status}");
    check_exactly_once(&output, records).await
}

/// Coordinator `index`'s own view of the group: (role, term, leader id).
async fn view(cluster: &SluiceCluster, index: usize) -> anyhow::Result<(String, u64, u64)> {
    let mut client = cluster.client_of(index).await?;
    let info = client
        .cluster_info(cluster.client_request(sluice_proto::ClusterInfoRequest {}))
        .await?
        .into_inner();
    Ok((info.role, info.term, info.leader_id))
}

/// A follower cut off from the other two (each coordinator behind a proxy
/// that refuses the other coordinators' processes) for several election
/// timeouts, then back, finds the leader still in place in the same term:
/// it asks before it stands for election (Pre-Vote), so it does not raise
/// its term alone. Before, its higher term deposed the leader at every
/// heal, and every worker had to register again with the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_cut_off_and_back_leaves_the_leader_in_its_term() -> anyhow::Result<()> {
    use sluice_harness::chaos::proxy::Proxy;
    use std::collections::BTreeSet;
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = test_dir("ha-follower-cut");
    let mut options = options();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let port = sluice_harness::net::free_port()?;
        let proxy = Proxy::start(format!("127.0.0.1:{port}").parse()?).await?;
        options.coordinator_ports.push(port);
        options
            .coordinator_advertise
            .push(proxy.address().to_string());
        proxies.push(proxy);
    }
    let cluster = SluiceCluster::start(&dir, 0, options).await?;
    let leader = wait_leader(&cluster).await?;
    let (_, term, _) = view(&cluster, leader).await?;
    let cut = (leader + 1) % 3;
    let pid = |i: usize| cluster.coordinator_pid(i);
    let others: BTreeSet<u32> = (0..3).filter(|i| *i != cut).filter_map(pid).collect();
    let own: BTreeSet<u32> = pid(cut).into_iter().collect();
    for (i, p) in proxies.iter().enumerate() {
        p.cut_clients(if i == cut {
            others.clone()
        } else {
            own.clone()
        });
    }
    // It hears nothing from the leader: its election timeout (0.5-1 s)
    // passes several times.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (role, cut_term, _) = view(&cluster, cut).await?;
    println!("cut off: {role}, term {cut_term} (the leader's {term})");
    for p in &proxies {
        p.cut_clients(BTreeSet::new());
    }
    // Once every member names the same leader, the group has settled.
    let settled = wait_for(
        "the three agree on a leader",
        Duration::from_secs(30),
        || async {
            let mut views = Vec::new();
            for i in 0..3 {
                views.push(view(&cluster, i).await?);
            }
            let leader_id = views[0].2;
            let agreed = leader_id > 0
                && views.iter().all(|v| v.2 == leader_id)
                && views.iter().filter(|v| v.0 == "leader").count() == 1;
            Ok(agreed.then_some(views))
        },
    )
    .await?;
    println!("after the heal: {settled:?}");
    assert!(
        settled
            .iter()
            .all(|(_, t, id)| (*t, *id) == (term, leader as u64 + 1)),
        "coordinator {} still leads in term {term}: {settled:?}",
        leader + 1
    );
    Ok(())
}
