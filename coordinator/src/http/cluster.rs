//! The cluster calls of the HTTP API: savepoints across jobs, workers and
//! the coordinator group.

use super::error::ApiError;
use super::model::{Cluster, Savepoint, Worker};
use super::{Api, JsonResult};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};

/// Every savepoint, by id.
#[utoipa::path(
    get, path = "/api/savepoints", tag = "savepoints",
    responses(
        (status = 200, body = [Savepoint]),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn savepoints(State(api): State<Api>) -> JsonResult<Vec<Savepoint>> {
    Ok(Json(
        api.savepoints()?.into_iter().map(Savepoint::from).collect(),
    ))
}

/// Deletes a savepoint: it is forgotten, and its state snapshots are
/// deleted from the checkpoint store unless a running job or another
/// savepoint uses them. Answers with the savepoint deleted.
#[utoipa::path(
    delete, path = "/api/savepoints/{savepoint_id}", tag = "savepoints",
    params(("savepoint_id" = String, Path, description = "Savepoint id")),
    responses(
        (status = 200, body = Savepoint),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such savepoint", body = ApiError),
        (status = 503, description = "No leader, or the change was not recorded", body = ApiError),
    )
)]
pub async fn delete_savepoint(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Savepoint> {
    let Path(id) = id.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(api.delete_savepoint(&id).await?.into()))
}

/// The workers the leader knows, with their slots and tasks.
#[utoipa::path(
    get, path = "/api/workers", tag = "cluster",
    responses(
        (status = 200, body = [Worker]),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn workers(State(api): State<Api>) -> JsonResult<Vec<Worker>> {
    Ok(Json(api.workers()?.into_iter().map(Worker::from).collect()))
}

/// The coordinator group as the answering member sees it: its members,
/// the leader, the Raft term and indexes. Any member answers, leader or not.
#[utoipa::path(
    get, path = "/api/cluster", tag = "cluster",
    responses((status = 200, body = Cluster))
)]
pub async fn cluster(State(api): State<Api>) -> Json<Cluster> {
    Json(api.cluster_view().into())
}
