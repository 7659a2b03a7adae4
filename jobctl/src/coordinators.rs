//! The coordinators `jobctl` was pointed at: each call goes to the leader,
//! found by asking the members with a short timeout (so a paused or cut-off
//! member costs seconds, not the call's whole timeout), and follows the
//! leader a member names.

use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use std::future::Future;
use std::time::Duration;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

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
}

/// Rounds of finding the leader and calling it before giving up, with a
/// pause between them for an election to finish.
const ROUNDS: usize = 4;
const ROUND_PAUSE: Duration = Duration::from_millis(500);
/// How long a member may take to say who leads.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Coordinators {
    /// `token`: sent with every call (`--token`, `SLUICE_TOKEN`).
    pub fn new(
        addresses: Vec<String>,
        timeout: Duration,
        token: Option<&str>,
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
        })
    }

    /// A client of the member at `address`, its calls limited to the
    /// command's timeout.
    async fn connect(&self, address: &str) -> anyhow::Result<Client> {
        let url = sluice_common::http_url(address);
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|_| anyhow::anyhow!("`{address}` is not a valid coordinator address"))?
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(self.timeout)
            .connect()
            .await
            .map_err(|_| anyhow::anyhow!("coordinator unreachable at {url}: is it running, and is --coordinator / SLUICE_COORDINATOR right?"))?;
        Ok(JobServiceClient::with_interceptor(
            channel,
            self.bearer.clone(),
        ))
    }

    /// The member at `address`, if it answers in time: its client, whether
    /// it serves as the leader, and the leader it names otherwise.
    /// A member that refuses the token counts as answering, not leading:
    /// the call made on it then fails with the refusal naming that call.
    async fn probe(&self, address: &str) -> Option<(Client, bool, String)> {
        let mut c = self.connect(address).await.ok()?;
        match tokio::time::timeout(PROBE_TIMEOUT, c.cluster_info(ClusterInfoRequest {}))
            .await
            .ok()?
        {
            Ok(info) => {
                let info = info.into_inner();
                Some((c, info.serving, info.leader_address))
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                Some((c, false, String::new()))
            }
            Err(_) => None,
        }
    }

    /// A client of the member that leads, as the members tell; when none
    /// does, of the first that answers, whose error then says why.
    async fn find_leader(&self) -> anyhow::Result<Client> {
        let mut reachable = None;
        for address in &self.addresses {
            let Some((client, leads, named)) = self.probe(address).await else {
                continue;
            };
            if leads {
                return Ok(client);
            }
            reachable.get_or_insert(client);
            if !named.is_empty()
                && named != *address
                && let Some((client, true, _)) = self.probe(&named).await
            {
                return Ok(client);
            }
        }
        reachable.ok_or_else(|| {
            anyhow::anyhow!(
                "coordinator unreachable at {}: is it running, and is --coordinator / SLUICE_COORDINATOR right?",
                self.addresses.join(", ")
            )
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
