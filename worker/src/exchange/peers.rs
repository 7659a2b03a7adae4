use std::collections::HashMap;
use std::sync::Mutex;
use tonic::transport::Channel;

/// One cached gRPC channel per peer worker; streams to the same peer share it.
/// With TLS, this worker shows its certificate and verifies the peer's.
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    tls: Option<sluice_proto::tls::Tls>,
    /// The name peers' certificates are verified against; their address's
    /// host when `None`.
    peer_name: Option<String>,
}

impl Peers {
    pub fn new(tls: Option<sluice_proto::tls::Tls>, peer_name: Option<String>) -> Self {
        Self {
            channels: Mutex::default(),
            tls,
            peer_name,
        }
    }

    pub fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(address) {
            return Ok(c.clone());
        }
        let channel = sluice_proto::tls::endpoint_named(
            address,
            self.tls.as_ref(),
            self.peer_name.as_deref(),
        )
        .map_err(|e| format!("bad peer address `{address}`: {e}"))?
        .configure(|e| {
            e.tcp_nodelay(true)
                .http2_keep_alive_interval(std::time::Duration::from_secs(5))
                .keep_alive_timeout(std::time::Duration::from_secs(10))
                .keep_alive_while_idle(true)
        })
        .connect_lazy();
        map.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}
