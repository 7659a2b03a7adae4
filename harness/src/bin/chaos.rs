//! `chaos`: runs Sluice through named faults (killed and paused processes,
//! network partitions, an unreachable or slow checkpoint store, a full disk,
//! a Kafka broker or Cassandra cut off, slowed or restarted, failpoints at
//! each checkpoint step) while a sequenced workload flows
//! through an exactly-once job, then reads the output back on its own and
//! prints a table of records lost, duplicated and corrupted per scenario.
//! Exits non-zero, naming the scenario and seed to rerun, on any of them or
//! a job that did not end RUNNING.

use clap::Parser;
use sluice_harness::chaos::broker::OwnBroker;
use sluice_harness::chaos::outcome::{self, Outcome};
use sluice_harness::chaos::runner::{self, RunConfig};
use sluice_harness::chaos::scenario::Scenario;
use sluice_harness::chaos::workload::JobKind;
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::testing::{infra, unique};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Failure injection with verdicts: faults struck while an exactly-once job runs, its output checked record by record"
)]
struct Cli {
    /// A scenario's name (see --list), or `all` for every one but `random`;
    /// repeatable.
    #[arg(long, default_value = "all", value_parser = parse_scenario)]
    scenario: Vec<Vec<Scenario>>,
    /// Seed of the fault schedules (which process, when, how long): the same
    /// seed strikes the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Workers of the cluster.
    #[arg(long, default_value_t = 3, value_parser = at_least_one::<usize>)]
    workers: usize,
    /// Coordinators: 1 or 3. Without it, 3 for the leader's faults and 1
    /// for the others; a worker cut off from the coordinator always runs with 1,
    /// a coordinator cut off from the others with 3.
    #[arg(long, value_parser = parse_coordinators)]
    coordinators: Option<usize>,
    /// Subtasks per stage, and partitions of the input and output topics.
    #[arg(long, default_value_t = 3, value_parser = at_least_one::<u32>)]
    parallelism: u32,
    /// Input records per scenario, numbered from 0: the least, as input
    /// flows on until the last fault has healed.
    #[arg(long, default_value_t = 20_000, value_parser = at_least_one::<u64>)]
    records: u64,
    /// Input records per second; without it, --records over --duration, or
    /// over 6 s and at most 2000.
    #[arg(long, value_parser = at_least_one::<u64>)]
    rate: Option<u64>,
    /// Strike faults for this long per scenario (such as `30m`); without it,
    /// --faults faults.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Faults per scenario without --duration (a failpoint fires once).
    #[arg(long, default_value_t = 2, value_parser = at_least_one::<usize>)]
    faults: usize,
    /// The job the records go through: remap, keyed, s3, cassandra, files,
    /// a shipped seed job (seed-000 to seed-004), or `seeds` for all five;
    /// repeatable: each scenario runs with each job (a sink's fault with a
    /// job writing to that sink).
    #[arg(long, default_value = "keyed", value_parser = parse_job)]
    job: Vec<Vec<JobKind>>,
    /// `FAILPOINTS` of every worker, such as a deliberate fault to see the
    /// verdict catch it (`source-skip-offset-after-restore=return`).
    #[arg(long, value_parser = parse_failpoints)]
    worker_failpoints: Option<String>,
    /// Keep every run's logs, not only those of failed runs.
    #[arg(long)]
    keep: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

fn parse_coordinators(text: &str) -> Result<usize, String> {
    match text {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err("a cluster runs 1 or 3 coordinators".into()),
    }
}

/// A count of 1 or more: with none, a run would pass its verdict without
/// a record, a fault or a worker to judge.
fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: FromStr + From<u8> + PartialEq,
    T::Err: std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `FAILPOINTS` as the workers read it (`NAME=ACTIONS`, `;` between), checked
/// here, before any worker starts: a worker stops at its start on a malformed one.
fn parse_failpoints(text: &str) -> Result<String, String> {
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .ok_or_else(|| format!("`{entry}` is no NAME=ACTIONS"))?;
        // Parsed by the failpoint library itself, then unset: the program
        // has no failpoints of its own.
        fail::cfg(name.trim(), actions).map_err(|e| format!("`{entry}`: {e}"))?;
        fail::remove(name.trim());
    }
    Ok(text.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is no duration such as 90s, 30m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{text}` is no duration such as 90s, 30m or 1h")),
    }
}

/// The jobs a `--job` names: one, or the five shipped seed jobs for `seeds`.
fn parse_job(name: &str) -> Result<Vec<JobKind>, String> {
    use clap::ValueEnum;
    if name == "seeds" {
        return Ok(JobKind::SEEDS.to_vec());
    }
    JobKind::from_str(name, false)
        .map(|j| vec![j])
        .map_err(|_| {
            let names: Vec<String> = JobKind::value_variants().iter().map(|j| j.name()).collect();
            format!("no such job; one of {}, or seeds", names.join(", "))
        })
}

/// The scenarios a `--scenario` names: one, or every one but `random` for `all`.
fn parse_scenario(name: &str) -> Result<Vec<Scenario>, String> {
    if name == "all" {
        return Ok(Scenario::all());
    }
    Scenario::parse(name)
        .map(|s| vec![s])
        .ok_or_else(|| "no such scenario (see chaos --list)".into())
}

/// The command line that runs this scenario again with the same schedule.
fn rerun(cli: &Cli, o: &Outcome) -> String {
    let mut line = format!(
        "chaos --scenario {} --seed {} --workers {} --parallelism {} --records {} --job {}",
        o.scenario,
        o.seed,
        cli.workers,
        cli.parallelism,
        cli.records,
        o.job.name()
    );
    if let Some(c) = cli.coordinators {
        line.push_str(&format!(" --coordinators {c}"));
    }
    if let Some(r) = cli.rate {
        line.push_str(&format!(" --rate {r}"));
    }
    if let Some(d) = cli.duration {
        line.push_str(&format!(" --duration {}s", d.as_secs()));
    } else {
        line.push_str(&format!(" --faults {}", cli.faults));
    }
    if let Some(f) = &cli.worker_failpoints {
        line.push_str(&format!(" --worker-failpoints '{f}'"));
    }
    line
}

/// Refuses a `--parallelism` the cluster's task slots cannot hold: the job
/// would wait for slots that never come, and the run fail after a minute.
fn check_slots(cli: &Cli) -> Result<(), String> {
    let per_worker = ClusterOptions::default().slots as usize;
    let slots = cli.workers * per_worker;
    match cli.parallelism as usize <= slots {
        true => Ok(()),
        false => Err(format!(
            "--parallelism {} needs {} task slots, and --workers {} have {slots} ({per_worker} each): \
             ask for more workers or a lower parallelism",
            cli.parallelism, cli.parallelism, cli.workers
        )),
    }
}

/// Resolves at SIGINT or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.list {
        for s in Scenario::all().into_iter().chain([Scenario::Random]) {
            println!("{:<50} {}", s.name(), s.describe());
        }
        return Ok(());
    }
    // Each scenario with each job, once: a sink's fault given several jobs
    // that do not write to its sink would run the same job again.
    let mut chosen: Vec<(Scenario, JobKind)> = Vec::new();
    for scenario in cli.scenario.concat() {
        for job in cli.job.concat() {
            let pair = (scenario, scenario.job(job));
            if !chosen.contains(&pair) {
                chosen.push(pair);
            }
        }
    }
    check_slots(&cli).map_err(anyhow::Error::msg)?;
    let infra = infra()?;
    let mut outcomes = Vec::new();
    // The program's own Kafka broker, started for the first scenario that
    // needs it and kept for the others; stopped and deleted at the end.
    let mut broker: Option<Arc<OwnBroker>> = None;
    for (scenario, job) in chosen {
        if scenario.needs_own_broker() && broker.is_none() {
            eprintln!("chaos: starting a Kafka broker of the program's own");
            let dir = std::env::temp_dir()
                .join("sluice-chaos")
                .join(unique("kafka"));
            // A broker that never started leaves no data behind.
            let started = tokio::select! {
                b = OwnBroker::start(dir.clone(), cli.workers) => b,
                _ = interrupted() => {
                    let _ = std::fs::remove_dir_all(&dir);
                    std::process::exit(130)
                }
            };
            match started {
                Ok(b) => broker = Some(Arc::new(b)),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            }
        }
        let config = RunConfig {
            scenario,
            seed: cli.seed,
            workers: cli.workers,
            coordinators: cli.coordinators,
            parallelism: cli.parallelism,
            records: cli.records,
            rate: cli.rate,
            duration: cli.duration,
            faults: cli.faults,
            job,
            infra: infra.clone(),
            worker_failpoints: cli.worker_failpoints.clone(),
            dir: std::env::temp_dir()
                .join("sluice-chaos")
                .join(unique(&scenario.name())),
            keep: cli.keep,
            broker: broker.clone(),
        };
        eprintln!(
            "chaos: running {} with job {} (seed {})",
            scenario.name(),
            job.name(),
            cli.seed
        );
        let runs_with = scenario.coordinators(cli.coordinators);
        if cli.coordinators.is_some_and(|asked| asked != runs_with) {
            eprintln!(
                "chaos: {} runs with {runs_with} coordinators, not --coordinators {}",
                scenario.name(),
                cli.coordinators.unwrap_or(runs_with)
            );
        }
        // Interrupted, the run is dropped: its processes stop, its proxies
        // close and its tmpfs is unmounted before the program exits.
        let finished = tokio::select! {
            o = runner::run(&config) => Some(o),
            _ = interrupted() => None,
        };
        let Some(o) = finished else {
            eprintln!(
                "chaos: interrupted during {}; logs in {}",
                scenario.name(),
                config.dir.display()
            );
            drop(config);
            drop(broker);
            std::process::exit(130);
        };
        println!("{}", outcome::header());
        println!("{}", outcome::row(&o));
        outcomes.push(o);
    }
    drop(broker);
    println!();
    println!("{}", outcome::header());
    for o in &outcomes {
        println!("{}", outcome::row(o));
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    for o in &failed {
        println!("{}", outcome::failure_details(o, &rerun(&cli, o)));
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed
            .iter()
            .map(|o| format!("{} with job {} (seed {})", o.scenario, o.job.name(), o.seed))
            .collect();
        eprintln!(
            "chaos: {} of {} scenarios failed: {}",
            failed.len(),
            outcomes.len(),
            names.join(", ")
        );
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from([&["chaos"], args].concat()) {
            Ok(cli) => panic!("{args:?} accepted: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_option_values_are_refused_naming_the_option() {
        for option in [
            "--workers",
            "--parallelism",
            "--records",
            "--rate",
            "--faults",
        ] {
            let error = refused(&[option, "0"]);
            assert!(
                error.contains(option) && error.contains("must be at least 1"),
                "{error}"
            );
        }
        for failpoints in ["nonsense", "sink-before-commit=retrun"] {
            let error = refused(&["--worker-failpoints", failpoints]);
            assert!(error.contains("--worker-failpoints"), "{error}");
        }
        let cli = Cli::try_parse_from([
            "chaos",
            "--worker-failpoints",
            "source-skip-offset-after-restore=return; sink-before-commit=2*off->return",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
        let error = refused(&["--scenario", "worker-kil"]);
        assert!(
            error.contains("--scenario") && error.contains("no such scenario"),
            "{error}"
        );
        let cli = Cli::try_parse_from(["chaos", "--scenario", "random", "--scenario", "all"])
            .map_err(|e| e.to_string());
        let chosen = cli.map(|c| c.scenario.concat().len());
        assert_eq!(chosen, Ok(Scenario::all().len() + 1));
        let cli = Cli::try_parse_from(["chaos", "--workers", "2", "--parallelism", "9"]);
        let error = check_slots(&cli.unwrap()).unwrap_err();
        assert!(
            error.contains("--parallelism 9") && error.contains("--workers 2 have 8"),
            "{error}"
        );
        let cli = Cli::try_parse_from(["chaos", "--workers", "2", "--parallelism", "8"]);
        assert_eq!(check_slots(&cli.unwrap()), Ok(()));
        let error = refused(&["--job", "seed-009"]);
        assert!(
            error.contains("--job") && error.contains("seed-004"),
            "{error}"
        );
        let jobs = Cli::try_parse_from(["chaos", "--job", "seeds", "--job", "keyed"])
            .map(|c| c.job.concat());
        assert_eq!(
            jobs.map_err(|e| e.to_string()),
            Ok([JobKind::SEEDS.to_vec(), vec![JobKind::Keyed]].concat())
        );
    }
}
