//! [`Decision`]: what the engine answers for one call, with what an audit log needs.

use crate::clock::Timestamp;
use crate::policy::{Counter, Refund, Scope};
use crate::store::{KeyValue, OwnedKeyValue};
use compact_str::CompactString;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The engine's answer for one tool call.
///
/// A decision owns what it holds and borrows nothing from the call: a function that takes
/// the arguments by value can return the decision it got for them. Making one allocates
/// nothing for tool names and ids of up to 24 bytes; rule keys and reasons are shared with
/// the policy.
///
/// ```
/// use mcp_policy::{Decision, Engine, Policy, ToolCall};
///
/// let policy: Policy = r#"{"version": "1", "tools": {
///     "whmcs_close_client": {"action": "deny", "reason": "never automated"}
/// }}"#.parse()?;
/// let engine = Engine::new(policy);
/// let decision = engine.evaluate(&ToolCall::new("whmcs_close_client"));
/// match &decision {
///     Decision::Deny { reason, .. } => assert_eq!(reason, "never automated"),
///     other => panic!("unexpected {other}"),
/// }
/// assert_eq!(decision.to_string(), "denied: whmcs_close_client: never automated");
/// assert_eq!(serde_json::to_value(&decision)?["code"], "rule_denied");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Let the call through. If it had limits, each recorded its cost; see
    /// [`Engine::refund`](crate::Engine::refund).
    Allow {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule; `None` when the policy default allowed it.
        rule: Option<RuleKey>,
        /// What the call's limits recorded.
        usage: Usage,
        /// The approval that approved the call ([`ToolCall::approval`]), if one was named.
        ///
        /// [`ToolCall::approval`]: crate::ToolCall::approval
        approval: Option<String>,
    },
    /// Refuse the call.
    Deny {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// Why, as a stable machine-readable code.
        code: DenyCode,
        /// Why, for a person or an agent: the policy's most specific reason.
        reason: Reason,
        /// The limit concerned, for denials about a limit (missing id, bad cost).
        limit: Option<LimitInfo>,
    },
    /// A limit has no room for the call now; it may pass after `retry_after`.
    Limit {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// The limit with the longest wait.
        limit: LimitInfo,
        /// How long until that limit has room for this call.
        retry_after: Duration,
    },
    /// A person must approve the call; re-submit it with
    /// [`ToolCall::approved`](crate::ToolCall::approved) once they have.
    RequireApproval {
        /// The tool called.
        tool: ToolName,
        /// The key of the matched rule, if any.
        rule: Option<RuleKey>,
        /// Why approval is needed.
        reason: Reason,
    },
}

impl Decision {
    /// A denial made outside the policy's steps (by a gateway: a declined or invalid
    /// approval, a store that failed to record one).
    pub(crate) fn refused(call: &crate::ToolCall<'_>, code: DenyCode, reason: String) -> Decision {
        let decision = Decision::Deny {
            tool: ToolName::new(call.name()),
            rule: None,
            code,
            reason: Reason::composed(reason),
            limit: None,
        };
        crate::observe::decided(&decision);
        decision
    }

    /// The kind of decision: `"allow"`, `"deny"`, `"limit"` or `"require_approval"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::Limit { .. } => "limit",
            Decision::RequireApproval { .. } => "require_approval",
        }
    }

    /// The matched rule's key, shared with the policy.
    #[cfg(feature = "metrics")]
    pub(crate) fn rule_key(&self) -> Option<&RuleKey> {
        match self {
            Decision::Allow { rule, .. }
            | Decision::Deny { rule, .. }
            | Decision::Limit { rule, .. }
            | Decision::RequireApproval { rule, .. } => rule.as_ref(),
        }
    }

    /// Whether the call may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// How long to wait before retrying, for [`Decision::Limit`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Decision::Limit { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The tool the decision is about.
    pub fn tool(&self) -> &str {
        match self {
            Decision::Allow { tool, .. }
            | Decision::Deny { tool, .. }
            | Decision::Limit { tool, .. }
            | Decision::RequireApproval { tool, .. } => tool,
        }
    }

    /// The key of the matched rule; `None` when no rule matched (the default decided, or
    /// the tool is hidden).
    pub fn rule(&self) -> Option<&str> {
        match self {
            Decision::Allow { rule, .. }
            | Decision::Deny { rule, .. }
            | Decision::Limit { rule, .. }
            | Decision::RequireApproval { rule, .. } => rule.as_ref().map(RuleKey::as_str),
        }
    }

    /// A stable machine-readable code: `"allowed"`, `"rate_limited"`,
    /// `"approval_required"`, or the [`DenyCode`] of a denial.
    pub fn code(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allowed",
            Decision::Deny { code, .. } => code.as_str(),
            Decision::Limit { .. } => "rate_limited",
            Decision::RequireApproval { .. } => "approval_required",
        }
    }

    /// The limit the decision is about, if any.
    pub fn limit(&self) -> Option<&LimitInfo> {
        match self {
            Decision::Limit { limit, .. } => Some(limit),
            Decision::Deny { limit, .. } => limit.as_ref(),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    /// One line a person or an agent can act on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow { tool, rule, .. } => match rule {
                Some(rule) => write!(f, "allowed: {tool} (rule \"{rule}\")"),
                None => write!(f, "allowed: {tool} (policy default)"),
            },
            Decision::Deny { tool, reason, .. } => write!(f, "denied: {tool}: {reason}"),
            Decision::Limit {
                tool,
                limit,
                retry_after,
                ..
            } => write!(
                f,
                "rate limited: {tool}: {limit}; retry in {}",
                Seconds(*retry_after)
            ),
            Decision::RequireApproval { tool, reason, .. } => {
                write!(f, "needs approval: {tool}: {reason}")
            }
        }
    }
}

