//! `${VAR}` references in job specs, so secrets and addresses never need to be
//! written into the spec file. References in secret fields are left as they
//! are: workers resolve those ([`crate::secrets`]).

use crate::error::SpecProblem;
use serde_json::Value;

/// Replaces every `${VAR}` in the string values of `value` using `lookup`,
/// except in secret fields. `$${` stands for a literal `${`. Returns a
/// problem, with its field path, for each reference `lookup` cannot resolve.
pub fn resolve_env(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    walk(value, String::new(), lookup, Mode::Final, &mut problems);
    problems
}

/// Replaces the `${VAR}` references `lookup` knows and leaves the others, and
/// `$${` escapes, as they are, for a later [`resolve_env`] to report.
pub fn resolve_env_partially(value: &mut Value, lookup: &dyn Fn(&str) -> Option<String>) {
    walk(value, String::new(), lookup, Mode::Partial, &mut Vec::new());
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Final,
    Partial,
}

fn walk(
    value: &mut Value,
    path: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
    problems: &mut Vec<SpecProblem>,
) {
    match value {
        Value::String(_) if crate::secrets::is_secret_field(&path) => {}
        Value::String(s) if s.contains("${") => match substitute(s, lookup, mode) {
            Ok(resolved) => *s = resolved,
            Err(message) => problems.push(SpecProblem { path, message }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), lookup, mode, problems);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, child, lookup, mode, problems);
            }
        }
        _ => {}
    }
}

fn substitute(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    mode: Mode,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut missing = Vec::new();
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str(if mode == Mode::Partial { "$${" } else { "${" });
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(format!("unterminated `${{` in {s:?}"));
            };
            let name = &after[..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None if mode == Mode::Partial => out.push_str(&tail[..name.len() + 3]),
                None => missing.push(name.to_string()),
            }
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "environment variable(s) {} not set where the job was submitted",
            missing.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(name: &str) -> Option<String> {
        (name == "KAFKA_BROKER").then(|| "127.0.0.1:9092".to_string())
    }

    #[test]
    fn resolves_known_and_reports_unknown_with_path() {
        let mut v = json!({"source": {"kafka": {"brokers": "${KAFKA_BROKER}", "topic": "${NOPE}"}}, "x": "$${lit}"});
        let problems = resolve_env(&mut v, &env);
        assert_eq!(v["source"]["kafka"]["brokers"], "127.0.0.1:9092");
        assert_eq!(v["x"], "${lit}");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "source.kafka.topic");
        assert!(problems[0].message.contains("NOPE"));
    }

    #[test]
    fn partial_resolution_leaves_unknown_references_and_escapes_for_later() {
        let mut v = json!({"a": "${KAFKA_BROKER}/${NOPE}", "b": "$${lit}"});
        resolve_env_partially(&mut v, &env);
        assert_eq!(v, json!({"a": "127.0.0.1:9092/${NOPE}", "b": "$${lit}"}));
        let problems = resolve_env(&mut v, &|_| None);
        assert_eq!(problems.len(), 1);
        assert_eq!(v["b"], "${lit}");
    }
}
