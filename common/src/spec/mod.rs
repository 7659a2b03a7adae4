//! The job spec: what a user submits, validated in full before anything runs.

mod depth;
mod duplicates;
mod ingestion;
mod reader;
mod sink;
mod source;
mod stateful;
mod transform;

pub use sink::{
    BlackholeSinkSpec, CassandraSinkSpec, DEFAULT_S3_PATH, DeadLetterSpec, KafkaDeadLetterSpec,
    KafkaSinkSpec, S3SinkSpec, S3Target, SinkSpec,
};
pub use source::{
    DEFAULT_PARTITION_DISCOVERY, KafkaSourceSpec, SourceFormat, SourceSpec, StartFrom,
};
pub use stateful::StatefulOperator;
pub use transform::{DedupSpec, PairSumSpec, TransformSpec};

use crate::env::resolve_env;
use crate::error::{SpecError, SpecProblem};
use reader::{Obj, Problems};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// Largest parallelism a job may ask for: one subtask per key group.
pub const MAX_PARALLELISM: u64 = crate::keys::DEFAULT_MAX_PARALLELISM as u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointSpec {
    /// `checkpoint: off` turns checkpoints off: a restart then replays from
    /// `start_from`. Exactly-once delivery needs them.
    pub enabled: bool,
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// A checkpoint not complete this long after its trigger is abandoned.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Completed checkpoints kept; older ones are deleted.
    pub retained: u32,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retained: 3,
        }
    }
}

/// How a job comes back after a failure: from its latest completed
/// checkpoint, after an exponentially growing pause, a bounded number of times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartSpec {
    pub max_attempts: u32,
    #[serde(serialize_with = "serialize_duration")]
    pub backoff: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub max_backoff: Duration,
}

