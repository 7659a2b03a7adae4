//! The coordinator's services for cluster members only (ClusterService for
//! workers, RaftService for coordinators): with TLS on, a call must come on a
//! connection whose client showed a certificate the cluster's CA signed.
//! Clients such as `jobctl` connect to the same port without one, for
//! JobService alone.

use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// A gRPC service that answers `Unauthenticated`, naming the call, to a
/// client without a member's certificate. `enforced` is false without TLS,
/// where every call passes, as before TLS.
#[derive(Clone)]
pub struct MembersOnly<S> {
    inner: S,
    enforced: bool,
}

impl<S> MembersOnly<S> {
    pub fn new(inner: S, enforced: bool) -> Self {
        Self { inner, enforced }
    }
}

impl<S: NamedService> NamedService for MembersOnly<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for MembersOnly<S>
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
        if !self.enforced || sluice_proto::tls::member_certificate(&request) {
            return Box::pin(self.inner.call(request));
        }
        let call = request.uri().path().rsplit('/').next().unwrap_or_default();
        tracing::info!(call, "call without a member certificate refused");
        let status = tonic::Status::unauthenticated(format!(
            "{call} refused: only cluster members may call it, with a certificate the \
             cluster's CA signed (--tls-cert, --tls-key)"
        ));
        Box::pin(async move { Ok(status.into_http()) })
    }
}
