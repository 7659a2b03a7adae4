//! Record-at-a-time operators chained inside one subtask.

mod dedup;
mod pair_sum;
mod vrl_op;

pub use dedup::Dedup;
pub use pair_sum::PairSum;
pub use vrl_op::VrlOperator;

use crate::record::{Failure, Record};
use crate::state::{GroupedState, StateSnapshot};
use sluice_common::spec::TransformSpec;
use sluice_common::vrl_program::VrlProgram;

/// A step of a chain. Keyed operators also snapshot their state by key
/// group at each checkpoint and take it back on recovery.
pub trait Operator: Send {
    fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record>;

    /// The operator's keyed state, all of it (`full`) or what changed since
    /// its previous snapshot; `None` for a stateless operator.
    fn snapshot(&mut self, _full: bool) -> Option<StateSnapshot> {
        None
    }

    fn restore(&mut self, _state: GroupedState) -> Result<(), String> {
        Err("this operator keeps no state".into())
    }

    /// Called about once a second and before each snapshot, with the time in
    /// ms since the epoch, whether records arrive or not: state that expires
    /// leaves memory and checkpoints also while the input is idle.
    fn on_timer(&mut self, _now_ms: i64) {}
}

/// Which subtask an operator runs in, for `%sluice` metadata, and the
/// job's time zone.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    pub job: String,
    pub task: String,
    pub stage: u32,
    pub subtask: u32,
    pub timezone: chrono_tz::Tz,
}

impl Default for TaskInfo {
    fn default() -> Self {
        Self {
            job: String::new(),
            task: String::new(),
            stage: 0,
            subtask: 0,
            timezone: chrono_tz::UTC,
        }
    }
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
                    VrlProgram::compile_condition(src).map_err(|e| e.to_string())?,
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

    /// Each operator's keyed state, by position, all of it or what changed
    /// since the previous snapshot; `None` for stateless ones.
    pub fn snapshot(&mut self, full: bool) -> Vec<Option<StateSnapshot>> {
        self.ops.iter_mut().map(|op| op.snapshot(full)).collect()
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

    /// Lets every operator expire what is due at `now_ms`.
    pub fn on_timer(&mut self, now_ms: i64) {
        for op in &mut self.ops {
            op.on_timer(now_ms);
        }
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
        let record = |time: &str| {
            Record::new(
                Value::from(serde_json::json!({"user_id": "u", "event_time": time})),
                Origin {
                    topic: "user-events".into(),
                    partition: 0,
                    offset: 1,
                },
            )
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

    fn run(
        spec_text: &str,
        stage: u32,
        input: Vec<serde_json::Value>,
    ) -> (Vec<serde_json::Value>, Vec<Failure>) {
        let spec = JobSpec::parse(spec_text, &|_| Some("127.0.0.1:1".into()))
            .expect("shipped spec is valid");
        let (transforms, _) = spec.stage_plan(stage);
        let mut chain = Chain::build(&transforms, &TaskInfo::default(), None).expect("compiles");
        let records = input
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                Record::new(
                    Value::from(v),
                    Origin {
                        topic: "t".into(),
                        partition: 0,
                        offset: i as i64,
                    },
                )
            })
            .collect();
        let mut failures = Vec::new();
        let out = chain.process(records, &mut failures);
        let out = out
            .iter()
            .map(|r| serde_json::to_value(&r.value).expect("json"))
            .collect();
        (out, failures)
    }

    #[test]
    fn shipped_seed_002_job_reads_numbers_and_classes_pairs() {
        let text = include_str!("../../../deploy/jobs/pair-numbers-summing-to-12.yaml");
        let input = ["7", " 3 ", "abc", "12"]
            .iter()
            .map(|m| serde_json::json!({ "message": m }))
            .collect();
        let (out, failures) = run(text, 0, input);
        assert_eq!(out[0], serde_json::json!({"number": 7, "pair": 5}));
        assert_eq!(out[1], serde_json::json!({"number": 3, "pair": 3}));
        assert_eq!(out[2], serde_json::json!({"number": 12, "pair": 0}));
        assert_eq!(failures.len(), 1);
        assert!(String::from_utf8_lossy(failures[0].payload.bytes()).contains("abc"));
    }

    #[test]
    fn shipped_seed_003_job_flattens_cleans_and_drops_credentials() {
        let text = include_str!("../../../deploy/jobs/random-users-to-cassandra.yaml");
        let user = serde_json::json!({
            "gender": " Female ",
            "name": {"title": "Miss", "first": "  Jennie ", "last": "Nichols"},
            "location": {
                "street": {"number": 8929, "name": "Valwood Pkwy"},
                "city": "Billings", "country": "United States",
                "coordinates": {"latitude": "-69.8246", "longitude": "134.8719"}
            },
            "email": "Jennie.Nichols@example.com",
            "login": {"uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00", "username": "yellowpeacock117",
                      "password": "addison", "salt": "sld1yGtd", "md5": "ab54ac", "sha1": "edcf2c", "sha256": "48df52"},
            "dob": {"date": "1992-03-08T15:13:16.688Z", "age": 30},
            "registered": {"date": "2007-07-09T05:51:59.390Z", "age": 14},
            "nat": "US"
        });
        let (out, failures) = run(text, 0, vec![user]);
        assert!(failures.is_empty(), "{failures:?}");
        let v = &out[0];
        assert_eq!(v["user_id"], "7a0eed16-9430-4d68-901f-c0d4c1c3bf00");
        assert_eq!(v["gender"], "female");
        assert_eq!(v["first_name"], "Jennie");
        assert_eq!(v["email"], "jennie.nichols@example.com");
        assert_eq!(v["address"], "8929 Valwood Pkwy");
        assert_eq!(v["state"], "unknown");
        assert_eq!(v["postcode"], "unknown");
        assert_eq!(v["phone"], "unknown");
        assert_eq!(v["latitude"], -69.8246);
        assert_eq!(v["longitude"], 134.8719);
        assert_eq!(v["date_of_birth"], "1992-03-08T15:13:16.688Z");
        assert_eq!(v["registration_date"], "2007-07-09T05:51:59.390Z");
        let all = v.to_string();
        for secret in [
            "addison", "sld1yGtd", "ab54ac", "edcf2c", "48df52", "password", "salt",
        ] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
    }
}
