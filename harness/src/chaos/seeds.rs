//! The shipped seed jobs as chaos workloads: each job spec of
//! `deploy/jobs` (and its CQL schema) as a user deploys it, pointed at the
//! run's topics, keyspace or prefix, fed by a sequenced generator of the
//! seed's own records, and read back on its own afterwards: every input
//! accounted for, its values compared with what the job must make of it.
//!
//! The spec is changed only where a run needs it to be: names, addresses,
//! parallelism, checkpoints every 500 ms abandoned after 10 s, and restarts
//! without a practical limit. Transforms, delivery and sink settings stay
//! as shipped.

use super::workload::{Counts, JobKind, Workload};
use crate::admin;
use crate::datagen::ingestion::{IngestionEvents, IngestionKind};
use crate::datagen::numbers::{Numbers, expected_pairs, valid};
use crate::datagen::user_events::UserEvents;
use crate::datagen::users::{CreatedUsers, RandomUsers, seed_003_row};
use anyhow::Context;
use futures::TryStreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Seed of every generator: the same ids and values in every run.
const SEED: u64 = 7;
/// Seed 002's pair total.
const TOTAL: u64 = 12;
/// Every how many of seed 002's numbers one is corrupt.
const CORRUPT_EVERY: u64 = 40;
/// Seed 004's events are spread as for this many over three hours; more
/// go on later. Fixed, so that the check regenerates the same times
/// whatever the run produced.
const SPREAD: u64 = 20_000;

/// A generated message: key (`None`: spread over partitions) and payload.
pub type Message = (Option<String>, String);

