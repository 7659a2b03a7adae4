//! Finishing a transaction whose producer died between a completed checkpoint
//! and its commit. librdkafka cannot resume a transaction, and its
//! `init_transactions` aborts an open one; so, before any producer of that
//! transactional id is initialised, recovery asks the transaction coordinator
//! which producer id and epoch hold the transaction (DescribeTransactions) and
//! commits it with them (EndTxn), over the Kafka protocol directly.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, EndTxnRequest, FindCoordinatorRequest, RequestHeader,
    ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What became of the transaction recovery was asked to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InDoubt {
    /// It was open and is now committed.
    Committed,
    /// Nothing was open under that id: committed before the failure, or never begun.
    NothingOpen(String),
}

const COORDINATOR_RETRY: &[i16] = &[
    14, // COORDINATOR_LOAD_IN_PROGRESS
    15, // COORDINATOR_NOT_AVAILABLE
    16, // NOT_COORDINATOR
    51, // CONCURRENT_TRANSACTIONS
];

/// Commits the open transaction of `transactional_id`, if there is one.
/// Blocking: run it on a blocking thread. Stops as soon as `cancelled` is
/// set: a subtask cancelled meanwhile must not touch a transaction that a
/// newer attempt may own by now.
pub fn commit_open_transaction(
    bootstrap: &str,
    transactional_id: &str,
    deadline: Duration,
    cancelled: &AtomicBool,
) -> Result<InDoubt, String> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return Err("recovery cancelled".into());
        }
        match try_commit(bootstrap, transactional_id) {
            Ok(Step::Done(outcome)) => return Ok(outcome),
            Ok(Step::Fatal(why)) => return Err(why),
            Ok(Step::Retry(why)) | Err(why) if start.elapsed() < deadline => {
                tracing::info!(transactional_id, reason = %why, "in-doubt transaction not settled yet; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Ok(Step::Retry(why)) | Err(why) => {
                return Err(format!(
                    "cannot settle transaction `{transactional_id}` within {deadline:?}: {why}"
                ));
            }
        }
    }
}

enum Step {
    Done(InDoubt),
    Retry(String),
    /// Retrying cannot help: another producer owns the transactional id now.
    Fatal(String),
}

fn try_commit(bootstrap: &str, transactional_id: &str) -> Result<Step, String> {
    let tid = StrBytes::from_string(transactional_id.to_owned());
    let mut conn = bootstrap
        .split(',')
        .map(|b| Conn::connect(b.trim()))
        .find_map(Result::ok)
        .ok_or_else(|| format!("no broker of {bootstrap} answers"))?;
    let found = conn.call(
        3,
        &FindCoordinatorRequest::default()
            .with_key(tid.clone())
            .with_key_type(1),
    )?;
    if found.error_code != 0 {
        return retry_or_fail("FindCoordinator", found.error_code);
    }
    let mut coordinator = Conn::connect(&format!("{}:{}", found.host.as_str(), found.port))?;
    let described = coordinator.call(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(tid.clone())]),
    )?;
    let Some(txn) = described.transaction_states.first() else {
        return Err("DescribeTransactions answered nothing".into());
    };
    match txn.error_code {
        0 => {}
        105 => {
            return Ok(Step::Done(InDoubt::NothingOpen(
                "unknown transactional id".into(),
            )));
        } // TRANSACTIONAL_ID_NOT_FOUND
        code => return retry_or_fail("DescribeTransactions", code),
    }
    match txn.transaction_state.as_str() {
        "Ongoing" => {}
        "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence" => {
            return Ok(Step::Retry(format!(
                "transaction is {}",
                txn.transaction_state.as_str()
            )));
        }
        other => {
            return Ok(Step::Done(InDoubt::NothingOpen(format!(
                "transaction is {other}"
            ))));
        }
    }
    // EndTxn v3: below v5, a commit repeated on a completed commit succeeds
    // and the epoch is not bumped.
    let ended = coordinator.call(
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(tid))
            .with_producer_id(txn.producer_id)
            .with_producer_epoch(txn.producer_epoch)
            .with_committed(true),
    )?;
    match ended.error_code {
        0 => Ok(Step::Done(InDoubt::Committed)),
        code => retry_or_fail("EndTxn", code),
    }
}

fn retry_or_fail(call: &str, code: i16) -> Result<Step, String> {
    if COORDINATOR_RETRY.contains(&code) {
        Ok(Step::Retry(format!("{call} answered error {code}")))
    } else {
        Ok(Step::Fatal(format!("{call} answered error {code}")))
    }
}

struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    fn connect(address: &str) -> Result<Self, String> {
        use std::net::ToSocketAddrs;
        let addr = address
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {address}: {e}"))?
            .next()
            .ok_or_else(|| format!("cannot resolve {address}"))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            stream,
            correlation: 0,
        })
    }

    fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, String> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("sluice-recovery")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(|e| e.to_string())?;
        request
            .encode(&mut body, version)
            .map_err(|e| e.to_string())?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| e.to_string())?;
        let mut raw = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream
            .read_exact(&mut raw)
            .map_err(|e| e.to_string())?;
        let mut buf = Bytes::from(raw);
        let response_header =
            ResponseHeader::decode(&mut buf, R::Response::header_version(version))
                .map_err(|e| e.to_string())?;
        if response_header.correlation_id != self.correlation {
            return Err("response does not match its request".into());
        }
        R::Response::decode(&mut buf, version).map_err(|e| e.to_string())
    }
}
