//! Record-at-a-time operators chained inside one subtask.

mod dedup;
mod pair_sum;
mod vrl_op;

pub use dedup::Dedup;
pub use pair_sum::PairSum;
pub use vrl_op::VrlOperator;

use crate::record::{Failure, Record};
use crate::state::GroupedState;
use sluice_common::spec::TransformSpec;
use sluice_common::vrl_program::VrlProgram;

/// A step of a chain. Keyed operators also snapshot their state by key
/// group at each checkpoint and take it back on recovery.
pub trait Operator: Send {
    fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record>;

    /// The operator's keyed state; `None` for a stateless operator.
    fn snapshot(&self) -> Option<GroupedState> {
        None
    }

    fn restore(&mut self, _state: GroupedState) -> Result<(), String> {
        Err("this operator keeps no state".into())
    }
}

/// Which subtask an operator runs in, for `%sluice` metadata.
#[derive(Debug, Clone, Default)]
pub struct TaskInfo {
    pub job: String,
    pub task: String,
    pub stage: u32,
    pub subtask: u32,
}

/// The operators of one stage, applied in order.
pub struct Chain {
    ops: Vec<Box<dyn Operator>>,
}

impl Chain {
    /// Compiles each VRL program once for this task. `key_fields` is the key
    /// the stage's input was routed by, which keyed operators keep state under.
    pub fn build(
        transforms: &[&TransformSpec],
        task: &TaskInfo,
        key_fields: Option<&[String]>,
    ) -> Result<Self, String> {
        let mut ops: Vec<Box<dyn Operator>> = Vec::new();
        let keyed =
            || key_fields.ok_or_else(|| "a keyed operator needs a key_by before it".to_string());
        for t in transforms {
            match t {
                TransformSpec::Remap(src) => ops.push(Box::new(VrlOperator::remap(
                    VrlProgram::compile(src).map_err(|e| e.to_string())?,
                    task,
                ))),
                TransformSpec::Filter(src) => ops.push(Box::new(VrlOperator::filter(
                    VrlProgram::compile(src).map_err(|e| e.to_string())?,
                    task,
                ))),
                TransformSpec::PairSum(spec) => ops.push(Box::new(PairSum::new(spec, keyed()?))),
                TransformSpec::Dedup(spec) => ops.push(Box::new(Dedup::new(spec, keyed()?))),
                TransformSpec::KeyBy(_) => {}
            }
        }
        Ok(Self { ops })
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Each operator's keyed state, by position; `None` for stateless ones.
    pub fn snapshot(&self) -> Vec<Option<GroupedState>> {
        self.ops.iter().map(|op| op.snapshot()).collect()
    }

    pub fn restore(&mut self, states: Vec<Option<GroupedState>>) -> Result<(), String> {
        for (i, (op, state)) in self.ops.iter_mut().zip(states).enumerate() {
            if let Some(state) = state {
                op.restore(state)
                    .map_err(|e| format!("operator {i} of the stage: {e}"))?;
            }
        }
        Ok(())
    }

    pub fn process(
        &mut self,
        mut records: Vec<Record>,
        failures: &mut Vec<Failure>,
    ) -> Vec<Record> {
        for op in &mut self.ops {
            records = op.process(records, failures);
        }
        records
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;
    use sluice_common::JobSpec;
    use vrl::value::Value;

    #[test]
    fn shipped_seed_000_job_buckets_by_utc_date() {
        let text = include_str!("../../../deploy/jobs/user-events-to-cassandra.yaml");
        let spec =
            JobSpec::parse(text, &|_| Some("127.0.0.1:1".into())).expect("shipped spec is valid");
        let (transforms, key) = spec.stage_plan(0);
        assert_eq!(key, Some(&["user_id".to_string()][..]));
        let mut chain = Chain::build(&transforms, &TaskInfo::default(), None).expect("compiles");
        let record = |time: &str| Record {
            value: Value::from(serde_json::json!({"user_id": "u", "event_time": time})),
            origin: Origin {
                topic: "user-events".into(),
                partition: 0,
                offset: 1,
            },
        };
        let mut failures = Vec::new();
        let out = chain.process(
            vec![
                record("2024-05-01T23:59:59.500Z"),
                record("2024-05-02T01:00:00+02:00"),
                record("yesterday"),
            ],
            &mut failures,
        );
        assert_eq!(out.len(), 2);
        let bucket = |r: &Record| match &r.value {
            Value::Object(m) => m
                .get("bucket_date")
                .map(|v| v.to_string_lossy().into_owned()),
            _ => None,
        };
        assert_eq!(bucket(&out[0]).as_deref(), Some("2024-05-01"));
        assert_eq!(
            bucket(&out[1]).as_deref(),
            Some("2024-05-01"),
            "+02:00 is the previous UTC day"
        );
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].error.contains("yesterday"),
            "{}",
            failures[0].error
        );
    }
}
