//! Which transforms of a job keep state, and where that state lives in a
//! checkpoint: what a job started from a savepoint must share with the job
//! the savepoint was taken of.

use super::{JobSpec, TransformSpec};
use crate::error::SpecProblem;

/// A transform that keeps keyed state, located the way checkpoints store its
/// state: by stage and by position in that stage's chain of operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulOperator {
    /// Its field path in the spec, such as `transforms[2]`.
    pub path: String,
    /// The stage it runs in (each `key_by` starts a new one).
    pub stage: u32,
    /// Its position among the operators of its stage, from 0.
    pub position: u32,
    /// The kind of state it keeps: `pair_sum` or `dedup`.
    pub kind: &'static str,
}

impl JobSpec {
    /// The transforms that keep state, in spec order.
    pub fn stateful_operators(&self) -> Vec<StatefulOperator> {
        let mut out = Vec::new();
        let (mut stage, mut position) = (0, 0);
        for (i, t) in self.transforms.iter().enumerate() {
            let kind = match t {
                TransformSpec::KeyBy(_) => {
                    stage += 1;
                    position = 0;
                    continue;
                }
                TransformSpec::PairSum(_) => Some("pair_sum"),
                TransformSpec::Dedup(_) => Some("dedup"),
                TransformSpec::Remap(_) | TransformSpec::Filter(_) => None,
            };
            if let Some(kind) = kind {
                out.push(StatefulOperator {
                    path: format!("transforms[{i}]"),
                    stage,
                    position,
                    kind,
                });
            }
            position += 1;
        }
        out
    }

    /// Why this job cannot take the keyed state a savepoint of `taken_of` (the
    /// spec of the job it was taken of) holds, each problem at the path of
    /// this spec's transform that differs (`transforms` when none of its
    /// transforms is there to name); empty when it can. The state of a stage
    /// is stored by operator position, so a stage holding state must also
    /// keep its number of operators.
    pub fn state_mismatches(&self, taken_of: &JobSpec) -> Vec<SpecProblem> {
        let (ours, theirs) = (self.stateful_operators(), taken_of.stateful_operators());
        let at = |ops: &[StatefulOperator], stage, position| {
            ops.iter()
                .find(|o| o.stage == stage && o.position == position)
                .cloned()
        };
        let mut problems = Vec::new();
        for op in &ours {
            let message = match at(&theirs, op.stage, op.position) {
                Some(t) if t.kind == op.kind => continue,
                Some(t) => format!(
                    "`{}` keeps state where the savepoint holds `{}` state (its job's {}, \
                     stage {} operator {})",
                    op.kind, t.kind, t.path, t.stage, t.position
                ),
                None => format!(
                    "`{}` (stage {} operator {}) has no state in the savepoint: its job keeps \
                     none there",
                    op.kind, op.stage, op.position
                ),
            };
            problems.push(SpecProblem {
                path: op.path.clone(),
                message,
            });
        }
        for t in theirs
            .iter()
            .filter(|t| at(&ours, t.stage, t.position).is_none())
        {
            problems.push(SpecProblem {
                path: "transforms".into(),
                message: format!(
                    "the savepoint holds `{}` state of its job's {} (stage {} operator {}) \
                     that no transform of this job takes",
                    t.kind, t.path, t.stage, t.position
                ),
            });
        }
        // Stages whose state has takers (others are reported above already).
        let mut stages: Vec<u32> = theirs
            .iter()
            .filter(|t| at(&ours, t.stage, t.position).is_some_and(|o| o.kind == t.kind))
            .map(|t| t.stage)
            .collect();
        stages.dedup();
        for stage in stages {
            let (mine, saved) = (
                self.stage_plan(stage).0.len(),
                taken_of.stage_plan(stage).0.len(),
            );
            if mine != saved {
                problems.push(SpecProblem {
                    path: "transforms".into(),
                    message: format!(
                        "stage {stage} runs {mine} operator(s), but the savepoint's state of \
                         that stage is of {saved}"
                    ),
                });
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use crate::JobSpec;

    fn spec(transforms: &str) -> JobSpec {
        JobSpec::parse_resolved(&format!(
            "name: j\nsource: {{ kafka: {{ brokers: b, topic: t }} }}\n\
             sink: {{ kafka: {{ brokers: b, topic: o }} }}\ntransforms:\n{transforms}"
        ))
        .expect("valid spec")
    }

    fn paths_and_messages(job: &JobSpec, taken_of: &JobSpec) -> Vec<(String, String)> {
        job.state_mismatches(taken_of)
            .into_iter()
            .map(|p| (p.path, p.message))
            .collect()
    }

    #[test]
    fn the_same_stateful_transforms_match_whatever_else_changed() {
        let saved = spec("  - key_by: [k]\n  - dedup: { ttl: 1h }\n");
        let job = spec("  - remap: '.x = 1'\n  - key_by: [k]\n  - dedup: { ttl: 2h }\n");
        assert_eq!(paths_and_messages(&job, &saved), vec![]);
        let stateless = spec("  - remap: '.x = 1'\n");
        assert_eq!(paths_and_messages(&stateless, &stateless), vec![]);
    }

    #[test]
    fn another_kind_of_state_is_named_at_the_job_transform() {
        let saved = spec("  - key_by: [k]\n  - pair_sum: { field: n }\n");
        let job = spec("  - key_by: [k]\n  - dedup: { ttl: 1h }\n");
        let found = paths_and_messages(&job, &saved);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "transforms[1]");
        assert!(
            found[0].1.contains("`dedup`") && found[0].1.contains("`pair_sum`"),
            "{found:?}"
        );
    }

    #[test]
    fn state_without_a_taker_and_takers_without_state_are_both_named() {
        let saved = spec("  - key_by: [k]\n  - dedup: { ttl: 1h }\n");
        let job = spec("  - key_by: [k]\n  - remap: '.x = 1'\n  - key_by: [j]\n  - dedup: {}\n");
        let found = paths_and_messages(&job, &saved);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["transforms[3]", "transforms"], "{found:?}");
        assert!(found[1].1.contains("transforms[1]"), "{found:?}");
    }

    #[test]
    fn a_stage_with_state_keeps_its_number_of_operators() {
        let saved = spec("  - key_by: [k]\n  - dedup: { ttl: 1h }\n");
        let job = spec("  - key_by: [k]\n  - dedup: { ttl: 1h }\n  - remap: '.x = 1'\n");
        let found = paths_and_messages(&job, &saved);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "transforms");
        assert!(found[0].1.contains("stage 1 runs 2"), "{found:?}");
    }
}
