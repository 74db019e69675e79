//! `PolicyError`: what went wrong in a policy file, where, and what to write instead.

use std::fmt;

/// Why a policy could not be loaded.
///
/// Every error names where the problem is: a line and column for JSON syntax errors, a
/// JSON path such as `tools.whmcs_update_ticket.limits[0].window` for everything else,
/// together with the offending value and what was expected there.
///
/// ```
/// use mcp_policy::Policy;
///
/// let err = Policy::from_json(r#"{"version":"1","tools":{"t":{"limts":[]}}}"#).unwrap_err();
/// assert_eq!(err.path(), Some("tools.t.limts"));
/// assert!(err.to_string().contains("did you mean \"limits\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    location: Location,
    message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Text { line: usize, column: usize },
    Path(String),
}

impl PolicyError {
    pub(crate) fn syntax(err: &serde_json::Error) -> Self {
        // serde_json appends " at line L column C" to its message; we report those
        // separately, so strip the duplicate.
        let full = err.to_string();
        let message = match full.rfind(" at line ") {
            Some(cut) => full.get(..cut).unwrap_or(&full).to_owned(),
            None => full,
        };
        PolicyError {
            location: Location::Text {
                line: err.line(),
                column: err.column(),
            },
            message,
        }
    }

    pub(crate) fn at(path: &str, message: impl Into<String>) -> Self {
        PolicyError {
            location: Location::Path(path.to_owned()),
            message: message.into(),
        }
    }

    /// The JSON path of the offending value, such as `tools.t.limits[0].window`, or `None`
    /// for a syntax error (see [`line_column`](Self::line_column)). The empty path is the
    /// top-level object.
    pub fn path(&self) -> Option<&str> {
        match &self.location {
            Location::Path(path) => Some(path),
            Location::Text { .. } => None,
        }
    }

    /// Line and column (both from 1) of a JSON syntax error; `None` for other errors.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self.location {
            Location::Text { line, column } => Some((line, column)),
            Location::Path(_) => None,
        }
    }

    /// What is wrong and what was expected, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::Text { line, column } => write!(
                f,
                "policy is not valid JSON: line {line}, column {column}: {}",
                self.message
            ),
            Location::Path(path) if path.is_empty() => write!(f, "policy: {}", self.message),
            Location::Path(path) => write!(f, "policy: {path}: {}", self.message),
        }
    }
}
