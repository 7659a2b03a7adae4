//! Records as exchange frames: a batch names its source topic once, each
//! record carries its value (a `Value` message), offset, Kafka key and
//! headers, so a record that crossed to another worker is the same record.

use super::value_codec;
use crate::record::{ExactNumbers, Origin, Record, json};
use bytes::Bytes;
use sluice_proto::{Header, RecordBatch, WireRecord};
use std::sync::Arc;

/// `records` as batches of about `max_bytes` each, one source topic per batch.
pub fn to_batches(records: &[Record], max_bytes: usize) -> Vec<RecordBatch> {
    let mut out: Vec<RecordBatch> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let same_topic = out.last().is_some_and(|b| *b.topic == *r.origin.topic);
        if !same_topic || bytes >= max_bytes {
            out.push(RecordBatch {
                records: Vec::new(),
                topic: r.origin.topic.to_string(),
            });
            bytes = 0;
        }
        let w = to_wire(r);
        bytes += w.value.len() + w.json.len() + w.key.as_ref().map_or(0, Vec::len) + 16;
        if let Some(batch) = out.last_mut() {
            batch.records.push(w);
        }
    }
    out
}

fn to_wire(r: &Record) -> WireRecord {
    let mut value = Vec::new();
    if r.raw.is_none() {
        value.reserve(64);
        value_codec::encode(&r.value, r.exact.as_deref(), &mut value);
    }
    WireRecord {
        json: r.raw.as_ref().map_or_else(Vec::new, |j| j.to_vec()),
        value,
        partition: r.origin.partition,
        offset: r.origin.offset,
        key: r.key.as_ref().map(|k| k.to_vec()),
        headers: r
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|(name, value)| Header {
                name: name.clone(),
                value: value.as_ref().map(|v| v.to_vec()),
            })
            .collect(),
    }
}

/// The records of a received batch.
pub fn from_batch(batch: RecordBatch) -> Result<Vec<Record>, String> {
    let topic: Arc<str> = batch.topic.into();
    batch
        .records
        .into_iter()
        .map(|w| from_wire(&topic, w))
        .collect()
}

fn from_wire(topic: &Arc<str>, w: WireRecord) -> Result<Record, String> {
    let damaged = |e: String| {
        format!(
            "record {topic}/{}/{} arrived damaged: {e}",
            w.partition, w.offset
        )
    };
    let (value, exact, raw) = if w.json.is_empty() {
        let mut exact = ExactNumbers::default();
        let value = value_codec::decode(&w.value, &mut exact).map_err(damaged)?;
        (value, (!exact.is_empty()).then(|| Box::new(exact)), None)
    } else {
        let (value, exact) = json::decode(&w.json).map_err(damaged)?;
        (value, exact, Some(Bytes::from(w.json)))
    };
    Ok(Record {
        value,
        origin: Origin {
            topic: topic.clone(),
            partition: w.partition,
            offset: w.offset,
        },
        key: w.key.map(Bytes::from),
        headers: (!w.headers.is_empty()).then(|| {
            Arc::new(
                w.headers
                    .into_iter()
                    .map(|h| (h.name, h.value.map(Bytes::from)))
                    .collect(),
            )
        }),
        exact,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::json;

    #[test]
    fn an_unchanged_record_crosses_as_the_json_it_was_read_as() {
        let raw = Bytes::from_static(br#"{"z":1, "a":18446744073709551615,"a":2}"#);
        let (value, exact) = json::decode(&raw).expect("decodes");
        let mut record = Record::new(
            value,
            Origin {
                topic: "in".into(),
                partition: 0,
                offset: 1,
            },
        );
        record.exact = exact;
        record.raw = Some(raw.clone());
        let back = from_batch(to_batches(&[record.clone()], 1 << 20).remove(0)).expect("decodes");
        assert_eq!(back[0].raw, Some(raw));
        assert_eq!(back[0].value, record.value);
    }

    #[test]
    fn a_record_that_crossed_workers_is_the_same_record() {
        let (value, exact) = json::decode(
            br#"{"id":18446744073709551615,"ts":"2024-01-01T00:00:00Z","n":[1,2.5,null]}"#,
        )
        .expect("decodes");
        let mut record = Record::new(
            value,
            Origin {
                topic: "in".into(),
                partition: 3,
                offset: 77,
            },
        );
        record.exact = exact;
        record.key = Some(Bytes::from_static(b"\x00key"));
        record.headers = Some(Arc::new(vec![
            ("h".into(), Some(Bytes::from_static(b"v"))),
            ("none".into(), None),
        ]));
        let mut timestamped = record.clone();
        if let vrl::value::Value::Object(map) = &mut timestamped.value {
            map.insert(
                "when".into(),
                vrl::value::Value::Timestamp("2024-12-31T23:30:00Z".parse().expect("time")),
            );
        }
        let batches = to_batches(&[record.clone(), timestamped.clone()], 1 << 20);
        assert_eq!(batches.len(), 1);
        let back = from_batch(batches.into_iter().next().expect("batch")).expect("decodes");
        for (sent, got) in [record, timestamped].iter().zip(&back) {
            assert_eq!(got.value, sent.value);
            assert_eq!(got.origin, sent.origin);
            assert_eq!(got.key, sent.key);
            assert_eq!(got.headers, sent.headers);
            assert_eq!(got.exact, sent.exact);
            assert_eq!(got.to_json(), sent.to_json());
        }
    }
}
