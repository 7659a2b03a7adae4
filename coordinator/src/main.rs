//! The Sluice coordinator: accepts jobs, keeps the worker registry, places
//! subtasks on worker slots and tracks their state.

mod auth;
mod cassandra_meta;
mod checkpoints;
mod cluster_service;
mod discovery;
mod error;
mod exposition;
mod http;
mod job_service;
mod kafka_meta;
mod members_only;
mod meta;
mod monitor;
mod raft;
mod raft_service;
mod registry;
mod scheduler;
mod snapshot_gc;
mod state;
mod stopped_lag;
mod submit_checks;
mod subscribers;
mod transactions;

use anyhow::Context;
use clap::Parser;
use members_only::MembersOnly;
use sluice_proto::cluster_service_server::ClusterServiceServer;
use sluice_proto::job_service_server::JobServiceServer;
use sluice_proto::raft_service_server::RaftServiceServer;
use sluice_proto::tls::Tls;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_stream::StreamExt;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Sluice coordinator: accepts jobs and runs them on workers"
)]
struct Args {
    /// Address to serve JobService, ClusterService and RaftService on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// This coordinator's number in its group (1 or more). By default the
    /// id --peers gives this coordinator's --advertise address (so members
    /// of a Kubernetes StatefulSet need no id of their own), else 1.
    #[arg(long, env = "SLUICE_COORDINATOR_ID", value_parser = clap::value_parser!(u64).range(1..))]
    id: Option<u64>,
    /// Every member of the group as ID=HOST:PORT, comma-separated, this one
    /// included, such as `1=10.0.0.1:7400,2=10.0.0.2:7400,3=10.0.0.3:7400`.
    /// Empty: a group of one, at --advertise. The lowest id initialises a new
    /// group once every other member answered that it belongs to none.
    #[arg(long, env = "SLUICE_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Address the others reach this coordinator at; --listen by default.
    #[arg(long, env = "SLUICE_ADVERTISE")]
    advertise: Option<String>,
    /// Where this coordinator keeps its Raft log and snapshots; a restart
    /// with the same directory keeps every job and checkpoint.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Log entries between two snapshots of the state machine; after each,
    /// the log is compacted, and a member too far behind gets the snapshot.
    #[arg(long, env = "SLUICE_SNAPSHOT_EVERY", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_every: u64,
    /// How often workers send heartbeats.
    #[arg(long, value_parser = humantime_arg, default_value = "500ms")]
    heartbeat_interval: Duration,
    /// A worker silent for this long is declared lost and its tasks failed.
    #[arg(long, value_parser = humantime_arg, default_value = "5s")]
    heartbeat_timeout: Duration,
    /// Where workers upload state snapshots (a directory, or `s3://bucket/prefix`
    /// with the `AWS_*` variables); snapshots of checkpoints no longer retained,
    /// and those of checkpoints that never completed, are deleted from here.
    /// Workers must name the same place.
    #[arg(long, env = "SLUICE_CHECKPOINT_STORE", default_value_t = sluice_common::store::default_location())]
    checkpoint_store: String,
    /// Turns authentication of client calls on: a file of `ROLE TOKEN`
    /// lines (ROLE `read-only` or `operator`), read again when it changes.
    /// Every JobService call then needs `authorization: Bearer TOKEN`.
    /// Without it, every call is taken, as from an operator.
    #[arg(long, env = "SLUICE_AUTH_TOKENS")]
    auth_tokens: Option<std::path::PathBuf>,
    /// The cluster's CA certificate (PEM): turns TLS on. Clients are then
    /// served over TLS only; workers and other coordinators must show a
    /// certificate this CA signed, and this coordinator's peers are verified
    /// with it.
    #[arg(long, env = "SLUICE_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// This coordinator's certificate (PEM), signed by --tls-ca, naming the
    /// host names or IP addresses it is reached at; needed with --tls-ca.
    #[arg(long, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "SLUICE_TLS_KEY")]
    tls_key: Option<std::path::PathBuf>,
    /// Address to serve Prometheus metrics on (`GET /metrics`); none when
    /// not given. Port 0 picks a free one, which the log names.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Address to serve the HTTP API (`/api/...`, its OpenAPI document at
    /// `/api/openapi.json`) on, such as 127.0.0.1:7480; none by default.
    #[arg(long, env = "SLUICE_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Address HTTP clients reach this coordinator's API at, where followers
    /// send them on to the leader; --http-listen by default.
    #[arg(long, env = "SLUICE_HTTP_ADVERTISE", requires = "http_listen")]
    http_advertise: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// `~/.local/share/sluice/coordinator-<id>`.
fn default_data_dir(id: u64) -> std::path::PathBuf {
    let base = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join(format!(".local/share/sluice/coordinator-{id}"))
}

/// This coordinator's id: `--id`, else the id `members` (from --peers)
/// give its advertised address, else 1.
fn own_id(id: Option<u64>, members: &BTreeMap<u64, String>, advertise: &str) -> u64 {
    id.or_else(|| {
        members
            .iter()
            .find(|(_, address)| address.as_str() == advertise)
            .map(|(id, _)| *id)
    })
    .unwrap_or(1)
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
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| args.listen.to_string());
    let mut members = BTreeMap::new();
    for peer in &args.peers {
        let (id, addr) = peer
            .split_once('=')
            .and_then(|(id, addr)| Some((id.trim().parse::<u64>().ok()?, addr.trim().to_string())))
            .with_context(|| format!("--peers: `{peer}` is not ID=HOST:PORT"))?;
        members.insert(id, addr);
    }
    let id = own_id(args.id, &members, &advertise);
    if members.is_empty() {
        members.insert(id, advertise.clone());
    }
    anyhow::ensure!(
        members.contains_key(&id),
        "--peers does not name this coordinator's id {id} (give --id, or an --advertise \
         address that --peers names)"
    );
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(id));
    let tls = Tls::from_flags(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    anyhow::ensure!(
        tls.as_ref().is_none_or(Tls::has_identity),
        "--tls-ca needs --tls-cert and --tls-key: a coordinator serves TLS with its own certificate"
    );
    // The HTTP API and metrics serve HTTPS with the same certificate.
    let https = match &tls {
        Some(tls) => tls.https_server()?,
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let store = raft::RaftStore::start(id, &data_dir, args.snapshot_every, tls.clone())
        .await
        .with_context(|| {
            format!(
                "cannot open the coordinator's data in {}",
                data_dir.display()
            )
        })?;
    let tokens = match &args.auth_tokens {
        Some(path) => Some(auth::TokenFile::open(path.clone())?),
        None => None,
    };
    let own_token = tokens.as_ref().map(|t| t.current().any().to_string());
    raft::bootstrap::join_or_initialize(
        &store.raft,
        id,
        &members,
        &advertise,
        &data_dir,
        own_token.as_deref(),
        tls.as_ref(),
    )
    .await?;
    let raft_handle = store.raft.clone();
    let state = state::Coordinator::new(
        store,
        state::Timing {
            heartbeat_interval: args.heartbeat_interval,
            heartbeat_timeout: args.heartbeat_timeout,
        },
        sluice_common::store::CheckpointStore::open(&args.checkpoint_store)?,
    );
    if let Some(address) = args.metrics_listen {
        let metrics = sluice_common::metrics::Metrics::new(exposition::CoordinatorMetrics {
            state: state.clone(),
            raft: raft_handle.clone(),
        });
        let bound = sluice_common::metrics::start(address, metrics, https.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {address}"))?;
        tracing::info!(metrics_address = %bound, "serving metrics");
    }
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        id,
        data_dir = %data_dir.display(),
        authentication = tokens.is_some(),
        tls = tls.is_some(),
        "coordinator listening"
    );
    if let Some(tokens) = &tokens {
        tokio::spawn(tokens.clone().watch());
    }
    let http_listener = match args.http_listen {
        Some(http) => Some(
            tokio::net::TcpListener::bind(http)
                .await
                .with_context(|| format!("cannot listen on {http} (--http-listen)"))?,
        ),
        None => None,
    };
    let http_address = match &http_listener {
        Some(l) => Some(match args.http_advertise.clone() {
            Some(a) => a,
            None => l.local_addr()?.to_string(),
        }),
        None => None,
    };
    let job_api = job_service::JobApi {
        state: state.clone(),
        raft: raft_handle.clone(),
        http_address: http_address.clone(),
    };
    if let (Some(listener), Some(http_address)) = (http_listener, http_address) {
        tracing::info!(addr = %http_address, "HTTP API listening");
        let api = job_api.clone();
        let (tokens, tls, https) = (tokens.clone(), tls.clone(), https.clone());
        tokio::spawn(async move {
            if let Err(e) = http::serve(
                listener,
                api,
                tokens,
                tls,
                https,
                sluice_common::process::shutdown_signal(),
            )
            .await
            {
                tracing::error!(error = %e, "HTTP API stopped");
            }
        });
    }
    tokio::spawn(monitor::run(state.clone()));
    tokio::spawn(checkpoints::run(state.clone()));
    tokio::spawn(transactions::run(state.clone()));
    tokio::spawn(discovery::run(state.clone()));
    tokio::spawn(stopped_lag::run(state.clone()));
    // gRPC over TLS connections accepted here rather than by tonic, so
    // that a renewed certificate is served without a restart; clients may
    // show a certificate (members) or none (jobctl).
    let grpc_tls = match &tls {
        Some(tls) => tls.grpc_server(false)?,
        None => None,
    };
    let router = tonic::transport::Server::builder()
        .add_service(auth::Authenticated::new(
            JobServiceServer::new(job_api),
            tokens,
        ))
        .add_service(MembersOnly::new(
            ClusterServiceServer::new(cluster_service::ClusterApi { state }),
            tls.is_some(),
        ))
        .add_service(MembersOnly::new(
            RaftServiceServer::new(raft_service::RaftApi {
                raft: raft_handle.clone(),
            }),
            tls.is_some(),
        ));
    match grpc_tls {
        Some(config) => {
            let connections = sluice_common::https::accept_tls(listener, config);
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::ReceiverStream::new(connections)
                        .map(|(stream, _)| Ok::<_, std::io::Error>(stream)),
                    sluice_common::process::shutdown_signal(),
                )
                .await?
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    sluice_common::process::shutdown_signal(),
                )
                .await?
        }
    }
    let _ = raft_handle.shutdown().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::own_id;
    use std::collections::BTreeMap;

    #[test]
    fn the_id_comes_from_the_flag_else_from_the_advertised_address_in_peers() {
        let members: BTreeMap<u64, String> = (1..=3)
            .map(|n| (n, format!("sluice-coordinator-{}.sluice:7400", n - 1)))
            .collect();
        assert_eq!(
            own_id(None, &members, "sluice-coordinator-2.sluice:7400"),
            3
        );
        assert_eq!(
            own_id(Some(2), &members, "sluice-coordinator-2.sluice:7400"),
            2
        );
        assert_eq!(own_id(None, &members, "elsewhere:7400"), 1);
        assert_eq!(own_id(None, &BTreeMap::new(), "127.0.0.1:7400"), 1);
    }
}