impl Default for RestartSpec {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RestartSpec {
    /// The pause before restart number `restart` (1-based).
    pub fn backoff_for(&self, restart: u32) -> Duration {
        let factor = 1u32 << restart.saturating_sub(1).min(16);
        (self.backoff * factor).min(self.max_backoff)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSpec {
    pub name: String,
    pub parallelism: u32,
    pub delivery: Delivery,
    pub checkpoint: CheckpointSpec,
    pub restart: RestartSpec,
    pub source: SourceSpec,
    pub transforms: Vec<TransformSpec>,
    pub sink: SinkSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterSpec>,
    /// The zone of times written without an offset (`2024-12-31 23:30:00`):
    /// where VRL programs parse and format them, and sinks read them. UTC
    /// unless the spec names an IANA zone; never the worker's own zone.
    #[serde(serialize_with = "serialize_tz")]
    pub timezone: chrono_tz::Tz,
}

fn serialize_tz<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

pub(crate) fn serialize_duration<S: serde::Serializer>(
    d: &Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl JobSpec {
    /// Parses YAML or JSON text (JSON is YAML), resolving `${VAR}` through
    /// `lookup`, and validates it. Every problem is reported, each with its
    /// path. Secret fields keep their references (see [`crate::secrets`]) and
    /// hold nothing else.
    ///
    /// Seed 004's job configuration (`jobId`, `source.kafkaIngestionUnit`,
    /// `sink.s3DeliveryUnit`) is read too, as the
    /// equivalent Sluice job, with problems at its own field paths.
    pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SpecError> {
        let mut tree = parse_tree(text)?;
        let mut problems = duplicates::duplicate_keys(text);
        problems.extend(resolve_env(&mut tree, lookup));
        if !ingestion::is_ingestion_config(&tree) {
            problems.extend(crate::secrets::clear_secrets(&tree));
            return Self::from_tree(&tree, problems);
        }
        let mut p = Problems(problems);
        let spec_tree = ingestion::to_spec_tree(&tree, &mut p);
        p.0.extend(ingestion_paths(crate::secrets::clear_secrets(&spec_tree)));
        match Self::from_tree(&spec_tree, Vec::new()) {
            Ok(spec) if p.0.is_empty() => Ok(spec),
            Ok(_) => Err(SpecError::Invalid(p.0)),
            Err(e) => {
                // A field already refused as written is not reported again
                // for what its absence means to the Sluice spec, neither at
                // its own path nor at a map holding it (in the Sluice spec's
                // terms, such as `bucket` for `sink.bucketName`).
                let mut problems = p.0;
                for problem in ingestion_paths(e.problems()) {
                    let within = |q: &SpecProblem| {
                        q.path == problem.path
                            || problem.path.is_empty()
                            || q.path.starts_with(&format!("{}.", problem.path))
                    };
                    if !problems.iter().any(within) {
                        problems.push(problem);
                    }
                }
                Err(SpecError::Invalid(problems))
            }
        }
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
/// coordinator to report, together with every other problem of the spec;
/// references in secret fields stay for the workers to resolve. A key
/// written twice in one map is refused here, each at its path: the JSON
/// sent could no longer show it.
pub fn resolve_client_side(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, SpecError> {
    let mut tree = parse_tree(text)?;
    let duplicates = duplicates::duplicate_keys(text);
    if !duplicates.is_empty() {
        return Err(SpecError::Invalid(duplicates));
    }
    crate::env::resolve_env_partially(&mut tree, lookup);
    Ok(tree.to_string())
}

/// `problems` of the spec submitted as `text` (found by checks of the
/// systems it names, at the paths of the Sluice spec) at the paths the user
/// wrote: those of seed 004's job configuration when `text` is one.
pub fn in_submitted_terms(text: &str, problems: Vec<SpecProblem>) -> Vec<SpecProblem> {
    match parse_tree(text) {
        Ok(tree) if ingestion::is_ingestion_config(&tree) => ingestion_paths(problems),
        _ => problems,
    }
}

fn ingestion_paths(problems: Vec<SpecProblem>) -> Vec<SpecProblem> {
    problems
        .into_iter()
        .map(|p| SpecProblem {
            path: ingestion::config_path(&p.path),
            ..p
        })
        .collect()
}

fn parse_tree(text: &str) -> Result<Value, SpecError> {
    depth::check_depth(text)?;
    serde_yaml::from_str::<Value>(text).map_err(|e| SpecError::Syntax(e.to_string()))
}

/// The longest job name, in characters.
pub const MAX_NAME_LEN: usize = 120;

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
            format!(
                "{:?} may only hold letters, digits, `-`, `_` and `.`",
                crate::text::abbreviated(n, 80)
            ),
        );
    }
    // The name goes into consumer group ids, transactional ids and metric
    // labels, which Kafka and dashboards expect to be short.
    if let Some(n) = name.as_deref().filter(|n| n.chars().count() > MAX_NAME_LEN) {
        p.push(
            "name",
            format!(
                "{:?} is {} characters long; a job name has at most {MAX_NAME_LEN}",
                crate::text::abbreviated(n, 80),
                n.chars().count()
            ),
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
    let restart = read_restart(&mut job, p);
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
    let timezone = match job.opt_string("timezone", p) {
        None => Some(chrono_tz::UTC),
        Some(name) => match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                p.push(
                    "timezone",
                    format!(
                        "unknown time zone `{name}` (expected an IANA name such as `UTC` or `America/New_York`)"
                    ),
                );
                None
            }
        },
    };
    job.finish(p);
    if let (Some(Delivery::ExactlyOnce), Some(cp)) = (&delivery, &checkpoint)
        && !cp.enabled
    {
        p.push(
            "checkpoint",
            "exactly_once delivery needs checkpoints; turn them on or use at_least_once",
        );
    }
    Some(JobSpec {
        name: name?,
        parallelism: parallelism?,
        delivery: delivery?,
        checkpoint: checkpoint?,
        restart: restart?,
        source: source?,
        transforms: transforms?,
        sink: sink?,
        dead_letter,
        timezone: timezone?,
    })
}

fn read_checkpoint(job: &mut Obj<'_>, p: &mut Problems) -> Option<CheckpointSpec> {
    let default = CheckpointSpec::default();
    let Some(v) = job.get("checkpoint") else {
        return Some(default);
    };
    if matches!(v, Value::String(s) if s == "off") || *v == Value::Bool(false) {
        return Some(CheckpointSpec {
            enabled: false,
            ..default
        });
    }
    let mut cp = Obj::new("checkpoint", v, p)?;
    let enabled = cp.opt_bool("enabled", p).unwrap_or(true);
    let interval = cp.opt_duration("interval", p);
    let timeout = cp.opt_duration("timeout", p);
    let retained = cp.opt_u64("retained", 1..=1000, p);
    cp.finish(p);
    let mut ok = true;
    if let Some(d) = interval.filter(|d| *d < Duration::from_millis(100)) {
        p.push(
            "checkpoint.interval",
            format!(
                "must be at least 100ms, found {}",
                humantime::format_duration(d)
            ),
        );
        ok = false;
    }
    if let Some(d) = timeout.filter(|d| *d < Duration::from_secs(1)) {
        p.push(
            "checkpoint.timeout",
            format!(
                "must be at least 1s, found {}",
                humantime::format_duration(d)
            ),
        );
        ok = false;
    }
    ok.then(|| CheckpointSpec {
        enabled,
        interval: interval.unwrap_or(default.interval),
        timeout: timeout.unwrap_or(default.timeout),
        retained: retained.map_or(default.retained, |r| r as u32),
    })
}

fn read_restart(job: &mut Obj<'_>, p: &mut Problems) -> Option<RestartSpec> {
    let default = RestartSpec::default();
    let Some(v) = job.get("restart") else {
        return Some(default);
    };
    let mut r = Obj::new("restart", v, p)?;
    let max_attempts = r.opt_u64("max_attempts", 0..=1_000_000, p);
    let backoff = r.opt_duration("backoff", p);
    let max_backoff = r.opt_duration("max_backoff", p);
    r.finish(p);
    Some(RestartSpec {
        max_attempts: max_attempts.map_or(default.max_attempts, |n| n as u32),
        backoff: backoff.unwrap_or(default.backoff),
        max_backoff: max_backoff.unwrap_or(default.max_backoff),
    })
}

#[cfg(test)]
mod tests;
