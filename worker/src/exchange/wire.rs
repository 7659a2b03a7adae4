use crate::record::{Origin, Record};
use sluice_proto::WireRecord;

pub fn to_wire(r: &Record) -> WireRecord {
    WireRecord {
        value: serde_json::to_vec(&r.value).unwrap_or_default(),
        topic: r.origin.topic.to_string(),
        partition: r.origin.partition,
        offset: r.origin.offset,
    }
}

pub fn from_wire(w: WireRecord) -> Result<Record, String> {
    let value = serde_json::from_slice(&w.value).map_err(|e| {
        format!(
            "record {}/{}/{} arrived damaged: {e}",
            w.topic, w.partition, w.offset
        )
    })?;
    Ok(Record {
        value,
        origin: Origin {
            topic: w.topic.into(),
            partition: w.partition,
            offset: w.offset,
        },
    })
}
