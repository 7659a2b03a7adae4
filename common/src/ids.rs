//! Ids are newtypes so a job id can never be passed where a task id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A submitted job, `job-<n>`.
    JobId
);
string_id!(
    /// A worker process, `worker-<n>`, given by the coordinator at registration.
    WorkerId
);
string_id!(
    /// One subtask of one attempt of a job: `<job>/s<stage>/<index>@<attempt>`.
    TaskId
);

impl JobId {
    pub fn from_seq(n: u64) -> Self {
        Self(format!("job-{n}"))
    }
}

impl WorkerId {
    pub fn from_seq(n: u64) -> Self {
        Self(format!("worker-{n}"))
    }

    /// The number in `worker-<n>`.
    pub fn seq(&self) -> Option<u64> {
        self.0.strip_prefix("worker-")?.parse().ok()
    }
}

impl TaskId {
    pub fn for_subtask(job: &JobId, stage: u32, index: u32, attempt: u32) -> Self {
        Self(format!("{job}/s{stage}/{index}@{attempt}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_id_names_job_stage_index_and_attempt() {
        let id = TaskId::for_subtask(&JobId::from_seq(7), 1, 2, 0);
        assert_eq!(id.as_str(), "job-7/s1/2@0");
    }
}
