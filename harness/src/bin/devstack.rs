//! The local stack: Kafka, Cassandra, MinIO, a coordinator and workers on 127.0.0.1.

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::{DevStack, StackOptions, admin};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Run Sluice's local stack and set up pipelines on it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install on first use and start everything; print `NAME=VALUE` per address,
    /// then `READY`; stop everything on SIGINT or SIGTERM.
    Up {
        /// Workers to start.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Task slots per worker.
        #[arg(long, default_value_t = 4)]
        slots: u32,
        /// Coordinators: 1, or 3 for a Raft group that survives the loss of one.
        #[arg(long, default_value_t = 1, value_parser = group_size)]
        coordinators: usize,
        /// Use this Kafka broker instead of starting one.
        #[arg(long)]
        kafka: Option<String>,
        /// Use this Cassandra (host:port) instead of starting one.
        #[arg(long)]
        cassandra: Option<String>,
        /// Do not start Cassandra.
        #[arg(long)]
        no_cassandra: bool,
        /// Do not start MinIO (the S3-compatible server).
        #[arg(long)]
        no_s3: bool,
        /// Start Kafka, Cassandra and MinIO only, no coordinator or workers.
        #[arg(long)]
        no_sluice: bool,
        /// Directory for data and logs; a fresh temporary one by default.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Turn TLS on: make a throwaway CA and a member certificate under
        /// DIR/tls, start every coordinator and worker with them, and print
        /// SLUICE_TLS_CA for jobctl.
        #[arg(long)]
        tls: bool,
        /// Turn authentication on with this tokens file (`ROLE TOKEN` lines);
        /// give jobctl a token of it with --token or SLUICE_TOKEN.
        #[arg(long)]
        auth_tokens: Option<PathBuf>,
        /// Coordinators and workers serve Prometheus metrics, each on a free
        /// port, printed as SLUICE_METRICS (comma-separated).
        #[arg(long)]
        metrics: bool,
    },
    /// Create a Kafka topic (an existing one is left as it is).
    Topic {
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BROKER")]
        brokers: String,
        /// Topic name.
        name: String,
        /// Partitions of a new topic.
        #[arg(long, default_value_t = 3)]
        partitions: i32,
    },
    /// Run the statements of a CQL file.
    Cql {
        /// Cassandra address, host:port.
        #[arg(long, env = "CASSANDRA_HOST")]
        host: String,
        /// File of `;`-separated CQL statements.
        file: PathBuf,
    },
    /// Print the first column of a CQL query's first row (for example a count).
    Query {
        /// Cassandra address, host:port.
        #[arg(long, env = "CASSANDRA_HOST")]
        host: String,
        /// The CQL query.
        query: String,
    },
}

fn group_size(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("`{s}`: a coordinator group has 1 or 3 members")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up {
            workers,
            slots,
            coordinators,
            kafka,
            cassandra,
            no_cassandra,
            no_s3,
            no_sluice,
            dir,
            tls,
            auth_tokens,
            metrics,
        } => {
            let dir = dir.unwrap_or_else(|| {
                std::env::temp_dir().join(format!("sluice-devstack-{}", std::process::id()))
            });
            let tls = if tls {
                Some(sluice_harness::tls::make_ca(
                    &dir.join("tls"),
                    "Sluice devstack CA",
                )?)
            } else {
                None
            };
            let auth_tokens = match auth_tokens {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read tokens file {}", path.display()))?,
                ),
                None => None,
            };
            let options = StackOptions {
                workers,
                kafka,
                cassandra,
                no_cassandra,
                no_s3,
                no_sluice,
                cluster: ClusterOptions {
                    slots,
                    coordinators,
                    tls,
                    // The harness's own calls need a token; any of the file's
                    // roles may make them.
                    token: auth_tokens
                        .as_deref()
                        .and_then(|t| sluice_common::auth::Tokens::parse(t, "--auth-tokens").ok())
                        .map(|t| t.any().to_string()),
                    auth_tokens,
                    metrics,
                    ..Default::default()
                },
            };
            let stack = DevStack::start(dir.clone(), options).await?;
            let mut out = std::io::stdout().lock();
            for (name, value) in stack.addresses() {
                writeln!(out, "{name}={value}")?;
            }
            writeln!(out, "READY")?;
            out.flush()?;
            drop(out);
            eprintln!("logs in {}; stop with Ctrl-C", dir.display());
            sluice_common::process::shutdown_signal().await;
            eprintln!("stopping...");
            drop(stack);
        }
        Command::Topic {
            brokers,
            name,
            partitions,
        } => {
            admin::create_topic(&brokers, &name, partitions).await?;
            eprintln!("topic {name} ready ({partitions} partitions)");
        }
        Command::Cql { host, file } => {
            let text = std::fs::read_to_string(&file)?;
            let session = admin::cassandra_session(&host).await?;
            let n = admin::run_cql(&session, &text).await?;
            eprintln!("{}: {n} statement(s) applied", file.display());
        }
        Command::Query { host, query } => {
            let session = admin::cassandra_session(&host).await?;
            let rows = session.query_unpaged(query, ()).await?.into_rows_result()?;
            let (value,) = rows.first_row::<(scylla::value::CqlValue,)>()?;
            println!("{}", cql_text(&value));
        }
    }
    Ok(())
}

fn cql_text(v: &scylla::value::CqlValue) -> String {
    use scylla::value::CqlValue::*;
    match v {
        BigInt(n) => n.to_string(),
        Int(n) => n.to_string(),
        Text(s) | Ascii(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
