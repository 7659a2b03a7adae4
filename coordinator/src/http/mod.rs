//! The coordinator's HTTP API (`--http-listen`): JSON over HTTP for what
//! `jobctl` does over gRPC, described by an OpenAPI document at
//! `/api/openapi.json`. Every call but `/api/cluster` is the leader's: a
//! follower answers 307 with the leader's HTTP address in `Location`.
//! Errors are [`ApiError`] documents. `/` serves the dashboard, a page
//! that polls the API.

mod cluster;
pub mod error;
mod jobs;
mod model;

use crate::error::CoordinatorError;
use crate::job_service::JobApi;
use crate::meta::MetaStore;
use crate::raft::RaftStore;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::ApiError;
use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use std::time::Duration;
use utoipa::OpenApi;

/// What every handler calls: the same operations as the gRPC JobService.
pub type Api = JobApi<RaftStore>;
type JsonResult<T> = Result<Json<T>, ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice coordinator API",
        description = "Jobs, checkpoints, savepoints, workers and the coordinator group of a \
                       Sluice cluster. Calls go to the leader; a follower answers 307 with the \
                       leader's address. Errors are ApiError documents."
    ),
    paths(
        jobs::list, jobs::submit, jobs::get, jobs::cancel, jobs::stop, jobs::rescale,
        jobs::checkpoints, jobs::savepoints, jobs::trigger_savepoint, jobs::events,
        cluster::savepoints, cluster::delete_savepoint, cluster::workers, cluster::cluster,
    ),
    tags(
        (name = "jobs", description = "Submit, inspect and steer jobs"),
        (name = "checkpoints", description = "A job's completed checkpoints"),
        (name = "savepoints", description = "Checkpoints kept until deleted"),
        (name = "cluster", description = "Workers and coordinators"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API's routes over `api`.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/openapi.json", get(|| async { Json(openapi()) }))
        .route("/api/jobs", get(jobs::list).post(jobs::submit))
        .route("/api/jobs/{job_id}", get(jobs::get))
        .route("/api/jobs/{job_id}/cancel", post(jobs::cancel))
        .route("/api/jobs/{job_id}/stop", post(jobs::stop))
        .route("/api/jobs/{job_id}/rescale", post(jobs::rescale))
        .route("/api/jobs/{job_id}/checkpoints", get(jobs::checkpoints))
        .route(
            "/api/jobs/{job_id}/savepoints",
            get(jobs::savepoints).post(jobs::trigger_savepoint),
        )
        .route("/api/jobs/{job_id}/events", get(jobs::events))
        .route("/api/savepoints", get(cluster::savepoints))
        .route(
            "/api/savepoints/{savepoint_id}",
            delete(cluster::delete_savepoint),
        )
        .route("/api/workers", get(cluster::workers))
        .route("/api/cluster", get(cluster::cluster))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(api.clone(), follow_leader))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The dashboard: one page of HTML, CSS and JavaScript that polls this API
/// and shows jobs, a job's stages, checkpoints and failures, workers and
/// coordinators.
async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard/index.html"))
}

/// The job id of a path, or a 400 for a path that cannot be one.
fn job_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such resource: {} (see /api/openapi.json)",
            request.uri().path()
        ),
    )
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// On a follower, sends every call but the group's view and the API's
/// document on to the leader's HTTP address (307, so the method and body
/// are kept); 503 when no leader serving HTTP is known.
async fn follow_leader(State(api): State<Api>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let any_member = matches!(path, "/api/cluster" | "/api/openapi.json");
    if any_member {
        return next.run(request).await;
    }
    let leader = match api.state.store.check_leader() {
        Ok(()) => return next.run(request).await,
        Err(CoordinatorError::NotLeader {
            leader: Some(leader),
        }) => leader,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(http) = leader_http_address(&leader).await else {
        return ApiError::from(CoordinatorError::NotLeader { leader: None }).into_response();
    };
    let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
    let location = format!("http://{http}{target}");
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => ApiError::from(CoordinatorError::NotLeader { leader: None }).into_response(),
    }
}

/// How long a follower waits for the leader to say where it serves HTTP.
const LEADER_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP address of the leader at gRPC address `leader`, as it says
/// itself; `None` when it does not answer or serves no HTTP.
async fn leader_http_address(leader: &str) -> Option<String> {
    let ask = async {
        let mut client = JobServiceClient::connect(format!("http://{leader}"))
            .await
            .ok()?;
        let info = client
            .cluster_info(ClusterInfoRequest {})
            .await
            .ok()?
            .into_inner();
        Some(info.http_address).filter(|a| !a.is_empty())
    };
    tokio::time::timeout(LEADER_ASK_TIMEOUT, ask)
        .await
        .ok()
        .flatten()
}
