//! One chaos scenario from start to verdict: a cluster behind proxies, the
//! sequenced workload flowing through an exactly-once job, the faults of
//! the scenario's schedule each struck and healed, then, once the input is
//! drained, the output read back and judged.

use super::broker::OwnBroker;
use super::environment::{Environment, Settings};
use super::outcome::Outcome;
use super::scenario::{Fault, Scenario};
use super::workload::{Counts, JobKind, SinkKind, Workload};
use crate::cassandra::CassandraServer;
use crate::process::Launcher;
use crate::testing::{Infra, unique};
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_proto::{
    CheckpointInfo, GetJobRequest, JobState, JobStatus, ListCheckpointsRequest, SubmitJobRequest,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Everything a scenario run is made of, from the program's options.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub seed: u64,
    pub workers: usize,
    /// `--coordinators`; each scenario picks its own when `None`.
    pub coordinators: Option<usize>,
    pub parallelism: u32,
    pub records: u64,
    /// Input records per second; `None`: records over `duration`, or over
    /// `INPUT_AT_LEAST` (6 s) and at most 2000.
    pub rate: Option<u64>,
    /// Strike faults until this much time has passed (at least one).
    pub duration: Option<Duration>,
    /// Faults of a scenario without `duration`.
    pub faults: usize,
    pub job: JobKind,
    pub infra: Infra,
    /// `FAILPOINTS` of every worker.
    pub worker_failpoints: Option<String>,
    /// Where the run keeps its logs; deleted after a run that passed
    /// unless `keep`.
    pub dir: PathBuf,
    pub keep: bool,
    /// The program's own Kafka broker, for the scenarios that need it
    /// ([`Scenario::needs_own_broker`]); shared by every run of the program.
    pub broker: Option<Arc<OwnBroker>>,
}

/// How long a fault may take to recover: to see a checkpoint complete
/// after it healed.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);
/// How long the job may take, once all input is produced, to checkpoint it.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// How long the input lasts at least, unless `--rate` or `--duration` say otherwise.
const INPUT_AT_LEAST: Duration = Duration::from_secs(6);
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one scenario; every error of the harness itself ends up in the
/// outcome's `problem`, with whatever was measured before it.
pub async fn run(config: &RunConfig) -> Outcome {
    let coordinators = config.scenario.coordinators(config.coordinators);
    let mut outcome = Outcome {
        scenario: config.scenario.name(),
        job: config.scenario.job(config.job),
        seed: config.seed,
        coordinators,
        records_in: config.records,
        counts: Counts::default(),
        faults: 0,
        restarts: 0,
        recoveries: Vec::new(),
        final_state: "-".into(),
        problem: None,
    };
    let mut env = None;
    if let Err(e) = run_in(config, coordinators, &mut outcome, &mut env).await {
        outcome.problem = Some(format!("{e:#}"));
    }
    drop(env);
    if outcome.passed() && !config.keep {
        let _ = std::fs::remove_dir_all(&config.dir);
    } else {
        eprintln!(
            "chaos: logs of {} (seed {}) are in {}",
            outcome.scenario,
            outcome.seed,
            config.dir.display()
        );
    }
    outcome
}

