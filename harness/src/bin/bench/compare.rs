//! `bench compare`: the same exactly-once job (Kafka -> parse JSON, add one
//! field -> Kafka, 1 s checkpoints) on the same broker and data, run by a bare
//! rdkafka transactional loop, by Apache Flink and by Sluice. Each runs over a
//! small and a large input, each timed from its start until every record is
//! visible to `read_committed` consumers (the same observer for every
//! system); records/s are taken between the two, so start-up cancels out. Every output is checked with a `read_committed` consumer:
//! each input record exactly once, with its added field.

use crate::progress::Progress;
use anyhow::Context;
use sluice_harness::cluster::ClusterOptions;
use sluice_harness::datagen::producer;
use sluice_harness::testing::{peak_rss_bytes, unique};
use sluice_harness::{DevStack, StackOptions, admin, cache};
use sluice_proto::job_service_client::JobServiceClient;
use sluice_proto::{CancelJobRequest, GetJobRequest, JobState, SubmitJobRequest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Settings {
    pub small: usize,
    pub large: usize,
    pub rounds: u32,
    pub parallelism: u32,
    pub checkpoint_ms: u64,
    pub kafka: Option<String>,
    pub no_flink: bool,
    /// Where to write a `perf` profile of the workers during Sluice's large runs.
    pub profile: Option<PathBuf>,
}

const PARTITIONS: i32 = 4;
const RUN_LIMIT: Duration = Duration::from_secs(900);
const FLINK_JOB: &str = include_str!("../../../flink/FlinkBench.java");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    BareLoop,
    Flink,
    Sluice,
    /// The same job with a `key_by` after the remap: records cross between
    /// the two workers (the `bench checkpoints` job).
    SluiceKeyed,
}

impl System {
    fn name(self) -> String {
        match self {
            Self::BareLoop => "bare rdkafka loop".into(),
            Self::Flink => format!("Apache Flink {}", cache::FLINK_VERSION),
            Self::Sluice => "Sluice".into(),
            Self::SluiceKeyed => "Sluice, key_by".into(),
        }
    }
}

/// One measured run.
struct Outcome {
    seconds: f64,
    /// Peak resident memory of every process of the system, summed, in bytes.
    peak: u64,
    /// Records/s while the output went from 20% to 80% of the input: the
    /// steady rate, start and end of the run left out.
    steady: f64,
}

