//! Seed data generators: deterministic for a given seed, so a test can
//! regenerate exactly what it produced and check every output against it.

pub mod ingestion;
pub mod numbers;
pub mod producer;
pub mod user_events;
pub mod users;
