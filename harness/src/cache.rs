//! Installs Kafka and Cassandra jars from Maven Central on first use, into a
//! cache outside the repository (`$SLUICE_CACHE`, default `~/.cache/sluice`).

use anyhow::Context;
use std::path::PathBuf;
use std::process::Command;

pub const KAFKA_VERSION: &str = "3.9.1";
pub const CASSANDRA_VERSION: &str = "5.0.9";

pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SLUICE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".cache").join("sluice")
}

/// The directory of Kafka's jars, installing them if needed.
pub fn kafka_libs() -> anyhow::Result<PathBuf> {
    install(
        &format!("kafka-{KAFKA_VERSION}"),
        "Apache Kafka",
        &[
            ("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
            // Kafka logs through slf4j; a simple binding keeps its output readable.
            ("org.slf4j", "slf4j-simple", "1.7.36"),
        ],
    )
}

/// Apache Flink, for `bench compare`: the release line the seeds ran on.
pub const FLINK_VERSION: &str = "1.20.5";
const FLINK_KAFKA_CONNECTOR: &str = "3.4.0-1.20";

/// The directory of the jars a Flink job reading and writing Kafka needs in
/// a local MiniCluster, installing them if needed.
pub fn flink_libs() -> anyhow::Result<PathBuf> {
    install(
        &format!("flink-{FLINK_VERSION}"),
        "Apache Flink",
        &[
            ("org.apache.flink", "flink-streaming-java", FLINK_VERSION),
            ("org.apache.flink", "flink-clients", FLINK_VERSION),
            ("org.apache.flink", "flink-connector-base", FLINK_VERSION),
            (
                "org.apache.flink",
                "flink-connector-kafka",
                FLINK_KAFKA_CONNECTOR,
            ),
            ("org.slf4j", "slf4j-simple", "1.7.36"),
        ],
    )
}

/// The directory of Cassandra's jars, installing them if needed.
pub fn cassandra_libs() -> anyhow::Result<PathBuf> {
    install(
        &format!("cassandra-{CASSANDRA_VERSION}"),
        "Apache Cassandra",
        &[("org.apache.cassandra", "cassandra-all", CASSANDRA_VERSION)],
    )
}

fn install(name: &str, what: &str, artifacts: &[(&str, &str, &str)]) -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join(name);
    let libs = dir.join("libs");
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(libs);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let deps: String = artifacts
        .iter()
        .map(|(g, a, v)| {
            format!("<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>")
        })
        .collect();
    let pom = format!(
        r#"<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>sluice.devstack</groupId><artifactId>{name}</artifactId><version>1</version><packaging>pom</packaging>
<dependencies>{deps}</dependencies></project>"#
    );
    std::fs::write(dir.join("pom.xml"), pom)?;
    eprintln!(
        "installing {what} jars from Maven Central into {} (first run only)...",
        libs.display()
    );
    // Maven's output is captured: devstack's stdout carries only its addresses.
    let output = Command::new("mvn")
        .current_dir(&dir)
        .args([
            "-B",
            "-q",
            "-Dstyle.color=never",
            "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
            "-DincludeScope=runtime",
        ])
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .output()
        .context("cannot run `mvn`: Maven must be installed to fetch Kafka and Cassandra")?;
    if !output.status.success() {
        anyhow::bail!(
            "maven could not fetch {what} ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(&done, "")?;
    Ok(libs)
}

/// `java` from `JAVA_HOME`, else the one on `PATH`.
pub fn java() -> PathBuf {
    std::env::var("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin").join("java"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// MinIO's module version, pinned so every machine builds the same server.
pub const MINIO_VERSION: &str = "v0.0.0-20260212201848-7aac2a2c5b7c";

/// The MinIO server binary, built with `go install` from the Go module proxy
/// on first use (a few minutes), with Go's module and build caches kept in
/// the cache directory too.
pub fn minio_binary() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join(format!("minio-{MINIO_VERSION}"));
    let binary = dir.join("bin").join("minio");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    eprintln!(
        "building MinIO {MINIO_VERSION} with `go install` into {} (first run only, a few minutes)...",
        binary.display()
    );
    let go = cache_dir().join("go");
    let output = Command::new("go")
        .args([
            "install",
            &format!("github.com/minio/minio@{MINIO_VERSION}"),
        ])
        .env("GOBIN", dir.join("bin"))
        .env("GOMODCACHE", go.join("mod"))
        .env("GOCACHE", go.join("build"))
        .env("GOFLAGS", "-modcacherw")
        .output()
        .context("cannot run `go`: Go must be installed to build MinIO")?;
    if !output.status.success() || !binary.exists() {
        anyhow::bail!(
            "go install of MinIO failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(binary)
}
