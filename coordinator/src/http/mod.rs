//! The coordinator's HTTP API (`--http-listen`): JSON over HTTP for what
//! `jobctl` does over gRPC, described by an OpenAPI document at
//! `/api/openapi.json`. Every call but `/api/cluster` is the leader's: a
//! follower answers 307 with the leader's HTTP address in `Location`.
//! Every error answer, the HTTP layer's own included (a body over 2 MiB, a
//! URI over 8 KiB, an unknown route), is an [`ApiError`] document. `/` serves the dashboard, a page
//! that polls the API.

mod cluster;
pub mod error;
mod jobs;
mod model;
mod openapi;
mod states;

use crate::auth::TokenFile;
use crate::error::CoordinatorError;
use crate::job_service::JobApi;
use crate::meta::MetaStore;
use crate::raft::RaftStore;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::ApiError;
use sluice_common::auth::Role;
use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::tls::Tls;
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
    let mut doc = ApiDoc::openapi();
    openapi::complete(&mut doc);
    doc
}

/// How a follower asks the leader where it serves HTTP: with a token of
/// the tokens file and over TLS when the cluster has them.
#[derive(Clone)]
struct Forwarding {
    api: Api,
    tokens: Option<TokenFile>,
    tls: Option<Tls>,
}

/// The API's routes over `api`; with `tokens`, every `/api/` call but the
/// OpenAPI document needs a bearer token (see [`authenticate`]). `tls`:
/// how to reach the other coordinators' gRPC.
pub fn router(api: Api, tokens: Option<TokenFile>, tls: Option<Tls>) -> Router {
    let forwarding = Forwarding {
        api: api.clone(),
        tokens: tokens.clone(),
        tls,
    };
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
        .route_layer(middleware::from_fn(known_query))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(forwarding, follow_leader))
        .layer(middleware::from_fn_with_state(tokens, authenticate))
        .layer(middleware::from_fn(limit_uri))
        .layer(middleware::map_response(json_errors))
        .with_state(api)
}

/// Largest request body the API reads, in bytes (a job spec); a larger one
/// is refused with 413.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest request URI (path and query) the API reads, in bytes; a longer
/// one is refused with 414. (Past 64 KiB the HTTP server itself refuses
/// it, with a 414 and no body, before the API sees it.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Refuses query parameters an API route does not take (400 `bad_request`,
/// each at its name), so a mistyped one is not silently ignored: `POST
/// /api/jobs` takes `from_savepoint`, every other route none. The
/// dashboard page is left alone: a browser's address may carry anything.
async fn known_query(request: Request, next: Next) -> Response {
    // A route layer: it only sees paths of the routes above.
    let route = request.uri().path().to_string();
    let takes: &[&str] = match (request.method(), route.as_str()) {
        (&Method::POST, "/api/jobs") => &["from_savepoint"],
        _ => &[],
    };
    let query = request.uri().query().filter(|q| !q.is_empty());
    let Some(query) = query.filter(|_| route.starts_with("/api/")) else {
        return next.run(request).await;
    };
    let pairs = match Query::<Vec<(String, String)>>::try_from_uri(request.uri()) {
        Ok(Query(pairs)) => pairs,
        Err(e) => {
            return ApiError::bad_fields(vec![(
                String::new(),
                format!("the query `{query}`: {}", e.body_text()),
            )])
            .into_response();
        }
    };
    let mut unknown: Vec<&str> = pairs
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !takes.contains(name))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        return next.run(request).await;
    }
    let what = match takes {
        [] => "it takes none".to_string(),
        takes => format!("it takes only {}", takes.join(", ")),
    };
    let method = request.method().clone();
    ApiError::bad_fields(
        unknown
            .into_iter()
            .map(|name| {
                (
                    name.to_string(),
                    format!("is not a query parameter of {method} {route}; {what}"),
                )
            })
            .collect(),
    )
    .into_response()
}

async fn limit_uri(request: Request, next: Next) -> Response {
    let length = request.uri().to_string().len();
    if length > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request URI is {length} bytes, over the API's limit of {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Every error answer in the API's shape: those the HTTP layer makes
/// itself (a body over the limit, a body or query it cannot read) come as
/// plain text or empty, and are rewritten as [`ApiError`]s with their
/// status and text. Answers of the API's own are JSON already, and so
/// are left alone.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    // Rejection texts are short; a longer one is not read.
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    ApiError::from_http(status, &text).into_response()
}

/// The token check of JobService, over HTTP: reading calls (`GET`) need a
/// read-only or operator token, the others an operator token; 401 without
/// an accepted token, 403 with a read-only one on a changing call, each
/// naming the call (`POST /api/jobs`). The dashboard page and the OpenAPI
/// document hold no cluster data and are served to anyone. Checked before
/// a follower sends the call on to the leader.
async fn authenticate(
    State(tokens): State<Option<TokenFile>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = !path.starts_with("/api/") || path == "/api/openapi.json";
    let Some(file) = tokens.filter(|_| !open) else {
        return next.run(request).await;
    };
    let needs = if request.method() == axum::http::Method::GET {
        Role::ReadOnly
    } else {
        Role::Operator
    };
    let call = format!("{} {path}", request.method());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    match file.current().authorize(authorization, &call, needs) {
        Ok(_) => next.run(request).await,
        Err(e) => {
            tracing::info!(call, error = %e, "call refused");
            if !e.unauthenticated() {
                return ApiError::new(StatusCode::FORBIDDEN, "permission_denied", e.to_string())
                    .into_response();
            }
            // RFC 9110: a 401 names the scheme the credentials go in.
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
                    .into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Serves the API on `listener` until `shutdown` completes, over HTTPS
/// with `https` (the coordinator's certificate, see [`Tls::https_server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    tokens: Option<TokenFile>,
    tls: Option<Tls>,
    https: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    sluice_common::https::serve(listener, router(api, tokens, tls), https, shutdown).await
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
/// are kept; `https` when the cluster has TLS, as every coordinator then
/// serves it); 503 when no leader serving HTTP is known.
async fn follow_leader(
    State(forwarding): State<Forwarding>,
    request: Request,
    next: Next,
) -> Response {
    let api = &forwarding.api;
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
    let token = forwarding
        .tokens
        .as_ref()
        .map(|t| t.current().any().to_string());
    let Some(http) = leader_http_address(&leader, token.as_deref(), forwarding.tls.as_ref()).await
    else {
        return ApiError::from(CoordinatorError::NotLeader { leader: None }).into_response();
    };
    let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
    let scheme = if forwarding.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let location = format!("{scheme}://{http}{target}");
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
async fn leader_http_address(
    leader: &str,
    token: Option<&str>,
    tls: Option<&Tls>,
) -> Option<String> {
    let ask = async {
        let channel = sluice_proto::tls::endpoint(leader, tls)
            .ok()?
            .connect()
            .await
            .ok()?;
        let mut request = tonic::Request::new(ClusterInfoRequest {});
        if let Some(token) = token {
            request.metadata_mut().insert(
                "authorization",
                sluice_common::auth::bearer(token).parse().ok()?,
            );
        }
        let info = JobServiceClient::new(channel)
            .cluster_info(request)
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