async fn run_in(
    config: &RunConfig,
    coordinators: usize,
    outcome: &mut Outcome,
    env_slot: &mut Option<Environment>,
) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let first_worker_failpoints = match config.scenario {
        // Armed for a later checkpoint, so records are in flight when it fires.
        Scenario::One(Fault::Failpoint(name)) => {
            Some(format!("{name}={}*off->return", rng.random_range(6..16)))
        }
        _ => None,
    };
    let broker = match config.scenario.needs_own_broker() {
        true => Some(
            config
                .broker
                .clone()
                .context("this scenario needs the program's own Kafka broker")?,
        ),
        false => None,
    };
    // Cassandra restarted is one of the run's own, started for it alone. It
    // acknowledges a write once it is on disk: with the periodic commit log
    // of the default settings, a SIGKILLed Cassandra loses writes it
    // acknowledged, which no sink can make good (seen as a lost record).
    let kind = config.scenario.job(config.job);
    let own_cassandra =
        match config
            .scenario
            .may_strike(Fault::CassandraRestart, coordinators, kind)
        {
            true => {
                eprintln!("chaos: starting a Cassandra of the run's own");
                let launcher = Launcher::new("chaos-cassandra")?;
                let dir = config.dir.clone();
                let server = launcher
                    .run(move || CassandraServer::start_with(&dir, true))
                    .await??;
                Some((server, launcher))
            }
            false => None,
        };
    let cassandra = match &own_cassandra {
        Some((c, _)) => c.address.clone(),
        None => config.infra.cassandra.clone(),
    };
    let env = env_slot.insert(
        Environment::start(Settings {
            dir: config.dir.clone(),
            workers: config.workers,
            coordinators,
            store: config.scenario.store(),
            s3_endpoint: config.infra.s3_endpoint.clone(),
            sink_upstream: match kind.sink() {
                SinkKind::Cassandra => cassandra.clone(),
                _ => config.infra.s3_endpoint.clone(),
            },
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
            worker_failpoints: config.worker_failpoints.clone(),
            first_worker_failpoints,
            files_on_tmpfs: config
                .scenario
                .may_strike(Fault::WorkerDiskFull, coordinators, kind),
            broker: broker.clone(),
        })
        .await?,
    );
    if let Some((server, launcher)) = own_cassandra {
        env.set_own_cassandra(server, launcher);
    }
    let files = env.files_dir().display().to_string();
    let mut workload = Workload {
        kind,
        brokers: broker
            .as_ref()
            .map_or_else(|| config.infra.kafka.clone(), |b| b.bootstrap()),
        job_brokers: broker
            .as_ref()
            .map_or_else(|| config.infra.kafka.clone(), |b| b.job_bootstrap()),
        input: unique("chaos-in"),
        output: unique("chaos-out"),
        records: config.records,
        parallelism: config.parallelism,
        sink_address: match kind {
            JobKind::Files => files.clone(),
            _ => env.sink_address(),
        },
        read_address: match kind.sink() {
            SinkKind::Cassandra => cassandra,
            SinkKind::Files => files,
            _ => config.infra.s3_endpoint.clone(),
        },
    };
    workload.create_topics().await?;
    let job = submit(env, &workload.spec_json(&config.scenario.name())?).await?;
    wait_until(
        env,
        &job,
        "the job running",
        Duration::from_secs(60),
        |s, _| s.state() == JobState::Running,
    )
    .await?;
    wait_until(
        env,
        &job,
        "a first checkpoint",
        Duration::from_secs(60),
        |_, c| !c.is_empty(),
    )
    .await?;
    let rate = config.rate.or_else(|| {
        config
            .duration
            .map(|d| (config.records / d.as_secs().max(1)).max(1))
    });
    // At most 2000 a second, and slow enough that the input lasts past the
    // first fault's start (1-4 s in): a fault struck after the last record
    // went through would find nothing to break.
    let rate = rate.unwrap_or_else(|| (config.records / INPUT_AT_LEAST.as_secs()).clamp(1, 2_000));
    // Input flows on until the last fault healed, so none strikes after it.
    let more_input = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let producing = {
        let (workload, more) = (workload.clone(), more_input.clone());
        tokio::spawn(async move { workload.produce(Some(rate), more).await })
    };
    let started = Instant::now();
    let mut struck = 0usize;
    loop {
        let more = match config.duration {
            Some(d) => struck == 0 || started.elapsed() < d,
            None => struck < config.faults,
        };
        if !more {
            break;
        }
        let steps = config.scenario.next_group(
            &mut rng,
            coordinators,
            workload.kind,
            config.workers,
            HEARTBEAT_TIMEOUT,
        );
        let fault_at = match steps[0].fault {
            Fault::Failpoint(name) => {
                anyhow::ensure!(
                    env.wait_exit(0, RECOVERY_LIMIT).await,
                    "failpoint {name} never fired within {RECOVERY_LIMIT:?}"
                );
                let at = now_ms();
                env.heal(&steps[0]).await?;
                at
            }
            _ => {
                tokio::time::sleep(steps[0].before).await;
                let at = now_ms();
                let struck_at = Instant::now();
                for step in &steps {
                    let on = match step.fault.strikes_a_worker() {
                        true => format!(" on worker slot {}", step.target),
                        false => String::new(),
                    };
                    eprintln!("chaos: {}{on} for {:?}", step.fault.name(), step.hold);
                    env.inject(step).await?;
                }
                // Each heals after its own hold, the shortest first.
                let mut by_hold = steps.clone();
                by_hold.sort_by_key(|s| s.hold);
                for step in &by_hold {
                    tokio::time::sleep_until((struck_at + step.hold).into()).await;
                    env.heal(step).await?;
                }
                at
            }
        };
        let healed_at = now_ms();
        env.replace_exited()?;
        struck += 1;
        outcome.faults = struck;
        let recovered = wait_until(
            env,
            &job,
            "a checkpoint after the fault",
            RECOVERY_LIMIT,
            |_, c| c.iter().any(|c| c.completed_at_ms > healed_at),
        )
        .await;
        let recovery = match recovered {
            Ok((_, checkpoints)) => checkpoints
                .iter()
                .filter(|c| c.completed_at_ms > healed_at)
                .map(|c| c.completed_at_ms)
                .min()
                .map(|t| Duration::from_millis(u64::try_from(t - fault_at).unwrap_or(0))),
            Err(e) => {
                eprintln!("chaos: {e:#}");
                None
            }
        };
        outcome.recoveries.push(recovery);
        // A zombie may give up after it woke.
        env.replace_exited()?;
        if matches!(steps[0].fault, Fault::Failpoint(_)) {
            // The failpoint fires once per process: one fault per run.
            break;
        }
    }
    more_input.store(false, std::sync::atomic::Ordering::SeqCst);
    let expected = Duration::from_secs(config.records / rate.max(1)) + DRAIN_LIMIT;
    let produced = tokio::time::timeout(expected, producing)
        .await
        .context("producing the input took too long")???;
    workload.produced(produced as u64);
    outcome.records_in = produced as u64;
    let drained = wait_until(env, &job, "all input checkpointed", DRAIN_LIMIT, |_, c| {
        let mut ordered: Vec<&CheckpointInfo> = c.iter().collect();
        ordered.sort_by_key(|c| c.checkpoint_id);
        // One checkpoint covering all input, and one after it: everything
        // read before it is committed.
        ordered
            .iter()
            .position(|c| offsets_sum(c) == produced as u64)
            .is_some_and(|i| i + 1 < ordered.len())
    })
    .await;
    if let Err(e) = &drained {
        outcome.problem = Some(format!("{e:#}"));
    }
    outcome.counts = workload.check().await?;
    let (status, _) = job_state(env, &job).await?;
    outcome.restarts = status.restarts;
    outcome.final_state = status
        .state()
        .as_str_name()
        .trim_start_matches("JOB_STATE_")
        .to_string();
    Ok(())
}

