//! What one chaos scenario found, and the table the program prints.

use super::workload::{Counts, JobKind};
use std::time::Duration;

/// The verdict of one scenario run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    /// The job the records went through.
    pub job: JobKind,
    pub seed: u64,
    pub coordinators: usize,
    /// Records produced into the input.
    pub records_in: u64,
    pub counts: Counts,
    /// Faults struck.
    pub faults: usize,
    /// The job's restarts, as the coordinator counts them.
    pub restarts: u32,
    /// For each fault, the time from its start to the first checkpoint
    /// completed after it healed; `None` when none completed in time.
    pub recoveries: Vec<Option<Duration>>,
    /// The job's state at the end (`RUNNING`, `FAILED`, ...).
    pub final_state: String,
    /// Why the run could not be judged, if it could not (a failpoint that
    /// never fired, a job that never drained, an error of the harness).
    pub problem: Option<String>,
}

impl Outcome {
    /// `true` when nothing was lost, duplicated or corrupted, every fault
    /// recovered, and the job ended RUNNING.
    pub fn passed(&self) -> bool {
        self.counts.lost == 0
            && self.counts.duplicated == 0
            && self.counts.corrupted == 0
            && self.final_state == "RUNNING"
            && self.problem.is_none()
            && self.recoveries.iter().all(Option::is_some)
    }

    /// The 50th percentile and the maximum of the recovery times that were
    /// measured, in seconds.
    fn recovery_summary(&self) -> (String, String) {
        let mut times: Vec<Duration> = self.recoveries.iter().flatten().copied().collect();
        if times.is_empty() {
            return ("-".into(), "-".into());
        }
        times.sort();
        let p50 = times[(times.len() - 1) / 2];
        let max = times[times.len() - 1];
        let missing = self.recoveries.len() - times.len();
        let max = match missing {
            0 => format!("{:.1}", max.as_secs_f64()),
            n => format!("{:.1} ({n} none)", max.as_secs_f64()),
        };
        (format!("{:.1}", p50.as_secs_f64()), max)
    }
}

/// The header of the table [`row`] fills.
pub fn header() -> String {
    format!(
        "{:<50} {:<9} {:>6} {:>5} {:>9} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>12}  {}",
        "scenario",
        "job",
        "seed",
        "coord",
        "in",
        "lost",
        "dup",
        "corr",
        "faults",
        "restarts",
        "rec p50",
        "rec max (s)",
        "final state"
    )
}

/// One line of the table.
pub fn row(o: &Outcome) -> String {
    let (p50, max) = o.recovery_summary();
    format!(
        "{:<50} {:<9} {:>6} {:>5} {:>9} {:>6} {:>6} {:>6} {:>6} {:>8} {:>8} {:>12}  {}{}",
        o.scenario,
        o.job.name(),
        o.seed,
        o.coordinators,
        o.records_in,
        o.counts.lost,
        // A table keyed by the record's id overwrites a second copy: no
        // duplicate can show there, and 0 would claim more than was seen.
        match o.counts.duplicated {
            0 if !o.job.shows_duplicates() => "-".to_string(),
            n => n.to_string(),
        },
        o.counts.corrupted,
        o.faults,
        o.restarts,
        p50,
        max,
        o.final_state,
        if o.passed() { "" } else { "  FAIL" }
    )
}

/// What a failed run found, and how to run it again.
pub fn failure_details(o: &Outcome, rerun: &str) -> String {
    let mut lines = vec![format!(
        "FAILED: scenario {} job {} seed {}",
        o.scenario,
        o.job.name(),
        o.seed
    )];
    if o.counts.lost > 0 {
        lines.push(format!(
            "  lost {} records, such as ids {:?}",
            o.counts.lost, o.counts.lost_examples
        ));
    }
    if o.counts.duplicated > 0 {
        lines.push(format!(
            "  duplicated {} records, such as ids {:?}",
            o.counts.duplicated, o.counts.duplicated_examples
        ));
    }
    if o.counts.corrupted > 0 {
        lines.push(format!(
            "  corrupted {} records, such as {:?}",
            o.counts.corrupted, o.counts.corrupted_examples
        ));
    }
    if o.final_state != "RUNNING" {
        lines.push(format!("  the job ended {}", o.final_state));
    }
    if let Some(problem) = &o.problem {
        lines.push(format!("  {problem}"));
    }
    let unrecovered = o.recoveries.iter().filter(|r| r.is_none()).count();
    if unrecovered > 0 {
        lines.push(format!(
            "  {unrecovered} faults saw no checkpoint complete after they healed"
        ));
    }
    lines.push(format!("  rerun: {rerun}"));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> Outcome {
        Outcome {
            scenario: "worker-kill".into(),
            job: JobKind::Keyed,
            seed: 3,
            coordinators: 1,
            records_in: 100,
            counts: Counts::default(),
            faults: 3,
            restarts: 2,
            recoveries: vec![
                Some(Duration::from_millis(1500)),
                Some(Duration::from_millis(4200)),
                Some(Duration::from_millis(2500)),
            ],
            final_state: "RUNNING".into(),
            problem: None,
        }
    }

    #[test]
    fn a_clean_run_passes_with_its_recovery_times() {
        let o = outcome();
        assert!(o.passed());
        assert_eq!(o.recovery_summary(), ("2.5".into(), "4.2".into()));
        assert!(!row(&o).contains("FAIL"));
    }

    #[test]
    fn a_table_that_hides_duplicates_shows_none_counted() {
        let mut o = outcome();
        o.job = JobKind::Seed001;
        assert!(row(&o).contains(" - "), "{}", row(&o));
        o.job = JobKind::Seed002;
        assert!(!row(&o).contains(" - "), "{}", row(&o));
    }

    #[test]
    fn loss_duplicates_and_a_failed_job_each_fail_a_run() {
        let mut lost = outcome();
        lost.counts.lost = 1;
        let mut dup = outcome();
        dup.counts.duplicated = 1;
        let mut failed = outcome();
        failed.final_state = "FAILED".into();
        for o in [lost, dup, failed] {
            assert!(!o.passed());
            assert!(row(&o).ends_with("FAIL"));
            assert!(
                failure_details(&o, "chaos --scenario worker-kill --seed 3").contains("seed 3")
            );
        }
    }
}
