//! The Sluice coordinator: accepts jobs, keeps the worker registry, places
//! subtasks on worker slots and tracks their state.

mod checkpoints;
mod cluster_service;
mod error;
mod job_service;
mod kafka_meta;
mod meta;
mod monitor;
mod registry;
mod scheduler;
mod state;
mod subscribers;

use anyhow::Context;
use clap::Parser;
use sluice_proto::cluster_service_server::ClusterServiceServer;
use sluice_proto::job_service_server::JobServiceServer;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Sluice coordinator: accepts jobs and runs them on workers"
)]
struct Args {
    /// Address to serve JobService and ClusterService on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// How often workers send heartbeats.
    #[arg(long, value_parser = humantime_arg, default_value = "500ms")]
    heartbeat_interval: Duration,
    /// A worker silent for this long is declared lost and its tasks failed.
    #[arg(long, value_parser = humantime_arg, default_value = "5s")]
    heartbeat_timeout: Duration,
    /// Where workers upload state snapshots (a directory, or `s3://bucket/prefix`
    /// with the `AWS_*` variables); snapshots of checkpoints no longer retained
    /// are deleted from here. Workers must name the same place.
    #[arg(long, env = "SLUICE_CHECKPOINT_STORE", default_value_t = sluice_common::store::default_location())]
    checkpoint_store: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn humantime_arg(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration such as 5s or 500ms: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sluice_common::process::init_tracing(args.log_json);
    if args.heartbeat_timeout <= args.heartbeat_interval {
        anyhow::bail!(
            "--heartbeat-timeout ({:?}) must be longer than --heartbeat-interval ({:?})",
            args.heartbeat_timeout,
            args.heartbeat_interval
        );
    }
    let state = state::Coordinator::new(
        meta::MemStore::default(),
        state::Timing {
            heartbeat_interval: args.heartbeat_interval,
            heartbeat_timeout: args.heartbeat_timeout,
        },
        sluice_common::store::CheckpointStore::open(&args.checkpoint_store)?,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "coordinator listening");
    tokio::spawn(monitor::run(state.clone()));
    tokio::spawn(checkpoints::run(state.clone()));
    tonic::transport::Server::builder()
        .add_service(JobServiceServer::new(job_service::JobApi {
            state: state.clone(),
        }))
        .add_service(ClusterServiceServer::new(cluster_service::ClusterApi {
            state,
        }))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            sluice_common::process::shutdown_signal(),
        )
        .await?;
    tracing::info!("coordinator stopped");
    Ok(())
}
