use super::Operator;
use crate::record::{FailedAt, Failure, Record};
use crate::state::{GroupedState, KeyedState, Retain, StateSnapshot, key_of};
use sluice_common::spec::DedupSpec;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Passes the first record of each dedup key and drops the ones seen again
/// within the TTL. Remembered keys live in keyed state, under the key of the
/// key_by before (which decides the subtask), by their dedup key.
pub struct Dedup {
    fields: Vec<String>,
    ttl_ms: i64,
    key_fields: Vec<String>,
    /// When each dedup key was last seen, in ms since the epoch.
    seen: KeyedState<BTreeMap<String, i64>>,
    last_sweep_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Dedup {
    pub fn new(spec: &DedupSpec, key_fields: &[String]) -> Self {
        Self {
            fields: spec.fields.clone(),
            ttl_ms: i64::try_from(spec.ttl.as_millis()).unwrap_or(i64::MAX),
            key_fields: key_fields.to_vec(),
            seen: KeyedState::default(),
            last_sweep_ms: now_ms(),
        }
    }

    /// `true` when the record is the first of its dedup key within the TTL.
    fn first_seen(&mut self, record: &Record, now: i64) -> Result<bool, String> {
        let key = key_of(record, &self.key_fields)?;
        let dedup_key = if self.fields.is_empty() {
            String::new()
        } else {
            key_of(record, &self.fields)?
        };
        let seen = self.seen.get_mut_or_default(&key);
        let fresh = seen
            .get(&dedup_key)
            .is_none_or(|t| now.saturating_sub(*t) >= self.ttl_ms);
        seen.insert(dedup_key, now);
        Ok(fresh)
    }

    /// Forgets keys not seen within the TTL, at most a few times per TTL.
    fn sweep(&mut self, now: i64) {
        if now.saturating_sub(self.last_sweep_ms) < (self.ttl_ms / 4).max(1000) {
            return;
        }
        self.last_sweep_ms = now;
        let ttl = self.ttl_ms;
        self.seen.retain(|keys| {
            let before = keys.len();
            keys.retain(|_, t| now.saturating_sub(*t) < ttl);
            match keys.len() {
                0 => Retain::Drop,
                n if n < before => Retain::Changed,
                _ => Retain::Keep,
            }
        });
    }
}

impl Operator for Dedup {
    fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record> {
        let now = now_ms();
        self.sweep(now);
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            match self.first_seen(&record, now) {
                Ok(true) => out.push(record),
                Ok(false) => {}
                Err(e) => failures.push(Failure::of(&record, FailedAt::Transform, e)),
            }
        }
        out
    }

    fn snapshot(&mut self, full: bool) -> Option<StateSnapshot> {
        Some(self.seen.snapshot(full))
    }

    fn restore(&mut self, state: GroupedState) -> Result<(), String> {
        self.seen.restore(state)
    }

    fn on_timer(&mut self, now_ms: i64) {
        self.sweep(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use std::time::Duration;
    use vrl::value::Value;

    fn spec(fields: &[&str], ttl: Duration) -> DedupSpec {
        DedupSpec {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ttl,
        }
    }

    fn rec(uuid: &str, offset: i64) -> Record {
        Record::new(
            Value::from(serde_json::json!({"uuid": uuid})),
            Origin {
                topic: "random_users".into(),
                partition: 0,
                offset,
            },
        )
    }

    #[test]
    fn repeats_within_the_ttl_are_dropped_also_after_restore() {
        let mut op = Dedup::new(&spec(&[], Duration::from_secs(3600)), &["uuid".into()]);
        let mut failures = Vec::new();
        let out = op.process(vec![rec("a", 0), rec("b", 1), rec("a", 2)], &mut failures);
        assert_eq!(out.len(), 2);
        let mut restored = Dedup::new(&spec(&[], Duration::from_secs(3600)), &["uuid".into()]);
        restored
            .restore(
                op.snapshot(true)
                    .and_then(StateSnapshot::into_full)
                    .expect("keyed"),
            )
            .expect("restores");
        let out = restored.process(vec![rec("b", 3), rec("c", 4)], &mut failures);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].origin.offset, 4);
        let missing = restored.process(
            vec![Record::new(
                Value::from(serde_json::json!({"x": 1})),
                Origin {
                    topic: "random_users".into(),
                    partition: 0,
                    offset: 5,
                },
            )],
            &mut failures,
        );
        assert!(missing.is_empty());
        assert!(
            failures[0].error.contains("`uuid`"),
            "{}",
            failures[0].error
        );
    }

    #[test]
    fn expired_keys_leave_state_on_the_timer_without_input() {
        let ttl = Duration::from_secs(3);
        let mut op = Dedup::new(&spec(&[], ttl), &["uuid".into()]);
        let mut failures = Vec::new();
        let ids: Vec<Record> = (0..1000).map(|i| rec(&format!("id-{i}"), i)).collect();
        let t0 = now_ms();
        assert_eq!(op.process(ids, &mut failures).len(), 1000);
        let entries = |op: &mut Dedup| {
            op.snapshot(true)
                .and_then(StateSnapshot::into_full)
                .map_or(0, |s| s.values().map(Vec::len).sum::<usize>())
        };
        assert_eq!(entries(&mut op), 1000);
        op.on_timer(t0 + 2_000);
        assert_eq!(entries(&mut op), 1000, "within the TTL the keys stay");
        op.on_timer(t0 + 5_000);
        assert_eq!(
            entries(&mut op),
            0,
            "past the TTL the keys are gone without input"
        );
        assert_eq!(op.seen.len(), 0);
        let again = op.process(vec![rec("id-7", 1000)], &mut failures);
        assert_eq!(again.len(), 1, "an expired id passes again");
    }

    #[test]
    fn an_expired_key_passes_again() {
        let mut op = Dedup::new(&spec(&["uuid"], Duration::ZERO), &["uuid".into()]);
        let mut failures = Vec::new();
        let out = op.process(vec![rec("a", 0), rec("a", 1)], &mut failures);
        assert_eq!(out.len(), 2);
    }
}
