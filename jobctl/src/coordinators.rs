//! The coordinators `jobctl` was pointed at: each call goes to the leader,
//! found by asking the members with a short timeout (so a paused or cut-off
//! member costs seconds, not the call's whole timeout), and follows the
//! leader a member names.

use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::tls::Tls;
use std::future::Future;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A client of one coordinator, whose calls carry the token.
pub type Client = JobServiceClient<InterceptedService<Channel, Bearer>>;

/// Puts `authorization: Bearer TOKEN` on every call when a token was given.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub struct Coordinators {
    addresses: Vec<String>,
    timeout: Duration,
    bearer: Bearer,
    tls: Option<Tls>,
}

/// Rounds of finding the leader and calling it before giving up, with a
/// pause between them for an election to finish.
const ROUNDS: usize = 4;
const ROUND_PAUSE: Duration = Duration::from_millis(500);
/// How long a member may take to say who leads.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// An error and its sources, innermost last, on one line.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Coordinators {
    /// `token`: sent with every call (`--token`, `SLUICE_TOKEN`); `tls`:
    /// connect over TLS, verifying coordinators with its CA.
    pub fn new(
        addresses: Vec<String>,
        timeout: Duration,
        token: Option<&str>,
        tls: Option<Tls>,
    ) -> anyhow::Result<Self> {
        let bearer = token
            .map(|t| {
                sluice_common::auth::bearer(t.trim())
                    .parse::<AsciiMetadataValue>()
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--token / SLUICE_TOKEN holds characters a token cannot have"
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            addresses,
            timeout,
            bearer: Bearer(bearer),
            tls,
        })
    }

    /// A client of the member at `address`, its calls limited to the
    /// command's timeout.
    async fn connect(&self, address: &str) -> anyhow::Result<Client> {
        let endpoint = sluice_proto::tls::endpoint(address, self.tls.as_ref())
            .map_err(|_| anyhow::anyhow!("`{address}` is not a valid coordinator address"))?;
        let url = endpoint.url();
        let channel = endpoint
            .configure(|e| e.connect_timeout(PROBE_TIMEOUT).timeout(self.timeout))
            .connect()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "coordinator unreachable at {url} ({}): is it running, is --coordinator / \
                     SLUICE_COORDINATOR right, and does it serve TLS exactly when --tls-ca is given?",
                    causes(&e)
                )
            })?;
        Ok(JobServiceClient::with_interceptor(
            channel,
            self.bearer.clone(),
        ))
    }

    /// The member at `address`, if it answers in time: its client, whether
    /// it serves as the leader, and the leader it names otherwise.
    /// A member that refuses the token counts as answering, not leading:
    /// the call made on it then fails with the refusal naming that call.
    async fn probe(&self, address: &str) -> Result<(Client, bool, String), String> {
        let mut c = self.connect(address).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(PROBE_TIMEOUT, c.cluster_info(ClusterInfoRequest {}))
            .await
            .map_err(|_| format!("{address}: no answer within {PROBE_TIMEOUT:?}"))?
        {
            Ok(info) => {
                let info = info.into_inner();
                Ok((c, info.serving, info.leader_address))
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Ok((c, false, String::new()))
            }
            Err(status) => Err(format!(
                "coordinator unreachable at {address} ({}): is it running, is --coordinator / \
                 SLUICE_COORDINATOR right, and does it serve TLS exactly when --tls-ca is given?",
                status.message()
            )),
        }
    }

    /// A client of the member that leads, as the members tell; when none
    /// does, of the first that answers, whose error then says why.
    async fn find_leader(&self) -> anyhow::Result<Client> {
        let mut reachable = None;
        let mut last_error = None;
        for address in &self.addresses {
            let (client, leads, named) = match self.probe(address).await {
                Ok(answer) => answer,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            if leads {
                return Ok(client);
            }
            reachable.get_or_insert(client);
            if !named.is_empty()
                && named != *address
                && let Ok((client, true, _)) = self.probe(&named).await
            {
                return Ok(client);
            }
        }
        reachable.ok_or_else(|| match (last_error, self.addresses.len()) {
            (Some(e), 1) => anyhow::anyhow!(e),
            (e, _) => anyhow::anyhow!(
                "coordinator unreachable at {}: is it running, and is --coordinator / SLUICE_COORDINATOR right? (last error: {})",
                self.addresses.join(", "),
                e.unwrap_or_default()
            ),
        })
    }

    /// Calls `f` on the leader and returns its answer. Only a refusal for
    /// not leading is tried again: any other error may come after the call
    /// took effect.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last: Option<anyhow::Error> = None;
        for round in 0..ROUNDS {
            if round > 0 {
                tokio::time::sleep(ROUND_PAUSE).await;
            }
            let client = match self.find_leader().await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match f(client).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let not_leading = status.code() == tonic::Code::Unavailable
                        && status.message().contains("not the leader");
                    last = Some(status.into());
                    if !not_leading {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no coordinator address given")))
    }

    /// Asks every member it was given for its own view; one that does not
    /// answer in time is reported so.
    pub async fn each<T, F, Fut>(&self, mut f: F) -> Vec<(String, anyhow::Result<T>)>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut out = Vec::new();
        for address in &self.addresses {
            let answer = match self.connect(address).await {
                Ok(c) => match tokio::time::timeout(PROBE_TIMEOUT, f(c)).await {
                    Ok(answer) => answer.map(|r| r.into_inner()).map_err(Into::into),
                    Err(_) => Err(anyhow::anyhow!("no answer within {PROBE_TIMEOUT:?}")),
                },
                Err(e) => Err(e),
            };
            out.push((address.clone(), answer));
        }
        out
    }
}
