//! The job calls of the HTTP API: submit, list, inspect, cancel, stop,
//! rescale, and a job's checkpoints, savepoints and events.

use super::error::ApiError;
use super::model::{Checkpoints, Event, Job, Rescale, Savepoint, Submitted};
use super::{Api, JsonResult, job_id};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::IntoParams;

/// Where a submitted job starts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// Start from this savepoint's source offsets and keyed state.
    from_savepoint: Option<String>,
}

/// Submits a job: a Sluice job spec in YAML or JSON, or seed 004's job
/// configuration. It is validated whole, with the systems it names, before
/// anything runs; every problem comes back at its field path.
/// `${VAR}` references are not resolved here (the coordinator's environment
/// is not the user's): resolve them before sending, as `jobctl submit` does.
#[utoipa::path(
    post, path = "/api/jobs", tag = "jobs",
    params(SubmitParams),
    request_body(
        description = "The job spec (or seed 004's job configuration), YAML or JSON",
        content((Object = "application/json"), (String = "application/yaml"))
    ),
    responses(
        (status = 201, description = "Accepted; Location names the job", body = Submitted,
         headers(("Location" = String, description = "/api/jobs/{job_id}"))),
        (status = 400, description = "Not YAML or JSON, or a bad query (an empty `from_savepoint`, an unknown parameter), each problem at its parameter's name", body = ApiError),
        (status = 404, description = "No such savepoint", body = ApiError),
        (status = 422, description = "The spec has problems, each at its path", body = ApiError),
        (status = 503, description = "No leader, or a system the spec names did not answer", body = ApiError),
    )
)]
pub async fn submit(
    State(api): State<Api>,
    params: Result<Query<SubmitParams>, QueryRejection>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    // An empty value is a mistake (a variable that was not set), not a
    // wish to start from the start, which leaving the parameter out says.
    if params
        .from_savepoint
        .as_ref()
        .is_some_and(|s| s.trim().is_empty())
    {
        return Err(ApiError::bad_fields(vec![(
            "from_savepoint".into(),
            "is empty: name a savepoint (GET /api/savepoints lists them), or leave the \
             parameter out to start the job without one"
                .into(),
        )]));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8 text: {e}")))?;
    let from_savepoint = params.from_savepoint;
    let id = api.submit(text, from_savepoint).await?;
    let location = format!("/api/jobs/{id}");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(Submitted {
            job_id: id.to_string(),
        }),
    ))
}

/// Every job the cluster knows, with its subtasks.
#[utoipa::path(
    get, path = "/api/jobs", tag = "jobs",
    responses(
        (status = 200, body = [Job]),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn list(State(api): State<Api>) -> JsonResult<Vec<Job>> {
    Ok(Json(api.jobs()?.into_iter().map(Job::from).collect()))
}

/// One job with its subtasks and their counters.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = Job),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn get(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Job> {
    Ok(Json(api.job(&job_id(id)?)?.into()))
}

