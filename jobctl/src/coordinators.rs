//! The coordinators `jobctl` was pointed at: calls go to the leader,
//! following the address a follower names and moving past members that do
//! not answer.

use sluice_proto::job_service_client::JobServiceClient;
use std::future::Future;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub struct Coordinators {
    addresses: Vec<String>,
    timeout: Duration,
}

/// Rounds over every address before giving up, with a pause between them
/// for an election to finish.
const ROUNDS: usize = 4;
const ROUND_PAUSE: Duration = Duration::from_millis(500);

impl Coordinators {
    pub fn new(addresses: Vec<String>, timeout: Duration) -> Self {
        Self { addresses, timeout }
    }

    async fn connect(&self, address: &str) -> anyhow::Result<JobServiceClient<Channel>> {
        let url = sluice_common::http_url(address);
        let channel = Endpoint::from_shared(url.clone())
            .map_err(|_| anyhow::anyhow!("`{address}` is not a valid coordinator address"))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(self.timeout)
            .connect()
            .await
            .map_err(|_| anyhow::anyhow!("coordinator unreachable at {url}: is it running, and is --coordinator / SLUICE_COORDINATOR right?"))?;
        Ok(JobServiceClient::new(channel))
    }

    /// Calls `f` on the leader and returns its answer.
    pub async fn call<T, F, Fut>(&self, mut f: F) -> anyhow::Result<T>
    where
        F: FnMut(JobServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut addresses = self.addresses.clone();
        let mut at = 0;
        let mut last: Option<anyhow::Error> = None;
        for attempt in 0..ROUNDS * addresses.len().max(1) {
            if attempt > 0 && at % addresses.len() == 0 {
                tokio::time::sleep(ROUND_PAUSE).await;
            }
            let address = addresses[at % addresses.len()].clone();
            let client = match self.connect(&address).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    at += 1;
                    continue;
                }
            };
            match f(client).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let leader = status
                        .metadata()
                        .get(sluice_common::LEADER_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let retry = leader.is_some() || status.code() == tonic::Code::Unavailable;
                    if let Some(leader) = leader {
                        at = match addresses.iter().position(|a| *a == leader) {
                            Some(i) => i,
                            None => {
                                addresses.push(leader);
                                addresses.len() - 1
                            }
                        };
                    } else {
                        at += 1;
                    }
                    last = Some(status.into());
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no coordinator address given")))
    }

    /// Asks every member it knows for its own view, skipping those that do not answer.
    pub async fn each<T, F, Fut>(&self, mut f: F) -> Vec<(String, anyhow::Result<T>)>
    where
        F: FnMut(JobServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut out = Vec::new();
        for address in &self.addresses {
            let answer = match self.connect(address).await {
                Ok(c) => f(c).await.map(|r| r.into_inner()).map_err(Into::into),
                Err(e) => Err(e),
            };
            out.push((address.clone(), answer));
        }
        out
    }
}
