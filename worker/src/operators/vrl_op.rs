use crate::record::{FailedAt, Failure, Record};
use sluice_common::vrl_program::{VrlProgram, VrlRunner};
use vrl::value::Value;

/// `remap` rewrites each record with a VRL program; `filter` keeps the
/// records for which the program returns `true`.
pub struct VrlOperator {
    runner: VrlRunner,
    keep_on_true: bool,
}

impl VrlOperator {
    pub fn remap(program: VrlProgram) -> Self {
        Self {
            runner: program.runner(),
            keep_on_true: false,
        }
    }

    pub fn filter(program: VrlProgram) -> Self {
        Self {
            runner: program.runner(),
            keep_on_true: true,
        }
    }

    pub fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record> {
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let origin = record.origin.clone();
            let kept = record.value.clone();
            match self.runner.run(record.value) {
                Ok((value, result)) => {
                    if !self.keep_on_true {
                        out.push(Record { value, origin });
                        continue;
                    }
                    match result {
                        Value::Boolean(true) => out.push(Record {
                            value: kept,
                            origin,
                        }),
                        Value::Boolean(false) => {}
                        other => failures.push(Failure::of(
                            &Record {
                                value: kept,
                                origin,
                            },
                            FailedAt::Transform,
                            format!("filter returned {}, not a boolean", other.kind_str()),
                        )),
                    }
                }
                Err(error) => failures.push(Failure::of(
                    &Record {
                        value: kept,
                        origin,
                    },
                    FailedAt::Transform,
                    error,
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Origin;

    fn rec(v: serde_json::Value) -> Record {
        Record {
            value: Value::from(v),
            origin: Origin {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
        }
    }

    #[test]
    fn filter_keeps_true_drops_false_and_reports_non_booleans() {
        let program = VrlProgram::compile(".n").expect("compiles");
        let mut op = VrlOperator::filter(program);
        let mut failures = Vec::new();
        let out = op.process(
            vec![
                rec(serde_json::json!({"n": true})),
                rec(serde_json::json!({"n": false})),
                rec(serde_json::json!({"n": 3})),
            ],
            &mut failures,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].error.contains("integer"),
            "{}",
            failures[0].error
        );
        assert_eq!(failures[0].origin.offset, 7);
    }

    #[test]
    fn remap_errors_go_to_failures_with_the_input() {
        let program = VrlProgram::compile(".t = parse_timestamp!(.s, \"%F\")").expect("compiles");
        let mut op = VrlOperator::remap(program);
        let mut failures = Vec::new();
        let out = op.process(vec![rec(serde_json::json!({"s": "nope"}))], &mut failures);
        assert!(out.is_empty());
        assert_eq!(failures[0].at, FailedAt::Transform);
        assert!(failures[0].payload.contains("nope"));
    }
}
