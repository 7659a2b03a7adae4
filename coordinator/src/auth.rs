//! Authentication of JobService calls: the coordinator's tokens file, read
//! again when it changes, and the service wrapper that checks each call's
//! bearer token and role before the call runs.

use sluice_common::auth::{AuthError, Role, Tokens};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// How often the tokens file is looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// JobService calls a read-only token may make; every other call (those
/// that change jobs or the group, and any call added later until it is
/// listed here) needs an operator token.
const READ_ONLY_CALLS: &[&str] = &[
    "ListJobs",
    "GetJob",
    "ListWorkers",
    "ListCheckpoints",
    "ListSavepoints",
    "ListJobEvents",
    "ClusterInfo",
];

/// The role the JobService call `method` (such as `SubmitJob`) needs.
pub fn needed_role(method: &str) -> Role {
    if READ_ONLY_CALLS.contains(&method) {
        Role::ReadOnly
    } else {
        Role::Operator
    }
}

/// The tokens the coordinator accepts, shared by every call and replaced
/// when the file changes.
#[derive(Clone)]
pub struct TokenFile {
    path: PathBuf,
    tokens: Arc<RwLock<Tokens>>,
}

impl TokenFile {
    /// Reads the tokens file at `path` (at start, before serving).
    pub fn open(path: PathBuf) -> Result<Self, AuthError> {
        let tokens = Tokens::load(&path)?;
        Ok(Self {
            path,
            tokens: Arc::new(RwLock::new(tokens)),
        })
    }

    /// The tokens now in force.
    pub fn current(&self) -> Tokens {
        match self.tokens.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the file again whenever its modification time or size changes,
    /// forever. A file that became unreadable or invalid is logged and the
    /// tokens in force are kept, so a half-written file locks nobody out.
    pub async fn watch(self) {
        let mut seen = stamp(&self.path).await;
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = stamp(&self.path).await;
            if now == seen {
                continue;
            }
            seen = now;
            let path = self.path.clone();
            let loaded = tokio::task::spawn_blocking(move || Tokens::load(&path)).await;
            match loaded {
                Ok(Ok(tokens)) => {
                    match self.tokens.write() {
                        Ok(mut t) => *t = tokens,
                        Err(poisoned) => *poisoned.into_inner() = tokens,
                    }
                    tracing::info!(path = %self.path.display(), "tokens file read again");
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "tokens file not applied; the tokens in force stay")
                }
                Err(error) => tracing::error!(%error, "reading the tokens file failed"),
            }
        }
    }
}

/// The file's modification time and size, `None` while it cannot be read.
async fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// A gRPC service whose calls are checked against the tokens file first: a
/// call without an accepted token is answered `Unauthenticated`, one whose
/// token's role is too low `PermissionDenied`, each with a message naming the
/// call. Without a tokens file every call passes, as before authentication.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    tokens: Option<TokenFile>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, tokens: Option<TokenFile>) -> Self {
        Self { inner, tokens }
    }

    /// `Err` with the refusal when `request` may not run.
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), tonic::Status> {
        let Some(file) = &self.tokens else {
            return Ok(());
        };
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or_default());
        match file
            .current()
            .authorize(authorization, method, needed_role(method))
        {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::info!(call = method, error = %e, "call refused");
                Err(if e.unauthenticated() {
                    tonic::Status::unauthenticated(e.to_string())
                } else {
                    tonic::Status::permission_denied(e.to_string())
                })
            }
        }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.check(&request) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_calls_need_read_only_and_the_rest_operator() {
        for call in ["ListJobs", "GetJob", "ClusterInfo", "ListSavepoints"] {
            assert_eq!(needed_role(call), Role::ReadOnly, "{call}");
        }
        for call in [
            "SubmitJob",
            "CancelJob",
            "StopJob",
            "RescaleJob",
            "TriggerSavepoint",
            "AddLearner",
            "PromoteMember",
            "RemoveMember",
            "SomeCallAddedLater",
        ] {
            assert_eq!(needed_role(call), Role::Operator, "{call}");
        }
    }
}
