//! A reader over the parsed spec tree that records every problem it meets with
//! its field path and goes on, so a user sees all of them in one answer.

use crate::error::SpecProblem;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<SpecProblem>);

impl Problems {
    pub(crate) fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(SpecProblem {
            path: path.to_string(),
            message: message.into(),
        });
    }
}

pub(crate) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// A map in the spec whose keys are taken one by one; `finish` reports the
/// keys nobody asked for, so a misspelt option never passes silently.
pub(crate) struct Obj<'a> {
    pub(crate) path: String,
    map: &'a Map<String, Value>,
    known: Vec<&'static str>,
    /// Whether a number stands for its text where a string is expected, as
    /// YAML writes `group_id: 2024` unquoted; a document of a typed schema
    /// of its own (seed 004's JSON configuration) refuses it.
    numbers_as_text: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(path: &str, value: &'a Value, p: &mut Problems) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self {
                path: path.to_string(),
                map,
                known: Vec::new(),
                numbers_as_text: true,
            }),
            other => {
                p.push(path, format!("expected a map, found {}", type_name(other)));
                None
            }
        }
    }

    /// This map, refusing numbers where strings are expected.
    pub(crate) fn typed(self) -> Self {
        Self {
            numbers_as_text: false,
            ..self
        }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        join_path(&self.path, key)
    }

    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn required(&mut self, key: &'static str, p: &mut Problems) -> Option<&'a Value> {
        let v = self.get(key);
        if v.is_none() {
            p.push(&self.path_of(key), "is required");
        }
        v
    }

    pub(crate) fn string(&mut self, key: &'static str, p: &mut Problems) -> Option<String> {
        let v = self.required(key, p)?;
        self.as_string(key, v, p)
    }

    pub(crate) fn opt_string(&mut self, key: &'static str, p: &mut Problems) -> Option<String> {
        let v = self.get(key)?;
        self.as_string(key, v, p)
    }

    fn as_string(&self, key: &str, v: &Value, p: &mut Problems) -> Option<String> {
        match v {
            Value::String(s) if s.trim().is_empty() => {
                p.push(&self.path_of(key), "must not be empty");
                None
            }
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if self.numbers_as_text => Some(n.to_string()),
            other => {
                p.push(
                    &self.path_of(key),
                    format!("expected a string, found {}", type_name(other)),
                );
                None
            }
        }
    }

    pub(crate) fn opt_u64(
        &mut self,
        key: &'static str,
        range: std::ops::RangeInclusive<u64>,
        p: &mut Problems,
    ) -> Option<u64> {
        let v = self.get(key)?;
        match v.as_u64() {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                p.push(
                    &self.path_of(key),
                    format!(
                        "must be between {} and {}, found {n}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
            None => {
                p.push(
                    &self.path_of(key),
                    format!("expected a whole number, found {}", render(v)),
                );
                None
            }
        }
    }

    pub(crate) fn opt_bool(&mut self, key: &'static str, p: &mut Problems) -> Option<bool> {
        let v = self.get(key)?;
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                p.push(
                    &self.path_of(key),
                    format!("expected true or false, found {}", render(other)),
                );
                None
            }
        }
    }

    pub(crate) fn opt_duration(&mut self, key: &'static str, p: &mut Problems) -> Option<Duration> {
        let v = self.get(key)?;
        let parsed = match v {
            Value::String(s) => humantime::parse_duration(s).map_err(|e| e.to_string()),
            other => Err(format!("expected a duration, found {}", type_name(other))),
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(
                    &self.path_of(key),
                    format!(
                        "{} is not a duration such as `5s` or `500ms` ({e})",
                        render(v)
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn opt_string_map(
        &mut self,
        key: &'static str,
        p: &mut Problems,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(v) = self.get(key) else {
            return out;
        };
        let path = self.path_of(key);
        let Some(mut obj) = Obj::new(&path, v, p) else {
            return out;
        };
        for (k, item) in obj.map {
            match item {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Number(_) | Value::Bool(_) => {
                    out.insert(k.clone(), item.to_string());
                }
                other => p.push(
                    &join_path(&path, k),
                    format!("expected a string, found {}", type_name(other)),
                ),
            }
        }
        obj.known.clear();
        out
    }

    /// Parses a one-of choice such as `source: { kafka: {...} }`.
    pub(crate) fn variant(
        path: &str,
        value: &'a Value,
        expected: &[&str],
        p: &mut Problems,
    ) -> Option<(&'a str, &'a Value, String)> {
        let map = match value {
            Value::Object(m) => m,
            Value::String(s) if expected.contains(&s.as_str()) => {
                p.push(path, format!("`{s}` needs its settings as a map"));
                return None;
            }
            other => {
                p.push(
                    path,
                    format!(
                        "expected one of {} as a map, found {}",
                        expected.join(", "),
                        type_name(other)
                    ),
                );
                return None;
            }
        };
        let mut keys = map.keys();
        match (keys.next(), keys.next()) {
            (Some(k), None) => {
                if expected.contains(&k.as_str()) {
                    Some((k.as_str(), &map[k], join_path(path, k)))
                } else {
                    p.push(
                        &join_path(path, k),
                        format!(
                            "unknown kind `{k}` (expected one of {})",
                            expected.join(", ")
                        ),
                    );
                    None
                }
            }
            (None, _) => {
                p.push(path, format!("expected one of {}", expected.join(", ")));
                None
            }
            (Some(_), Some(_)) => {
                let found: Vec<_> = map.keys().map(String::as_str).collect();
                p.push(
                    path,
                    format!(
                        "expected exactly one of {}, found {}",
                        expected.join(", "),
                        found.join(", ")
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn finish(self, p: &mut Problems) {
        for key in self.map.keys() {
            if !self.known.contains(&key.as_str()) {
                let mut known = self.known.clone();
                known.sort_unstable();
                known.dedup();
                p.push(
                    &self.path_of(key),
                    format!("unknown option `{key}` (known: {})", known.join(", ")),
                );
            }
        }
    }
}

pub(crate) fn string_list(path: &str, v: &Value, p: &mut Problems) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                    other => p.push(
                        &format!("{path}[{i}]"),
                        format!("expected a non-empty string, found {}", render(other)),
                    ),
                }
            }
            if out.is_empty() && items.is_empty() {
                p.push(path, "must not be empty");
                return None;
            }
            Some(out)
        }
        other => {
            p.push(
                path,
                format!("expected a list of strings, found {}", type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}
