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
use sluice_harness::testing::{infra, unique};
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
    #[arg(long, default_value = "all")]
    scenario: Vec<String>,
    /// Seed of the fault schedules (which process, when, how long): the same
    /// seed strikes the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Workers of the cluster.
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Coordinators: 1 or 3. Without it, 3 for the leader's faults and 1
    /// for the others; a worker cut off from the coordinator always runs with 1,
    /// a coordinator cut off from the others with 3.
    #[arg(long, value_parser = parse_coordinators)]
    coordinators: Option<usize>,
    /// Subtasks per stage, and partitions of the input and output topics.
    #[arg(long, default_value_t = 3)]
    parallelism: u32,
    /// Input records per scenario, numbered from 0.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// Input records per second; without it, --records over --duration, or
    /// over 6 s and at most 2000.
    #[arg(long)]
    rate: Option<u64>,
    /// Strike faults for this long per scenario (such as `30m`); without it,
    /// --faults faults.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Faults per scenario without --duration (a failpoint fires once).
    #[arg(long, default_value_t = 2)]
    faults: usize,
    /// The job the records go through.
    #[arg(long, value_enum, default_value = "keyed")]
    job: JobKind,
    /// `FAILPOINTS` of every worker, such as a deliberate fault to see the
    /// verdict catch it (`source-skip-offset-after-restore=return`).
    #[arg(long)]
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

fn scenarios(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let mut out = Vec::new();
    for name in names {
        if name == "all" {
            out.extend(Scenario::all());
            continue;
        }
        match Scenario::parse(name) {
            Some(s) => out.push(s),
            None => anyhow::bail!("no scenario `{name}`: see chaos --list"),
        }
    }
    Ok(out)
}

/// The command line that runs this scenario again with the same schedule.
fn rerun(cli: &Cli, o: &Outcome) -> String {
    let mut line = format!(
        "chaos --scenario {} --seed {} --workers {} --parallelism {} --records {} --job {:?}",
        o.scenario, o.seed, cli.workers, cli.parallelism, cli.records, cli.job
    );
    line = line.to_lowercase();
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
    let chosen = scenarios(&cli.scenario)?;
    anyhow::ensure!(cli.workers >= 1, "--workers must be at least 1");
    let infra = infra()?;
    let mut outcomes = Vec::new();
    // The program's own Kafka broker, started for the first scenario that
    // needs it and kept for the others; stopped and deleted at the end.
    let mut broker: Option<Arc<OwnBroker>> = None;
    for scenario in chosen {
        if scenario.needs_own_broker() && broker.is_none() {
            eprintln!("chaos: starting a Kafka broker of the program's own");
            let dir = std::env::temp_dir()
                .join("sluice-chaos")
                .join(unique("kafka"));
            let started = tokio::select! {
                b = OwnBroker::start(dir, cli.workers) => b?,
                _ = interrupted() => std::process::exit(130),
            };
            broker = Some(Arc::new(started));
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
            job: cli.job,
            infra: infra.clone(),
            worker_failpoints: cli.worker_failpoints.clone(),
            dir: std::env::temp_dir()
                .join("sluice-chaos")
                .join(unique(&scenario.name())),
            keep: cli.keep,
            broker: broker.clone(),
        };
        eprintln!("chaos: running {} (seed {})", scenario.name(), cli.seed);
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
            .map(|o| format!("{} (seed {})", o.scenario, o.seed))
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
