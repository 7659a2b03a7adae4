//! The one place coordinator errors become HTTP answers: a status code and
//! a JSON body of one stable shape.

use crate::error::CoordinatorError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_common::SpecError;
use utoipa::ToSchema;

/// Every error the HTTP API answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// The HTTP status code, repeated for clients that only keep the body.
    pub status: u16,
    /// What went wrong, for programs: `invalid_spec`, `malformed_spec`,
    /// `bad_request`, `job_not_found`, `savepoint_not_found`, `not_found`,
    /// `unknown_worker`, `method_not_allowed`, `not_cancellable`, `not_running`,
    /// `checkpoints_off`, `not_enough_slots`, `savepoint_mismatch`, `invalid_parallelism`,
    /// `savepoint_failed`, `no_leader`, `not_recorded` or `unavailable`.
    pub code: String,
    /// What went wrong, for people: one line.
    pub message: String,
    /// Each problem of a refused job spec (or of a job spec that does not fit
    /// the savepoint it starts from) at its field path; empty otherwise.
    pub problems: Vec<Problem>,
}

/// One problem of a job spec.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// The field's path, such as `source.kafka.topic` or `transforms[1].remap`;
    /// empty for the spec as a whole.
    pub path: String,
    /// What is wrong there, such as `is required`.
    pub message: String,
}

impl ApiError {
    /// An error answered with `status`, its `code` one of those listed on
    /// [`ApiError::code`].
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.into(),
            problems: Vec::new(),
        }
    }

    /// A request the API cannot read (a body that is not the JSON asked
    /// for, a query parameter of the wrong type).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> Self {
        use CoordinatorError::*;
        let message = e.to_string();
        let (status, code) = match &e {
            InvalidSpec(SpecError::Syntax(_)) => (StatusCode::BAD_REQUEST, "malformed_spec"),
            InvalidSpec(SpecError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec")
            }
            UnknownJob(_) => (StatusCode::NOT_FOUND, "job_not_found"),
            UnknownSavepoint(_) => (StatusCode::NOT_FOUND, "savepoint_not_found"),
            UnknownWorker(_) => (StatusCode::CONFLICT, "unknown_worker"),
            NotCancellable { .. } => (StatusCode::CONFLICT, "not_cancellable"),
            NotRunning { .. } => (StatusCode::CONFLICT, "not_running"),
            CheckpointsOff(_) => (StatusCode::CONFLICT, "checkpoints_off"),
            NotEnoughSlots { .. } => (StatusCode::CONFLICT, "not_enough_slots"),
            SavepointMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "savepoint_mismatch"),
            Parallelism { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parallelism"),
            SavepointFailed { .. } => (StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed"),
            NotLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            // Unknown whether the change took effect: a retry could apply it twice.
            Raft(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_recorded"),
            KafkaMetadata { .. } | BrokerConfig { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        let problems = match e {
            InvalidSpec(spec) => spec.problems(),
            SavepointMismatch { problems, .. } => problems,
            _ => Vec::new(),
        };
        let problems = problems
            .into_iter()
            .map(|p| Problem {
                path: p.path,
                message: p.message,
            })
            .collect();
        Self {
            problems,
            ..Self::new(status, code, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::{JobId, SpecProblem};

    #[test]
    fn spec_problems_keep_their_paths_and_errors_their_codes() {
        let e = ApiError::from(CoordinatorError::InvalidSpec(SpecError::Invalid(vec![
            SpecProblem {
                path: "source.kafka.topic".into(),
                message: "is required".into(),
            },
        ])));
        assert_eq!((e.status, e.code.as_str()), (422, "invalid_spec"));
        assert_eq!(e.problems[0].path, "source.kafka.topic");
        let e = ApiError::from(CoordinatorError::UnknownJob(JobId::new("job-9")));
        assert_eq!((e.status, e.code.as_str()), (404, "job_not_found"));
        assert!(e.message.contains("job-9"), "{}", e.message);
        assert!(e.problems.is_empty());
    }
}
