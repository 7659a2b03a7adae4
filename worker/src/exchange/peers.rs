use std::collections::HashMap;
use std::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

/// One cached gRPC channel per peer worker; streams to the same peer share it.
#[derive(Default)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(address) {
            return Ok(c.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("bad peer address `{address}`: {e}"))?
            .tcp_nodelay(true)
            .http2_keep_alive_interval(std::time::Duration::from_secs(5))
            .keep_alive_timeout(std::time::Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        map.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}
