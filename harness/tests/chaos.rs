//! The chaos program catches a broken exactly-once: with a deliberate fault
//! switched on (a source that skips an offset when it resumes from a
//! checkpoint), a killed worker's restart loses records, and the program
//! says so, names the scenario and seed to rerun, and exits non-zero.

use sluice_harness::cluster::bin_dir;
use sluice_harness::testing::infra;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_program_reports_the_records_a_deliberate_fault_loses() -> anyhow::Result<()> {
    let infra = infra()?;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin_dir()?.join("chaos"))
            .args([
                "--scenario",
                "worker-kill",
                "--seed",
                "5",
                "--faults",
                "1",
                "--workers",
                "2",
                "--parallelism",
                "2",
                "--records",
                "6000",
                "--rate",
                "1000",
                "--worker-failpoints",
                "source-skip-offset-after-restore=return",
            ])
            .env("KAFKA_BROKER", &infra.kafka)
            .env("CASSANDRA_HOST", &infra.cassandra)
            .env("S3_ENDPOINT", &infra.s3_endpoint)
            .output()
            .map_err(anyhow::Error::from)
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(!out.status.success(), "the run failed: {stdout}");
    let row = stdout
        .lines()
        .rfind(|l| l.starts_with("worker-kill "))
        .expect("a table row of the scenario");
    let columns: Vec<&str> = row.split_whitespace().collect();
    // scenario, seed, coordinators, in, lost, duplicated, corrupted, ...
    assert_eq!(columns[1], "5", "{row}");
    assert_eq!(columns[3], "6000", "{row}");
    let lost: u64 = columns[4].parse()?;
    assert!(lost > 0, "the skipped offsets show as lost records: {row}");
    assert!(row.ends_with("FAIL"), "{row}");
    assert!(
        stdout.contains("FAILED: scenario worker-kill seed 5")
            && stdout.contains("lost ")
            && stdout.contains("rerun: chaos --scenario worker-kill --seed 5"),
        "{stdout}"
    );
    Ok(())
}
