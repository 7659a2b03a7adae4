//! Bearer-token authentication of client calls. A coordinator given a tokens
//! file accepts a call only with an `authorization: Bearer TOKEN` header whose
//! token the file names, and only when the token's role allows the call. The
//! check is a plain function of the header's value, so every endpoint that
//! takes client calls (gRPC metadata or HTTP headers) uses the same one.

use std::fmt;
use std::path::Path;

/// What a token may do. Roles are ordered: an operator may do everything a
/// read-only client may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reading: jobs, their status, checkpoints, events, savepoints, workers,
    /// the coordinator group.
    ReadOnly,
    /// Changing: submitting, cancelling, stopping and rescaling jobs, taking
    /// savepoints, changing the coordinator group's membership.
    Operator,
}

impl Role {
    /// The role's name in tokens files and messages: `read-only`, `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Operator => "operator",
        }
    }

    /// Parses what [`Role::as_str`] gives.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read-only" => Some(Self::ReadOnly),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call was refused, or why a tokens file cannot be used. `call` is the
/// name of the call refused, such as `SubmitJob`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "{call} refused: authentication is on and the call carries no token \
         (send the header `Authorization: Bearer TOKEN`; jobctl: --token or SLUICE_TOKEN)"
    )]
    MissingToken { call: String },
    #[error("{call} refused: the authorization header is not `Bearer TOKEN`")]
    MalformedHeader { call: String },
    #[error("{call} refused: the token is not one this coordinator accepts")]
    UnknownToken { call: String },
    #[error("{call} refused: it needs the {needs} role, and the token given has the {role} role")]
    Forbidden {
        call: String,
        needs: Role,
        role: Role,
    },
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tokens file {path}, line {line}: {message}")]
    Invalid {
        path: String,
        line: usize,
        message: String,
    },
    #[error("tokens file {path} names no token")]
    Empty { path: String },
}

impl AuthError {
    /// Whether the caller is unknown (no token, or one not accepted), as
    /// opposed to known but without the role the call needs.
    pub fn unauthenticated(&self) -> bool {
        !matches!(self, Self::Forbidden { .. })
    }
}

/// The tokens a coordinator accepts, each with its role, as read from a
/// tokens file.
///
/// The file has one token a line, `ROLE TOKEN`, where ROLE is `read-only` or
/// `operator` and TOKEN any text without spaces; blank lines and lines
/// starting with `#` are skipped.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    tokens: Vec<(String, Role)>,
}

/// Tokens are secrets: never printed.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} tokens)", self.tokens.len())
    }
}

impl Tokens {
    /// Reads and parses the tokens file at `path` (a blocking read).
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| AuthError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a tokens file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, AuthError> {
        let mut tokens: Vec<(String, Role)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |message: String| AuthError::Invalid {
                path: path.to_string(),
                line: index + 1,
                message,
            };
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), None) = (words.next(), words.next(), words.next()) else {
                return Err(invalid("expected `ROLE TOKEN`".into()));
            };
            let role = Role::parse(role).ok_or_else(|| {
                invalid(format!(
                    "unknown role `{role}` (roles: read-only, operator)"
                ))
            })?;
            if tokens.iter().any(|(t, _)| t == token) {
                return Err(invalid("the token is given twice".into()));
            }
            tokens.push((token.to_string(), role));
        }
        if tokens.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_string(),
            });
        }
        Ok(Self { tokens })
    }

    /// The role of `token`, if accepted. Compares with every token in full,
    /// so the time taken does not tell how much of a guess was right.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let mut found = None;
        for (known, role) in &self.tokens {
            if same_bytes(known.as_bytes(), token.as_bytes()) {
                found = Some(*role);
            }
        }
        found
    }

    /// A token of the file, for a coordinator's own calls to its peers.
    pub fn any(&self) -> &str {
        self.tokens.first().map(|(t, _)| t.as_str()).unwrap_or("")
    }

    /// Checks a call named `call` that needs role `needs`, given the value of
    /// its `authorization` header (`None` when absent); returns the caller's
    /// role.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        call: &str,
        needs: Role,
    ) -> Result<Role, AuthError> {
        let call = call.to_string();
        let Some(value) = authorization else {
            return Err(AuthError::MissingToken { call });
        };
        let token = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(AuthError::MalformedHeader { call });
        };
        let role = self
            .role_of(token)
            .ok_or(AuthError::UnknownToken { call: call.clone() })?;
        if role < needs {
            return Err(AuthError::Forbidden { call, needs, role });
        }
        Ok(role)
    }
}

/// `authorization` header value carrying `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Equality whose time depends on the lengths only.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::parse(
            "# operators\noperator op-1\n\nread-only   ro-1\n",
            "tokens.txt",
        )
        .unwrap()
    }

    #[test]
    fn each_token_gets_its_role_and_operators_may_read() {
        let t = tokens();
        assert_eq!(
            t.authorize(Some("Bearer op-1"), "SubmitJob", Role::Operator)
                .ok(),
            Some(Role::Operator)
        );
        assert_eq!(
            t.authorize(Some("bearer op-1"), "ListJobs", Role::ReadOnly)
                .ok(),
            Some(Role::Operator)
        );
        assert_eq!(
            t.authorize(Some("Bearer ro-1"), "ListJobs", Role::ReadOnly)
                .ok(),
            Some(Role::ReadOnly)
        );
    }

    #[test]
    fn refusals_name_the_call_and_say_why() {
        let t = tokens();
        let missing = t.authorize(None, "ListJobs", Role::ReadOnly).unwrap_err();
        assert!(missing.unauthenticated());
        assert!(
            missing.to_string().starts_with("ListJobs refused")
                && missing.to_string().contains("no token"),
            "{missing}"
        );
        let unknown = t
            .authorize(Some("Bearer op-2"), "ListJobs", Role::ReadOnly)
            .unwrap_err();
        assert!(unknown.unauthenticated());
        assert!(
            unknown
                .to_string()
                .contains("not one this coordinator accepts")
        );
        let malformed = t
            .authorize(Some("Basic b3A6MQ=="), "ListJobs", Role::ReadOnly)
            .unwrap_err();
        assert!(matches!(malformed, AuthError::MalformedHeader { .. }));
        let forbidden = t
            .authorize(Some("Bearer ro-1"), "CancelJob", Role::Operator)
            .unwrap_err();
        assert!(!forbidden.unauthenticated());
        assert_eq!(
            forbidden.to_string(),
            "CancelJob refused: it needs the operator role, and the token given has the read-only role"
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_line() {
        let err = Tokens::parse("operator a\nadmin b\n", "t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "tokens file t, line 2: unknown role `admin` (roles: read-only, operator)"
        );
        assert!(
            Tokens::parse("operator\n", "t")
                .unwrap_err()
                .to_string()
                .contains("line 1: expected `ROLE TOKEN`")
        );
        assert!(
            Tokens::parse("operator a\nread-only a\n", "t")
                .unwrap_err()
                .to_string()
                .contains("given twice")
        );
        assert!(matches!(
            Tokens::parse("# none yet\n", "t"),
            Err(AuthError::Empty { .. })
        ));
    }

    #[test]
    fn tokens_are_not_printed() {
        assert_eq!(format!("{:?}", tokens()), "Tokens(2 tokens)");
    }
}
