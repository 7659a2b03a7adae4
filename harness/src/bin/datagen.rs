//! Produces seed data into Kafka.

use clap::{Parser, Subcommand};
use sluice_harness::datagen::ingestion::{IngestionEvents, IngestionKind};
use sluice_harness::datagen::users::{CreatedUsers, RandomUsers};
use sluice_harness::datagen::{numbers::Numbers, producer, user_events::UserEvents};

async fn ingestion(kind: IngestionKind, common: Common) -> anyhow::Result<()> {
    let events = IngestionEvents::new(kind, common.seed, common.count as u64)
        .take(common.count)
        .map(|e| e.payload);
    let n = producer::produce(&common.brokers, &common.topic, events, common.rate, 10_000).await?;
    eprintln!("produced {n} {kind:?} events to {}", common.topic);
    Ok(())
}

#[derive(Parser, Debug)]
#[command(version, about = "Produce seed pipeline data into Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Kind,
}

#[derive(clap::Args, Debug)]
struct Common {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKER")]
    brokers: String,
    /// Topic to produce to.
    #[arg(long)]
    topic: String,
    /// How many messages to produce.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Messages per second; unlimited when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Seed of the generator: the same seed gives the same messages.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Subcommand, Debug)]
enum Kind {
    /// Seed 000: UserEvent JSON (user_id, event_type, event_time, event_id, metadata).
    UserEvents {
        #[command(flatten)]
        common: Common,
        /// Make every K-th message malformed: in turn not JSON, an unparseable
        /// event_time, and a user_id that is not a UUID.
        #[arg(long)]
        malformed_every: Option<u64>,
        /// Distinct users the events are spread over.
        #[arg(long, default_value_t = 200)]
        users: usize,
    },
    /// Seed 004: clickstream events (epoch-millisecond `timestamp`) over three hours.
    Clickstream {
        #[command(flatten)]
        common: Common,
    },
    /// Seed 004: CDC events (`id`, `action`, RFC 3339 `timestamp`, `currentEvent`).
    Cdc {
        #[command(flatten)]
        common: Common,
    },
    /// Seed 001: `users_created` users (id, names, address, post_code, dob, ...).
    UsersCreated {
        #[command(flatten)]
        common: Common,
    },
    /// Seed 003: RandomUser API results, keyed by `login.uuid`.
    RandomUsers {
        #[command(flatten)]
        common: Common,
        /// Every K-th user repeats the `login.uuid` of an earlier one.
        #[arg(long, default_value_t = 10)]
        repeat_every: u64,
        /// Every K-th user lacks its phone, state and postcode.
        #[arg(long, default_value_t = 13)]
        missing_every: u64,
    },
    /// Seed 002: numbers 0..=TOTAL as text, with occasional corrupt values.
    Numbers {
        #[command(flatten)]
        common: Common,
        /// The largest valid number (the pair total).
        #[arg(long, default_value_t = 12)]
        total: u64,
        /// Make every K-th message corrupt: out of range, negative or not a number.
        #[arg(long, default_value_t = 50)]
        corrupt_every: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Kind::UserEvents {
            common,
            malformed_every,
            users,
        } => {
            let events = UserEvents::new(common.seed, users, malformed_every)
                .take(common.count)
                .map(|g| g.payload);
            let n = producer::produce(&common.brokers, &common.topic, events, common.rate, 10_000)
                .await?;
            eprintln!("produced {n} user events to {}", common.topic);
        }
        Kind::Clickstream { common } => ingestion(IngestionKind::Clickstream, common).await?,
        Kind::Cdc { common } => ingestion(IngestionKind::Cdc, common).await?,
        Kind::UsersCreated { common } => {
            let users = CreatedUsers::new(common.seed)
                .take(common.count)
                .map(|u| u.to_string());
            let n = producer::produce(&common.brokers, &common.topic, users, common.rate, 10_000)
                .await?;
            eprintln!("produced {n} users to {}", common.topic);
        }
        Kind::RandomUsers {
            common,
            repeat_every,
            missing_every,
        } => {
            let users = RandomUsers::new(common.seed, repeat_every, missing_every)
                .take(common.count)
                .map(|u| {
                    (
                        u["login"]["uuid"].as_str().map(str::to_string),
                        u.to_string(),
                    )
                });
            let n =
                producer::produce_keyed(&common.brokers, &common.topic, users, common.rate, 10_000)
                    .await?;
            eprintln!("produced {n} RandomUser results to {}", common.topic);
        }
        Kind::Numbers {
            common,
            total,
            corrupt_every,
        } => {
            let numbers = Numbers::new(common.seed, total, Some(corrupt_every)).take(common.count);
            let n = producer::produce(&common.brokers, &common.topic, numbers, common.rate, 10_000)
                .await?;
            eprintln!("produced {n} numbers to {}", common.topic);
        }
    }
    Ok(())
}
