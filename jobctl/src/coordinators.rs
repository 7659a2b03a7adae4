//! The coordinators `jobctl` was pointed at: each call goes to the leader,
//! found by asking the members with a short timeout (so a paused or cut-off
//! member costs seconds, not the call's whole timeout), and follows the
//! leader a member names.

use sluice_proto::ClusterInfoRequest;
use sluice_proto::job_service_client::JobServiceClient;
use std::future::Future;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub struct Coordinators {
    addresses: Vec<String>,
    timeout: Duration,
}

/// Rounds of finding the leader and calling it before giving up, with a
/// pause between them for an election to finish.
const ROUNDS: usize = 4;
const ROUND_PAUSE: Duration = Duration::from_millis(500);
/// How long a member may take to say who leads.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Coordinators {
    pub fn new(addresses: Vec<String>, timeout: Duration) -> Self {
        Self { addresses, timeout }
    }

    async fn connect(
        &self,
        address: &str,
        timeout: Duration,
    ) -> anyhow::Result<JobServiceClient<Channel>> {
        let url = sluice_common::http_url(address);
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|_| anyhow::anyhow!("`{address}` is not a valid coordinator address"))?
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|_| anyhow::anyhow!("coordinator unreachable at {url}: is it running, and is --coordinator / SLUICE_COORDINATOR right?"))?;
        Ok(JobServiceClient::new(channel))
    }

    /// Whether the member at `address` answers and serves as the leader,
    /// and the leader it names otherwise.
    async fn probe(&self, address: &str) -> Option<(bool, String)> {
        let mut c = self.connect(address, PROBE_TIMEOUT).await.ok()?;
        let info = c
            .cluster_info(ClusterInfoRequest {})
            .await
            .ok()?
            .into_inner();
        Some((info.serving, info.leader_address))
    }

    /// The member that leads, as the members tell; when none does, the
    /// first that answers, whose error then says why.
    async fn find_leader(&self) -> anyhow::Result<String> {
        let mut reachable = None;
        for address in &self.addresses {
            let Some((leads, named)) = self.probe(address).await else {
                continue;
            };
            if leads {
                return Ok(address.clone());
            }
            reachable.get_or_insert_with(|| address.clone());
            if !named.is_empty()
                && named != *address
                && self.probe(&named).await.is_some_and(|(leads, _)| leads)
            {
                return Ok(named);
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
        F: FnMut(JobServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last: Option<anyhow::Error> = None;
        for round in 0..ROUNDS {
            if round > 0 {
                tokio::time::sleep(ROUND_PAUSE).await;
            }
            let client = match self.find_leader().await {
                Ok(address) => match self.connect(&address, self.timeout).await {
                    Ok(c) => c,
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                },
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

    /// Asks every member it was given for its own view, skipping those that
    /// do not answer in time.
    pub async fn each<T, F, Fut>(&self, mut f: F) -> Vec<(String, anyhow::Result<T>)>
    where
        F: FnMut(JobServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut out = Vec::new();
        for address in &self.addresses {
            let answer = match self.connect(address, PROBE_TIMEOUT).await {
                Ok(c) => f(c).await.map(|r| r.into_inner()).map_err(Into::into),
                Err(e) => Err(e),
            };
            out.push((address.clone(), answer));
        }
        out
    }
}
