//! [`Engine`]: evaluates calls against a policy, with counters from a store.
//!
//! `decide` holds the steps of evaluation, `limits` the last one (limits → the store),
//! `arguments` what limits read from a call's arguments (`cost`, `key`).

mod arguments;
mod decide;
mod limits;
mod resolve;

pub(crate) use arguments::key_value;
pub(crate) use resolve::{resolve, Listed, MatchedBy, Resolution};

use crate::call::ToolCall;
use crate::catalog::Catalog;
use crate::clock::{Clock, SystemClock};
use crate::decision::{Answer, Charge, Charges, Decision, DenyCode, LimitInfo, Reply, Usage, Why};
use crate::policy::{
    Action, Approvers, ArgPath, Condition, Cost, Counter, Limit, OnDrift, Outcome, Policy, Refund,
    Rule, Scope,
};
use crate::store::{
    Admission, CounterKey, CounterStore, KeyValue, LimitRequest, MemoryStore, OwnedKeyValue,
    StoreError,
};
use arc_swap::ArcSwap;
use compact_str::CompactString;
use serde_json::Value;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Limits per call checked without allocating.
const INLINE_LIMITS: usize = 4;

/// The policy engine: one per gateway, shared by every request thread.
///
/// Evaluation: hidden tools are denied; the matching rule (or the
/// default) may deny; `require`/`deny_if` of the rule, then of `all_tools`, may deny;
/// `approve_if` or a `require_approval` action holds unapproved calls; finally every
/// limit is checked and recorded atomically.
///
/// ```
/// use mcp_policy::{Decision, Engine, ManualClock, Policy, ToolCall};
/// use std::time::Duration;
///
/// let policy: Policy = r#"{"version": "1", "tools": {
///     "whmcs_update_ticket": {"limits": [{"window": "minute", "max": 2}]}
/// }}"#.parse()?;
/// let clock = ManualClock::new();
/// let engine = Engine::builder(policy).clock(clock.clone()).build();
/// let call = ToolCall::new("whmcs_update_ticket").grant("g1");
///
/// assert!(engine.evaluate(&call).is_allowed());
/// assert!(engine.evaluate(&call).is_allowed());
/// let refused = engine.evaluate(&call);
/// assert!(matches!(refused, Decision::Limit { .. }));
/// clock.advance(refused.retry_after().unwrap());
/// assert!(engine.evaluate(&call).is_allowed());
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub struct Engine {
    /// Tells this engine's decisions from another's, for refunds.
    id: u64,
    /// Read without a reference-count write per call (`arc-swap`'s per-thread debts), and
    /// replaced atomically by `reload`.
    policy: ArcSwap<Policy>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn CounterStore>,
    fail_open: bool,
    /// Whether `shadow` holds an engine: one atomic read when it does not.
    has_shadow: AtomicBool,
    shadow: parking_lot::RwLock<Option<Arc<Engine>>>,
    /// The tools the server last listed (`observe_tools`), for pins and annotation rules.
    tools: ArcSwap<Catalog>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policy", &self.policy.load())
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Engine`]: its clock, its counter store, and whether store failures
/// fail open.
#[must_use]
pub struct EngineBuilder {
    policy: Policy,
    clock: Arc<dyn Clock>,
    store: Arc<dyn CounterStore>,
    fail_open: bool,
    shadow: Option<Policy>,
}

impl EngineBuilder {
    /// Uses `clock` for time (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> EngineBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// Keeps counts in `store` (default: a new [`MemoryStore`]). Pass an `Arc` to share
    /// one store between engines.
    pub fn store(mut self, store: impl CounterStore + 'static) -> EngineBuilder {
        self.store = Arc::new(store);
        self
    }

    /// When the store fails, allow calls (without counting them) instead of denying them.
    /// Off by default: a broken store then denies every call that has limits.
    ///
    /// This covers store failures only. A call without the id a limit counts by, or with
    /// an unusable `cost` argument, is denied either way: those are the caller's to fix.
    pub fn fail_open(mut self, fail_open: bool) -> EngineBuilder {
        self.fail_open = fail_open;
        self
    }

    /// Also decides every call under `candidate`, a shadow policy with counters of its
    /// own (in memory), to see what it would change before enforcing it
    /// ([`Engine::shadow_evaluate`]); the enforced decisions never change.
    pub fn shadow(mut self, candidate: Policy) -> EngineBuilder {
        self.shadow = Some(candidate);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        // Ids only tell engines apart; they carry no other state.
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let clock = self.clock;
        let shadow = self
            .shadow
            .map(|candidate| Arc::new(Engine::shadow_engine(candidate, Arc::clone(&clock))));
        Engine {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            policy: ArcSwap::from_pointee(self.policy),
            clock,
            store: self.store,
            fail_open: self.fail_open,
            has_shadow: AtomicBool::new(shadow.is_some()),
            shadow: parking_lot::RwLock::new(shadow),
            tools: ArcSwap::from_pointee(Catalog::default()),
        }
    }
}

impl Engine {
    /// An engine with the system clock and an in-memory store.
    pub fn new(policy: Policy) -> Engine {
        Engine::builder(policy).build()
    }

    /// Starts configuring an engine for `policy`.
    pub fn builder(policy: Policy) -> EngineBuilder {
        EngineBuilder {
            policy,
            clock: Arc::new(SystemClock::new()),
            store: Arc::new(MemoryStore::new()),
            fail_open: false,
            shadow: None,
        }
    }

    fn shadow_engine(candidate: Policy, clock: Arc<dyn Clock>) -> Engine {
        EngineBuilder {
            policy: candidate,
            clock,
            store: Arc::new(MemoryStore::new()),
            fail_open: false,
            shadow: None,
        }
        .build()
    }

    /// Decides `call` under the shadow policy, recording in the shadow's own counters;
    /// `None` without one. The enforced policy and its counters are not touched: call
    /// it beside [`evaluate`](Self::evaluate) and compare.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let enforced: Policy = r#"{"version": "1", "default": "allow"}"#.parse()?;
    /// let stricter: Policy = r#"{"version": "1", "default": "deny"}"#.parse()?;
    /// let engine = Engine::builder(enforced).shadow(stricter).build();
    /// let call = ToolCall::new("whmcs_close_client");
    /// assert!(engine.evaluate(&call).is_allowed());
    /// assert_eq!(engine.shadow_evaluate(&call).map(|d| d.code()), Some("default_denied"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn shadow_evaluate(&self, call: &ToolCall<'_>) -> Option<Decision> {
        if !self.has_shadow.load(Ordering::Acquire) {
            return None;
        }
        let shadow = self.shadow.read().clone()?;
        // Not `evaluate`: a shadow's decisions are not the enforced ones, and are not
        // counted in the decision metrics.
        Some(shadow.decide::<Decision>(&shadow.policy.load(), call, true))
    }

    /// Replaces the shadow policy (its counts survive for unchanged counters), or removes
    /// it with `None`.
    pub fn set_shadow(&self, candidate: Option<Policy>) {
        let mut shadow = self.shadow.write();
        match (candidate, shadow.as_ref()) {
            (Some(candidate), Some(engine)) => engine.reload(candidate),
            (Some(candidate), None) => {
                *shadow = Some(Arc::new(Engine::shadow_engine(
                    candidate,
                    Arc::clone(&self.clock),
                )));
            }
            (None, _) => *shadow = None,
        }
        self.has_shadow.store(shadow.is_some(), Ordering::Release);
    }

    /// Decides `call` and, if it is allowed, records its cost in every limit.
    ///
    /// A tool name longer than 512 bytes is denied as `hidden` before any matching, so
    /// that no name costs more than 512 bytes per glob of the policy.
    ///
    /// Cost: with the default store and a counter key that exists, no heap allocation;
    /// one hash of the tool name, one per limit of the scope id, one lock per limit. The
    /// decision copies the tool name, the scope ids and key values it charged (inline up
    /// to 24 bytes each), for refunds and audit records; [`check`](Self::check) decides
    /// the same way without them.
    pub fn evaluate<'a>(&self, call: &ToolCall<'a>) -> Decision {
        #[cfg(feature = "metrics")]
        {
            let decision: Decision = self.decide(&self.policy.load(), call, true);
            crate::observe::decided(&decision.answer());
            decision
        }
        // Returned as made: no copy of the decision on the hot path.
        #[cfg(not(feature = "metrics"))]
        self.decide(&self.policy.load(), call, true)
    }

    /// Decides `call` exactly as [`evaluate`](Self::evaluate) does, recording its cost in
    /// every limit when it is allowed, and returns the [`Answer`] alone: for a caller
    /// that never refunds a call and keeps no audit record of its own, such as a plain
    /// rate check in front of a tool.
    ///
    /// Cost: what [`evaluate`](Self::evaluate) costs, less the decision's copies of the
    /// tool name, ids and key values; the answer is `Copy` and has nothing to drop.
    ///
    /// ```
    /// use mcp_policy::{Engine, ManualClock, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {
    ///     "whmcs_update_ticket": {"rate_limit": "1/minute"}
    /// }}"#.parse()?;
    /// let engine = Engine::builder(policy).clock(ManualClock::new()).build();
    /// let call = ToolCall::new("whmcs_update_ticket").session("s1");
    /// assert!(engine.check(&call).is_allowed());
    /// assert_eq!(engine.check(&call).code(), "rate_limited");
    /// // Both count in the same limits.
    /// assert_eq!(engine.evaluate(&call).code(), "rate_limited");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn check<'a>(&self, call: &ToolCall<'a>) -> Answer {
        let answer: Answer = self.decide(&self.policy.load(), call, true);
        crate::observe::decided(&answer);
        answer
    }

    /// The decision [`evaluate`](Self::evaluate) would give now, recording nothing.
    pub fn peek<'a>(&self, call: &ToolCall<'a>) -> Decision {
        self.decide(&self.policy.load(), call, false)
    }

    /// Reports that the server never ran an allowed call (it answered with a JSON-RPC
    /// error, or the call was never sent): gives back, once, what the `Allow` recorded in
    /// every limit whose `refund` is not `"never"`. The same as
    /// [`report_outcome`](Self::report_outcome) with [`Outcome::NotRun`].
    ///
    /// ```
    /// use mcp_policy::{Engine, ManualClock, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"t": {"rate_limit": "1/minute"}}}"#
    ///     .parse()?;
    /// let engine = Engine::builder(policy).clock(ManualClock::new()).build();
    /// let call = ToolCall::new("t").session("s1");
    /// let first = engine.evaluate(&call);
    /// engine.refund(&first)?; // the server answered with a JSON-RPC error
    /// assert!(engine.evaluate(&call).is_allowed());
    /// assert!(!engine.evaluate(&call).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The store's error, if it could not be reached.
    pub fn refund(&self, decision: &Decision) -> Result<(), StoreError> {
        self.report_outcome(decision, Outcome::NotRun).map(|_| ())
    }

    /// Reports how an allowed call ended upstream, and gives back its units in the limits
    /// whose `refund` setting covers `outcome` ([`Refund::refunds`]): by default only a
    /// call that never ran is refunded, so failing calls still count. Returns whether
    /// anything was given back.
    ///
    /// Pass the decision [`evaluate`](Self::evaluate) returned or any clone of it: clones
    /// share one refund, so a call's units are never given back twice, whichever copies
    /// report and whatever the outcomes reported. Other decisions than `Allow`, decisions of another engine, and units whose window has
    /// passed change nothing. If the store fails, the units not yet given back stay
    /// charged and the same call can be retried.
    ///
    /// ```
    /// use mcp_policy::{Engine, ManualClock, Outcome, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"t": {"limits": [
    ///     {"window": "minute", "max": 1, "scope": "session"}]}}}"#.parse()?;
    /// let engine = Engine::builder(policy).clock(ManualClock::new()).build();
    /// let call = ToolCall::new("t").session("s1");
    /// let first = engine.evaluate(&call);
    /// // The tool ran and failed: with the default `"refund": "not_run"` it still counts.
    /// assert!(!engine.report_outcome(&first, Outcome::Failed)?);
    /// assert!(!engine.evaluate(&call).is_allowed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The store's error, if it could not be reached.
    pub fn report_outcome(
        &self,
        decision: &Decision,
        outcome: Outcome,
    ) -> Result<bool, StoreError> {
        let Decision::Allow { usage, .. } = decision else {
            return Ok(false);
        };
        if usage.engine != self.id || !usage.charges.iter().any(|c| c.refund.refunds(outcome)) {
            return Ok(false);
        }
        let Some(progress) = usage.begin_refund() else {
            return Ok(false);
        };
        let now = self.clock.now();
        for charge in usage.charges.iter().skip(progress.released()) {
            if charge.refund.refunds(outcome) {
                let key = CounterKey {
                    counter: charge.counter,
                    scope_id: &charge.scope_id,
                    value: charge.key.as_ref().map(OwnedKeyValue::borrow),
                };
                if let Err(e) = self.store.release(now, key, usage.at, charge.cost) {
                    // What was given back stays given back; the rest can be retried.
                    progress.end(false);
                    return Err(e);
                }
            }
            progress.advance();
        }
        progress.end(true);
        Ok(true)
    }

    /// Records `token` as used, once within `within`, in the engine's store: `true` the
    /// first time, `false` after. Replicas that share a store (Redis) see each other's
    /// uses. Gateways use it to accept each approval once.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy};
    /// use std::time::Duration;
    ///
    /// let engine = Engine::new(r#"{"version": "1"}"#.parse::<Policy>()?);
    /// assert!(engine.use_once("nonce-1", Duration::from_secs(600))?);
    /// assert!(!engine.use_once("nonce-1", Duration::from_secs(600))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The store's error; the token then counts as not usable (fail closed).
    pub fn use_once(&self, token: &str, within: Duration) -> Result<bool, StoreError> {
        let secs = within.as_secs().saturating_add(1);
        let counter = Counter::new("mcp-policy:used-once", secs, Scope::Global);
        let request = [LimitRequest {
            key: CounterKey::new(&counter, token),
            max: 1,
            cost: 1,
        }];
        match self.store.acquire(self.clock.now(), &request)? {
            Admission::Admitted { .. } => Ok(true),
            Admission::Refused { .. } => Ok(false),
        }
    }

    /// Lets the counter store forget counts whose window has passed (see
    /// [`CounterStore::reclaim_expired`]). A long-running gateway calls it now and then
    /// (the `mcp-policy` gateway: once a minute), so memory follows the keys in use.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy};
    ///
    /// let engine = Engine::new(r#"{"version": "1"}"#.parse::<Policy>()?);
    /// engine.reclaim_expired();
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn reclaim_expired(&self) {
        self.store.reclaim_expired(self.clock.now());
        let shadow = self.shadow.read().clone();
        if let Some(shadow) = shadow {
            shadow.reclaim_expired();
        }
    }

    /// Replaces the policy. Counts survive for every counter whose name, window, scope and
    /// key path are unchanged. A call being evaluated meanwhile sees the old policy or the
    /// new one, never a mix. What [`observe_tools`](Self::observe_tools) recorded stays.
    ///
    /// Calls never wait for a reload, nor a reload for calls: the swap is one atomic
    /// pointer exchange. The replaced policy is freed here, on the reloading thread, once
    /// the calls still deciding under it have finished (they take microseconds), so that
    /// freeing a large policy never lands inside somebody's call. If a caller keeps the
    /// old policy (from [`policy`](Self::policy)) longer than 10 ms, the last holder
    /// frees it instead.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let engine = Engine::new(r#"{"version": "1", "default": "allow"}"#.parse::<Policy>()?);
    /// assert!(engine.evaluate(&ToolCall::new("t")).is_allowed());
    /// engine.reload(r#"{"version": "1", "default": "deny"}"#.parse()?);
    /// assert!(!engine.evaluate(&ToolCall::new("t")).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn reload(&self, policy: Policy) {
        let mut old = self.policy.swap(Arc::new(policy));
        let deadline = std::time::Instant::now() + Duration::from_millis(10);
        loop {
            match Arc::try_unwrap(old) {
                Ok(policy) => return drop(policy),
                Err(still_used) if std::time::Instant::now() < deadline => {
                    old = still_used;
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    /// Records the tools of a `tools/list` result (the `result` object or the whole
    /// JSON-RPC response): each tool's annotations, which annotation rules match on, and
    /// the digest of its definition, which pins compare. A later listing of a tool
    /// replaces what an earlier one said; tools of other pages are kept. Returns how many
    /// tools it recorded. Gateways call it for every `tools/list` result they relay
    /// ([`mcp::filter_tools_list`](crate::mcp::filter_tools_list) does).
    ///
    /// Until a tool is observed it has no annotations (only an annotation rule whose
    /// `match` is `{}` applies to it) and a pin on it counts as drifted.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    /// use serde_json::json;
    ///
    /// let engine = Engine::new(r#"{"version": "1", "annotations": [
    ///     {"match": {"readOnlyHint": true}, "action": "allow"}]}"#.parse::<Policy>()?);
    /// let call = ToolCall::new("whmcs_get_ticket");
    /// assert!(!engine.evaluate(&call).is_allowed(), "not listed yet: default deny");
    /// engine.observe_tools(&json!({"tools": [
    ///     {"name": "whmcs_get_ticket", "annotations": {"readOnlyHint": true}}]}));
    /// assert!(engine.evaluate(&call).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn observe_tools(&self, tools_list_result: &Value) -> usize {
        let mut recorded = 0;
        self.tools.rcu(|catalog| {
            let (next, count) = catalog.with_listing(tools_list_result);
            recorded = count;
            next
        });
        recorded
    }

    /// What the policy makes of `tool` now: hidden, or its rule (a key's, else an
    /// annotation rule's judged on the tool's annotations as last listed), and whether its
    /// pin holds for the definition last listed.
    pub(crate) fn resolve<'p>(&self, policy: &'p Policy, tool: &str) -> Resolution<'p> {
        resolve(policy, tool, Listed::Catalog(&self.tools))
    }

    /// The key of the rule governing `tool` now (see [`resolve`](Self::resolve)): what an
    /// approval binds, so an approval given under one rule is not used under another.
    pub(crate) fn governing_rule(&self, tool: &str) -> Option<String> {
        let policy = self.policy();
        self.resolve(&policy, tool).rule_key().map(str::to_owned)
    }

    /// Who may approve `call` when the policy holds it for approval: its rule's
    /// `approvers`, else `all_tools`' (whose `approve_if` may be what held it), else the
    /// client's user.
    ///
    /// ```
    /// use mcp_policy::{Approvers, Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {
    ///     "whmcs_add_credit": {"action": "require_approval", "approvers": "console"},
    ///     "whmcs_send_email": {"action": "require_approval"}}}"#.parse()?;
    /// let engine = Engine::new(policy);
    /// assert_eq!(engine.approvers(&ToolCall::new("whmcs_add_credit")), Approvers::Console);
    /// assert_eq!(engine.approvers(&ToolCall::new("whmcs_send_email")), Approvers::Client);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn approvers(&self, call: &ToolCall<'_>) -> Approvers {
        let policy = self.policy();
        let rule = match policy.section(call.kind()) {
            None => match self.resolve(&policy, call.name()) {
                Resolution::Governed { rule, .. } => rule.and_then(|r| r.approvers),
                Resolution::Hidden(_) => None,
            },
            Some(section) => section
                .govern(call.kind(), call.name())
                .ok()
                .and_then(|g| g.rule)
                .and_then(|r| r.approvers),
        };
        rule.or(policy.all_tools.approvers).unwrap_or_default()
    }

    /// What a caller refused `insufficient_scope` should ask its authorization server for:
    /// the scopes `call`'s rule and `all_tools` need, then those it has, each once,
    /// space-separated (the `scope` of a step-up challenge).
    pub(crate) fn step_up_scopes(&self, call: &ToolCall<'_>) -> String {
        let policy = self.policy();
        let (rule, extra) = match policy.section(call.kind()) {
            None => match self.resolve(&policy, call.name()) {
                Resolution::Governed { rule, .. } => (rule, &policy.all_tools),
                Resolution::Hidden(_) => (None, &policy.all_tools),
            },
            Some(section) => {
                let rule = section
                    .govern(call.kind(), call.name())
                    .ok()
                    .and_then(|g| g.rule);
                (rule, &policy.nothing_added)
            }
        };
        let mut scopes: Vec<&str> = decide::required_scopes(rule, extra).collect();
        for own in call.granted_scopes().iter().flat_map(|g| g.iter()) {
            if !scopes.contains(&own) {
                scopes.push(own);
            }
        }
        scopes.join(" ")
    }

    /// Records listed entries (see [`observe_tools`](Self::observe_tools)), each already
    /// hinted and digested.
    pub(crate) fn observe_entries(&self, entries: &[crate::catalog::Entry<'_>]) {
        self.tools.rcu(|catalog| catalog.with_entries(entries).0);
    }
}
