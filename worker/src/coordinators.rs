//! The coordinators a worker knows, and the one it talks to: the leader, as
//! far as the last answer told.

use sluice_proto::cluster_service_client::ClusterServiceClient;
use sluice_proto::tls::Tls;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

#[derive(Clone)]
pub struct Coordinators {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    /// Address and its client; one cached channel each.
    known: Vec<(String, ClusterServiceClient<Channel>)>,
    current: usize,
    tls: Option<Tls>,
}

/// Well under any heartbeat timeout: a worker whose coordinator hangs (a
/// paused or cut-off leader) turns to another one while its tasks may still
/// run, instead of waiting out the timeout on one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn client(address: &str, tls: Option<&Tls>) -> anyhow::Result<ClusterServiceClient<Channel>> {
    let channel = sluice_proto::tls::endpoint(address, tls)?
        .configure(|e| {
            e.connect_timeout(Duration::from_secs(2))
                .timeout(CALL_TIMEOUT)
        })
        .connect_lazy();
    Ok(ClusterServiceClient::new(channel))
}

impl Coordinators {
    /// `tls`: the coordinators' certificates verified, this worker's shown.
    pub fn new(addresses: &[String], tls: Option<&Tls>) -> anyhow::Result<Self> {
        anyhow::ensure!(!addresses.is_empty(), "no coordinator address given");
        let known = addresses
            .iter()
            .map(|a| Ok((a.clone(), client(a, tls)?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                known,
                current: 0,
                tls: tls.cloned(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client of the coordinator believed to lead.
    pub fn client(&self) -> ClusterServiceClient<Channel> {
        let inner = self.lock();
        inner.known[inner.current].1.clone()
    }

    /// After a failed call: follow the leader a follower named, or try the
    /// next coordinator when this one did not answer.
    pub fn failed(&self, status: &tonic::Status) {
        let mut inner = self.lock();
        let leader = status
            .metadata()
            .get(sluice_common::LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let next = match leader {
            Some(leader) => match inner.known.iter().position(|(a, _)| *a == leader) {
                Some(i) => i,
                None => match client(&leader, inner.tls.as_ref()) {
                    Ok(c) => {
                        inner.known.push((leader, c));
                        inner.known.len() - 1
                    }
                    Err(_) => return,
                },
            },
            // A call that timed out ends `Cancelled`.
            None if status.code() == tonic::Code::Unavailable
                || status.code() == tonic::Code::Unknown
                || status.code() == tonic::Code::Cancelled
                || status.code() == tonic::Code::DeadlineExceeded =>
            {
                (inner.current + 1) % inner.known.len()
            }
            None => return,
        };
        if next != inner.current {
            tracing::info!(coordinator = %inner.known[next].0, "talking to another coordinator");
            inner.current = next;
        }
    }
}
