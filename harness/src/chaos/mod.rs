//! The chaos program's parts: failure injection users run against a
//! cluster of their own making, with a verdict on exactly-once delivery.
//! [`runner::run`] runs one [`scenario::Scenario`] on an
//! [`environment::Environment`] (processes behind [`proxy::Proxy`] links;
//! for the broker's faults, the program's own [`broker::OwnBroker`]) with
//! the sequenced [`workload::Workload`] (its own jobs, or a shipped seed job
//! of [`seeds`]), and returns its [`outcome::Outcome`].

pub mod broker;
pub mod environment;
pub mod outcome;
pub mod proxy;
pub mod runner;
pub mod scenario;
pub mod seeds;
pub mod workload;
