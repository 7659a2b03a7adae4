mod batches;
mod collections;
mod convert;
mod duration;
mod numbers;
mod refusal;
mod row;
mod sink;
mod writer;

pub use refusal::{prepare_fault, write_fault};
pub use sink::CassandraSink;
