//! VRL programs compiled once per task, with errors that give their line.

use std::sync::Arc;
use vrl::compiler::{
    CompileConfig, Program, TargetValue, TimeZone, runtime::Runtime, state::RuntimeState,
};
use vrl::diagnostic::{DiagnosticList, Severity};
use vrl::value::{Secrets, Value};

/// A compiled VRL program; cheap to clone, run with a [`VrlRunner`].
#[derive(Clone)]
pub struct VrlProgram {
    program: Arc<Program>,
}

/// Why a VRL program did not compile: one message per diagnostic, each naming
/// its line and column in the program.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .messages.join("; "))]
pub struct VrlCompileError {
    pub messages: Vec<String>,
}

impl VrlProgram {
    /// A program that may rewrite the record (`remap`).
    pub fn compile(source: &str) -> Result<Self, VrlCompileError> {
        Self::compile_with(source, CompileConfig::default())
    }

    /// A condition (`filter`): it reads the record and may not change it,
    /// so a record it keeps passes on as it came.
    pub fn compile_condition(source: &str) -> Result<Self, VrlCompileError> {
        let mut config = CompileConfig::default();
        config.set_read_only();
        Self::compile_with(source, config)
    }

    fn compile_with(source: &str, config: CompileConfig) -> Result<Self, VrlCompileError> {
        let functions = vrl::stdlib::all();
        let external = vrl::compiler::state::ExternalEnv::default();
        match vrl::compiler::compile_with_external(source, &functions, &external, config) {
            Ok(result) => Ok(Self {
                program: Arc::new(result.program),
            }),
            Err(diagnostics) => Err(VrlCompileError {
                messages: describe(source, &diagnostics),
            }),
        }
    }

    /// Whether the program reads `%` metadata, which then has to be filled per record.
    pub fn reads_metadata(&self) -> bool {
        self.program
            .info()
            .target_queries
            .iter()
            .any(|p| p.prefix == vrl::path::PathPrefix::Metadata)
    }

    /// A runner whose zone-less times are in `timezone` (the job's), never
    /// in the machine's local zone.
    /// Whether the program sets fields of the record (`.a = ...`) without
    /// setting the record as a whole (`. = ...`): it then needs an object
    /// record, and would replace any other (an array, a number) silently.
    pub fn needs_object(&self) -> bool {
        let events = self
            .program
            .info()
            .target_assignments
            .iter()
            .filter(|p| p.prefix == vrl::path::PathPrefix::Event);
        let (mut fields, mut root) = (false, false);
        for p in events {
            if p.path.is_root() {
                root = true;
            } else {
                fields = true;
            }
        }
        fields && !root
    }

    pub fn runner(&self, timezone: chrono_tz::Tz) -> VrlRunner {
        VrlRunner {
            program: self.program.clone(),
            runtime: Runtime::new(RuntimeState::default()),
            timezone: TimeZone::Named(timezone),
        }
    }
}

fn describe(source: &str, diagnostics: &DiagnosticList) -> Vec<String> {
    diagnostics
        .iter()
        .filter(|d| matches!(d.severity, Severity::Error | Severity::Bug))
        .map(|d| {
            let label = d.labels.iter().find(|l| l.primary).or(d.labels.first());
            match label {
                Some(l) => {
                    let (line, col) = line_col(source, l.span.start());
                    let detail = if l.message.is_empty() || l.message == d.message {
                        String::new()
                    } else {
                        format!(" ({})", l.message)
                    };
                    format!(
                        "VRL error E{} at line {line}, column {col}: {}{detail}",
                        d.code, d.message
                    )
                }
                None => format!("VRL error E{}: {}", d.code, d.message),
            }
        })
        .collect()
}

fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset.min(source.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

/// Runs one program over many records; one per task, not shared between threads.
pub struct VrlRunner {
    program: Arc<Program>,
    runtime: Runtime,
    timezone: TimeZone,
}

impl VrlRunner {
    /// Runs the program on `value` with `metadata` as its `%` paths; returns
    /// the rewritten event and the program's result (used by `filter`).
    pub fn run(&mut self, value: Value, metadata: Value) -> Result<(Value, Value), String> {
        let mut target = TargetValue {
            value,
            metadata,
            secrets: Secrets::default(),
        };
        let result = self
            .runtime
            .resolve(&mut target, &self.program, &self.timezone);
        self.runtime.clear();
        match result {
            Ok(out) => Ok((target.value, out)),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_names_line() {
        let err = VrlProgram::compile(".a = 1\n.b = parse_json(.c)\n")
            .err()
            .expect("fallible call without handling must not compile");
        assert!(err.messages[0].contains("line 2"), "{:?}", err.messages);
    }

    #[test]
    fn zone_less_times_are_in_the_runner_zone_not_the_machine_zone() {
        let program = VrlProgram::compile(
            ".ts = parse_timestamp!(.t, \"%Y-%m-%d %H:%M:%S\")\n.day = format_timestamp!(.ts, \"%F %H:%M\")",
        )
        .expect("valid program");
        let run = |tz: chrono_tz::Tz| {
            let input = Value::from(serde_json::json!({"t": "2024-12-31 23:30:00"}));
            let (out, _) = program
                .runner(tz)
                .run(input, Value::Object(Default::default()))
                .expect("runs");
            let Value::Object(map) = out else {
                panic!("object")
            };
            (map["ts"].clone(), map["day"].to_string_lossy().into_owned())
        };
        let (utc, day) = run(chrono_tz::UTC);
        assert_eq!(
            utc,
            Value::Timestamp("2024-12-31T23:30:00Z".parse().expect("time"))
        );
        assert_eq!(day, "2024-12-31 23:30");
        let (ny, day) = run(chrono_tz::America::New_York);
        assert_eq!(
            ny,
            Value::Timestamp("2025-01-01T04:30:00Z".parse().expect("time"))
        );
        // format_timestamp writes UTC unless given its own `timezone:`.
        assert_eq!(day, "2025-01-01 04:30");
    }

    #[test]
    fn a_condition_may_not_change_the_record() {
        assert!(VrlProgram::compile_condition(".n == 1").is_ok());
        let err = VrlProgram::compile_condition(".x = 1\ntrue")
            .err()
            .expect("assignment refused");
        assert!(err.messages[0].contains("line 1"), "{:?}", err.messages);
        assert!(VrlProgram::compile_condition("del(.x)\ntrue").is_err());
    }

    #[test]
    fn a_program_setting_fields_needs_an_object() {
        let needs = |src| VrlProgram::compile(src).expect("compiles").needs_object();
        assert!(needs(".touched = true"));
        assert!(!needs(". = {\"items\": .}"));
        assert!(!needs("x = 1"));
    }

    #[test]
    fn runs_remap() {
        let program = VrlProgram::compile(".b = upcase!(.a)").expect("valid program");
        let mut runner = program.runner(chrono_tz::UTC);
        let input = Value::from(serde_json::json!({"a": "x"}));
        let (out, _) = runner
            .run(input, Value::Object(Default::default()))
            .expect("runs");
        assert_eq!(out, Value::from(serde_json::json!({"a": "x", "b": "X"})));
    }
}
