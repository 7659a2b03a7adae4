//! A coordinator that lost its data directory never starts a second Raft
//! group: the lowest id of `--peers`, which initialises a new group, refuses
//! to start while its peers run a group that counts it, saying how to
//! replace it; once removed, it starts, waits, and is added back.

use sluice_harness::cluster::{ClusterOptions, SluiceCluster};
use sluice_harness::testing::{jobctl, jobctl_json, test_dir, wait_for};
use std::time::Duration;

/// One member's view of its group, from `jobctl cluster`.
#[derive(Debug)]
struct View {
    leader: u64,
    term: u64,
    /// Sorted ids of the voters.
    voters: Vec<u64>,
}

/// Each member's view of its group.
fn views(addresses: &str) -> anyhow::Result<Vec<View>> {
    let views = jobctl_json(addresses, &["cluster"])?;
    Ok(views
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let mut voters: Vec<u64> = v["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["voter"] == true)
                .filter_map(|m| m["id"].as_u64())
                .collect();
            voters.sort();
            View {
                leader: v["leader_id"].as_u64().unwrap_or(0),
                term: v["term"].as_u64().unwrap_or(0),
                voters,
            }
        })
        .collect())
}

/// Whether every view names the same leader and term and the voters `voters`.
fn one_group(views: &[View], voters: &[u64]) -> bool {
    let Some(first) = views.first() else {
        return false;
    };
    first.leader != 0
        && views
            .iter()
            .all(|v| v.leader == first.leader && v.term == first.term && v.voters == voters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_lost_its_data_refuses_to_start_a_second_group() -> anyhow::Result<()> {
    let dir = test_dir("bootstrap");
    let options = ClusterOptions {
        coordinators: 3,
        ..Default::default()
    };
    let mut cluster = SluiceCluster::start(&dir, 0, options).await?;
    cluster.wait_leader(Duration::from_secs(30)).await?;
    let everyone = cluster.coordinator_address.clone();
    wait_for("one group of three", Duration::from_secs(30), || async {
        Ok(one_group(&views(&everyone)?, &[1, 2, 3]).then_some(()))
    })
    .await?;

    // Coordinator 1, the lowest id, which initialised the group, loses its disk.
    cluster.kill_coordinator(0);
    cluster.wipe_coordinator(0)?;
    let started = cluster.start_coordinator(0);
    let refusal = match started {
        Err(e) => format!("{e:#}"),
        Ok(()) => {
            let cluster = &mut cluster;
            wait_for(
                "coordinator 1 to refuse to start",
                Duration::from_secs(30),
                move || {
                    let exited = cluster.check_coordinator(0).err();
                    async move { Ok(exited.map(|e| format!("{e:#}"))) }
                },
            )
            .await?
        }
    };
    println!("{refusal}");
    assert!(
        refusal.contains("second group")
            && refusal.contains("cluster remove 1")
            && refusal.contains("cluster add-learner 1")
            && refusal.contains("cluster promote 1"),
        "the refusal says what to do: {refusal}"
    );
    let others = format!(
        "{},{}",
        cluster.coordinator_address_of(1),
        cluster.coordinator_address_of(2)
    );
    // The two others go on as the one group of three, electing a leader
    // among themselves.
    let remaining = wait_for(
        "coordinators 2 and 3 to go on as the group",
        Duration::from_secs(30),
        || async {
            let v = views(&others)?;
            let led = v.first().is_some_and(|first| first.leader != 1);
            Ok((v.len() == 2 && led && one_group(&v, &[1, 2, 3])).then_some(v))
        },
    )
    .await?;
    println!("{remaining:?}");

    // What the message says: remove it, start it empty, add it back.
    let removed = jobctl(&others, &["cluster", "remove", "1"], &[])?;
    assert!(removed.success, "remove: {}", removed.stderr);
    cluster.start_coordinator(0)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.check_coordinator(0)?;
    let address = cluster.coordinator_address_of(0);
    let added = jobctl(&others, &["cluster", "add-learner", "1", &address], &[])?;
    assert!(added.success, "add-learner: {}", added.stderr);
    let promoted = jobctl(&others, &["cluster", "promote", "1"], &[])?;
    assert!(promoted.success, "promote: {}", promoted.stderr);
    let joined = wait_for(
        "coordinator 1 back in the one group",
        Duration::from_secs(30),
        || async {
            let v = views(&everyone)?;
            Ok((v.len() == 3 && one_group(&v, &[1, 2, 3])).then_some(v))
        },
    )
    .await?;
    println!("{joined:?}");
    Ok(())
}
