//! An embeddable policy engine for MCP (Model Context Protocol) tool calls.
//!
//! A gateway between AI agents and MCP servers loads a JSON policy once and asks, for
//! every `tools/call`, whether to allow it, deny it, rate-limit it or hold it for a
//! person's approval.
//!
//! ```
//! use mcp_policy::{Decision, Engine, ManualClock, Policy, ToolCall};
//!
//! let policy: Policy = r#"{"version": "1", "default": "deny", "tools": {
//!     "whmcs_update_ticket": {"limits": [{"counter": "whmcs_update_ticket_rate",
//!         "window": "minute", "max": 30, "scope": "grant"}]}
//! }}"#.parse()?;
//! let clock = ManualClock::new();
//! let engine = Engine::builder(policy).clock(clock.clone()).build();
//! let args = serde_json::json!({"ticket_id": 7, "status": "Answered"});
//! let call = ToolCall::new("whmcs_update_ticket").grant("g1").arguments(&args);
//! for _ in 0..30 {
//!     assert!(engine.evaluate(&call).is_allowed());
//! }
//! match engine.evaluate(&call) {
//!     Decision::Limit { retry_after, .. } => assert!(retry_after.as_secs() <= 64),
//!     other => panic!("{other}"),
//! }
//! # Ok::<(), mcp_policy::PolicyError>(())
//! ```
//!
//! - [`Policy`]: parse and validate once; immutable after.
//! - [`Engine`]: [`evaluate`](Engine::evaluate), [`peek`](Engine::peek),
//!   [`report_outcome`](Engine::report_outcome) (and [`refund`](Engine::refund)),
//!   [`reload`](Engine::reload); `Send + Sync`, one per gateway.
//! - [`Decision`]: allow, deny, limit or require approval, with what an audit log needs.
//! - [`Clock`] ([`SystemClock`], [`ManualClock`]) and [`CounterStore`] ([`MemoryStore`];
//!   `RedisStore` with the `redis` feature): time and counts, pluggable. The [`store`]
//!   module holds the store contract and [`store::SlidingWindow`] for stores of your own.
//! - [`mcp`]: JSON-RPC helpers for MCP gateways, and [`mcp::Relay`], the transport-neutral
//!   core of a gateway that relays only what it evaluated.
//!
//! Limits use a sliding window of 16 sub-buckets with exact safety (no window of length W
//! admits more than `max`), liveness within W/16, and `retry_after` at most W·17/16; see
//! [`CounterStore`]; `retry_after` keeps its bound while the clock does not go back.
//! Missing identities and unusable costs deny the call; so do store failures, unless the
//! engine is built with [`fail_open`](EngineBuilder::fail_open) (fail closed).
//!
//! # Features
//!
//! - `redis`: `RedisStore`, counters shared by gateway replicas through Redis.
//! - `metrics`: counter `mcp_policy_decisions_total{decision, code, rule}` through the
//!   `metrics` facade, for every decision `Engine::evaluate` and the gateway relay make.
//! - `tracing`: an event per decision a `mcp::Relay` makes (refusals at INFO, allows at
//!   DEBUG; no arguments), in a span with the request's W3C `traceparent` and `tracestate`.
//! - `http`: `http::PolicyLayer`, a `tower` layer enforcing the policy in front of any
//!   MCP Streamable HTTP service.
//! - `test-util`: `store::testing`, a conformance kit that checks any `CounterStore`
//!   against a reference model of its contract.
//!
//! # The policy format
//!
//! ```json
//! {
//!   "version": "1",
//!   "default": "deny",
//!   "hide": ["whmcs_delete_*"],
//!   "all_tools": { "limits": [ { "window": "minute", "max": 120, "scope": "grant" } ] },
//!   "tools": {
//!     "whmcs_update_ticket": {
//!       "limits": [ { "counter": "whmcs_update_ticket_rate", "window": "minute",
//!                     "max": 30, "scope": "grant" } ],
//!       "deny_if":    [ { "path": "args.priority", "op": "eq", "value": "Emergency" } ],
//!       "approve_if": [ { "path": "args.status", "op": "in", "value": ["Closed"],
//!                         "reason": "closing a ticket needs a person" } ]
//!     },
//!     "whmcs_get_*": {},
//!     "whmcs_close_client": { "action": "deny", "reason": "never automated" },
//!     "whmcs_send_email": { "action": "require_approval", "rate_limit": "10/minute" }
//!   }
//! }
//! ```
//!
//! Top level: `version` (required, `"1"`), `description`, `default` (`"allow"`, `"deny"`
//! — the default — or `"require_approval"`), `hide` (names or globs hidden from
//! `tools/list` and denied), `all_tools` (`limits`, `require`, `deny_if`, `approve_if`
//! added to every call that is not denied outright) and `tools` (rule key → rule).
//!
//! A rule key is an exact tool name or a glob in which `*` matches any run of characters.
//! A tool's rule is the key equal to its name, else the matching glob with the most literal
//! characters (ties: the key that sorts first by bytes), else `default` applies.
//!
//! Rule fields, all optional (`{}` allows the tool): `action` (`"allow"`, `"deny"`,
//! `"require_approval"`), `reason` (shown to the agent), `require` (conditions that must
//! all hold), `deny_if` (deny if any holds), `approve_if` (need approval if any holds),
//! `limits`, and `rate_limit` (`"30/minute"` or `{"max": 30, "window": "minute"}`: one
//! limit whose counter is the rule key, per session by default).
//!
//! A condition is `{"path": "args.a.b", "op": OP, "value": V, "reason"?: text,
//! "ignore_case"?: bool}` (`ignore_case` makes the string comparisons of `eq`, `neq`, `in`,
//! `not_in`, `contains` and `prefix` ignore case: `"closed"` matches `"Closed"`). Each dot
//! of the path descends one level of the call's arguments (`args.items.0` indexes an
//! array). Operators: `eq`, `neq`, `in`, `not_in` (V a list), `lt`, `lte`, `gt`, `gte`
//! (numbers, compared by value: `5` equals `5.0`), `contains` (substring, or list element),
//! `prefix`, `regex` (the `regex` crate's syntax, unanchored, linear-time), `exists` (V a
//! boolean). An absent path makes every operator false except `exists: false`, and a type
//! mismatch is false: `require` fails closed and `deny_if` does not fire.
//!
//! A limit is `{"counter"?, "window", "max", "scope"?, "cost"?, "refund"?}`: `window` is `"second"`,
//! `"minute"`, `"hour"`, `"day"` or 1 to 31 536 000 seconds; `max` is 1 to 2^53 units per
//! sliding window; `scope` is `"grant"` (default), `"session"`, `"agent"` or `"global"`;
//! `cost` is a positive integer or `"args.X"`, a non-negative integer argument; `refund`
//! says which upstream outcomes give the units back ([`Refund`]): `"not_run"` (the
//! default: the server never ran the call), `"failed"` (also calls that ran and failed) or
//! `"never"`. Limits that name the same `counter` share one count and must agree on window
//! and scope.
//!
//! Loading rejects every mistake (unknown fields, wrong types, out-of-range numbers, bad
//! regexes, conflicting counters, a deny rule with limits or conditions) with the JSON path
//! of the problem and what to write instead:
//!
//! ```
//! use mcp_policy::Policy;
//!
//! let err = Policy::from_json(r#"{"version": "1", "tools": {
//!     "whmcs_update_ticket": {"limits": [{"window": "minutes", "max": 30}]}
//! }}"#).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "policy: tools.whmcs_update_ticket.limits[0].window: expected \"second\", \"minute\", \
//!      \"hour\", \"day\", or a whole number of seconds from 1 to 31536000, found \"minutes\" \
//!      (did you mean \"minute\"?)"
//! );
//! ```
#![forbid(unsafe_code)]

pub mod audit;
mod call;
mod catalog;
mod clock;
mod decision;
mod engine;
mod explain;
#[cfg(feature = "http")]
pub mod http;
mod json;
mod matcher;
pub mod mcp;
mod observe;
mod policy;
mod short_eq;
pub mod store;
mod uri;

pub use call::{CallKind, CallRecord, Scopes, ToolCall};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use decision::{Answer, Decision, DenyCode, LimitInfo, Reason, RuleKey, ToolName, Usage};
pub use engine::{Engine, EngineBuilder};
pub use explain::{ConditionCheck, Explanation, LimitCheck, RuleMatch};
pub use mcp::McpError;
pub use policy::{
    closest_name, Action, Approvers, Counter, OnDrift, Outcome, Policy, PolicyError, Refund, Scope,
};
/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{
    Admission, CounterKey, CounterStore, KeyValue, LimitRequest, MemoryStore, StoreError,
};
