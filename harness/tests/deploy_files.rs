//! The deployment files name only what the binaries take: every flag and
//! environment variable that `docker-compose.yml` and the Helm chart give a
//! coordinator or worker exists in that binary (read from its `--help`, which
//! clap writes from its definitions), the Dockerfile builds what the
//! quickstart builds and ships the binaries the files run, and each chart
//! coordinator's advertised address is the one `--peers` gives its id.
//! `scripts/check-deploy` runs `docker compose config`, `helm lint`,
//! `helm template` and kubeconform on the same files.

use serde::Deserialize;
use serde_yaml::Value;
use sluice_harness::cluster::bin_dir;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables a pod defines for `$(NAME)` expansion in its other variables.
const POD_FIELDS: &[&str] = &["POD_NAME", "POD_IP"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the harness lies in the workspace")
        .to_path_buf()
}

/// What a binary takes: its long flags and the variables clap reads.
#[derive(Debug, Default)]
struct Takes {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

fn takes(binary: &str) -> anyhow::Result<Takes> {
    let out = Command::new(bin_dir()?.join(binary))
        .arg("--help")
        .output()?;
    anyhow::ensure!(out.status.success(), "{binary} --help failed");
    let help = String::from_utf8(out.stdout)?;
    let mut t = Takes::default();
    for word in help.split_whitespace() {
        if let Some(flag) = word.strip_prefix("--") {
            let name: String = flag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                t.flags.insert(name);
            }
        }
    }
    for part in help.split("[env: ").skip(1) {
        if let Some((name, _)) = part.split_once('=') {
            t.env.insert(name.to_string());
        }
    }
    Ok(t)
}

/// Why a variable given to `binary` is not one it reads, if it is not.
fn unknown_env(name: &str, binary: &str, takes: &Takes) -> Option<String> {
    let known = if name.starts_with("SLUICE_") {
        takes.env.contains(name)
    } else if name.starts_with("AWS_") {
        // The checkpoint store and the S3 sink read these through object_store.
        name.to_ascii_lowercase()
            .parse::<object_store::aws::AmazonS3ConfigKey>()
            .is_ok()
    } else {
        name == "RUST_LOG" || POD_FIELDS.contains(&name)
    };
    (!known).then(|| format!("{binary}: environment variable {name} is read by nothing"))
}

/// The flags of one command line: `--name` and `--name=value` words.
fn flags(words: &[String]) -> Vec<String> {
    words
        .iter()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|f| f.split('=').next().unwrap_or(f).to_string())
        .collect()
}

/// The Sluice binary a command line runs, and its words after the binary.
fn sluice_command(words: &[String]) -> Option<(String, Vec<String>)> {
    let at = words
        .iter()
        .position(|w| matches!(w.as_str(), "coordinator" | "worker" | "jobctl"))?;
    Some((words[at].clone(), words[at + 1..].to_vec()))
}

