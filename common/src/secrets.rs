//! Secrets of job specs. A spec names a secret by reference (`${NAME}`) in a
//! secret field; `jobctl` sends the reference, the coordinators store and show
//! only the reference, and each worker looks the value up where it runs (a
//! directory of files as Kubernetes mounts a Secret, a file of `NAME=VALUE`
//! lines, or its environment) when it builds the connector that uses it. The
//! value lives only in that worker's memory.

use crate::error::SpecProblem;
use crate::spec::{JobSpec, SinkSpec, SourceSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// librdkafka settings that hold secrets (those its configuration marks
/// sensitive and redacts, less file locations and names, plus the OAuth client
/// secret): in any `properties` of the spec they may only hold a reference.
pub const KAFKA_SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
];

/// The S3 sink's field that holds a secret.
const S3_SECRET_FIELD: &str = "sink.s3.secret_access_key";

/// The spec's maps of librdkafka settings, by field path.
const KAFKA_PROPERTY_MAPS: &[&str] = &[
    "source.kafka.properties",
    "sink.kafka.properties",
    "dead_letter.kafka.properties",
];

/// Whether the field at `path` (`sink.s3.secret_access_key`,
/// `source.kafka.properties.sasl.password`) holds a secret: its `${NAME}` is
/// kept as a reference until a worker resolves it.
pub fn is_secret_field(path: &str) -> bool {
    if path == S3_SECRET_FIELD {
        return true;
    }
    KAFKA_PROPERTY_MAPS.iter().any(|map| {
        path.strip_prefix(map)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|key| KAFKA_SECRET_PROPERTIES.contains(&key))
    })
}

/// The name a secret field's value refers to: `NAME` for exactly `${NAME}`,
/// where a name is letters, digits, `_`, `-` and `.` (the characters of
/// environment variables and of a Kubernetes Secret's keys).
pub fn reference_name(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    valid.then_some(name)
}

/// A problem for each secret field of `tree` that holds anything but one
/// reference: a value written in clear would be stored by the coordinators.
pub(crate) fn clear_secrets(tree: &Value) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let mut check = |path: String, value: &Value| {
        let ok = value.as_str().is_some_and(|s| reference_name(s).is_some());
        if !ok {
            problems.push(SpecProblem {
                message: format!(
                    "holds a secret, which may only be given as a reference such as `${{{}}}`: \
                     the coordinators store the spec, so a value written here would be kept in \
                     clear; give the value to the workers (--secrets-dir, --secrets-file or \
                     their environment)",
                    suggested_name(&path)
                ),
                path,
            });
        }
    };
    if let Some(v) = pointer(tree, S3_SECRET_FIELD).filter(|v| !v.is_null()) {
        check(S3_SECRET_FIELD.to_string(), v);
    }
    for map in KAFKA_PROPERTY_MAPS {
        let Some(Value::Object(properties)) = pointer(tree, map) else {
            continue;
        };
        for (key, v) in properties {
            if KAFKA_SECRET_PROPERTIES.contains(&key.as_str()) {
                check(format!("{map}.{key}"), v);
            }
        }
    }
    problems
}

/// The value at a dotted `path` of the spec tree.
fn pointer<'a>(tree: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(tree, |v, key| v.get(key))
}

/// A reference name for the example in an error: `SASL_PASSWORD` for
/// `...properties.sasl.password`.
fn suggested_name(path: &str) -> String {
    let last = path
        .rsplit_once(".properties.")
        .map_or_else(|| path.rsplit('.').next().unwrap_or(path), |(_, key)| key);
    last.replace('.', "_").to_ascii_uppercase()
}