fn offsets_sum(c: &CheckpointInfo) -> u64 {
    c.source_offsets
        .values()
        .map(|o| u64::try_from(*o).unwrap_or(0))
        .sum()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn submit(env: &Environment, spec_json: &str) -> anyhow::Result<String> {
    let request = SubmitJobRequest {
        spec_json: spec_json.to_string(),
        from_savepoint: String::new(),
    };
    let answer = env.cluster.client().await?.submit_job(request).await?;
    Ok(answer.into_inner().job_id)
}

/// The job's status and checkpoints, from the leader.
async fn job_state(
    env: &Environment,
    job: &str,
) -> anyhow::Result<(JobStatus, Vec<CheckpointInfo>)> {
    let ask = async {
        let mut client = env.cluster.client().await?;
        let status = client
            .get_job(GetJobRequest {
                job_id: job.to_string(),
            })
            .await?
            .into_inner();
        let checkpoints = client
            .list_checkpoints(ListCheckpointsRequest {
                job_id: job.to_string(),
            })
            .await?
            .into_inner()
            .checkpoints;
        anyhow::Ok((status, checkpoints))
    };
    tokio::time::timeout(Duration::from_secs(10), ask)
        .await
        .context("the coordinator did not answer within 10 s")?
}

/// Polls the job until `done` holds of its status and checkpoints, at most
/// `within`; a coordinator that does not answer (while a fault lasts) is
/// asked again.
async fn wait_until(
    env: &Environment,
    job: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&JobStatus, &[CheckpointInfo]) -> bool,
) -> anyhow::Result<(JobStatus, Vec<CheckpointInfo>)> {
    let deadline = Instant::now() + within;
    let mut last_error = None;
    let mut last_status = None;
    loop {
        match job_state(env, job).await {
            Ok((status, checkpoints)) if done(&status, &checkpoints) => {
                return Ok((status, checkpoints));
            }
            Ok((status, _)) => last_status = Some(status),
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            // What the coordinator last said of the job, so that the
            // report says why rather than only that time ran out.
            let said = last_status.map_or_else(String::new, |s| {
                let mut said = format!(" (the job was {}", s.state().as_str_name());
                for (label, text) in [("failure", &s.failure), ("last failure", &s.last_failure)] {
                    if !text.is_empty() {
                        said.push_str(&format!("; {label}: {text}"));
                    }
                }
                said + ")"
            });
            match last_error {
                Some(e) => {
                    anyhow::bail!("{what}: not within {within:?}{said} (last error: {e:#})")
                }
                None => anyhow::bail!("{what}: not within {within:?}{said}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
