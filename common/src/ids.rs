//! Ids are newtypes so a job id can never be passed where a task id is meant.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        /// Ordered as people count (`job-2` before `job-10`), see
        /// [`natural_cmp`].
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                natural_cmp(&self.0, &other.0)
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

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

/// Compares ids as people count: runs of digits by their number, the rest
/// as text, so `job-2` < `job-10` and `job-10/s0/1@0` < `job-10/s1/0@0`.
/// Ids equal in that order (`job-01`, `job-1`) fall back to their text,
/// so only equal ids compare equal.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        let (cx, rx) = split_run(x);
        let (cy, ry) = split_run(y);
        let digits = |c: &str| c.starts_with(|ch: char| ch.is_ascii_digit());
        let order = if digits(cx) && digits(cy) {
            let (nx, ny) = (cx.trim_start_matches('0'), cy.trim_start_matches('0'));
            nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny))
        } else {
            cx.cmp(cy)
        };
        if order != Ordering::Equal {
            return order;
        }
        (x, y) = (rx, ry);
    }
}

/// The leading run of `s` of digits or of other characters, and the rest.
fn split_run(s: &str) -> (&str, &str) {
    let digit = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(end)
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
    fn ids_sort_as_people_count() {
        let mut jobs: Vec<JobId> = [10, 2, 1, 11, 100, 9].map(JobId::from_seq).to_vec();
        jobs.sort();
        let names: Vec<&str> = jobs.iter().map(JobId::as_str).collect();
        assert_eq!(
            names,
            ["job-1", "job-2", "job-9", "job-10", "job-11", "job-100"]
        );
        assert_eq!(natural_cmp("job-01", "job-1"), "job-01".cmp("job-1"));
        assert_eq!(
            natural_cmp("job-10/s0/1@0", "job-10/s1/0@0"),
            Ordering::Less
        );
        assert_eq!(natural_cmp("job-2", "job-2a"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    }

    #[test]
    fn task_id_names_job_stage_index_and_attempt() {
        let id = TaskId::for_subtask(&JobId::from_seq(7), 1, 2, 0);
        assert_eq!(id.as_str(), "job-7/s1/2@0");
    }
}
