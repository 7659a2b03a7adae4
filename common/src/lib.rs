//! Types shared by every Sluice process: the job spec and its validation, ids,
//! and the error taxonomy.

pub mod env;
pub mod error;
pub mod ids;
pub mod spec;
#[cfg(feature = "vrl")]
pub mod vrl_program;

pub use error::{SpecError, SpecProblem};
pub use ids::{JobId, TaskId, WorkerId};
pub use spec::JobSpec;