/// A list of strings, or a string split into words (and `sh -c` scripts
/// split into theirs).
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .flat_map(|s| s.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A compose `environment`: a mapping or a list of NAME=VALUE.
fn compose_env(v: &Value) -> Vec<String> {
    match v {
        Value::Mapping(m) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .map(|s| s.split('=').next().unwrap_or(s).to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Every flag or variable of the compose file's Sluice services that its
/// binary does not take, and how many of each were checked.
fn check_compose(text: &str, binaries: &BTreeMap<String, Takes>) -> (Vec<String>, usize) {
    let doc: Value = serde_yaml::from_str(text).expect("docker-compose.yml is YAML");
    let mut problems = Vec::new();
    let mut checked = 0;
    let services = doc["services"].as_mapping().cloned().unwrap_or_default();
    for (name, service) in &services {
        let name = name.as_str().unwrap_or_default();
        if service.get("build").is_none() {
            continue;
        }
        let dockerfile = service["build"]["dockerfile"].as_str().unwrap_or_default();
        if !root().join(dockerfile).is_file() {
            problems.push(format!("{name}: no Dockerfile at `{dockerfile}`"));
        }
        let mut line = words(&service["entrypoint"]);
        line.extend(words(&service["command"]));
        let Some((binary, rest)) = sluice_command(&line) else {
            problems.push(format!("{name}: runs no Sluice binary: {line:?}"));
            continue;
        };
        let takes = &binaries[&binary];
        for flag in flags(&rest) {
            checked += 1;
            if !takes.flags.contains(&flag) {
                problems.push(format!("{name}: {binary} has no flag --{flag}"));
            }
        }
        for var in compose_env(&service["environment"]) {
            checked += 1;
            problems.extend(unknown_env(&var, &binary, takes));
        }
    }
    (problems, checked)
}

fn binaries() -> anyhow::Result<BTreeMap<String, Takes>> {
    ["coordinator", "worker", "jobctl"]
        .into_iter()
        .map(|b| Ok((b.to_string(), takes(b)?)))
        .collect()
}

#[test]
fn the_compose_file_gives_the_binaries_only_flags_and_variables_they_take() -> anyhow::Result<()> {
    let binaries = binaries()?;
    assert!(
        binaries["coordinator"].flags.contains("peers")
            && binaries["worker"].env.contains("SLUICE_CHECKPOINT_STORE"),
        "flags and variables read from --help: {binaries:?}"
    );
    let text = std::fs::read_to_string(root().join("docker-compose.yml"))?;
    let (problems, checked) = check_compose(&text, &binaries);
    assert!(problems.is_empty(), "docker-compose.yml: {problems:#?}");
    assert!(checked >= 20, "only {checked} flags and variables found");

    // The same check catches a flag and a variable that do not exist.
    let doctored = text
        .replace("--data-listen", "--data-listen-at")
        .replace("SLUICE_CHECKPOINT_STORE", "SLUICE_CHECKPOINTS");
    let (problems, _) = check_compose(&doctored, &binaries);
    assert!(
        problems.iter().any(|p| p.contains("--data-listen-at"))
            && problems.iter().any(|p| p.contains("SLUICE_CHECKPOINTS")),
        "{problems:#?}"
    );
    Ok(())
}

/// The words of the Dockerfile's `cargo build` and the binaries it ships.
fn dockerfile_build(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let joined = text.replace("\\\n", " ");
    let build = joined
        .lines()
        .find_map(|l| l.split_once("cargo build").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split("&&")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let shipped = joined
        .lines()
        .filter(|l| l.starts_with("COPY --from=build"))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.strip_prefix("/usr/local/bin/"))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    (build, shipped)
}

#[test]
fn the_dockerfile_builds_what_the_quickstart_builds_and_ships_what_the_files_run()
-> anyhow::Result<()> {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile"))?;
    let (build, shipped) = dockerfile_build(&dockerfile);
    let quickstart = std::fs::read_to_string(root().join("scripts/quickstart"))?;
    let quickstart_build: Vec<String> = quickstart
        .lines()
        .find_map(|l| l.trim().strip_prefix("cargo build"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert!(!build.is_empty(), "the Dockerfile runs cargo build");
    assert_eq!(
        build, quickstart_build,
        "the Dockerfile's cargo build is the quickstart's"
    );
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    assert!(
        readme.contains(&format!("cargo build {}", build.join(" "))),
        "the README names the build the image runs: cargo build {}",
        build.join(" ")
    );
    let wanted: BTreeSet<String> = ["coordinator", "worker", "jobctl"]
        .map(str::to_string)
        .into();
    assert_eq!(
        shipped, wanted,
        "the image ships the binaries the files run"
    );
    for binary in &shipped {
        assert!(
            bin_dir()?.join(binary).is_file(),
            "{binary} is a binary of the workspace"
        );
    }
    Ok(())
}

/// `helm template` of the chart with `values` on top of its defaults.
fn render_chart(values: &[&str]) -> anyhow::Result<Vec<Value>> {
    let helm = std::env::var_os("SLUICE_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("SLUICE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/sluice")
                });
            cache.join("go-tools/bin/helm")
        });
    anyhow::ensure!(
        helm.is_file(),
        "{} not found: scripts/check-deploy installs helm (or set SLUICE_HELM)",
        helm.display()
    );
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        "demo",
        "deploy/helm/sluice",
        "--namespace",
        "streams",
    ]);
    for v in values {
        cmd.args(["--set", v]);
    }
    let out = cmd.current_dir(root()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    Ok(serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| Value::deserialize(d).ok())
        .filter(|d| !d.is_null())
        .collect())
}

#[test]
fn the_helm_chart_gives_the_binaries_only_flags_and_variables_they_take() -> anyhow::Result<()> {
    let binaries = binaries()?;
    let docs = render_chart(&[
        "jobSecrets.existingSecret=job-secrets",
        "checkpointStore.endpoint=http://minio:9000",
        "checkpointStore.credentialsSecret=s3-credentials",
        "tls.enabled=true",
        "tls.secretName=sluice-tls",
        "auth.enabled=true",
        "auth.tokensSecret=sluice-tokens",
        "auth.tokensKey=tokens.txt",
        "worker.autoscaling.enabled=true",
    ])?;
    let config: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .flat_map(|d| d["data"].as_mapping().cloned().unwrap_or_default())
        .filter_map(|(k, _)| k.as_str().map(str::to_string))
        .collect();
    let mut problems = Vec::new();
    let mut containers = 0;
    let mut peers = String::new();
    let mut advertise = String::new();
    let mut tokens_file = String::new();
    let mut tokens_mounted = Vec::new();
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !matches!(kind, "StatefulSet" | "Deployment") {
            continue;
        }
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            containers += 1;
            let mut line = words(&c["command"]);
            line.extend(words(&c["args"]));
            let Some((binary, rest)) = sluice_command(&line) else {
                problems.push(format!("{kind}: runs no Sluice binary: {line:?}"));
                continue;
            };
            let takes = &binaries[&binary];
            for flag in flags(&rest) {
                if !takes.flags.contains(&flag) {
                    problems.push(format!("{kind}: {binary} has no flag --{flag}"));
                }
            }
            let env = c["env"].as_sequence().cloned().unwrap_or_default();
            for var in env.iter().filter_map(|e| e["name"].as_str()) {
                problems.extend(unknown_env(var, &binary, takes));
            }
            for var in &config {
                problems.extend(unknown_env(var, &binary, takes));
            }
            let value = |name: &str| {
                env.iter()
                    .find(|e| e["name"] == name)
                    .and_then(|e| e["value"].as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            if binary == "coordinator" {
                peers = value("SLUICE_PEERS");
                advertise = value("SLUICE_ADVERTISE");
                tokens_file = value("SLUICE_AUTH_TOKENS");
                // Each mount's directory and the Secret and key of each file
                // its volume puts there.
                let volumes = doc["spec"]["template"]["spec"]["volumes"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default();
                for mount in c["volumeMounts"].as_sequence().into_iter().flatten() {
                    let Some(volume) = volumes.iter().find(|v| v["name"] == mount["name"]) else {
                        continue;
                    };
                    for item in volume["secret"]["items"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                    {
                        tokens_mounted.push(format!(
                            "{}/{} <- {}:{}",
                            mount["mountPath"].as_str().unwrap_or_default(),
                            item["path"].as_str().unwrap_or_default(),
                            volume["secret"]["secretName"].as_str().unwrap_or_default(),
                            item["key"].as_str().unwrap_or_default(),
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(containers, 2, "a coordinator and a worker container");
    assert!(problems.is_empty(), "the chart: {problems:#?}");

    // With auth on, the coordinators read the tokens file from the
    // Secret's key, mounted where --auth-tokens points.
    assert_eq!(
        tokens_mounted,
        [format!("{tokens_file} <- sluice-tokens:tokens.txt")],
        "the tokens file from the Secret"
    );

    // Pod i advertises the address --peers gives id i + 1, so it finds its id.
    for i in 0..3 {
        let address = advertise.replace("$(POD_NAME)", &format!("demo-sluice-coordinator-{i}"));
        let entry = format!("{}={address}", i + 1);
        assert!(
            peers.split(',').any(|p| p == entry),
            "{entry} in --peers {peers}"
        );
    }
    Ok(())
}
