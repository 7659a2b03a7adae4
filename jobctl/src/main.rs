//! `jobctl`: the command-line client of a Sluice cluster.

#[macro_use]
mod stdout;
mod coordinators;
mod output;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use coordinators::Coordinators;
use sluice_common::spec::resolve_client_side;
use sluice_proto::*;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Submit and manage Sluice jobs",
    propagate_version = true
)]
struct Cli {
    /// Coordinator addresses (host:port or URL), comma-separated; calls go
    /// to the leader, found and followed by itself.
    #[arg(
        long,
        global = true,
        env = "SLUICE_COORDINATOR",
        default_value = "127.0.0.1:7400",
        value_delimiter = ','
    )]
    coordinator: Vec<String>,
    /// Bearer token sent with every call, for coordinators that check them
    /// (`--auth-tokens`): a read-only token lists and shows, an operator
    /// token also submits, cancels, stops, rescales, takes savepoints and
    /// changes the coordinator group.
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The cluster's CA certificate (PEM): connect over TLS and verify the
    /// coordinator's certificate with it.
    #[arg(long, global = true, env = "SLUICE_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to show, signed by --tls-ca; not needed
    /// for JobService, which takes tokens.
    #[arg(long, global = true, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "SLUICE_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Submit a job spec (YAML or JSON). `${VAR}` references are resolved from
    /// this shell's environment before sending.
    Submit {
        /// Path of the job spec file.
        file: std::path::PathBuf,
        /// Start from this savepoint's source offsets and keyed state. An
        /// empty value is refused (leave the option out to start without one).
        #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
        from_savepoint: Option<String>,
        /// Run at this parallelism instead of the spec's.
        #[arg(long)]
        parallelism: Option<u32>,
    },
    /// List jobs.
    List,
    /// Show a job's state and its subtasks; with --watch, again and again.
    Status {
        /// Job id, as printed by `submit` or `list`.
        job: String,
        /// Refresh until Ctrl-C or the job ended: in place on a terminal
        /// (one table after another otherwise); with `--output json`, one
        /// JSON document per line and refresh.
        #[arg(long, short)]
        watch: bool,
        /// Time between two refreshes of --watch, such as 2s or 500ms.
        #[arg(long, value_parser = humantime_arg, default_value = "2s", requires = "watch")]
        interval: Duration,
    },
    /// Cancel a running job.
    Cancel {
        /// Job id.
        job: String,
    },
    /// Take a savepoint of a running job (it keeps running), or delete one
    /// with `savepoint delete ID`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Savepoint {
        /// Job id.
        #[arg(required = true)]
        job: Option<String>,
        #[command(subcommand)]
        action: Option<SavepointAction>,
    },
    /// Stop a running job: with --savepoint, after a final savepoint that a
    /// new job can start from (`submit --from-savepoint`).
    Stop {
        /// Job id.
        job: String,
        /// Take a final savepoint; sinks commit it before the job stops.
        #[arg(long)]
        savepoint: bool,
    },
    /// Change a running job's parallelism: stop it with a savepoint,
    /// redistribute its key groups and partitions, and restart it. A job
    /// waiting for task slots takes the new parallelism at once and waits on.
    Rescale {
        /// Job id.
        job: String,
        /// The new parallelism.
        #[arg(long)]
        parallelism: u32,
    },
    /// List savepoints.
    Savepoints,
    /// List the workers the coordinator knows.
    Workers,
    /// List a job's retained completed checkpoints, newest first.
    Checkpoints {
        /// Job id.
        job: String,
    },
    /// List what happened to a job lately (its last 100 events), oldest
    /// first: source offsets skipped because retention deleted them before
    /// the job read them, or reset after the topic was recreated; partitions
    /// added to the source topic; task failures, with their error and whose
    /// fault it was; restarts; the job's final failure.
    Events {
        /// Job id.
        job: String,
    },
    /// Show the coordinator group (each member's view: role, leader, term,
    /// last log index, applied index, snapshot index), or change its membership.
    Cluster {
        #[command(subcommand)]
        change: Option<ClusterChange>,
    },
}

