//! Rules: what a policy says about the tools one key matches.

use super::arg_path::ArgPath;
use super::condition::Condition;
use super::limit::{Cost, Limit};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// What a rule, or the policy default, does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the call through, subject to the rule's conditions and limits.
    Allow,
    /// Refuse the call.
    Deny,
    /// Hold the call until a person approves it.
    RequireApproval,
}

impl Action {
    /// The name used in policy files: `"allow"`, `"deny"` or `"require_approval"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::RequireApproval => "require_approval",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Action> {
        Some(match name {
            "allow" => Action::Allow,
            "deny" => Action::Deny,
            "require_approval" => Action::RequireApproval,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may approve the calls a rule holds for approval (its `approvers` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Approvers {
    /// The MCP client's own user, through an elicitation (the default). This trusts the
    /// client software: a client that speaks JSON-RPC itself can answer for its user.
    #[default]
    Client,
    /// A person signed in to the gateway's approval console, never one whose own grant
    /// made the call: separation of duties.
    Console,
    /// Whichever answers first: the client's user (when the client can show a form) or a
    /// person on the console.
    Either,
}

impl Approvers {
    /// The name used in policy files: `"client"`, `"console"` or `"either"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Approvers::Client => "client",
            Approvers::Console => "console",
            Approvers::Either => "either",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Approvers> {
        Some(match name {
            "client" => Approvers::Client,
            "console" => Approvers::Console,
            "either" => Approvers::Either,
            _ => return None,
        })
    }

    /// Whether a person on the approval console may decide.
    pub fn uses_console(self) -> bool {
        self != Approvers::Client
    }
}

impl fmt::Display for Approvers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One compiled rule (also used for `all_tools`, whose action is always `Allow`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// Kept once per process (`interned`), as decisions name it.
    pub(crate) key: &'static str,
    /// Whether the key contains `*`; otherwise it matches only the tool of that name.
    pub(crate) glob: bool,
    pub(crate) action: Action,
    pub(crate) reason: Option<Arc<str>>,
    pub(crate) require: Vec<Condition>,
    pub(crate) deny_if: Vec<Condition>,
    pub(crate) approve_if: Vec<Condition>,
    pub(crate) limits: Vec<Limit>,
    /// The `rate_limit` shorthand, kept apart so the policy serializes as written.
    pub(crate) rate_limit: Option<Limit>,
    /// OAuth scopes the caller's token must carry.
    pub(crate) scopes: Vec<Arc<str>>,
    /// Who approves what the rule holds; `None` when the rule does not say.
    pub(crate) approvers: Option<Approvers>,
}

impl Rule {
    pub(crate) fn has_conditions(&self) -> bool {
        !(self.require.is_empty() && self.deny_if.is_empty() && self.approve_if.is_empty())
    }

    pub(crate) fn has_limits(&self) -> bool {
        !self.limits.is_empty() || self.rate_limit.is_some()
    }

    /// Every limit of the rule: `limits`, then the `rate_limit` shorthand.
    pub(crate) fn all_limits(&self) -> impl Iterator<Item = &Limit> {
        self.limits.iter().chain(self.rate_limit.as_ref())
    }

    /// Every argument path the rule reads: its conditions', then its limits' costs and
    /// keys.
    pub(crate) fn arg_paths(&self) -> impl Iterator<Item = &ArgPath> {
        let conditions = self
            .require
            .iter()
            .chain(&self.deny_if)
            .chain(&self.approve_if);
        conditions
            .map(|c| &c.path)
            .chain(self.all_limits().filter_map(|limit| match &limit.cost {
                Cost::Argument(path) => Some(path),
                Cost::Fixed(_) => None,
            }))
            .chain(self.all_limits().filter_map(|limit| limit.key.as_ref()))
    }
}