/// A secret a worker could not look up.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No place the worker looks in has the name.
    #[error(
        "secret `{name}` referenced at {path} is not set on this worker (looked in {searched})"
    )]
    Missing {
        name: String,
        path: String,
        searched: String,
    },
    /// A file that should hold the name could not be read.
    #[error("secret `{name}` referenced at {path}: cannot read {file}: {source}")]
    Unreadable {
        name: String,
        path: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a worker looks up secrets, in this order: a directory with one file
/// per secret (the file's name is the reference's name, its content the value
/// less one trailing newline: how Kubernetes mounts a Secret), a file of
/// `NAME=VALUE` lines (`#` comments and blank lines skipped), then the
/// process environment. Files are read at every lookup, so a task started
/// after a Secret changed gets the new value.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `--secrets-dir`: one file per secret, named by the reference.
    pub dir: Option<PathBuf>,
    /// `--secrets-file`: `NAME=VALUE` lines.
    pub file: Option<PathBuf>,
}

impl Secrets {
    /// The value of secret `name`, wanted at spec field `path` (for errors).
    pub fn lookup(&self, name: &str, path: &str) -> Result<String, SecretError> {
        let unreadable = |file: &Path, source| SecretError::Unreadable {
            name: name.to_string(),
            path: path.to_string(),
            file: file.display().to_string(),
            source,
        };
        if let Some(dir) = &self.dir {
            let file = dir.join(name);
            match std::fs::read_to_string(&file) {
                Ok(text) => return Ok(trim_newline(&text).to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(unreadable(&file, e)),
            }
        }
        if let Some(file) = &self.file {
            let text = std::fs::read_to_string(file).map_err(|e| unreadable(file, e))?;
            if let Some(value) = find_line(&text, name) {
                return Ok(value.to_string());
            }
        }
        if let Ok(value) = std::env::var(name) {
            return Ok(value);
        }
        Err(SecretError::Missing {
            name: name.to_string(),
            path: path.to_string(),
            searched: self.searched(),
        })
    }

    fn searched(&self) -> String {
        let mut places = Vec::new();
        if let Some(dir) = &self.dir {
            places.push(format!("--secrets-dir {}", dir.display()));
        }
        if let Some(file) = &self.file {
            places.push(format!("--secrets-file {}", file.display()));
        }
        places.push("the environment".to_string());
        places.join(", ")
    }
}

fn trim_newline(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// The value of `NAME=VALUE` for `name` in a secrets file.
fn find_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == name).then_some(value)
        })
}

impl JobSpec {
    /// A copy of the spec with every secret reference replaced by its value
    /// from `secrets`, for the connectors of one task; never stored, logged
    /// or sent anywhere. The first reference that cannot be resolved is the
    /// error.
    pub fn with_secrets(&self, secrets: &Secrets) -> Result<JobSpec, SecretError> {
        let mut spec = self.clone();
        let SourceSpec::Kafka(source) = &mut spec.source;
        resolve_properties(&mut source.properties, "source.kafka.properties", secrets)?;
        match &mut spec.sink {
            SinkSpec::Kafka(k) => {
                resolve_properties(&mut k.properties, "sink.kafka.properties", secrets)?;
            }
            SinkSpec::S3(s3) => {
                if let Some(value) = &mut s3.secret_access_key {
                    resolve(value, S3_SECRET_FIELD, secrets)?;
                }
            }
            SinkSpec::Cassandra(_) | SinkSpec::Blackhole(_) => {}
        }
        if let Some(dl) = &mut spec.dead_letter {
            resolve_properties(
                &mut dl.kafka.properties,
                "dead_letter.kafka.properties",
                secrets,
            )?;
        }
        Ok(spec)
    }
}

fn resolve_properties(
    properties: &mut BTreeMap<String, String>,
    path: &str,
    secrets: &Secrets,
) -> Result<(), SecretError> {
    for (key, value) in properties.iter_mut() {
        if KAFKA_SECRET_PROPERTIES.contains(&key.as_str()) {
            resolve(value, &format!("{path}.{key}"), secrets)?;
        }
    }
    Ok(())
}