/// Cancels a job without a savepoint; answers with its state after.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/cancel", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = Job),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 409, description = "The job already ended", body = ApiError),
        (status = 503, description = "No leader, or the change was not recorded", body = ApiError),
    )
)]
pub async fn cancel(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Job> {
    Ok(Json(api.cancel(&job_id(id)?).await?.into()))
}

/// Stops a running job after a final savepoint, which a new job can start
/// from; answers once the job's tasks ended.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/stop", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The final savepoint", body = Savepoint),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 409, description = "The job is not running, or has checkpoints off", body = ApiError),
        (status = 503, description = "No leader, or the savepoint failed", body = ApiError),
    )
)]
pub async fn stop(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Savepoint> {
    Ok(Json(api.stop(&job_id(id)?).await?.into()))
}

/// Changes a running job's parallelism: stops it with a savepoint and
/// restarts it from there.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/rescale", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    request_body = Rescale,
    responses(
        (status = 200, description = "The savepoint it restarts from; for a job waiting for task slots, which takes the new parallelism without a savepoint, what it starts from (`savepoint_id` empty when it starts from its latest checkpoint or from the start)", body = Savepoint),
        (status = 400, description = "A bad path, body or query; each problem of the body at its field's name", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 409, description = "The job is neither running nor waiting for slots (`not_running`), has checkpoints off, or the alive workers' free task slots cannot hold the parallelism (`not_enough_slots`)", body = ApiError),
        (status = 422, description = "A parallelism out of range (the problem at `parallelism`)", body = ApiError),
        (status = 503, description = "No leader, or the savepoint failed", body = ApiError),
    )
)]
pub async fn rescale(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> JsonResult<Savepoint> {
    let id = job_id(id)?;
    let Rescale { parallelism } = rescale_body(&body)?;
    Ok(Json(api.rescale(&id, parallelism).await?.into()))
}

/// A rescale's body `{"parallelism": N}`, or a 400 with
/// each problem at its field's name (the body as a whole at an empty path).
fn rescale_body(body: &[u8]) -> Result<Rescale, ApiError> {
    let whole = |message: String| ApiError::bad_fields(vec![(String::new(), message)]);
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        whole(format!(
            "is not JSON ({e}); expected {{\"parallelism\": N}}"
        ))
    })?;
    let Some(fields) = value.as_object() else {
        return Err(whole(format!(
            "must be a JSON object {{\"parallelism\": N}}, found {value}"
        )));
    };
    let mut problems: Vec<(String, String)> = fields
        .keys()
        .filter(|k| *k != "parallelism")
        .map(|k| {
            (
                k.clone(),
                "is not a field of a rescale, which takes only `parallelism`".into(),
            )
        })
        .collect();
    let parallelism = match fields.get("parallelism") {
        None => {
            problems.push(("parallelism".into(), "is required".into()));
            None
        }
        Some(v) => {
            let n = v.as_u64().and_then(|n| u32::try_from(n).ok());
            if n.is_none() {
                problems.push((
                    "parallelism".into(),
                    format!("must be a whole number from 1, found {v}"),
                ));
            }
            n
        }
    };
    match parallelism {
        Some(parallelism) if problems.is_empty() => Ok(Rescale { parallelism }),
        _ => Err(ApiError::bad_fields(problems)),
    }
}

/// A job's retained completed checkpoints, newest first.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/checkpoints", tag = "checkpoints",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = Checkpoints),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn checkpoints(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Checkpoints> {
    Ok(Json(api.checkpoints(&job_id(id)?)?.into()))
}

/// A job's savepoints, oldest first.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/savepoints", tag = "savepoints",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = [Savepoint]),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn savepoints(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Vec<Savepoint>> {
    let id = job_id(id)?;
    api.job(&id)?;
    let mut of_job: Vec<Savepoint> = api
        .savepoints()?
        .into_iter()
        .filter(|s| s.job_id == id)
        .map(Savepoint::from)
        .collect();
    of_job.sort_by_key(|s| (s.created_at_ms, s.checkpoint_id));
    Ok(Json(of_job))
}

/// Takes a savepoint of a running job, which runs on; answers once it completed.
#[utoipa::path(
    post, path = "/api/jobs/{job_id}/savepoints", tag = "savepoints",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 201, body = Savepoint),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 409, description = "The job is not running, or has checkpoints off", body = ApiError),
        (status = 503, description = "No leader, or the savepoint failed", body = ApiError),
    )
)]
pub async fn trigger_savepoint(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<Savepoint>), ApiError> {
    let savepoint = api.take_savepoint(&job_id(id)?).await?;
    Ok((StatusCode::CREATED, Json(savepoint.into())))
}

/// What happened to a job lately (its last 100 events), oldest first:
/// task failures with their error and causes, restarts, skipped offsets.
#[utoipa::path(
    get, path = "/api/jobs/{job_id}/events", tag = "jobs",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, body = [Event]),
        (status = 400, description = "A bad path", body = ApiError),
        (status = 404, description = "No such job", body = ApiError),
        (status = 503, description = "No leader", body = ApiError),
    )
)]
pub async fn events(
    State(api): State<Api>,
    id: Result<Path<String>, PathRejection>,
) -> JsonResult<Vec<Event>> {
    Ok(Json(
        api.events(&job_id(id)?)?
            .into_iter()
            .map(Event::from)
            .collect(),
    ))
}
