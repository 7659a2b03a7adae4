//! A minimal Kafka protocol client: one blocking connection, one request at
//! a time, for the few transaction calls Sluice makes itself.

use super::TxnError;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{FindCoordinatorRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Longest wait for a connection or an answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Conn {
    stream: TcpStream,
    address: String,
    correlation: i32,
}

impl Conn {
    pub(super) fn connect(address: &str) -> Result<Self, TxnError> {
        let io = |source| TxnError::Io {
            address: address.to_string(),
            source,
        };
        let addr = address
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "resolves to no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        Ok(Self {
            stream,
            address: address.to_string(),
            correlation: 0,
        })
    }

    /// The first broker of the comma-separated `bootstrap` list that answers.
    pub(super) fn any(bootstrap: &str) -> Result<Self, TxnError> {
        let mut last = None;
        for broker in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            match Self::connect(broker) {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(TxnError::NoBroker {
            bootstrap: bootstrap.to_string(),
            last: Box::new(last.unwrap_or(TxnError::Protocol {
                address: bootstrap.to_string(),
                reason: "no broker address given".into(),
            })),
        })
    }

    /// The transaction coordinator of `transactional_id`, found through
    /// any broker of `bootstrap`.
    pub(super) fn transaction_coordinator(
        bootstrap: &str,
        transactional_id: &str,
    ) -> Result<Self, TxnError> {
        let found = Self::any(bootstrap)?.call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(transactional_id.to_owned()))
                .with_key_type(1),
        )?;
        if found.error_code != 0 {
            return Err(TxnError::Refused {
                call: "FindCoordinator",
                id: transactional_id.to_string(),
                code: found.error_code,
            });
        }
        Self::connect(&format!("{}:{}", found.host.as_str(), found.port))
    }

    pub(super) fn call<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, TxnError> {
        let address = self.address.clone();
        let protocol = |reason: String| TxnError::Protocol {
            address: address.clone(),
            reason,
        };
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| protocol(e.to_string()))?;
        request
            .encode(&mut body, version)
            .map_err(|e| protocol(e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let io = |source| TxnError::Io {
            address: address.clone(),
            source,
        };
        self.stream.write_all(&frame).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let mut raw = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut raw).map_err(io)?;
        let mut buf = Bytes::from(raw);
        let response_header =
            ResponseHeader::decode(&mut buf, R::Response::header_version(version))
                .map_err(|e| protocol(e.to_string()))?;
        if response_header.correlation_id != self.correlation {
            return Err(protocol("response does not match its request".into()));
        }
        R::Response::decode(&mut buf, version).map_err(|e| protocol(e.to_string()))
    }
}
