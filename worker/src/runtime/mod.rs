//! Running subtasks: one tokio task each, reading its input, applying its
//! operator chain and writing to the next stage or the sink.

mod exposition;
mod metrics;
mod subtask;
mod task_manager;

pub use exposition::WorkerMetrics;
pub use metrics::Metrics;
pub use subtask::{RuntimeContext, TaskCommand, run_subtask};
pub use task_manager::{Outbound, TaskManager};
