//! The S3 sink: JSON-lines files under a date/hour layout, made visible
//! exactly once through staged objects.

mod sink;

pub use sink::S3Sink;
