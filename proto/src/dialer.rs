//! How Sluice's gRPC clients connect. Over TLS, Sluice makes the
//! connections itself rather than through tonic's TLS, whose client
//! certificate is fixed when the channel is built: each new connection
//! shows the certificate its process last read from `--tls-cert` and
//! `--tls-key` (see [`crate::reloading_cert::ReloadingCert`]), so a member
//! whose certificate was renewed reconnects with the new one, without a
//! restart.

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::codegen::Service;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

/// The port of an `https` address that names none.
const HTTPS_PORT: u16 = 443;

/// Where a gRPC client connects: a tonic [`Endpoint`] (its timeouts and
/// HTTP/2 settings), and the TLS its connections are made with, if any.
/// Made by [`crate::tls::endpoint`].
#[derive(Clone, Debug)]
pub struct Dialer {
    endpoint: Endpoint,
    tls: Option<TlsDial>,
}

impl Dialer {
    pub(crate) fn new(endpoint: Endpoint, tls: Option<TlsDial>) -> Self {
        Self { endpoint, tls }
    }

    /// The same with the endpoint's settings changed by `configure`, such
    /// as `|e| e.connect_timeout(..)`. Over TLS, connections always have
    /// `TCP_NODELAY` and the endpoint's TCP settings are not used.
    pub fn configure(self, configure: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        Self {
            endpoint: configure(self.endpoint),
            tls: self.tls,
        }
    }

    /// The URL connected to: `https://` over TLS, else `http://`.
    pub fn url(&self) -> String {
        let url = self.endpoint.uri().to_string();
        match (&self.tls, url.strip_prefix("http://")) {
            (Some(_), Some(rest)) => format!("https://{rest}"),
            _ => url,
        }
    }

    /// A channel connected at once; an error if the server cannot be
    /// reached or the TLS handshake fails.
    pub async fn connect(&self) -> Result<Channel, tonic::transport::Error> {
        match &self.tls {
            None => self.endpoint.connect().await,
            Some(tls) => self.endpoint.connect_with_connector(tls.clone()).await,
        }
    }

    /// A channel that connects on its first call, and again after its
    /// connection is lost (call within a Tokio runtime).
    pub fn connect_lazy(&self) -> Channel {
        match &self.tls {
            None => self.endpoint.connect_lazy(),
            Some(tls) => self.endpoint.connect_with_connector_lazy(tls.clone()),
        }
    }
}

/// Makes a TLS connection to a URI's host and port: TCP, then a rustls
/// handshake with `config`, the server verified as `server_name` when given,
/// else as the URI's host.
#[derive(Clone, Debug)]
pub(crate) struct TlsDial {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsDial {
    pub(crate) fn new(
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        Self {
            config,
            server_name,
        }
    }
}

impl Service<Uri> for TlsDial {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = TlsConnector::from(self.config.clone());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("`{uri}` names no host")))?;
            // An IPv6 address comes in brackets.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = match server_name {
                Some(name) => name,
                None => ServerName::try_from(host.to_string())
                    .map_err(|e| invalid(format!("`{host}` is not a server name: {e}")))?,
            };
            let tcp = TcpStream::connect((host, uri.port_u16().unwrap_or(HTTPS_PORT))).await?;
            // gRPC messages are small and latency-bound, as with tonic's
            // own connections.
            tcp.set_nodelay(true)?;
            let stream = connector.connect(server_name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
