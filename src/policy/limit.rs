//! Limits: how many units a counter admits per sliding window, and whose calls share it.

use super::arg_path::ArgPath;
use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// Whose calls count together against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One count per grant (the credential an agent uses). The default.
    Grant,
    /// One count per session.
    Session,
    /// One count per agent.
    Agent,
    /// One count shared by every call.
    Global,
}

impl Scope {
    /// The name used in policy files: `"grant"`, `"session"`, `"agent"` or `"global"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Grant => "grant",
            Scope::Session => "session",
            Scope::Agent => "agent",
            Scope::Global => "global",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Scope> {
        Some(match name {
            "grant" => Scope::Grant,
            "session" => Scope::Session,
            "agent" => Scope::Agent,
            "global" => Scope::Global,
            _ => return None,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest window a limit may have: 365 days.
pub(crate) const MAX_WINDOW_SECS: u64 = 31_536_000;
/// The largest `max` or fixed `cost`: 2^53, the largest integer every JSON parser keeps exact.
pub(crate) const MAX_UNITS: u64 = 1 << 53;

/// The identity of one counter: its name, window, scope and `key` path.
///
/// Limits that name the same `counter` share one `Counter`; a limit without a name gets a
/// private one, named after its place in the policy (`tools.t.limits[0]`). Counts are
/// kept per (counter, scope id, key value) key; a reloaded policy keeps the counts of
/// every counter whose name, window, scope and key path are unchanged.
#[derive(Debug, Clone)]
pub struct Counter {
    name: Arc<str>,
    private: bool,
    window_secs: u64,
    scope: Scope,
    /// The `key` argument path, when the counter counts per argument value.
    key: Option<Arc<str>>,
    fingerprint: u64,
}

impl Counter {
    /// A named counter, as a policy's `counter` field makes one. For stores and their
    /// tests; engines get their counters from the policy. `window_secs` is clamped to
    /// 1 ..= 31 536 000.
    ///
    /// ```
    /// use mcp_policy::{Counter, Scope};
    /// use std::time::Duration;
    ///
    /// let counter = Counter::new("writes", 60, Scope::Grant);
    /// assert_eq!(counter.window(), Duration::from_secs(60));
    /// ```
    pub fn new(name: &str, window_secs: u64, scope: Scope) -> Counter {
        Counter::with_identity(
            name,
            false,
            window_secs.clamp(1, MAX_WINDOW_SECS),
            scope,
            None,
        )
    }

    pub(crate) fn with_identity(
        name: &str,
        private: bool,
        window_secs: u64,
        scope: Scope,
        key: Option<&str>,
    ) -> Counter {
        // The fingerprint is fixed per identity, so stores can hash it once at load time
        // instead of rehashing the name on every call.
        let mut hasher = DefaultHasher::new();
        (name, private, window_secs, scope, key).hash(&mut hasher);
        Counter {
            name: name.into(),
            private,
            window_secs,
            scope,
            key: key.map(Arc::from),
            fingerprint: hasher.finish(),
        }
    }

    /// The argument path (`args.ticket_id`) whose value also keys the counts, when the
    /// limit has a `key`: calls with different values count separately.
    pub fn key_path(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The counter's name: the policy's `counter` field, the rule key for a `rate_limit`,
    /// or the JSON path of a limit that names no counter.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this counter belongs to a single limit that named no `counter`.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// The sliding window's length.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// The window in whole seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// Whose calls count together.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// A hash of (name, private, window, scope, key path), equal for equal counters within one
    /// process. Stores may use it to avoid rehashing the name.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

impl PartialEq for Counter {
    fn eq(&self, other: &Counter) -> bool {
        self.fingerprint == other.fingerprint
            && self.window_secs == other.window_secs
            && self.scope == other.scope
            && self.private == other.private
            && self.key == other.key
            // Stores keep clones of the policy's counters: usually the very same text.
            && (Arc::ptr_eq(&self.name, &other.name)
                || crate::short_eq::same(self.name.as_bytes(), other.name.as_bytes()))
    }
}

impl Eq for Counter {}

impl Hash for Counter {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint);
    }
}

/// Units a call uses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cost {
    Fixed(u64),
    Argument(ArgPath),
}

/// Which upstream outcomes of an allowed call give its units back (a limit's `refund`).
///
/// Success never refunds. The default, [`Refund::NotRun`], gives units back only when
/// the server never ran the tool, so a stream of failing calls cannot get past a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refund {
    /// Refund calls the server never ran: it answered with a JSON-RPC error, or the call
    /// was never sent. The default.
    #[default]
    NotRun,
    /// Also refund calls that ran and failed (a result with `isError: true`).
    Failed,
    /// Never refund.
    Never,
}

impl Refund {
    /// The name used in policy files: `"not_run"`, `"failed"` or `"never"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refund::NotRun => "not_run",
            Refund::Failed => "failed",
            Refund::Never => "never",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Refund> {
        Some(match name {
            "not_run" => Refund::NotRun,
            "failed" => Refund::Failed,
            "never" => Refund::Never,
            _ => return None,
        })
    }

    /// Of two settings for one count, the one that gives back less.
    pub(crate) fn least_generous(self, other: Refund) -> Refund {
        match (self, other) {
            (Refund::Never, _) | (_, Refund::Never) => Refund::Never,
            (Refund::NotRun, _) | (_, Refund::NotRun) => Refund::NotRun,
            (Refund::Failed, Refund::Failed) => Refund::Failed,
        }
    }

    /// Whether a call that ended with `outcome` gets its units back under this setting.
    ///
    /// ```
    /// use mcp_policy::{Outcome, Refund};
    ///
    /// assert!(Refund::NotRun.refunds(Outcome::NotRun));
    /// assert!(!Refund::NotRun.refunds(Outcome::Failed));
    /// assert!(Refund::Failed.refunds(Outcome::Failed));
    /// assert!(!Refund::Failed.refunds(Outcome::Succeeded));
    /// assert!(!Refund::Never.refunds(Outcome::NotRun));
    /// ```
    pub fn refunds(self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::NotRun => self != Refund::Never,
            Outcome::Failed => self == Refund::Failed,
            Outcome::Succeeded | Outcome::Unknown | Outcome::InputRequired => false,
        }
    }
}

/// How an allowed call ended upstream, as a gateway reports it to
/// [`Engine::report_outcome`](crate::Engine::report_outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// The tool ran and succeeded. Never refunds.
    Succeeded,
    /// The tool ran and its result has `isError: true`. Refunds limits whose `refund`
    /// is `"failed"`.
    Failed,
    /// The tool never ran: the server answered with a JSON-RPC error, or the call was
    /// never sent. Refunds every limit whose `refund` is not `"never"`.
    NotRun,
    /// Nobody knows: the server died or the connection broke after the call was sent.
    /// The units stay charged.
    Unknown,
    /// The server asked for more input before finishing (`resultType: "input_required"`):
    /// the call is not over, so its units stay charged.
    InputRequired,
}

impl Outcome {
    /// The outcome's name in audit records: `ok`, `failed`, `not_run`, `unknown` or
    /// `input_required`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "ok",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not_run",
            Outcome::Unknown => "unknown",
            Outcome::InputRequired => "input_required",
        }
    }
}

/// One compiled limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    /// Kept once per process (`interned`): decisions refer to it without a reference
    /// count.
    pub(crate) counter: &'static Counter,
    /// The `key` argument: counts are kept per value of it.
    pub(crate) key: Option<ArgPath>,
    pub(crate) max: u64,
    pub(crate) cost: Cost,
    pub(crate) refund: Refund,
}

/// The policy spelling of a window: a unit name when it is one, seconds otherwise.
pub(crate) fn window_name(secs: u64) -> Option<&'static str> {
    Some(match secs {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86_400 => "day",
        _ => return None,
    })
}

pub(crate) fn window_from_name(name: &str) -> Option<u64> {
    Some(match name {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    })
}