impl Serialize for Decision {
    /// A flat audit record: `decision`, `code`, `tool`, `rule`, and as they apply
    /// `reason`, `limit`, `retry_after_ms`, `charged`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("decision", self.kind())?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("tool", self.tool())?;
        map.serialize_entry("rule", &self.rule())?;
        match self {
            Decision::Deny { reason, .. } | Decision::RequireApproval { reason, .. } => {
                map.serialize_entry("reason", reason)?;
            }
            Decision::Limit { .. } => map.serialize_entry("reason", &self.to_string())?,
            Decision::Allow {
                usage, approval, ..
            } => {
                map.serialize_entry("charged", usage)?;
                map.serialize_entry("approval", approval)?;
            }
        }
        if let Some(limit) = self.limit() {
            map.serialize_entry("limit", limit)?;
        }
        if let Some(wait) = self.retry_after() {
            map.serialize_entry(
                "retry_after_ms",
                &u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            )?;
        }
        map.end()
    }
}

/// Why a call was denied, as a stable code for programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DenyCode {
    /// The tool is listed in `hide`, or its name is longer than 512 bytes.
    Hidden,
    /// The matched rule's action is `deny`.
    RuleDenied,
    /// No rule matched and the default is `deny`.
    DefaultDenied,
    /// A `require` condition did not hold.
    RequirementFailed,
    /// A `deny_if` condition held.
    DenyCondition,
    /// A limit is scoped to an id (grant, agent, session) the call lacks.
    MissingIdentity,
    /// A limit's `cost` argument is absent or not a non-negative integer.
    InvalidCost,
    /// A limit's `key` argument is absent, or neither a string nor an integer.
    InvalidKey,
    /// The call costs more than a limit's `max`: it can never pass.
    CostExceedsMax,
    /// The counter store failed and the engine fails closed.
    StoreFailed,
    /// A person declined to approve the call, or did not answer in time.
    ApprovalDeclined,
    /// The approval the call carried is forged, expired, used before, or for another call.
    ApprovalInvalid,
    /// The tool is pinned and its definition, as the server last listed it, differs from
    /// the pin or was never listed (`on_drift` `deny` or `hide`).
    PinDrift,
}

impl DenyCode {
    /// The code as text: `"hidden"`, `"rule_denied"`, `"default_denied"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::Hidden => "hidden",
            DenyCode::RuleDenied => "rule_denied",
            DenyCode::DefaultDenied => "default_denied",
            DenyCode::RequirementFailed => "requirement_failed",
            DenyCode::DenyCondition => "deny_condition",
            DenyCode::MissingIdentity => "missing_identity",
            DenyCode::InvalidCost => "invalid_cost",
            DenyCode::InvalidKey => "invalid_key",
            DenyCode::CostExceedsMax => "cost_exceeds_max",
            DenyCode::StoreFailed => "store_failed",
            DenyCode::ApprovalDeclined => "approval_declined",
            DenyCode::ApprovalInvalid => "approval_invalid",
            DenyCode::PinDrift => "pin_drift",
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key of the rule that decided a call, such as `"whmcs_get_*"`. Derefs to `str`.
///
/// Making one allocates nothing: keys of up to 24 bytes are kept inline, longer ones are
/// reference-counted.
#[derive(Debug, Clone)]
pub struct RuleKey(KeyText);

#[derive(Debug, Clone)]
enum KeyText {
    Inline(CompactString),
    Shared(Arc<str>),
}

impl RuleKey {
    /// The largest key kept inline.
    pub(crate) const INLINE_BYTES: usize = 24;

