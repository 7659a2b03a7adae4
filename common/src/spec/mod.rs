//! The job spec: what a user submits, validated in full before anything runs.

mod reader;
mod sink;
mod source;
mod transform;

pub use sink::{
    BlackholeSinkSpec, CassandraSinkSpec, DeadLetterSpec, KafkaDeadLetterSpec, KafkaSinkSpec,
    SinkSpec,
};
pub use source::{KafkaSourceSpec, SourceFormat, SourceSpec, StartFrom};
pub use transform::TransformSpec;

use crate::env::resolve_env;
use crate::error::{SpecError, SpecProblem};
use reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Largest parallelism a job may ask for.
pub const MAX_PARALLELISM: u64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSpec {
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSpec {
    pub name: String,
    pub parallelism: u32,
    pub delivery: Delivery,
    pub checkpoint: CheckpointSpec,
    pub source: SourceSpec,
    pub transforms: Vec<TransformSpec>,
    pub sink: SinkSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
}

fn serialize_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl JobSpec {
    /// Parses YAML or JSON text (JSON is YAML), resolving `${VAR}` through
    /// `lookup`, and validates it. Every problem is reported, each with its path.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SpecError> {
        let mut tree = parse_tree(text)?;
        let env_problems = resolve_env(&mut tree, lookup);
        Self::from_tree(&tree, env_problems)
    }

    /// Parses a spec whose `${VAR}` references were already resolved by the
    /// submitting client; any reference still present is reported.
    pub fn parse_resolved(text: &str) -> Result<Self, SpecError> {
        Self::parse(text, &|_| None)
    }

    fn from_tree(tree: &Value, env_problems: Vec<SpecProblem>) -> Result<Self, SpecError> {
        let mut p = Problems(env_problems);
        let spec = read_job(tree, &mut p);
        match spec {
            Some(spec) if p.0.is_empty() => Ok(spec),
            _ => {
                if p.0.is_empty() {
                    p.push("", "job spec is empty");
                }
                Err(SpecError::Invalid(p.0))
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Number of stages: each `key_by` starts a new one.
    pub fn stage_count(&self) -> u32 {
        1 + self
            .transforms
            .iter()
            .filter(|t| matches!(t, TransformSpec::KeyBy(_)))
            .count() as u32
    }

    /// The transforms a stage runs, and the key fields that route its output to
    /// the next stage (`None` for the last stage, which feeds the sink).
    pub fn stage_plan(&self, stage: u32) -> (Vec<&TransformSpec>, Option<&[String]>) {
        let mut current = 0;
        let mut chain = Vec::new();
        for t in &self.transforms {
            if let TransformSpec::KeyBy(fields) = t {
                if current == stage {
                    return (chain, Some(fields));
                }
                current += 1;
                continue;
            }
            if current == stage {
                chain.push(t);
            }
        }
        (chain, None)
    }
}

/// Resolves the `${VAR}` references the client's environment knows and returns
/// the spec as JSON, ready to submit. Unknown references stay for the
/// coordinator to report, together with every other problem of the spec.
pub fn resolve_client_side(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SpecError> {
    let mut tree = parse_tree(text)?;
    crate::env::resolve_env_partially(&mut tree, lookup);
    Ok(tree.to_string())
}

fn parse_tree(text: &str) -> Result<Value, SpecError> {
    serde_yaml::from_str::<Value>(text).map_err(|e| SpecError::Syntax(e.to_string()))
}

fn read_job(tree: &Value, p: &mut Problems) -> Option<JobSpec> {
    let mut job = Obj::new("", tree, p)?;
    let name = job.string("name", p);
    let valid_name = |n: &str| {
        n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if let Some(n) = name.as_deref().filter(|n| !valid_name(n)) {
        p.push(
            "name",
            format!("{n:?} may only hold letters, digits, `-`, `_` and `.`"),
        );
    }
    let parallelism = match job.get("parallelism") {
        None => Some(1),
        Some(v) => match v.as_u64() {
            Some(0) => {
                p.push("parallelism", "must be at least 1, found 0");
                None
            }
            Some(n) if n <= MAX_PARALLELISM => Some(n as u32),
            _ => {
                p.push(
                    "parallelism",
                    format!(
                        "must be a whole number from 1 to {MAX_PARALLELISM}, found {}",
                        reader::render(v)
                    ),
                );
                None
            }
        },
    };
    let delivery = match job.opt_string("delivery", p).as_deref() {
        None | Some("at_least_once") => Some(Delivery::AtLeastOnce),
        Some("exactly_once") => Some(Delivery::ExactlyOnce),
        Some(other) => {
            p.push(
                "delivery",
                format!("unknown delivery `{other}` (expected exactly_once or at_least_once)"),
            );
            None
        }
    };
    let checkpoint = read_checkpoint(&mut job, p);
    let source = job
        .required("source", p)
        .and_then(|v| SourceSpec::read("source", v, p));
    let transforms = match job.get("transforms") {
        None => Some(Vec::new()),
        Some(v) => transform::read_list("transforms", v, p),
    };
    let sink = job
        .required("sink", p)
        .and_then(|v| SinkSpec::read("sink", v, p));
    let dead_letter = job
        .get("dead_letter")
        .and_then(|v| DeadLetterSpec::read("dead_letter", v, p));
    job.finish(p);
    Some(JobSpec {
        name: name?,
        parallelism: parallelism?,
        delivery: delivery?,
        checkpoint: checkpoint?,
        source: source?,
        transforms: transforms?,
        sink: sink?,
        dead_letter,
    })
}

fn read_checkpoint(job: &mut Obj<'_>, p: &mut Problems) -> Option<CheckpointSpec> {
    let default = CheckpointSpec {
        interval: Duration::from_secs(10),
    };
    let Some(v) = job.get("checkpoint") else {
        return Some(default);
    };
    let mut cp = Obj::new("checkpoint", v, p)?;
    let interval = cp.opt_duration("interval", p);
    cp.finish(p);
    match interval {
        Some(d) if d < Duration::from_millis(100) => {
            p.push(
                "checkpoint.interval",
                format!(
                    "must be at least 100ms, found {}",
                    humantime::format_duration(d)
                ),
            );
            None
        }
        Some(interval) => Some(CheckpointSpec { interval }),
        None => Some(default),
    }
}

#[cfg(test)]
mod tests;
