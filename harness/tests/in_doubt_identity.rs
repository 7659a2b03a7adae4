//! Recovery commits the in-doubt transaction of a completed checkpoint only
//! if the producer session that pre-committed it still holds it: when
//! another producer has taken the transactional id over (and with it begun
//! a transaction of its own), that transaction is left alone and recovery
//! fails loudly, naming both producers.

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice_common::kafka_txn::{self, InDoubt, TransactionalSinkState, TxnError};
use sluice_harness::admin;
use sluice_harness::testing::{infra, unique};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const CALL: Duration = Duration::from_secs(30);

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// A producer of `id` that has a transaction open holding one record.
fn open_transaction(brokers: &str, id: &str, topic: &str, payload: &str) -> TxnProducer {
    let p: TxnProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", id)
        .create()
        .expect("producer");
    p.init_transactions(CALL).expect("init transactions");
    p.begin_transaction().expect("begin");
    p.send(BaseRecord::<(), str>::to(topic).payload(payload))
        .map_err(|(e, _)| e)
        .expect("send");
    p.flush(CALL).expect("flush");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_commits_no_transaction_of_another_producer() -> anyhow::Result<()> {
    let infra = infra()?;
    let brokers = infra.kafka.clone();
    let topic = unique("in-doubt-identity");
    admin::create_topic(&brokers, &topic, 1).await?;
    let id = unique("sluice-test-txn");
    let (b, t, i) = (brokers.clone(), topic.clone(), id.clone());
    let (first, second, theirs) = tokio::task::spawn_blocking(move || {
        let no = AtomicBool::new(false);
        // The checkpoint's transaction, pre-committed by the first producer...
        let checkpointed = open_transaction(&b, &i, &t, "checkpointed");
        let first = kafka_txn::open_producer(&b, &i, CALL, &no).expect("first producer");
        // ...is aborted when another producer takes the id over and opens one.
        let theirs = open_transaction(&b, &i, &t, "theirs");
        let second = kafka_txn::open_producer(&b, &i, CALL, &no).expect("second producer");
        drop(checkpointed);
        (first, second, theirs)
    })
    .await?;
    assert_ne!(first, second, "a new producer session");
    let state = TransactionalSinkState {
        txn: 4,
        ids: 3,
        records: 1,
        producer: Some(first),
        earlier: None,
    };
    let (b, i, checkpointed) = (brokers.clone(), id.clone(), state.clone());
    let refused = tokio::task::spawn_blocking(move || {
        kafka_txn::commit_checkpointed(&b, &i, &checkpointed, CALL, &AtomicBool::new(false))
    })
    .await?;
    println!("{refused:?}");
    match refused {
        Err(TxnError::NotOurs {
            expected, found, ..
        }) => assert_eq!((expected, found), (first, second)),
        other => panic!("committed another producer's transaction: {other:?}"),
    }
    let (b, i) = (brokers.clone(), id.clone());
    let left = tokio::task::spawn_blocking(move || {
        kafka_txn::describe(&b, &i, CALL, &AtomicBool::new(false))
    })
    .await??
    .expect("the id is known");
    assert_eq!(
        (left.state.as_str(), left.producer),
        ("Ongoing", second),
        "the other producer's transaction is left open"
    );
    // The same check lets the checkpoint's own producer's transaction through.
    let ours = TransactionalSinkState {
        producer: Some(second),
        ..state
    };
    let (b, i) = (brokers.clone(), id.clone());
    let committed = tokio::task::spawn_blocking(move || {
        kafka_txn::commit_checkpointed(&b, &i, &ours, CALL, &AtomicBool::new(false))
    })
    .await??;
    assert_eq!(committed, InDoubt::Committed);
    let out = admin::read_topic(
        &brokers,
        &topic,
        1,
        Duration::from_secs(5),
        Duration::from_secs(30),
        "read_committed",
    )
    .await?;
    let payloads: Vec<&str> = out.iter().map(|m| m.payload.as_str()).collect();
    assert_eq!(payloads, ["theirs"], "only the committed transaction shows");
    tokio::task::spawn_blocking(move || drop(theirs)).await?;
    Ok(())
}
