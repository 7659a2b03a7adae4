//! The chaos program catches a broken exactly-once: with a deliberate fault
//! switched on (a source that skips an offset when it resumes from a
//! checkpoint), a killed worker's restart loses records, and the program
//! says so, names the scenario, job and seed to rerun, and exits non-zero:
//! for its own keyed job and for a shipped seed job (seed 002's pairs).

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
                "--job",
                "keyed",
                "--job",
                "seed-002",
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
    for job in ["keyed", "seed-002"] {
        let row = stdout
            .lines()
            .rfind(|l| l.starts_with("worker-kill ") && l.contains(&format!(" {job} ")))
            .unwrap_or_else(|| panic!("a table row of the scenario with job {job}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        // scenario, job, seed, coordinators, in, lost, duplicated, corrupted, ...
        assert_eq!(columns[2], "5", "{row}");
        let records_in: u64 = columns[4].parse()?;
        assert!(records_in >= 6000, "{row}");
        let lost: u64 = columns[5].parse()?;
        assert!(lost > 0, "the skipped offsets show as lost records: {row}");
        assert!(row.ends_with("FAIL"), "{row}");
        assert!(
            stdout.contains(&format!("FAILED: scenario worker-kill job {job} seed 5"))
                && stdout.contains(&format!(
                    "rerun: chaos --scenario worker-kill --seed 5 --workers 2 --parallelism 2 --records 6000 --job {job}"
                )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("lost "), "{stdout}");
    Ok(())
}