    /// A key of at most [`INLINE_BYTES`](Self::INLINE_BYTES), copied inline.
    pub(crate) fn inline(key: &str) -> RuleKey {
        RuleKey(KeyText::Inline(CompactString::new(key)))
    }

    pub(crate) fn from_arc(key: Arc<str>) -> RuleKey {
        RuleKey(KeyText::Shared(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyText::Inline(key) => key,
            KeyText::Shared(key) => key,
        }
    }
}

impl PartialEq for RuleKey {
    fn eq(&self, other: &RuleKey) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RuleKey {}

impl Deref for RuleKey {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RuleKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for RuleKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RuleKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The name of the tool a decision is about. Derefs to `str`.
///
/// Names of up to 24 bytes are kept inline, without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolName(CompactString);

impl ToolName {
    pub(crate) fn new(name: &str) -> ToolName {
        ToolName(CompactString::new(name))
    }

    /// The name's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ToolName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ToolName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ToolName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ToolName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ToolName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The text of a reason: taken from the policy without copying, or composed for the call.
/// Derefs to `str`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(ReasonText);

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReasonText {
    Fixed(&'static str),
    Shared(Arc<str>),
    Composed(String),
}

impl Reason {
    pub(crate) fn fixed(text: &'static str) -> Reason {
        Reason(ReasonText::Fixed(text))
    }

    pub(crate) fn shared(text: &Arc<str>) -> Reason {
        Reason(ReasonText::Shared(Arc::clone(text)))
    }

    pub(crate) fn composed(text: String) -> Reason {
        Reason(ReasonText::Composed(text))
    }

    /// The reason's text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            ReasonText::Fixed(text) => text,
            ReasonText::Shared(text) => text,
            ReasonText::Composed(text) => text,
        }
    }
}

impl Deref for Reason {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The limit a decision is about: its counter, whose count it is, and its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitInfo {
    pub(crate) counter: Arc<Counter>,
    pub(crate) scope_id: Option<CompactString>,
    pub(crate) key: Option<OwnedKeyValue>,
    pub(crate) max: u64,
    pub(crate) cost: Option<u64>,
}

impl LimitInfo {
    /// The counter: name, window, scope.
    pub fn counter(&self) -> &Counter {
        &self.counter
    }

    /// The id the count is kept for (`""` for a global counter); `None` when the call
    /// lacked it.
    pub fn scope_id(&self) -> Option<&str> {
        self.scope_id.as_deref()
    }

    /// The call's value of the limit's `key` argument, when the limit has one and the
    /// call gave a usable value.
    pub fn key(&self) -> Option<KeyValue<'_>> {
        self.key.as_ref().map(OwnedKeyValue::borrow)
    }

    /// Units the limit admits per window.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        self.counter.window()
    }

    /// Units the call would have used, when known.
    pub fn cost(&self) -> Option<u64> {
        self.cost
    }
}

impl fmt::Display for LimitInfo {
    /// `counter "x" admits 30 per minute per grant "g1"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "counter \"{}\" admits {} per {}",
            self.counter.name(),
            self.max,
            WindowText(self.counter.window_secs())
        )?;
        match (self.counter.scope(), &self.scope_id) {
            (Scope::Global, _) => f.write_str(" in total")?,
            (scope, Some(id)) => write!(f, " per {scope} \"{id}\"")?,
            (scope, None) => write!(f, " per {scope}")?,
        }
        // The key's value is an argument value: it is in `limit.key` of audit records,
        // never in text (reasons reach logs and agents).
        match self.counter.key_path() {
            Some(path) => write!(f, " and value of {path}"),
            None => Ok(()),
        }
    }
}

impl Serialize for LimitInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("counter", self.counter.name())?;
        map.serialize_entry("scope", &self.counter.scope())?;
        map.serialize_entry("scope_id", &self.scope_id.as_deref())?;
        map.serialize_entry("key", &self.key().map(|k| k.to_json()))?;
        map.serialize_entry("max", &self.max)?;
        map.serialize_entry("window_secs", &self.counter.window_secs())?;
        if let Some(cost) = self.cost {
            map.serialize_entry("cost", &cost)?;
        }
        map.end()
    }
}

