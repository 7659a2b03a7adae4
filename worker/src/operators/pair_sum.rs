use super::Operator;
use crate::record::{FailedAt, Failure, Record};
use crate::state::{GroupedState, KeyedState, StateSnapshot, key_of};
use serde::{Deserialize, Serialize};
use sluice_common::spec::PairSumSpec;
use vrl::value::{ObjectMap, Value};

/// A number still waiting for its partner, and where it was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    number: i64,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Waiting {
    fn value(&self) -> Value {
        let mut m = ObjectMap::new();
        m.insert("number".into(), Value::from(self.number));
        m.insert("topic".into(), Value::from(self.topic.as_str()));
        m.insert("partition".into(), Value::from(i64::from(self.partition)));
        m.insert("offset".into(), Value::from(self.offset));
        Value::Object(m)
    }
}

/// Pairs each number with an earlier unmatched one of the same key that
/// completes the total, oldest first; numbers without a partner wait in
/// keyed state. A number outside `0..=total`, or no number at all, is a
/// failed record.
pub struct PairSum {
    field: String,
    total: i64,
    key_fields: Vec<String>,
    unmatched: KeyedState<Vec<Waiting>>,
}

impl PairSum {
    pub fn new(spec: &PairSumSpec, key_fields: &[String]) -> Self {
        Self {
            field: spec.field.clone(),
            total: i64::try_from(spec.total).unwrap_or(i64::MAX),
            key_fields: key_fields.to_vec(),
            unmatched: KeyedState::default(),
        }
    }

    fn number(&self, value: &Value) -> Result<i64, String> {
        let field = &self.field;
        let Value::Object(map) = value else {
            return Err("pair_sum needs an object record".into());
        };
        let n = match map.get(field.as_str()) {
            Some(Value::Integer(n)) => *n,
            Some(Value::Float(f)) if f.fract() == 0.0 => f.into_inner() as i64,
            Some(other) => {
                return Err(format!(
                    "field `{field}` is not a whole number: {}",
                    serde_json::to_string(other).unwrap_or_default()
                ));
            }
            None => return Err(format!("field `{field}` is missing")),
        };
        if !(0..=self.total).contains(&n) {
            return Err(format!(
                "number {n} in `{field}` is outside 0..={}",
                self.total
            ));
        }
        Ok(n)
    }

    fn pair(&mut self, record: &Record) -> Result<Option<Value>, String> {
        let key = key_of(record, &self.key_fields)?;
        let number = self.number(&record.value)?;
        let this = Waiting {
            number,
            topic: record.origin.topic.to_string(),
            partition: record.origin.partition,
            offset: record.origin.offset,
        };
        let waiting = self.unmatched.get_mut_or_default(&key);
        let partner = waiting
            .iter()
            .position(|w| w.number == self.total - number)
            .map(|i| waiting.remove(i));
        let Some(first) = partner else {
            waiting.push(this);
            return Ok(None);
        };
        if waiting.is_empty() {
            self.unmatched.remove(&key);
        }
        let mut out = ObjectMap::new();
        out.insert(
            "pair".into(),
            Value::Array(vec![Value::from(first.number), Value::from(number)]),
        );
        out.insert("sum".into(), Value::from(self.total));
        out.insert("first".into(), first.value());
        out.insert("second".into(), this.value());
        Ok(Some(Value::Object(out)))
    }
}

impl Operator for PairSum {
    fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record> {
        let mut out = Vec::new();
        for record in records {
            match self.pair(&record) {
                Ok(Some(value)) => out.push(Record::new(value, record.origin.clone())),
                Ok(None) => {}
                Err(e) => failures.push(Failure::of(&record, FailedAt::Transform, e)),
            }
        }
        out
    }

    fn snapshot(&mut self, full: bool) -> Option<StateSnapshot> {
        Some(self.unmatched.snapshot(full))
    }

    fn restore(&mut self, state: GroupedState) -> Result<(), String> {
        self.unmatched.restore(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn rec(n: serde_json::Value, offset: i64) -> Record {
        let class = n.as_i64().map_or(-1, |n| n.min(12 - n));
        Record::new(
            Value::from(serde_json::json!({"number": n, "pair": class})),
            Origin {
                topic: "raw-topic".into(),
                partition: 0,
                offset,
            },
        )
    }

    fn pairs(out: &[Record]) -> Vec<(i64, i64)> {
        out.iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::to_value(&r.value).expect("json");
                (
                    v["first"]["offset"].as_i64().expect("offset"),
                    v["second"]["offset"].as_i64().expect("offset"),
                )
            })
            .collect()
    }

    #[test]
    fn pairs_oldest_first_and_rejects_out_of_range() {
        let spec = PairSumSpec {
            field: "number".into(),
            total: 12,
        };
        let mut op = PairSum::new(&spec, &["pair".into()]);
        let mut failures = Vec::new();
        let input = vec![
            rec(5.into(), 0),
            rec(5.into(), 1),
            rec(7.into(), 2),
            rec(6.into(), 3),
            rec(13.into(), 4),
            rec("x".into(), 5),
            rec(6.into(), 6),
            rec(7.into(), 7),
        ];
        let out = op.process(input, &mut failures);
        assert_eq!(pairs(&out), vec![(0, 2), (3, 6), (1, 7)]);
        assert_eq!(failures.len(), 2);
        assert!(
            failures[0].error.contains("outside 0..=12"),
            "{}",
            failures[0].error
        );
        assert!(
            failures[1].error.contains("not a whole number"),
            "{}",
            failures[1].error
        );
        assert_eq!(op.unmatched.len(), 0, "matched keys leave no state");
    }

    #[test]
    fn unmatched_numbers_survive_a_snapshot() {
        let spec = PairSumSpec {
            field: "number".into(),
            total: 12,
        };
        let mut before = PairSum::new(&spec, &["pair".into()]);
        let mut failures = Vec::new();
        before.process(vec![rec(3.into(), 10)], &mut failures);
        let mut after = PairSum::new(&spec, &["pair".into()]);
        after
            .restore(
                before
                    .snapshot(true)
                    .and_then(StateSnapshot::into_full)
                    .expect("keyed"),
            )
            .expect("restores");
        let out = after.process(vec![rec(9.into(), 11)], &mut failures);
        assert_eq!(pairs(&out), vec![(10, 11)]);
    }
}
