//! Benchmarks: programs that print figures, compared as ratios within one run.

use clap::{Parser, Subcommand};

mod bare_loop;
mod cassandra;
mod checkpoints;
mod compare;
mod failover;
mod progress;
mod state;

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
        /// Records in the input topic, read by every run: enough that a run
        /// lasts several seconds, so that start-up does not hide what
        /// checkpoints cost.
        #[arg(long, default_value_t = 2_000_000)]
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
    /// The same exactly-once Kafka -> parse JSON, add a field -> Kafka job on
    /// a bare rdkafka transactional loop, Apache Flink and Sluice, at two
    /// input sizes; prints records/s, the ratio to the bare loop and peak memory.
    Compare {
        /// Records of the small run.
        #[arg(long, default_value_t = 200_000)]
        small: usize,
        /// Records of the large run; records/s are taken between the two.
        #[arg(long, default_value_t = 1_000_000)]
        large: usize,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        #[arg(long, default_value_t = 2)]
        parallelism: u32,
        /// Checkpoint (and transaction) interval of every system, in ms.
        #[arg(long, default_value_t = 1000)]
        checkpoint_ms: u64,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
        /// Leave Flink out (its jars come from Maven Central on first use).
        #[arg(long)]
        no_flink: bool,
        /// Profile the workers with `perf` during Sluice's large runs and
        /// write the data and a report of the top costs into this directory.
        #[arg(long)]
        profile: Option<std::path::PathBuf>,
    },
    /// What a checkpoint costs against the size of the keyed state: a dedup
    /// job over N distinct keys, then a trickle of new ones.
    State {
        /// Distinct keys loaded before the trickle, one measurement each.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000, 1_000_000])]
        keys: Vec<usize>,
        /// New keys per second during the trickle.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Seconds the trickle runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// Seed 000's Kafka -> Cassandra job on Sluice against a bare scylla
    /// driver loop writing the same rows, at two input sizes.
    Cassandra {
        #[arg(long, default_value_t = 100_000)]
        small: usize,
        #[arg(long, default_value_t = 400_000)]
        large: usize,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Use this broker instead of starting Kafka.
        #[arg(long)]
        kafka: Option<String>,
        /// Use this Cassandra (host:port) instead of starting one.
        #[arg(long)]
        cassandra: Option<String>,
    },
    /// One process of the bare Cassandra loop `cassandra` runs (started by it).
    #[command(hide = true)]
    BareCassandra {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        cassandra: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        keyspace: String,
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
    },
    /// One process of the bare rdkafka loop `compare` runs (started by it).
    #[command(hide = true)]
    BareLoop {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
        #[arg(long)]
        interval_ms: u64,
        #[arg(long)]
        id: String,
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
        Bench::Compare {
            small,
            large,
            rounds,
            parallelism,
            checkpoint_ms,
            kafka,
            no_flink,
            profile,
        } => {
            compare::run(compare::Settings {
                profile,
                small,
                large,
                rounds,
                parallelism,
                checkpoint_ms,
                kafka,
                no_flink,
            })
            .await
        }
        Bench::State {
            keys,
            rate,
            seconds,
            kafka,
        } => {
            state::run(state::Settings {
                keys,
                rate,
                seconds,
                kafka,
            })
            .await
        }
        Bench::Cassandra {
            small,
            large,
            rounds,
            kafka,
            cassandra,
        } => {
            cassandra::run(cassandra::Settings {
                small,
                large,
                rounds,
                kafka,
                cassandra,
            })
            .await
        }
        Bench::BareCassandra {
            brokers,
            cassandra,
            input,
            keyspace,
            partitions,
        } => cassandra::bare_process(&brokers, &cassandra, &input, &keyspace, &partitions).await,
        Bench::BareLoop {
            brokers,
            input,
            output,
            partitions,
            interval_ms,
            id,
        } => {
            let bare = bare_loop::BareLoop {
                brokers,
                input,
                output,
                partitions,
                interval: std::time::Duration::from_millis(interval_ms),
                id,
            };
            tokio::task::spawn_blocking(move || bare.run()).await??;
            Ok(())
        }
    }
}