/// What an allowed call recorded in its counters, so [`Engine::refund`] can give it back.
///
/// [`Engine::refund`]: crate::Engine::refund
#[derive(Debug)]
pub struct Usage {
    pub(crate) at: Timestamp,
    pub(crate) charges: Charges,
    /// The engine that recorded it: only that engine gives it back.
    pub(crate) engine: u64,
    /// Set by the refund that owns the give-back; cleared again if the store failed, so
    /// that the refund can be retried.
    pub(crate) refunding: AtomicBool,
    /// Charges given back so far, in order; a retried refund resumes here.
    pub(crate) released: AtomicUsize,
}

impl Usage {
    pub(crate) fn none() -> Usage {
        Usage::recorded(Timestamp::EPOCH, Charges::default(), 0)
    }

    pub(crate) fn recorded(at: Timestamp, charges: Charges, engine: u64) -> Usage {
        Usage {
            at,
            charges,
            engine,
            refunding: AtomicBool::new(false),
            released: AtomicUsize::new(0),
        }
    }

    /// When the call was recorded.
    pub fn recorded_at(&self) -> Timestamp {
        self.at
    }

    /// Each counter charged, the id it was charged for, and how many units.
    pub fn charges(&self) -> impl Iterator<Item = (&Counter, &str, u64)> {
        self.charges
            .iter()
            .map(|c| (&*c.counter, &*c.scope_id, c.cost))
    }

    /// The `key` value each charge was counted under (`None` for limits without a key),
    /// in the order of [`charges`](Self::charges).
    pub fn charged_keys(&self) -> impl Iterator<Item = Option<KeyValue<'_>>> {
        self.charges
            .iter()
            .map(|c| c.key.as_ref().map(OwnedKeyValue::borrow))
    }

    /// Whether it was refunded already.
    pub fn is_refunded(&self) -> bool {
        self.refunding.load(Ordering::Acquire)
            && self.released.load(Ordering::Acquire) >= self.charges.iter().count()
    }
}

impl Clone for Usage {
    /// A copy for logs and audit records. Only the original reports the call's outcome:
    /// a clone's refunds change nothing, so a call's units are given back at most once.
    fn clone(&self) -> Usage {
        Usage {
            at: self.at,
            charges: self.charges.clone(),
            engine: self.engine,
            refunding: AtomicBool::new(true),
            released: AtomicUsize::new(usize::MAX),
        }
    }
}

impl PartialEq for Usage {
    /// Usages are equal when they record the same charges at the same time for the same
    /// engine, refunded or not.
    fn eq(&self, other: &Usage) -> bool {
        self.at == other.at
            && self.engine == other.engine
            && self.charges.iter().eq(other.charges.iter())
    }
}

impl Serialize for Usage {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for charge in &self.charges {
            seq.serialize_element(&serde_json::json!({
                "counter": charge.counter.name(), "scope_id": &*charge.scope_id,
                "key": charge.key.as_ref().map(|k| k.borrow().to_json()), "cost": charge.cost,
            }))?;
        }
        seq.end()
    }
}

/// One counter charge.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Charge {
    pub(crate) counter: Arc<Counter>,
    pub(crate) scope_id: CompactString,
    pub(crate) key: Option<OwnedKeyValue>,
    pub(crate) cost: u64,
    /// The charging limit's `refund` setting: which outcomes give the units back.
    pub(crate) refund: Refund,
}

/// The charges of one call: two inline (a rule's limit and `all_tools`' are the common
/// case), more on the heap. Kept small because every `Decision` carries one.
pub(crate) type Charges = smallvec::SmallVec<[Charge; 2]>;

/// A window's length for people: `minute`, `3 hours`, `90 s`.
struct WindowText(u64);

impl fmt::Display for WindowText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => f.write_str("second"),
            60 => f.write_str("minute"),
            3600 => f.write_str("hour"),
            86_400 => f.write_str("day"),
            secs if secs % 86_400 == 0 => write!(f, "{} days", secs / 86_400),
            secs if secs % 3600 == 0 => write!(f, "{} hours", secs / 3600),
            secs if secs % 60 == 0 => write!(f, "{} minutes", secs / 60),
            secs => write!(f, "{secs} s"),
        }
    }
}

/// A wait rounded up to a tenth of a second, so an agent never retries too early.
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self.0.as_nanos().div_ceil(100_000_000);
        write!(f, "{}.{} s", tenths / 10, tenths % 10)
    }
}
