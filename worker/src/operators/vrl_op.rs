use super::TaskInfo;
use crate::record::{FailedAt, Failure, Origin, Record};
use sluice_common::vrl_program::{VrlProgram, VrlRunner};
use vrl::value::{ObjectMap, Value};

/// `remap` rewrites each record with a VRL program; `filter` keeps the
/// records for which the program returns `true`.
pub struct VrlOperator {
    runner: VrlRunner,
    keep_on_true: bool,
    /// `%sluice` metadata, present only when the program reads metadata.
    task_meta: Option<Value>,
    /// The program sets fields: a record that is not an object is refused
    /// rather than replaced.
    needs_object: bool,
}

impl VrlOperator {
    pub fn remap(program: VrlProgram, task: &TaskInfo) -> Self {
        Self::new(program, task, false)
    }

    pub fn filter(program: VrlProgram, task: &TaskInfo) -> Self {
        Self::new(program, task, true)
    }

    fn new(program: VrlProgram, task: &TaskInfo, keep_on_true: bool) -> Self {
        let task_meta = program.reads_metadata().then(|| {
            let mut m = ObjectMap::new();
            m.insert("job".into(), Value::from(task.job.as_str()));
            m.insert("task".into(), Value::from(task.task.as_str()));
            m.insert("stage".into(), Value::from(i64::from(task.stage)));
            m.insert("subtask".into(), Value::from(i64::from(task.subtask)));
            Value::Object(m)
        });
        Self {
            needs_object: !keep_on_true && program.needs_object(),
            runner: program.runner(task.timezone),
            keep_on_true,
            task_meta,
        }
    }

    /// `%kafka` (where the record was read) and `%sluice` (which subtask runs it).
    fn metadata(&self, origin: &Origin) -> Value {
        let mut m = ObjectMap::new();
        if let Some(task) = &self.task_meta {
            let mut kafka = ObjectMap::new();
            kafka.insert("topic".into(), Value::from(&*origin.topic));
            kafka.insert("partition".into(), Value::from(i64::from(origin.partition)));
            kafka.insert("offset".into(), Value::from(origin.offset));
            m.insert("kafka".into(), Value::Object(kafka));
            m.insert("sluice".into(), task.clone());
        }
        Value::Object(m)
    }
}

impl super::Operator for VrlOperator {
    fn process(&mut self, records: Vec<Record>, failures: &mut Vec<Failure>) -> Vec<Record> {
        let mut out = Vec::with_capacity(records.len());
        for mut record in records {
            if self.needs_object && !matches!(record.value, Value::Object(_)) {
                let error = format!(
                    "the program sets fields of the record, which is {} and not a JSON object \
                     (a program that sets `.` itself can take it)",
                    describe_kind(&record.value)
                );
                failures.push(Failure::of(&record, FailedAt::Transform, error));
                continue;
            }
            // A condition cannot change the record, and a record read as JSON
            // that failed is dead-lettered as read: only a rewritten one needs
            // a copy for its dead letter.
            let kept = (!self.keep_on_true && record.raw.is_none()).then(|| record.value.clone());
            let metadata = self.metadata(&record.origin);
            let input = std::mem::replace(&mut record.value, Value::Null);
            match self.runner.run(input, metadata) {
                Ok((value, _)) if !self.keep_on_true => {
                    record.set_value(value);
                    out.push(record);
                }
                Ok((value, result)) => {
                    record.value = value;
                    match result {
                        Value::Boolean(true) => out.push(record),
                        Value::Boolean(false) => {}
                        other => failures.push(Failure::of(
                            &record,
                            FailedAt::Transform,
                            format!("filter returned {}, not a boolean", other.kind_str()),
                        )),
                    }
                }
                Err(error) => {
                    if let Some(kept) = kept {
                        record.value = kept;
                    }
                    failures.push(Failure::of(&record, FailedAt::Transform, error));
                }
            }
        }
        out
    }
}

/// A value's kind in words, for errors.
fn describe_kind(value: &Value) -> &'static str {
    match value {
        Value::Array(_) => "an array",
        Value::Null => "null",
        Value::Boolean(_) => "a boolean",
        Value::Integer(_) | Value::Float(_) => "a number",
        Value::Bytes(_) | Value::String(_) | Value::Regex(_) => "a string",
        Value::Timestamp(_) => "a timestamp",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Operator;

    fn rec(v: serde_json::Value) -> Record {
        Record::new(
            Value::from(v),
            Origin {
                topic: "t".into(),
                partition: 0,
                offset: 7,
            },
        )
    }

    #[test]
    fn filter_keeps_true_drops_false_and_reports_non_booleans() {
        let program = VrlProgram::compile_condition(".n").expect("compiles");
        let mut op = VrlOperator::filter(program, &TaskInfo::default());
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
    fn a_record_that_is_not_an_object_is_refused_not_replaced() {
        let program = VrlProgram::compile(".touched = true").expect("compiles");
        let mut op = VrlOperator::remap(program, &TaskInfo::default());
        let mut failures = Vec::new();
        let out = op.process(
            vec![
                rec(serde_json::json!([1, 2])),
                rec(serde_json::json!(5)),
                rec(serde_json::json!({"a": 1})),
            ],
            &mut failures,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(failures.len(), 2);
        assert!(
            failures[0].error.contains("an array"),
            "{}",
            failures[0].error
        );
        assert_eq!(
            failures[0].payload,
            crate::record::Payload::Json(b"[1,2]".to_vec())
        );
        let whole = VrlProgram::compile(". = {\"items\": .}").expect("compiles");
        let mut op = VrlOperator::remap(whole, &TaskInfo::default());
        let out = op.process(vec![rec(serde_json::json!([1, 2]))], &mut failures);
        assert_eq!(
            out[0].value,
            Value::from(serde_json::json!({"items": [1, 2]}))
        );
    }

    #[test]
    fn remap_errors_go_to_failures_with_the_input() {
        let program = VrlProgram::compile(".t = parse_timestamp!(.s, \"%F\")").expect("compiles");
        let mut op = VrlOperator::remap(program, &TaskInfo::default());
        let mut failures = Vec::new();
        let out = op.process(vec![rec(serde_json::json!({"s": "nope"}))], &mut failures);
        assert!(out.is_empty());
        assert_eq!(failures[0].at, FailedAt::Transform);
        assert!(
            String::from_utf8_lossy(failures[0].payload.bytes()).contains("nope"),
            "{:?}",
            failures[0].payload
        );
    }
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use crate::operators::Operator;

    #[test]
    fn metadata_names_subtask_and_source_offset() {
        let program =
            VrlProgram::compile(".s = %sluice.subtask\n.o = %kafka.offset").expect("compiles");
        let task = TaskInfo {
            subtask: 3,
            ..TaskInfo::default()
        };
        let mut op = VrlOperator::remap(program, &task);
        let record = Record::new(
            Value::from(serde_json::json!({})),
            Origin {
                topic: "t".into(),
                partition: 1,
                offset: 42,
            },
        );
        let out = op.process(vec![record], &mut Vec::new());
        assert_eq!(
            out[0].value,
            Value::from(serde_json::json!({"s": 3, "o": 42}))
        );
    }
}