#[derive(Subcommand, Debug)]
enum SavepointAction {
    /// Delete a savepoint: it is forgotten, and its state snapshots are
    /// deleted from the checkpoint store unless a running job or another
    /// savepoint still uses them. Jobs started from it run on.
    Delete {
        /// Savepoint id, as printed by `savepoint` or `savepoints`.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterChange {
    /// Add a coordinator as a learner; returns once it caught up with the log.
    AddLearner {
        /// Its number in the group.
        id: u64,
        /// Its address (host:port).
        address: String,
    },
    /// Make a learner a voting member.
    Promote {
        /// Its number in the group.
        id: u64,
    },
    /// Take a member out of the group.
    Remove {
        /// Its number in the group.
        id: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli =
        parse_cli(std::env::args_os(), |name| std::env::var_os(name)).unwrap_or_else(|e| e.exit());
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A gRPC error reduced to what the server said; other errors with their causes.
/// An UNAVAILABLE the client made itself (no connection: it keeps the
/// transport error as its source) is the coordinator out of reach; one the
/// coordinator answered (a broker the spec names did not answer) is shown
/// as it said.
fn one_line(e: &anyhow::Error) -> String {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        let from_transport = std::error::Error::source(status).is_some()
            || status.message().is_empty()
            || status.message().contains("transport error");
        return match status.code() {
            tonic::Code::Unavailable if from_transport => {
                "coordinator unreachable: is it running, and is --coordinator / SLUICE_COORDINATOR right?".into()
            }
            _ => status.message().to_string(),
        };
    }
    format!("{e:#}")
}

/// Shows a job's status every `interval` until Ctrl-C, or until the job
/// ended (its last status shown). A coordinator that does not answer for a
/// while (a leader change) is waited for; an unknown job ends the watch.
async fn watch_status(
    coordinators: &Coordinators,
    out: &output::Printer,
    job: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = ticks.tick() => {}
        }
        let status = coordinators
            .call(|mut c| {
                let job_id = job.to_string();
                async move { c.get_job(GetJobRequest { job_id }).await }
            })
            .await;
        match status {
            Ok(status) => {
                out.watch_frame(&status, interval);
                let ended = JobState::try_from(status.state).is_ok_and(|s| {
                    matches!(
                        s,
                        JobState::Failed
                            | JobState::Cancelled
                            | JobState::Finished
                            | JobState::Stopped
                    )
                });
                if ended {
                    return Ok(());
                }
            }
            Err(e)
                if e.downcast_ref::<tonic::Status>().map(|s| s.code())
                    == Some(tonic::Code::NotFound) =>
            {
                return Err(e);
            }
            Err(e) => out.watch_error(&one_line(&e)),
        }
    }
}

/// The command line `args`, with each option's environment variable read
/// by `env`: one set but empty (`SLUICE_TLS_CA=` left over in a shell)
/// counts as unset, as for most programs, rather than as an empty value
/// that fails every command or sends an empty token.
fn parse_cli(
    args: impl IntoIterator<Item = std::ffi::OsString>,
    env: impl Fn(&std::ffi::OsStr) -> Option<std::ffi::OsString>,
) -> Result<Cli, clap::Error> {
    let command = Cli::command().mut_args(|arg| {
        let empty = arg
            .get_env()
            .is_some_and(|name| env(name).is_some_and(|v| v.is_empty()));
        if empty { arg.env(None) } else { arg }
    });
    Cli::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// What a rescale of a job waiting for task slots did: no savepoint was
/// taken, so it says what the job starts from once placed.
fn waiting_rescaled(info: &SavepointInfo) -> String {
    let from = match (info.savepoint_id.as_str(), info.checkpoint_id) {
        ("", 0) => "the start of its input (no checkpoint yet)".to_string(),
        ("", checkpoint) => format!("its checkpoint {checkpoint}"),
        (savepoint, 0) => format!("savepoint {savepoint}"),
        (savepoint, checkpoint) => {
            format!("its checkpoint {checkpoint} (taken since savepoint {savepoint})")
        }
    };
    format!(
        "{} waits for task slots, now at parallelism {}; once placed it starts from {from}",
        info.job_id, info.parallelism
    )
}

fn humantime_arg(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("`{s}` is not a duration such as 2s or 500ms: {e}")),
    }
}