fn resolve(value: &mut String, path: &str, secrets: &Secrets) -> Result<(), SecretError> {
    if let Some(name) = reference_name(value) {
        *value = secrets.lookup(name, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
name: secrets
source:
  kafka:
    brokers: "${BROKERS}"
    topic: in
    properties: { sasl.password: "${SLUICE_T_SASL}", sasl.username: "${USER_NAME}" }
sink:
  s3: { bucket: b, access_key_id: "${KEY_ID}", secret_access_key: "${SLUICE_T_S3}" }
"#;

    fn client_env(name: &str) -> Option<String> {
        Some(format!("client-{name}"))
    }

    #[test]
    fn secret_fields_keep_their_references_and_others_resolve() {
        let json = crate::spec::resolve_client_side(SPEC, &client_env).expect("parses");
        let spec = JobSpec::parse_resolved(&json).expect("valid");
        let SourceSpec::Kafka(source) = &spec.source;
        assert_eq!(source.brokers, "client-BROKERS");
        assert_eq!(source.properties["sasl.username"], "client-USER_NAME");
        assert_eq!(source.properties["sasl.password"], "${SLUICE_T_SASL}");
        let SinkSpec::S3(s3) = &spec.sink else {
            panic!("s3 sink")
        };
        assert_eq!(s3.access_key_id.as_deref(), Some("client-KEY_ID"));
        assert_eq!(s3.secret_access_key.as_deref(), Some("${SLUICE_T_S3}"));
        assert!(!spec.to_json().contains("client-SLUICE_T"));
    }

    #[test]
    fn secrets_written_in_clear_are_refused_with_their_paths() {
        let text = SPEC
            .replace("\"${SLUICE_T_SASL}\"", "hunter2")
            .replace("\"${SLUICE_T_S3}\"", "\"pre-${SLUICE_T_S3}\"");
        let problems = JobSpec::parse(&text, &client_env)
            .expect_err("clear secrets")
            .problems();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sink.s3.secret_access_key",
                "source.kafka.properties.sasl.password"
            ]
        );
        assert!(problems[1].message.contains("`${SASL_PASSWORD}`"));
        assert!(!problems[1].message.contains("hunter2"));
    }

    #[test]
    fn workers_resolve_from_a_directory_then_a_file_then_the_environment() {
        let dir = std::env::temp_dir().join(format!("sluice-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("SLUICE_T_S3"), "from-dir\n").expect("write");
        let file = dir.join("secrets.env");
        std::fs::write(
            &file,
            "# comment\nSLUICE_T_SASL=a=b\nSLUICE_T_S3=from-file\n",
        )
        .expect("write");
        let spec = JobSpec::parse(SPEC, &client_env).expect("valid");
        let secrets = Secrets {
            dir: Some(dir.clone()),
            file: Some(file),
        };
        let resolved = spec.with_secrets(&secrets).expect("resolved");
        let SourceSpec::Kafka(source) = &resolved.source;
        assert_eq!(source.properties["sasl.password"], "a=b");
        let SinkSpec::S3(s3) = &resolved.sink else {
            panic!("s3 sink")
        };
        assert_eq!(s3.secret_access_key.as_deref(), Some("from-dir"));

        let err = spec
            .with_secrets(&Secrets {
                dir: Some(dir.join("empty")),
                file: None,
            })
            .expect_err("missing");
        let message = err.to_string();
        assert!(
            message.contains("`SLUICE_T_SASL`")
                && message.contains("source.kafka.properties.sasl.password")
                && message.contains("--secrets-dir"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn only_secret_fields_are_secret() {
        assert!(is_secret_field("sink.s3.secret_access_key"));
        assert!(is_secret_field("dead_letter.kafka.properties.ssl.key.pem"));
        assert!(!is_secret_field("sink.s3.access_key_id"));
        assert!(!is_secret_field("source.kafka.properties.sasl.username"));
        assert!(!is_secret_field("transforms.properties.sasl.password"));
        assert_eq!(reference_name("${A_b-1.c}"), Some("A_b-1.c"));
        assert_eq!(reference_name("x${A}"), None);
        assert_eq!(reference_name("${A}${B}"), None);
    }
}