/// A seed job's shipped spec, CQL schema (with the keyspace it names) and
/// table.
struct Shipped {
    spec: &'static str,
    cql: Option<(&'static str, &'static str, &'static str)>,
}

fn shipped(kind: JobKind) -> anyhow::Result<Shipped> {
    Ok(match kind {
        JobKind::Seed000 => Shipped {
            spec: include_str!("../../../deploy/jobs/user-events-to-cassandra.yaml"),
            cql: Some((
                include_str!("../../../deploy/cql/user_events.cql"),
                "event_streaming",
                "user_events",
            )),
        },
        JobKind::Seed001 => Shipped {
            spec: include_str!("../../../deploy/jobs/users-created-to-cassandra.yaml"),
            cql: Some((
                include_str!("../../../deploy/cql/created_users.cql"),
                "spark_user_streams",
                "created_users",
            )),
        },
        JobKind::Seed002 => Shipped {
            spec: include_str!("../../../deploy/jobs/pair-numbers-summing-to-12.yaml"),
            cql: None,
        },
        JobKind::Seed003 => Shipped {
            spec: include_str!("../../../deploy/jobs/random-users-to-cassandra.yaml"),
            cql: Some((
                include_str!("../../../deploy/cql/random_users.cql"),
                "user_data",
                "users",
            )),
        },
        JobKind::Seed004 => Shipped {
            spec: include_str!("../../../deploy/jobs/clickstream-to-s3.json"),
            cql: None,
        },
        other => anyhow::bail!("{other:?} is no shipped seed job"),
    })
}

/// The dead-letter topic of a run's seed job.
pub fn dead_letter_topic(w: &Workload) -> String {
    format!("{}-dlq", w.output)
}

/// Creates what the shipped job expects to find: its dead-letter topic,
/// seed 002's output topic, and the schema of its CQL file in the run's
/// keyspace.
pub async fn create(w: &Workload, partitions: i32) -> anyhow::Result<()> {
    admin::create_topic(&w.brokers, &dead_letter_topic(w), 1).await?;
    if w.kind == JobKind::Seed002 {
        admin::create_topic(&w.brokers, &w.output, partitions).await?;
    }
    if let Some((cql, keyspace, _)) = shipped(w.kind)?.cql {
        let session = admin::cassandra_session(&w.read_address).await?;
        admin::run_cql(&session, &cql.replace(keyspace, &w.keyspace())).await?;
    }
    Ok(())
}

/// The shipped spec, as the JobService takes it (JSON), on the run's
/// topics, keyspace or prefix and addresses.
pub fn spec_json(w: &Workload, name: &str, restart: Value) -> anyhow::Result<String> {
    let shipped = shipped(w.kind)?;
    let text = shipped
        .spec
        .replace("${KAFKA_BROKER}", &w.job_brokers)
        .replace("${CASSANDRA_HOST}", &w.sink_address)
        .replace("${S3_ENDPOINT}", &format!("http://{}", w.sink_address));
    // JSON is YAML too: one parser for both kinds of shipped file.
    let mut spec: Value = serde_yaml::from_str(&text).context("a shipped spec does not parse")?;
    spec["name"] = name.into();
    spec["parallelism"] = w.parallelism.into();
    spec["checkpoint"] = json!({"interval": "500ms", "timeout": "10s"});
    spec["restart"] = restart;
    spec["source"]["kafka"]["topic"] = w.input.clone().into();
    spec["dead_letter"]["kafka"]["topic"] = dead_letter_topic(w).into();
    let sink = &mut spec["sink"];
    if sink.get("kafka").is_some() {
        sink["kafka"]["topic"] = w.output.clone().into();
    }
    if sink.get("cassandra").is_some() {
        sink["cassandra"]["keyspace"] = w.keyspace().into();
    }
    if sink.get("s3").is_some() {
        sink["s3"]["bucket"] = super::workload::BUCKET.into();
        sink["s3"]["prefix"] = w.output.clone().into();
        sink["s3"]["batch_interval"] = "1s".into();
    }
    Ok(spec.to_string())
}

/// The seed's records in order, without end; seed 003's keyed by their
/// `login.uuid`, so that the repeats of one keep their order.
pub fn messages(kind: JobKind) -> anyhow::Result<Box<dyn Iterator<Item = Message> + Send>> {
    Ok(match kind {
        JobKind::Seed000 => Box::new(user_events().map(|g| (None, g.payload))),
        JobKind::Seed001 => Box::new(CreatedUsers::new(SEED).map(|u| (None, u.to_string()))),
        JobKind::Seed002 => {
            Box::new(Numbers::paired(SEED, TOTAL, CORRUPT_EVERY).map(|n| (None, n)))
        }
        JobKind::Seed003 => Box::new(RandomUsers::new(SEED, 10, 13).map(|u| {
            let key = u["login"]["uuid"].as_str().map(str::to_string);
            (key, u.to_string())
        })),
        JobKind::Seed004 => Box::new(
            IngestionEvents::new(IngestionKind::Clickstream, SEED, SPREAD)
                .map(|e| (None, e.payload)),
        ),
        other => anyhow::bail!("{other:?} is no shipped seed job"),
    })
}

/// How many of the seed's records make a whole input, one the check can
/// hold exactly to account: the input ends only after a multiple of it.
/// Seed 002's numbers come in blocks in which every number has a
/// complement, so every valid input must end in a pair.
pub fn whole_input(kind: JobKind) -> u64 {
    match kind {
        JobKind::Seed002 => Numbers::paired_block(CORRUPT_EVERY),
        _ => 1,
    }
}

/// Seed 000's events: 200 users, none malformed.
fn user_events() -> UserEvents {
    UserEvents::new(SEED, 200, None)
}

/// Reads the seed job's output back and checks it against the first
/// `w.records` generated records.
pub async fn check(w: &Workload) -> anyhow::Result<Counts> {
    let records = usize::try_from(w.records)?;
    let input =
        || -> anyhow::Result<Vec<Message>> { Ok(messages(w.kind)?.take(records).collect()) };
    match w.kind {
        JobKind::Seed000 => check_user_events(w, records).await,
        JobKind::Seed001 => {
            let expected = input()?.iter().map(|(_, p)| created_user_row(p)).collect();
            let rows = select_json(w, "created_users").await?;
            Ok(tally(expected, rows, "id"))
        }
        JobKind::Seed002 => check_pairs(w, records).await,
        JobKind::Seed003 => {
            let mut first: BTreeMap<String, Value> = BTreeMap::new();
            for (uuid, payload) in &input()? {
                if let Some(uuid) = uuid
                    && !first.contains_key(uuid)
                {
                    first.insert(uuid.clone(), seed_003_row(&serde_json::from_str(payload)?));
                }
            }
            let rows = select_json(w, "users").await?;
            Ok(tally(first.into_values().collect(), rows, "user_id"))
        }
        JobKind::Seed004 => {
            let expected = input()?
                .iter()
                .map(|(_, p)| serde_json::from_str(p))
                .collect::<Result<Vec<Value>, _>>()?;
            let store = admin::s3_bucket(&w.read_address, super::workload::BUCKET)?;
            let mut lines = Vec::new();
            for (key, body) in admin::read_objects(store.as_ref(), &w.output).await? {
                for line in String::from_utf8_lossy(&body).lines() {
                    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
                    lines.push(placed(&key, &w.output, v));
                }
            }
            Ok(tally(expected, lines, "event_id"))
        }
        other => anyhow::bail!("{other:?} is no shipped seed job"),
    }
}

/// A seed 004 event as read from the file `key` under `prefix`: itself when
/// the file lies under the event's own `dt=.../hour=...`, otherwise the
/// event with a `misplaced` field, so that it counts as corrupted.
fn placed(key: &str, prefix: &str, mut event: Value) -> Value {
    let time = event["timestamp"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis);
    let want = time.map(|t| t.format("dt=%Y-%m-%d/hour=%H/").to_string());
    let rest = key.strip_prefix(&format!("{prefix}/")).unwrap_or(key);
    if !want.is_some_and(|w| rest.starts_with(&w)) {
        event["misplaced"] = key.into();
    }
    event
}

/// Seed 001's row of `created_users` for a generated message, as
/// Cassandra's `SELECT JSON` shows it: the job renames `post_code`.
fn created_user_row(payload: &str) -> Value {
    let mut user: Value = serde_json::from_str(payload).unwrap_or_default();
    if let Some(fields) = user.as_object_mut() {
        let code = fields.remove("post_code").unwrap_or(Value::Null);
        fields.insert("postal_code".into(), code);
    }
    user
}

/// Every row of `table` in the run's keyspace, as `SELECT JSON` gives it.
async fn select_json(w: &Workload, table: &str) -> anyhow::Result<Vec<Value>> {
    let session = admin::cassandra_session(&w.read_address).await?;
    let mut rows = session
        .query_iter(format!("SELECT JSON * FROM {}.{table}", w.keyspace()), ())
        .await?
        .rows_stream::<(String,)>()?;
    let mut out = Vec::new();
    while let Some((text,)) = rows.try_next().await? {
        out.push(serde_json::from_str(&text)?);
    }
    Ok(out)
}

/// Seed 000: each valid event one row of `user_events`, in its date's
/// bucket, with its time, type, id and metadata.
async fn check_user_events(w: &Workload, records: usize) -> anyhow::Result<Counts> {
    use scylla::value::{CqlDate, CqlTimestamp};
    let expected = user_events()
        .take(records)
        .filter_map(|g| g.event)
        .map(|e| {
            json!({
                "event_id": e.event_id.to_string(),
                "user_id": e.user_id.to_string(),
                "bucket_date": CqlDate::from(e.event_time.date_naive()).0,
                "event_time": e.event_time.timestamp_millis(),
                "event_type": e.event_type,
                "metadata": e.metadata.into_iter().collect::<BTreeMap<_, _>>(),
            })
        })
        .collect();
    let session = admin::cassandra_session(&w.read_address).await?;
    let mut rows = session
        .query_iter(
            format!(
                "SELECT user_id, bucket_date, event_time, event_type, event_id, metadata \
                 FROM {}.user_events",
                w.keyspace()
            ),
            (),
        )
        .await?
        .rows_stream::<(
            uuid::Uuid,
            CqlDate,
            CqlTimestamp,
            String,
            uuid::Uuid,
            BTreeMap<String, String>,
        )>()?;
    let mut found = Vec::new();
    while let Some((user_id, bucket, time, event_type, event_id, metadata)) =
        rows.try_next().await?
    {
        found.push(json!({
            "event_id": event_id.to_string(),
            "user_id": user_id.to_string(),
            "bucket_date": bucket.0,
            "event_time": time.0,
            "event_type": event_type,
            "metadata": metadata,
        }));
    }
    Ok(tally(expected, found, "event_id"))
}

/// Counts `found` against `expected`, both told apart by their field `id`:
/// an id missing is lost, one found twice duplicated, a value unlike the
/// expected one (or an unknown id) corrupted.
fn tally(expected: Vec<Value>, found: Vec<Value>, id: &str) -> Counts {
    let id_of = |v: &Value| match &v[id] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let expected: BTreeMap<String, Value> = expected.into_iter().map(|v| (id_of(&v), v)).collect();
    let mut counts = Counts::default();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for v in found {
        counts.read += 1;
        let key = id_of(&v);
        if expected.get(&key) != Some(&v) {
            counts.corrupt(v.to_string());
        }
        *seen.entry(key).or_default() += 1;
    }
    for key in expected.keys() {
        match seen.get(key) {
            None => counts.lose(key.clone()),
            Some(&c) if c > 1 => counts.duplicate(key.clone(), u64::from(c - 1)),
            Some(_) => {}
        }
    }
    counts
}

/// A number of seed 002 as the job's output names it: where it was read.
fn place(v: &Value) -> Option<(i32, i64, u64)> {
    Some((
        i32::try_from(v["partition"].as_i64()?).ok()?,
        v["offset"].as_i64()?,
        v["number"].as_u64()?,
    ))
}

/// Seed 002: the committed pairs against the input read back. A pair
/// naming an input that is not there or not its number, or not summing to
/// the total, is corrupted; an input in two pairs duplicated; a pair the
/// input's numbers allow but missing is lost, and so is a corrupt input
/// missing from the dead-letter topic. Counts are of pairs and of dead
/// letters; dead letters are written at least once, so a repeated one is
/// no duplicate.
async fn check_pairs(w: &Workload, records: usize) -> anyhow::Result<Counts> {
    let read = |topic: String, expected: usize, isolation: &'static str| {
        let brokers = w.brokers.clone();
        async move {
            admin::read_topic(
                &brokers,
                &topic,
                expected,
                Duration::from_secs(4),
                Duration::from_secs(300),
                isolation,
            )
            .await
        }
    };
    anyhow::ensure!(
        (records as u64).is_multiple_of(whole_input(w.kind)),
        "{records} records are no whole input of seed 002 (blocks of {})",
        whole_input(w.kind)
    );
    let input = read(w.input.clone(), records, "read_uncommitted").await?;
    anyhow::ensure!(
        input.len() == records,
        "read back {} of the {records} input records",
        input.len()
    );
    let by_place: BTreeMap<(i32, i64), &str> = input
        .iter()
        .map(|m| ((m.partition, m.offset), m.payload.as_str()))
        .collect();
    let expected = expected_pairs(input.iter().map(|m| m.payload.as_str()), TOTAL);
    let mut counts = Counts::default();
    let mut used: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut found: BTreeMap<u64, u64> = BTreeMap::new();
    for m in read(w.output.clone(), usize::MAX, "read_committed").await? {
        counts.read += 1;
        let v: Value = serde_json::from_str(&m.payload).unwrap_or_default();
        let (Some(a), Some(b)) = (place(&v["first"]), place(&v["second"])) else {
            counts.corrupt(m.payload);
            continue;
        };
        let real = |(p, o, n): (i32, i64, u64)| {
            by_place
                .get(&(p, o))
                .and_then(|text| valid(text, TOTAL))
                .is_some_and(|read| read == n)
        };
        if a.2 + b.2 != TOTAL || !real(a) || !real(b) {
            counts.corrupt(m.payload);
            continue;
        }
        for (p, o, _) in [a, b] {
            if !used.insert((p, o)) {
                counts.duplicate(format!("{p}/{o}"), 1);
            }
        }
        *found.entry(a.2.min(b.2)).or_default() += 1;
    }
    // The valid inputs in no pair, by the smaller number of the pair they
    // belong in: with a whole input (see `whole_input`), a lost pair names
    // the inputs left unpaired, one of them the lost one.
    let mut unpaired: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (place, text) in &by_place {
        if let Some(n) = valid(text, TOTAL).filter(|_| !used.contains(place)) {
            unpaired
                .entry(n.min(TOTAL - n))
                .or_default()
                .push(format!("{}/{} ({n})", place.0, place.1));
        }
    }
    for (a, want) in &expected {
        let got = found.get(a).copied().unwrap_or(0);
        let left = unpaired.get(a).map(|p| p.join(", ")).unwrap_or_default();
        for _ in got..*want {
            counts.lose(format!("a pair of {a} and {}; unpaired: {left}", TOTAL - a));
        }
    }
    let dead: BTreeSet<(i32, i64)> = read(dead_letter_topic(w), usize::MAX, "read_uncommitted")
        .await?
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(&m.payload).ok())
        .filter_map(|v| {
            Some((
                i32::try_from(v["partition"].as_i64()?).ok()?,
                v["offset"].as_i64()?,
            ))
        })
        .collect();
    for (place, text) in &by_place {
        let corrupt = valid(text, TOTAL).is_none();
        if corrupt && !dead.contains(place) {
            counts.lose(format!("dead letter {}/{}", place.0, place.1));
        }
        if !corrupt && dead.contains(place) {
            counts.corrupt(format!("valid input {}/{} dead-lettered", place.0, place.1));
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: JobKind) -> Workload {
        Workload {
            kind,
            brokers: "b:1".into(),
            job_brokers: "proxy:2".into(),
            input: "in-1".into(),
            output: "out-1".into(),
            records: 10,
            parallelism: 3,
            sink_address: "sink:3".into(),
            read_address: String::new(),
        }
    }

    #[test]
    fn a_shipped_spec_keeps_its_transforms_on_the_runs_names_and_addresses() {
        let restart = json!({"max_attempts": 5});
        for kind in JobKind::SEEDS {
            let spec: Value =
                serde_json::from_str(&spec_json(&workload(kind), "s", restart.clone()).unwrap())
                    .unwrap();
            let text = spec.to_string();
            assert!(!text.contains("${"), "{kind:?}: {text}");
            assert_eq!(spec["source"]["kafka"]["topic"], "in-1");
            assert_eq!(spec["source"]["kafka"]["brokers"], "proxy:2");
            assert_eq!(spec["dead_letter"]["kafka"]["topic"], "out-1-dlq");
            assert_eq!(spec["parallelism"], 3);
            assert_eq!(spec["restart"], restart);
            assert!(spec["transforms"].as_array().is_some_and(|t| !t.is_empty()));
        }
        let pairs: Value =
            serde_json::from_str(&spec_json(&workload(JobKind::Seed002), "s", json!({})).unwrap())
                .unwrap();
        assert_eq!(pairs["sink"]["kafka"]["topic"], "out-1");
        assert_eq!(pairs["delivery"], "exactly_once");
        let users: Value =
            serde_json::from_str(&spec_json(&workload(JobKind::Seed003), "s", json!({})).unwrap())
                .unwrap();
        assert_eq!(users["sink"]["cassandra"]["keyspace"], "out_1");
        assert_eq!(users["sink"]["cassandra"]["contact_points"][0], "sink:3");
        let clicks: Value =
            serde_json::from_str(&spec_json(&workload(JobKind::Seed004), "s", json!({})).unwrap())
                .unwrap();
        assert_eq!(clicks["sink"]["s3"]["endpoint"], "http://sink:3");
        assert_eq!(clicks["sink"]["s3"]["prefix"], "out-1");
    }

    #[test]
    fn a_seed_job_exchanges_records_when_its_shipped_spec_keys_them() {
        for kind in JobKind::SEEDS {
            let spec: Value =
                serde_json::from_str(&spec_json(&workload(kind), "s", json!({})).unwrap()).unwrap();
            let keyed = spec["transforms"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t.get("key_by").is_some()));
            assert_eq!(kind.exchanges(), keyed, "{kind:?}");
        }
    }

    #[test]
    fn the_tally_finds_lost_duplicated_and_changed_records() {
        let rec = |id: &str, v: u32| json!({"id": id, "v": v});
        let expected = vec![rec("a", 1), rec("b", 2), rec("c", 3), rec("d", 4)];
        let found = vec![
            rec("a", 1),
            rec("b", 2),
            rec("b", 2),
            rec("c", 9),
            rec("z", 0),
        ];
        let counts = tally(expected, found, "id");
        assert_eq!(counts.read, 5);
        assert_eq!(counts.lost_examples, vec!["d".to_string()]);
        assert_eq!(counts.duplicated, 1);
        // c's changed value and the unknown z.
        assert_eq!(counts.corrupted, 2);
    }

    #[test]
    fn a_seed_004_event_outside_its_hour_is_marked() {
        let event = json!({"event_id": "evt_1", "timestamp": 1_710_369_000_000_i64});
        let good = placed("p/dt=2024-03-13/hour=22/part-1.jsonl", "p", event.clone());
        assert_eq!(good, event);
        let bad = placed("p/dt=2024-03-13/hour=23/part-1.jsonl", "p", event.clone());
        assert_ne!(bad, event);
    }

    #[test]
    fn seed_generators_repeat_their_records() {
        for kind in JobKind::SEEDS {
            let a: Vec<Message> = messages(kind).unwrap().take(50).collect();
            let b: Vec<Message> = messages(kind).unwrap().take(50).collect();
            assert_eq!(a, b, "{kind:?}");
        }
    }
}
