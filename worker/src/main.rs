//! The Sluice worker: registers with the coordinator, runs the subtasks it is
//! given and exchanges records with other workers.

mod connectors;
mod control;
mod coordinators;
mod error;
mod exchange;
mod operators;
mod record;
mod runtime;
mod state;

use anyhow::Context;
use clap::Parser;
use exchange::{ExchangeServer, Inboxes, Peers};
use runtime::{RuntimeContext, TaskManager};
use sluice_proto::exchange_service_server::ExchangeServiceServer;
use sluice_proto::tls::Tls;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_stream::StreamExt;

/// Every record allocates and frees small values (its fields, its JSON);
/// mimalloc does that at a fraction of the system allocator's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Sluice worker: runs the subtasks the coordinator assigns"
)]
struct Args {
    /// Coordinator addresses (host:port or URL), comma-separated: every
    /// member of the group, or some; the worker finds and follows the leader.
    #[arg(
        long,
        env = "SLUICE_COORDINATOR",
        default_value = "127.0.0.1:7400",
        value_delimiter = ','
    )]
    coordinator: Vec<String>,
    /// Address to serve the data exchange on; port 0 picks a free one.
    #[arg(long, env = "SLUICE_DATA_LISTEN", default_value = "127.0.0.1:0")]
    data_listen: SocketAddr,
    /// Address other workers use to reach this one, when it differs from the
    /// listening address (containers, NAT).
    #[arg(long, env = "SLUICE_DATA_ADVERTISE")]
    data_advertise: Option<String>,
    /// Task slots this worker offers; a job of parallelism p takes p slots.
    #[arg(long, env = "SLUICE_SLOTS", default_value_t = 4)]
    slots: u32,
    /// Where state snapshots are uploaded: a directory, or `s3://bucket/prefix`
    /// with the `AWS_*` variables for endpoint and credentials. Every worker
    /// and coordinator of a cluster must name the same place.
    #[arg(long, env = "SLUICE_CHECKPOINT_STORE", default_value_t = sluice_common::store::default_location())]
    checkpoint_store: String,
    /// A directory with one file per secret, as Kubernetes mounts a Secret:
    /// a spec's `${NAME}` in a secret field is the content of file NAME (less
    /// one trailing newline). Looked in first.
    #[arg(long, env = "SLUICE_SECRETS_DIR")]
    secrets_dir: Option<std::path::PathBuf>,
    /// A file of NAME=VALUE lines giving secrets; looked in after
    /// --secrets-dir and before the environment.
    #[arg(long, env = "SLUICE_SECRETS_FILE")]
    secrets_file: Option<std::path::PathBuf>,
    /// The cluster's CA certificate (PEM): turns TLS on. The worker then
    /// verifies coordinators and other workers with it, and its data exchange
    /// takes records only from clients showing a certificate it signed.
    #[arg(long, env = "SLUICE_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// This worker's certificate (PEM), signed by --tls-ca, naming the host
    /// name or IP address of its --data-advertise address; needed with
    /// --tls-ca, to serve the exchange and to register.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// Verify other workers' certificates against this name instead of the
    /// host of their data address: for addresses no certificate names in
    /// advance, such as Kubernetes pod IPs. Every worker's certificate must
    /// then name it.
    #[arg(long, env = "SLUICE_TLS_PEER_NAME", requires = "tls_ca")]
    tls_peer_name: Option<String>,
    /// Address to serve Prometheus metrics on (`GET /metrics`); none when
    /// not given. Port 0 picks a free one, which the log names.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    sluice_common::process::init_tracing(args.log_json);
    // Named failpoints of the checkpoint protocol, set through the FAILPOINTS
    // environment variable (for example `sink-before-commit=return`); the
    // failure-injection tests use them.
    match std::env::var("FAILPOINTS") {
        Ok(text) => arm_failpoints(&text)?,
        Err(std::env::VarError::NotPresent) => {}
        Err(e) => anyhow::bail!("FAILPOINTS: {e}"),
    }
    let tls = Tls::from_flags(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    anyhow::ensure!(
        tls.as_ref().is_none_or(Tls::has_identity),
        "--tls-ca needs --tls-cert and --tls-key: a worker proves it is a member with its certificate"
    );
    let listener = tokio::net::TcpListener::bind(args.data_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.data_listen))?;
    let data_address = match args.data_advertise {
        Some(a) => a,
        None => listener.local_addr()?.to_string(),
    };
    tracing::info!(%data_address, slots = args.slots, tls = tls.is_some(), "worker starting");
    let inboxes = Arc::new(Inboxes::default());
    let ctx = Arc::new(RuntimeContext {
        inboxes: inboxes.clone(),
        peers: Peers::new(tls.clone(), args.tls_peer_name.clone()),
        own_address: data_address.clone(),
        store: sluice_common::store::CheckpointStore::open(&args.checkpoint_store)?,
        secrets: sluice_common::secrets::Secrets {
            dir: args.secrets_dir,
            file: args.secrets_file,
        },
    });
    let (changes_tx, changes_rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks = TaskManager::new(ctx, changes_tx);
    if let Some(address) = args.metrics_listen {
        let metrics = sluice_common::metrics::Metrics::new(runtime::WorkerMetrics {
            tasks: tasks.clone(),
        });
        // Served over HTTPS with the worker's certificate when TLS is on.
        let https = match &tls {
            Some(tls) => tls.https_server()?,
            None => None,
        };
        let bound = sluice_common::metrics::start(address, metrics, https)
            .await
            .with_context(|| format!("cannot serve metrics on {address}"))?;
        tracing::info!(metrics_address = %bound, "serving metrics");
    }
    // A stream's window bounds what one stalled sender can park here; the
    // connection window is only credit, large so stalled streams never starve
    // the others sharing a connection. Keepalive finds half-open peers.
    // Over TLS, connections are accepted here rather than by tonic, so that
    // a renewed certificate is served without a restart; only clients
    // showing a certificate the CA signed complete the handshake.
    let grpc_tls = match &tls {
        Some(tls) => tls.grpc_server(true)?,
        None => None,
    };
    let router = tonic::transport::Server::builder()
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 30)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .add_service(
            ExchangeServiceServer::new(ExchangeServer { inboxes })
                .max_decoding_message_size(exchange::MAX_RECEIVED_FRAME_BYTES),
        );
    let server = async move {
        match grpc_tls {
            Some(config) => {
                let connections = sluice_common::https::accept_tls(listener, config);
                router
                    .serve_with_incoming(
                        tokio_stream::wrappers::ReceiverStream::new(connections)
                            .map(|(stream, _)| Ok::<_, std::io::Error>(stream)),
                    )
                    .await
            }
            None => {
                router
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
            }
        }
    };
    let control = control::Control {
        coordinators: coordinators::Coordinators::new(&args.coordinator, tls.as_ref())?,
        data_address,
        slots: args.slots,
        tasks: tasks.clone(),
    };
    tokio::select! {
        r = server => r.context("exchange server stopped")?,
        r = control.run(changes_rx) => r?,
        () = sluice_common::process::shutdown_signal() => {
            tracing::info!("worker stopping");
            tasks.cancel_all();
        }
    }
    Ok(())
}

/// Arms the failpoints `text` names, `NAME=ACTIONS` separated by `;` (the
/// `fail` crate's syntax, such as `sink-before-commit=2*off->return`).
/// Errors name the entry at fault, so that a worker given a malformed one
/// stops with that message rather than a panic.
fn arm_failpoints(text: &str) -> anyhow::Result<()> {
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, actions) = entry
            .split_once('=')
            .with_context(|| format!("FAILPOINTS: `{entry}` is no NAME=ACTIONS"))?;
        fail::cfg(name.trim(), actions.trim())
            .map_err(|e| anyhow::anyhow!("FAILPOINTS: `{entry}`: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_failpoint_is_an_error_naming_its_entry() {
        for (text, names) in [
            ("nonsense", "`nonsense` is no NAME=ACTIONS"),
            ("a-point=return; b-point=retrun", "`b-point=retrun`"),
        ] {
            let error = arm_failpoints(text).unwrap_err().to_string();
            assert!(error.contains(names), "{error}");
        }
        arm_failpoints(" ; c-point=2*off->return ;").unwrap();
        fail::remove("c-point");
        fail::remove("a-point");
    }
}
