//! `PolicyError`: what went wrong in a policy file, where, and what to write instead.

use std::fmt;

/// Why a policy could not be loaded: every problem found, not only the first.
///
/// Every problem names where it is: a line and column for JSON syntax errors, a JSON path
/// such as `tools.whmcs_update_ticket.limits[0].window` for everything else, together
/// with the offending value (cut to a bounded length) and what was expected there. The
/// accessors describe the first problem; [`errors`](Self::errors) lists them all, and
/// `Display` prints one per line.
///
/// ```
/// use mcp_policy::Policy;
///
/// let err = Policy::from_json(r#"{"version":"1","tools":{"t":{"limts":[]}}}"#).unwrap_err();
/// assert_eq!(err.path(), Some("tools.t.limts"));
/// assert!(err.to_string().contains("did you mean \"limits\""));
///
/// let err = Policy::from_json(r#"{"version":"2","default":"maybe","tools":{"t":{"limts":[]}}}"#)
///     .unwrap_err();
/// let paths: Vec<_> = err.errors().map(|e| e.path().unwrap_or_default().to_owned()).collect();
/// assert_eq!(paths, ["version", "default", "tools.t.limts"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    location: Location,
    message: String,
    /// The problems found after the first, each with an empty `more`.
    more: Vec<PolicyError>,
    /// Problems found but not kept, past [`MAX_ERRORS`].
    dropped: usize,
}

/// At most this many problems are kept, so a huge broken file gives a readable report.
const MAX_ERRORS: usize = 50;

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
            more: Vec::new(),
            dropped: 0,
        }
    }

    pub(crate) fn at(path: &str, message: impl Into<String>) -> Self {
        PolicyError {
            location: Location::Path(path.to_owned()),
            message: message.into(),
            more: Vec::new(),
            dropped: 0,
        }
    }

    /// One error holding every problem of `errors`, in order; `None` for none.
    pub(crate) fn combine(errors: Vec<PolicyError>) -> Option<PolicyError> {
        let mut first: Option<PolicyError> = None;
        for mut error in errors {
            let more = std::mem::take(&mut error.more);
            let dropped = std::mem::take(&mut error.dropped);
            let all = match &mut first {
                None => first.insert(error),
                Some(all) => {
                    all.keep(error);
                    all
                }
            };
            for error in more {
                all.keep(error);
            }
            all.dropped += dropped;
        }
        first
    }

    fn keep(&mut self, error: PolicyError) {
        if self.more.len() + 1 < MAX_ERRORS {
            self.more.push(error);
        } else {
            self.dropped += 1;
        }
    }

    /// Every problem found, the first being `self` (without the others). At most 50 are
    /// kept; [`dropped`](Self::dropped) says how many more there were.
    pub fn errors(&self) -> impl Iterator<Item = &PolicyError> {
        std::iter::once(self).chain(&self.more)
    }

    /// How many problems were found but not kept.
    pub fn dropped(&self) -> usize {
        self.dropped
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
    /// One line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_one(f)?;
        for error in &self.more {
            f.write_str("\n")?;
            error.fmt_one(f)?;
        }
        if self.dropped > 0 {
            write!(f, "\n… and {} more problems", self.dropped)?;
        }
        Ok(())
    }
}

impl PolicyError {
    fn fmt_one(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
