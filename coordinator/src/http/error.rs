//! The one place coordinator errors become HTTP answers: a status code and
//! a JSON body of one stable shape.

use crate::error::CoordinatorError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_common::{Fault, SpecError, SpecProblem};
use utoipa::ToSchema;

/// Every error the HTTP API answers with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// The HTTP status code, repeated for clients that only keep the body.
    pub status: u16,
    /// What went wrong, for programs: `invalid_spec`, `malformed_spec`,
    /// `bad_request`, `unauthenticated`, `permission_denied`, `job_not_found`,
    /// `savepoint_not_found`, `not_found`,
    /// `unknown_worker`, `method_not_allowed`, `body_too_large`,
    /// `uri_too_long`, `unsupported_media_type`, `headers_too_large`,
    /// `internal`, `not_cancellable`, `not_running`,
    /// `checkpoints_off`, `not_enough_slots`, `savepoint_mismatch`, `invalid_parallelism`,
    /// `savepoint_failed`, `no_leader`, `not_recorded` or `unavailable`.
    pub code: String,
    /// What went wrong, for people: one line, at most about 1000 bytes (a
    /// longer one is cut, saying how much was left out).
    pub message: String,
    /// Each problem of a refused job spec (or of a job spec that does not fit
    /// the savepoint it starts from) at its field path, the first 50 of
    /// them (the message counts them all); empty otherwise.
    pub problems: Vec<Problem>,
    /// Sent as `Retry-After` (seconds) when trying again later may succeed:
    /// an outside system or the coordinator group did not answer.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

/// What `Retry-After` suggests, in seconds, for a call refused because
/// something did not answer for now.
const RETRY_AFTER_SECS: u64 = 5;

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
            retry_after_secs: None,
        }
    }

    /// A request the API cannot read (a body that is not the JSON asked
    /// for, a query parameter of the wrong type).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A 400 `bad_request` for fields of a request body or query
    /// parameters the API cannot take: each `(path, message)` a problem
    /// (the field's or parameter's name as its path), all of them in the
    /// message.
    pub fn bad_fields(problems: Vec<(String, String)>) -> Self {
        let message = problems
            .iter()
            .map(|(path, message)| format!("{path}: {message}"))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            problems: problems
                .into_iter()
                .map(|(path, message)| Problem { path, message })
                .collect(),
            ..Self::bad_request(format!("the request has problems: {message}"))
        }
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
            NotRunning { .. } | NotRescalable { .. } => (StatusCode::CONFLICT, "not_running"),
            CheckpointsOff(_) => (StatusCode::CONFLICT, "checkpoints_off"),
            NotEnoughSlots { .. } => (StatusCode::CONFLICT, "not_enough_slots"),
            SavepointMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "savepoint_mismatch"),
            Parallelism { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parallelism"),
            SavepointFailed { .. } => (StatusCode::SERVICE_UNAVAILABLE, "savepoint_failed"),
            NotLeader { .. } => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            // Unknown whether the change took effect: a retry could apply it twice.
            Raft(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_recorded"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            // Workers register over gRPC; no API call meets it.
            ExchangeAddressInUse { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            KafkaMetadata { .. } | BrokerConfig { .. } | Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            UnknownTopic { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec"),
        };
        let retry_after_secs = (e.fault() == Fault::External).then_some(RETRY_AFTER_SECS);
        let problems = match e {
            InvalidSpec(spec) => spec.problems(),
            Parallelism { found, max } => vec![SpecProblem {
                path: "parallelism".into(),
                message: format!("must be between 1 and {max}, found {found}"),
            }],
            SavepointMismatch { problems, .. } | Unavailable(problems) => problems,
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
            retry_after_secs,
            ..Self::new(status, code, message)
        }
    }
}

/// Longest `message` answered, in bytes: errors quote what they refuse,
/// and an answer must not grow with the request.
const MAX_MESSAGE: usize = 1000;
/// Longest path and message of each problem, in bytes.
const MAX_PROBLEM_PATH: usize = 200;
const MAX_PROBLEM_MESSAGE: usize = 500;
/// Most problems answered; the message counts them all.
const MAX_PROBLEMS: usize = 50;

/// `text` cut to at most `max` bytes (at a character boundary), saying how
/// much was left out.
pub fn capped(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &text[..end], text.len() - end)
}

/// What the API calls an HTTP error its handlers did not make themselves
/// (a body over the limit, a URI too long, a route or method it lacks).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

impl ApiError {
    /// An error answer made by the HTTP layer rather than a handler (its
    /// body plain text or empty), in the API's shape: the status kept, the
    /// text as the message.
    pub fn from_http(status: StatusCode, text: &str) -> Self {
        let message = match (status, text.trim()) {
            (StatusCode::PAYLOAD_TOO_LARGE, _) => format!(
                "the request body is over the API's limit of {} bytes",
                super::MAX_BODY_BYTES
            ),
            (_, "") => status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_string(),
            (_, text) => text.to_string(),
        };
        Self::new(status, code_of(status), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.message = capped(self.message, MAX_MESSAGE);
        self.problems.truncate(MAX_PROBLEMS);
        for p in &mut self.problems {
            p.path = capped(std::mem::take(&mut p.path), MAX_PROBLEM_PATH);
            p.message = capped(std::mem::take(&mut p.message), MAX_PROBLEM_MESSAGE);
        }
        let retry_after = self.retry_after_secs;
        let mut response = (status, axum::Json(self)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_common::JobId;

    #[test]
    fn systems_that_do_not_answer_are_worth_a_retry_and_missing_topics_are_not() {
        let unanswered = ApiError::from(CoordinatorError::KafkaMetadata {
            brokers: "b:1".into(),
            topic: "t".into(),
            reason: "timed out".into(),
        });
        assert_eq!(
            (unanswered.status, unanswered.retry_after_secs),
            (503, Some(5))
        );
        let response = unanswered.into_response();
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "5");
        let missing = ApiError::from(CoordinatorError::UnknownTopic {
            brokers: "b:1".into(),
            topic: "t".into(),
            reason: "UnknownTopicOrPartition".into(),
        });
        assert_eq!((missing.status, missing.retry_after_secs), (422, None));
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_saying_how_much_is_left() {
        assert_eq!(capped("short".into(), 10), "short");
        let cut = capped("é".repeat(10), 5);
        assert_eq!(cut, "éé… (16 bytes more)");
    }

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
