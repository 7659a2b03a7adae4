use std::fmt;

/// One thing wrong with a job spec, located by its field path
/// (`source.kafka.topic`, `transforms[1].remap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything found wrong with a job spec, all at once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpecError {
    #[error("job spec is not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("job spec has {} problem(s): {}", .0.len(), join(.0))]
    Invalid(Vec<SpecProblem>),
}

impl SpecError {
    pub fn problems(&self) -> Vec<SpecProblem> {
        match self {
            Self::Syntax(msg) => vec![SpecProblem {
                path: String::new(),
                message: msg.clone(),
            }],
            Self::Invalid(problems) => problems.clone(),
        }
    }
}

fn join(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