pub async fn run(s: Settings) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(unique("sluice-bench-compare"));
    let stack = DevStack::start(
        dir.clone(),
        StackOptions {
            workers: s.parallelism as usize,
            kafka: s.kafka.clone(),
            no_cassandra: true,
            no_s3: true,
            cluster: ClusterOptions {
                slots: s.parallelism,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let cluster = stack.cluster.as_ref().context("no cluster started")?;
    let brokers = stack.kafka_broker.clone();
    let mut inputs = BTreeMap::new();
    let pad = "x".repeat(64);
    for size in [s.small, s.large] {
        let topic = unique(&format!("compare-in-{size}"));
        admin::create_topic(&brokers, &topic, PARTITIONS).await?;
        eprintln!("producing {size} records to {topic}...");
        producer::produce(
            &brokers,
            &topic,
            (0..size).map(|n| serde_json::json!({"n": n, "k": n % 1000, "pad": pad}).to_string()),
            None,
            0,
        )
        .await?;
        inputs.insert(size, topic);
    }
    let flink = if s.no_flink {
        None
    } else {
        Some(prepare_flink(&dir)?)
    };
    let mut systems = vec![System::BareLoop, System::Sluice, System::SluiceKeyed];
    if flink.is_some() {
        systems.insert(1, System::Flink);
    }
    let mut client = cluster.client().await?;
    let worker_pids: Vec<u32> = (0..s.parallelism as usize)
        .filter_map(|i| cluster.worker_pid(i))
        .collect();
    let run = Run {
        brokers: &brokers,
        parallelism: s.parallelism,
        checkpoint_ms: s.checkpoint_ms,
        flink: flink.as_ref(),
    };
    // Warms the broker's page cache; not reported.
    run.sluice(&mut client, &inputs[&s.small], s.small, false)
        .await?;
    let mut seconds: BTreeMap<(System, usize), Vec<f64>> = BTreeMap::new();
    let mut steady: BTreeMap<System, Vec<f64>> = BTreeMap::new();
    let mut peaks: BTreeMap<System, u64> = BTreeMap::new();
    for round in 1..=s.rounds {
        for size in [s.small, s.large] {
            for system in &systems {
                let input = &inputs[&size];
                let outcome = match system {
                    System::BareLoop => run.bare_loop(input, size).await?,
                    System::Flink => run.flink(input, size).await?,
                    System::SluiceKeyed => run.sluice(&mut client, input, size, true).await?,
                    System::Sluice => {
                        let profiler = match &s.profile {
                            Some(dir) if size == s.large => {
                                Some(Profiler::start(dir, &worker_pids, round)?)
                            }
                            _ => None,
                        };
                        let outcome = run.sluice(&mut client, input, size, false).await?;
                        if let Some(p) = profiler {
                            p.finish()?;
                        }
                        outcome
                    }
                };
                eprintln!(
                    "round {round}: {} over {size} records: {:.2}s",
                    system.name(),
                    outcome.seconds
                );
                seconds
                    .entry((*system, size))
                    .or_default()
                    .push(outcome.seconds);
                if size == s.large {
                    steady.entry(*system).or_default().push(outcome.steady);
                }
                let peak = peaks.entry(*system).or_default();
                *peak = (*peak).max(outcome.peak);
            }
        }
    }
    // Sluice's processes live across runs: their peak is their lifetime's.
    let sluice_pids: Vec<u32> = (0..s.parallelism as usize)
        .filter_map(|i| cluster.worker_pid(i))
        .chain(cluster.coordinator_pid(0))
        .collect();
    let sluice_peak: u64 = sluice_pids
        .iter()
        .filter_map(|p| peak_rss_bytes(*p).ok())
        .sum();
    // Both Sluice jobs ran on the same processes.
    peaks.insert(System::Sluice, sluice_peak);
    peaks.insert(System::SluiceKeyed, sluice_peak);

    println!(
        "compare: Kafka -> parse JSON, add one field -> Kafka, exactly once, checkpoints every {} ms, \
         parallelism {}, {} partitions, records of ~100 B, {} cores; records/s between {} and {} records, \
         median of {} rounds; every output checked exactly once with read_committed",
        s.checkpoint_ms,
        s.parallelism,
        PARTITIONS,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.small,
        s.large,
        s.rounds
    );
    println!(
        "{:<22} {:>9} {:>9} {:>11} {:>8} {:>11} {:>8} {:>12}",
        "system",
        "small (s)",
        "large (s)",
        "records/s",
        "vs bare",
        "steady r/s",
        "vs bare",
        "peak memory"
    );
    let rate = |system: System| {
        let small = median(seconds.get(&(system, s.small)).cloned().unwrap_or_default());
        let large = median(seconds.get(&(system, s.large)).cloned().unwrap_or_default());
        (small, large, (s.large - s.small) as f64 / (large - small))
    };
    let steady_of = |system: System| median(steady.get(&system).cloned().unwrap_or_default());
    let (_, _, bare) = rate(System::BareLoop);
    let bare_steady = steady_of(System::BareLoop);
    for system in &systems {
        let (small, large, r) = rate(*system);
        let st = steady_of(*system);
        println!(
            "{:<22} {small:>9.2} {large:>9.2} {r:>11.0} {:>8.2} {st:>11.0} {:>8.2} {:>8} MiB",
            system.name(),
            r / bare,
            st / bare_steady,
            peaks.get(system).copied().unwrap_or(0) >> 20
        );
    }
    println!(
        "seconds: from the start until every record was visible to read_committed consumers; records/s: \
         (large - small) / (its seconds - small's seconds); steady r/s: the large run while its \
         output went from 20% to 80% of the input (end offsets sampled every 50 ms)"
    );
    drop(stack);
    Ok(())
}

/// `perf record` (CPU clock samples, no hardware counters needed) of the
/// workers during one run; at the end, the functions that took most of
/// their time, into `report-<round>.txt` beside the data.
struct Profiler {
    child: Child,
    data: PathBuf,
    report: PathBuf,
}

impl Profiler {
    fn start(dir: &Path, pids: &[u32], round: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let data = dir.join(format!("perf-{round}.data"));
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        let child = Command::new("perf")
            .args([
                "record",
                "-e",
                "cpu-clock",
                "-F",
                "999",
                "-g",
                "--call-graph",
                "dwarf,16384",
            ])
            .args(["-p", &pids.join(","), "-o"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot run perf (Debian's linux-perf)")?;
        Ok(Self {
            child,
            data,
            report: dir.join(format!("report-{round}.txt")),
        })
    }

    fn finish(mut self) -> anyhow::Result<()> {
        // perf writes its data when interrupted.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.child.wait()?;
        let report = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.5",
            ])
            .args(["--sort", "dso,symbol", "-g", "none", "-i"])
            .arg(&self.data)
            .output()
            .context("cannot run perf report")?;
        std::fs::write(&self.report, &report.stdout)?;
        eprintln!("profile of the workers: {}", self.report.display());
        Ok(())
    }
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The Flink jars and the compiled job class.
struct Flink {
    libs: PathBuf,
    classes: PathBuf,
}

fn prepare_flink(dir: &Path) -> anyhow::Result<Flink> {
    let libs = cache::flink_libs()?;
    let classes = dir.join("flink-classes");
    std::fs::create_dir_all(&classes)?;
    let source = dir.join("FlinkBench.java");
    std::fs::write(&source, FLINK_JOB)?;
    let javac = cache::java().with_file_name("javac");
    let javac = if javac.exists() {
        javac
    } else {
        PathBuf::from("javac")
    };
    let out = Command::new(javac)
        .arg("-cp")
        .arg(format!("{}/*", libs.display()))
        .arg("-d")
        .arg(&classes)
        .arg(&source)
        .output()
        .context("cannot run javac")?;
    anyhow::ensure!(
        out.status.success(),
        "the Flink job does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(Flink { libs, classes })
}

/// What Flink 1.20 on Java 17 needs opened, as its own scripts pass.
const JAVA_17_OPENS: &[&str] = &[
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=java.base/java.text=ALL-UNNAMED",
    "--add-opens=java.base/java.time=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED",
];

struct Run<'a> {
    brokers: &'a str,
    parallelism: u32,
    checkpoint_ms: u64,
    flink: Option<&'a Flink>,
}

impl Run<'_> {
    async fn output_topic(&self) -> anyhow::Result<String> {
        let output = unique("compare-out");
        admin::create_topic(self.brokers, &output, PARTITIONS).await?;
        Ok(output)
    }

    async fn bare_loop(&self, input: &str, size: usize) -> anyhow::Result<Outcome> {
        let output = self.output_topic().await?;
        let exe = std::env::current_exe()?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut progress = Progress::watch(self.brokers, &output, PARTITIONS, size);
        let children = (0..self.parallelism)
            .map(|i| {
                let partitions: Vec<String> = (0..PARTITIONS)
                    .filter(|p| *p as u32 % self.parallelism == i)
                    .map(|p| p.to_string())
                    .collect();
                Command::new(&exe)
                    .args(["bare-loop", "--brokers", self.brokers, "--input", input])
                    .args(["--output", &output, "--partitions", &partitions.join(",")])
                    .args(["--interval-ms", &self.checkpoint_ms.to_string()])
                    .args(["--id", &format!("{run}-{i}")])
                    .spawn()
                    .context("cannot start the bare loop")
            })
            .collect::<anyhow::Result<Vec<Child>>>()?;
        let peak = wait_all(children, progress.start()).await?;
        let seconds = progress.all_visible(RUN_LIMIT).await?;
        let steady = progress.steady_rate(size).await;
        verify(self.brokers, &output, size).await?;
        Ok(Outcome {
            seconds,
            peak,
            steady,
        })
    }

    async fn flink(&self, input: &str, size: usize) -> anyhow::Result<Outcome> {
        let flink = self.flink.context("Flink is not prepared")?;
        let output = self.output_topic().await?;
        let mut progress = Progress::watch(self.brokers, &output, PARTITIONS, size);
        let child = Command::new(cache::java())
            .args(JAVA_17_OPENS)
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=error")
            .arg("-cp")
            .arg(format!(
                "{}:{}/*",
                flink.classes.display(),
                flink.libs.display()
            ))
            .arg("FlinkBench")
            .args([self.brokers, input, &output])
            .arg(self.parallelism.to_string())
            .arg(self.checkpoint_ms.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("cannot start java")?;
        let peak = wait_all(vec![child], progress.start()).await?;
        let seconds = progress.all_visible(RUN_LIMIT).await?;
        let steady = progress.steady_rate(size).await;
        verify(self.brokers, &output, size).await?;
        Ok(Outcome {
            seconds,
            peak,
            steady,
        })
    }

    async fn sluice(
        &self,
        client: &mut JobServiceClient<Channel>,
        input: &str,
        size: usize,
        keyed: bool,
    ) -> anyhow::Result<Outcome> {
        let output = self.output_topic().await?;
        let key_by = if keyed { r#", {"key_by": ["k"]}"# } else { "" };
        let spec = format!(
            r#"{{"name": "compare", "parallelism": {p}, "delivery": "exactly_once",
                "checkpoint": {{"interval": "{ms}ms"}},
                "source": {{"kafka": {{"brokers": "{b}", "topic": "{input}"}}}},
                "transforms": [{{"remap": ".n2 = int!(.n) + 1"}}{key_by}],
                "sink": {{"kafka": {{"brokers": "{b}", "topic": "{output}"}}}}}}"#,
            p = self.parallelism,
            ms = self.checkpoint_ms,
            b = self.brokers,
        );
        let progress = Progress::watch(self.brokers, &output, PARTITIONS, size);
        let start = progress.start();
        let job = client
            .submit_job(SubmitJobRequest {
                spec_json: spec,
                from_savepoint: String::new(),
            })
            .await?
            .into_inner()
            .job_id;
        // Done when every record is visible to `read_committed` consumers,
        // as for the other systems; the job's state is watched for a failure.
        let seconds = loop {
            if let Some(seconds) = progress.visible() {
                break seconds;
            }
            anyhow::ensure!(start.elapsed() < RUN_LIMIT, "job {job} did not finish");
            let status = client
                .get_job(GetJobRequest {
                    job_id: job.clone(),
                })
                .await?
                .into_inner();
            anyhow::ensure!(
                status.state() != JobState::Failed,
                "job {job} failed: {}",
                status.failure
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        client
            .cancel_job(CancelJobRequest {
                job_id: job.clone(),
            })
            .await?;
        let steady = progress.steady_rate(size).await;
        verify(self.brokers, &output, size).await?;
        Ok(Outcome {
            seconds,
            peak: 0,
            steady,
        })
    }
}

/// Waits for every child to succeed; returns their summed peak memory.
async fn wait_all(mut children: Vec<Child>, start: Instant) -> anyhow::Result<u64> {
    let mut peaks = vec![0u64; children.len()];
    loop {
        anyhow::ensure!(start.elapsed() < RUN_LIMIT, "a run did not finish");
        let mut running = false;
        for (child, peak) in children.iter_mut().zip(&mut peaks) {
            if let Ok(p) = peak_rss_bytes(child.id()) {
                *peak = (*peak).max(p);
            }
            match child.try_wait()? {
                Some(status) => anyhow::ensure!(status.success(), "a run failed: {status}"),
                None => running = true,
            }
        }
        if !running {
            return Ok(peaks.iter().sum());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every input record exactly once in `output` for a `read_committed`
/// consumer, each with `n2 = n + 1`.
async fn verify(brokers: &str, output: &str, size: usize) -> anyhow::Result<()> {
    let messages = admin::read_topic(
        brokers,
        output,
        size + 1,
        Duration::from_secs(5),
        Duration::from_secs(300),
        "read_committed",
    )
    .await?;
    let mut seen = vec![false; size];
    for m in &messages {
        let v: serde_json::Value = serde_json::from_str(&m.payload)?;
        let n = v["n"].as_u64().context("no n")? as usize;
        anyhow::ensure!(v["n2"].as_u64() == Some(n as u64 + 1), "wrong n2 in {v}");
        anyhow::ensure!(n < size && !seen[n], "record {n} twice or unknown");
        seen[n] = true;
    }
    let missing = seen.iter().filter(|s| !**s).count();
    anyhow::ensure!(
        missing == 0,
        "{missing} of {size} records missing from {output}"
    );
    Ok(())
}