/// Most calls answer at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A savepoint waits for a checkpoint, a stop also for the job's tasks to end.
const SAVEPOINT_TIMEOUT: Duration = Duration::from_secs(300);

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = output::Printer { format: cli.output };
    let token = cli.token.clone();
    let tls = sluice_proto::tls::Tls::from_flags(
        cli.tls_ca.as_deref(),
        cli.tls_cert.as_deref(),
        cli.tls_key.as_deref(),
    )?;
    let at = |timeout| {
        Coordinators::new(
            cli.coordinator.clone(),
            timeout,
            token.as_deref(),
            tls.clone(),
        )
    };
    match cli.command {
        Command::Submit {
            file,
            from_savepoint,
            parallelism,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read job spec {}", file.display()))?;
            let mut spec_json = resolve_client_side(&text, &|name| std::env::var(name).ok())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(p) = parallelism {
                let mut tree: serde_json::Value = serde_json::from_str(&spec_json)?;
                if let Some(obj) = tree.as_object_mut() {
                    obj.insert("parallelism".into(), p.into());
                }
                spec_json = tree.to_string();
            }
            let req = SubmitJobRequest {
                spec_json,
                from_savepoint: from_savepoint.unwrap_or_default(),
            };
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.submit_job(req).await }
                })
                .await?;
            out.submitted(&resp.job_id);
        }
        Command::Savepoint {
            action: Some(SavepointAction::Delete { id }),
            ..
        } => {
            let info = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let savepoint_id = id.clone();
                    async move {
                        c.delete_savepoint(DeleteSavepointRequest { savepoint_id })
                            .await
                    }
                })
                .await?;
            out.savepoint(&info, "deleted");
        }
        Command::Savepoint { job, action: None } => {
            let job = job.unwrap_or_default();
            let info = at(SAVEPOINT_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move {
                        c.trigger_savepoint(TriggerSavepointRequest { job_id })
                            .await
                    }
                })
                .await?;
            out.savepoint(&info, "taken");
        }
        Command::Stop { job, savepoint } => {
            if !savepoint {
                anyhow::bail!(
                    "stop needs --savepoint (to end a job without one, use `jobctl cancel {job}`)"
                );
            }
            let info = at(SAVEPOINT_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move { c.stop_job(StopJobRequest { job_id }).await }
                })
                .await?;
            out.savepoint(&info, "stopped");
        }
        Command::Rescale { job, parallelism } => {
            let info = at(SAVEPOINT_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move {
                        c.rescale_job(RescaleJobRequest {
                            job_id,
                            parallelism,
                        })
                        .await
                    }
                })
                .await?;
            if info.waiting_for_slots && out.format == Format::Table {
                say!("{}", waiting_rescaled(&info));
            } else {
                out.savepoint(
                    &info,
                    &format!("restarting at parallelism {parallelism} from"),
                );
            }
        }
        Command::Savepoints => {
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| async move { c.list_savepoints(ListSavepointsRequest {}).await })
                .await?;
            out.savepoints(&resp.savepoints);
        }
        Command::List => {
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| async move { c.list_jobs(ListJobsRequest {}).await })
                .await?;
            out.jobs(&resp.jobs);
        }
        Command::Status {
            job, watch: false, ..
        } => {
            let status = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move { c.get_job(GetJobRequest { job_id }).await }
                })
                .await?;
            out.status(&status);
        }
        Command::Status {
            job,
            watch: true,
            interval,
        } => watch_status(&at(REQUEST_TIMEOUT)?, &out, &job, interval).await?,
        Command::Cancel { job } => {
            let status = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move { c.cancel_job(CancelJobRequest { job_id }).await }
                })
                .await?;
            out.status(&status);
        }
        Command::Checkpoints { job } => {
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move { c.list_checkpoints(ListCheckpointsRequest { job_id }).await }
                })
                .await?;
            out.checkpoints(&resp);
        }
        Command::Events { job } => {
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| {
                    let job_id = job.clone();
                    async move { c.list_job_events(ListJobEventsRequest { job_id }).await }
                })
                .await?;
            out.events(&resp.events);
        }
        Command::Workers => {
            let resp = at(REQUEST_TIMEOUT)?
                .call(|mut c| async move { c.list_workers(ListWorkersRequest {}).await })
                .await?;
            out.workers(&resp.workers);
        }
        Command::Cluster { change: None } => {
            let views = at(REQUEST_TIMEOUT)?
                .each(|mut c| async move { c.cluster_info(ClusterInfoRequest {}).await })
                .await;
            out.cluster(&views);
        }
        Command::Cluster {
            change: Some(change),
        } => {
            let coordinators = at(SAVEPOINT_TIMEOUT)?;
            let info = match change {
                ClusterChange::AddLearner { id, address } => {
                    coordinators
                        .call(|mut c| {
                            let address = address.clone();
                            async move { c.add_learner(AddLearnerRequest { id, address }).await }
                        })
                        .await?
                }
                ClusterChange::Promote { id } => {
                    coordinators
                        .call(|mut c| async move { c.promote_member(MemberRequest { id }).await })
                        .await?
                }
                ClusterChange::Remove { id } => {
                    coordinators
                        .call(|mut c| async move { c.remove_member(MemberRequest { id }).await })
                        .await?
                }
            };
            out.cluster(&[(info.leader_address.clone(), Ok(info))]);
        }
    }
    Ok(())
}
