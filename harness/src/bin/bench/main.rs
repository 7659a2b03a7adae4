//! Benchmarks: programs that print figures, compared as ratios within one run.

use clap::{Parser, Subcommand};

mod checkpoints;
mod failover;

#[derive(Parser, Debug)]
#[command(version, about = "Sluice benchmarks; each prints its figures")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Throughput of a keyed Kafka -> remap -> key_by -> Kafka job with
    /// checkpoints off and every 10 s, 1 s and 100 ms, at least once and exactly once.
    Checkpoints {
        /// Records in the input topic, read by every run.
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        /// Rounds over every setting, interleaved so that drift of the
        /// machine touches all alike; the median of each is printed.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// Coordinator failover: three coordinators and two workers run an
    /// exactly-once job while the leader is SIGKILLed, again and again; prints
    /// how long until a new leader, and until the job's next checkpoint completed.
    Failover {
        /// Leaders to kill, one after the other (each restarted after).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
        kills: u64,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Checkpoints {
            records,
            rounds,
            workers,
            parallelism,
            kafka,
        } => {
            checkpoints::run(checkpoints::Settings {
                records,
                rounds,
                workers,
                parallelism,
                kafka,
            })
            .await
        }
        Bench::Failover { kills, kafka } => failover::run(kills, kafka).await,
    }
}
