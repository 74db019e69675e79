//! [`Relay`]: the transport-neutral core of a gateway, which relays only what it evaluated.

use super::held::{HeldBudget, HeldTicket, DEFAULT_MAX_HELD, DEFAULT_MAX_HELD_BYTES};
use super::{
    approval_request, arguments_sha256, error_response, filter_tools_list, parse_message, refusal,
    tool_call, ApprovalAnswer, ApprovalBinding, ApprovalError, ApprovalKey, ApprovalLedger,
    MessageError, Revision, SealedApproval, APPROVAL_INPUT, DEFAULT_MAX_MESSAGE, INVALID_PARAMS,
    INVALID_REQUEST, STATE_PREFIX,
};
use crate::audit::{AuditRecord, OutcomeRecord};
use crate::call::ToolCall;
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::decision::{Decision, DenyCode};
use crate::engine::Engine;
use crate::json::fold_case;
use crate::policy::Outcome;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// JSON-RPC error code (implementation-defined range) for a request the gateway could
/// not get answered: too many in flight, the server gone, or no answer in time.
pub const GATEWAY_ERROR: i64 = -32000;

/// The `_meta` key in which MCP 2026-07-28 requests carry the client's capabilities.
const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// Methods the relay reads, so a case variant of one is refused rather than relayed.
const INTERPRETED_METHODS: &[&str] = &["tools/call", "tools/list", "initialize"];
/// The members of a JSON-RPC 2.0 message.
const MEMBERS: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];
/// The members of `tools/call` params the policy reads.
const CALL_PARAMS: &[&str] = &["name", "arguments"];

/// The transport-neutral core of an MCP gateway: give it each message from the client
/// and from the server; it tells you what to write to each.
///
/// It relays only what it evaluated:
/// - every message is parsed once ([`parse_message`]: size limit, UTF-8, no duplicate
///   keys, no two keys equal when case is ignored), and what is relayed is re-serialized
///   from what was parsed, never the raw bytes; members outside JSON-RPC's are dropped;
/// - every `tools/call` request is evaluated, whatever its shape; refusals are answered
///   here and never reach the server; a `tools/call` without an `id`, or a method that
///   equals an interpreted one only when case is ignored (`Tools/Call`), is refused;
/// - batches (JSON arrays) get one error with `id: null` and are never relayed;
/// - requests reach the server under ids the relay mints, mapped back to the client's
///   on the way out, so no client id can alias another request; a response from the
///   client is relayed only if it answers a request the server made and is still open;
/// - `tools/list` results lose what the policy hides or denies outright;
/// - the server's answer to an allowed call is reported to the engine
///   ([`Engine::report_outcome`]): a JSON-RPC error is `not_run`, `isError: true` is
///   `failed`, and a call still pending when the server exits or the timeout passes
///   keeps its units;
/// - at most `max_pending` requests wait for the server; past `request_timeout` each
///   is answered with an error by [`expire`](Relay::expire).
///
/// Every client request gets exactly one answer: the server's, a refusal, or an error.
///
/// The relay holds no I/O: a stdio gateway feeds it lines, an HTTP gateway bodies.
/// It is `Send + Sync`; feed it from any thread.
///
/// ```
/// use mcp_policy::mcp::Relay;
/// use mcp_policy::{Engine, Policy};
///
/// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_get_ticket": {}}}"#.parse()?;
/// let relay = Relay::builder(Engine::new(policy)).grant("g1").build();
///
/// let out = relay.from_client(br#"{"jsonrpc":"2.0","id":"a","method":"tools/call",
///     "params":{"name":"whmcs_close_client","arguments":{"client_id":7}}}"#);
/// assert!(out.to_server.is_empty());
/// assert!(out.to_client[0].contains("\"code\":\"default_denied\""));
///
/// let out = relay.from_client(br#"{"jsonrpc":"2.0","id":"a","method":"tools/call",
///     "params":{"name":"whmcs_get_ticket","arguments":{"ticket_id":7}}}"#);
/// // Forwarded under the relay's own id...
/// assert!(out.to_server[0].contains("\"id\":1"));
/// // ...and the server's answer goes back under the client's.
/// let out = relay.from_server(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#);
/// assert!(out.to_client[0].contains("\"id\":\"a\""));
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub struct Relay {
    engine: Arc<Engine>,
    grant: Option<String>,
    agent: Option<String>,
    session: Option<String>,
    max_message: usize,
    max_pending: usize,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
    approvals: Option<Approvals>,
    audit: bool,
    /// The SHA-256 of the policy file, for audit records.
    policy_sha256: Mutex<Option<String>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("engine", &self.engine)
            .field("grant", &self.grant)
            .field("agent", &self.agent)
            .field("session", &self.session)
            .field("max_message", &self.max_message)
            .field("max_pending", &self.max_pending)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Relay`].
#[must_use]
pub struct RelayBuilder {
    relay: Relay,
}

impl RelayBuilder {
    /// The grant id every call is evaluated with.
    pub fn grant(mut self, id: impl Into<String>) -> RelayBuilder {
        self.relay.grant = Some(id.into());
        self
    }

    /// The agent id every call is evaluated with.
    pub fn agent(mut self, id: impl Into<String>) -> RelayBuilder {
        self.relay.agent = Some(id.into());
        self
    }

    /// The session id every call is evaluated with.
    pub fn session(mut self, id: impl Into<String>) -> RelayBuilder {
        self.relay.session = Some(id.into());
        self
    }

    /// The largest message accepted from either side, in bytes (default 4 MiB).
    pub fn max_message(mut self, bytes: usize) -> RelayBuilder {
        self.relay.max_message = bytes;
        self
    }

    /// How many requests may wait for the server at once (default 1024); more are
    /// answered with an error. The same bound applies to the server's requests waiting
    /// for the client.
    pub fn max_pending(mut self, requests: usize) -> RelayBuilder {
        self.relay.max_pending = requests.max(1);
        self
    }

    /// How long a request may wait for the server before [`Relay::expire`] answers it
    /// with an error (default 10 minutes).
    pub fn request_timeout(mut self, timeout: Duration) -> RelayBuilder {
        self.relay.request_timeout = timeout;
        self
    }

    /// Keeps an audit record of every decision and of every allowed call's outcome, in
    /// [`Output::audit`] (off by default).
    pub fn audit(mut self, audit: bool) -> RelayBuilder {
        self.relay.audit = audit;
        self
    }

    /// Tells the relay the client declared the elicitation capability in an `initialize`
    /// it did not see (an HTTP gateway builds a relay per request; the session's
    /// `initialize` went through another).
    pub fn client_elicits(self, elicits: bool) -> RelayBuilder {
        self.relay.state.lock().client_elicits = elicits;
        self
    }

    /// Asks a person, through the MCP client, to approve calls the policy holds for
    /// approval, instead of refusing them (off by default).
    ///
    /// On MCP 2026-07-28, when the request's client capabilities include elicitation, the
    /// call is answered with an `InputRequiredResult` holding an `elicitation/create` form
    /// (one boolean, `approve`) and a sealed `requestState`; the client asks its user and
    /// retries the call with the answer and the state. On older revisions, when the
    /// client declared elicitation in `initialize`, the relay sends it an
    /// `elicitation/create` request and holds the call until the answer. Either way the
    /// call is forwarded only after an explicit approval, evaluated again as approved
    /// (limits still apply), and each approval works once (recorded in the engine's
    /// store, so replicas sharing Redis and the key accept it once). A decline, a cancel
    /// or no answer in time is refused as `approval_declined`; a forged, expired, reused
    /// or mismatched state as `approval_invalid`. Clients that cannot elicit get the
    /// `approval_required` refusal, which says so.
    pub fn approvals(mut self, approvals: Approvals) -> RelayBuilder {
        self.relay.approvals = Some(approvals);
        self
    }

    /// The clock for request timeouts (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> RelayBuilder {
        self.relay.clock = Arc::new(clock);
        self
    }

    /// The relay.
    pub fn build(self) -> Relay {
        self.relay
    }
}

/// What to write after one event, in order for each side. Each entry is one serialized
/// JSON-RPC message without a newline.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// Messages for the client.
    pub to_client: Vec<String>,
    /// Messages for the server.
    pub to_server: Vec<String>,
    /// What happened, for the operator's log: decisions, refusals, dropped messages.
    pub notes: Vec<String>,
    /// Audit records (one JSON object each: decisions, and outcomes of allowed calls),
    /// when the relay keeps them ([`RelayBuilder::audit`]).
    pub audit: Vec<String>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Requests sent to the server, by the id the relay minted.
    pending: HashMap<u64, Pending>,
    /// Requests the server sent to the client, by their id as JSON text.
    server_requests: HashMap<String, Timestamp>,
    /// The revision the server chose in `initialize`, for requests that name none.
    negotiated: Option<Revision>,
    server_gone: bool,
    /// Whether the client declared the elicitation capability in `initialize`.
    client_elicits: bool,
    /// Calls waiting for a person's answer (older revisions), by the id of the
    /// `elicitation/create` request as JSON text.
    asking: HashMap<String, Asking>,
}

/// A call held while its approval request waits for the client's answer.
struct Asking {
    /// The `tools/call` request, as the client sent it (rebuilt).
    request: Value,
    client_id: Value,
    revision: Revision,
    deadline: Timestamp,
    /// Its share of the held calls' budget, given back when it is dropped.
    _ticket: HeldTicket,
}

/// How a [`Relay`] asks a person to approve calls the policy holds for approval: through
/// the MCP client, with an elicitation (see [`RelayBuilder::approvals`]).
#[derive(Debug, Clone)]
pub struct Approvals {
    key: ApprovalKey,
    ttl: Duration,
    timeout: Duration,
    /// Where used approvals are recorded when the engine's store is not shared.
    ledger: Option<Arc<ApprovalLedger>>,
    /// Calls held for an answer, across every relay given a clone of these approvals.
    held: Arc<HeldBudget>,
}

impl Approvals {
    /// Approvals sealed with `key`; they expire after 600 s, and a person has 300 s to
    /// answer a request on revisions before 2026-07-28.
    pub fn new(key: ApprovalKey) -> Approvals {
        Approvals {
            key,
            ttl: Duration::from_secs(600),
            timeout: Duration::from_secs(300),
            ledger: None,
            held: Arc::new(HeldBudget::new(DEFAULT_MAX_HELD, DEFAULT_MAX_HELD_BYTES)),
        }
    }

    /// Records used approvals in `ledger` (a file read back at start) instead of the
    /// engine's counter store. Without a shared store (Redis), this is what keeps an
    /// approval single-use across restarts; a gateway whose counts are in memory and
    /// whose key is kept in a file should have one.
    pub fn ledger(mut self, ledger: ApprovalLedger) -> Approvals {
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Bounds the calls held for a person's answer (revisions before 2026-07-28), across
    /// every relay sharing these approvals: at most `calls` at once (default 256), whose
    /// arguments take at most `bytes` (default 16 MiB). A call over either bound is
    /// refused `approval_required`, saying why.
    pub fn max_held(mut self, calls: usize, bytes: usize) -> Approvals {
        self.held = Arc::new(HeldBudget::new(calls, bytes));
        self
    }

    /// How long a sealed approval stays usable (default 600 s).
    pub fn ttl(mut self, ttl: Duration) -> Approvals {
        self.ttl = ttl;
        self
    }

    /// How long a call waits for a person's answer on revisions before 2026-07-28; no
    /// answer counts as a decline (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Approvals {
        self.timeout = timeout;
        self
    }

    /// How long a call waits for a person's answer on revisions before 2026-07-28.
    pub fn answer_timeout(&self) -> Duration {
        self.timeout
    }
}

struct Pending {
    client_id: Value,
    kind: Kind,
    revision: Revision,
    deadline: Timestamp,
}

enum Kind {
    /// An allowed call, and what it binds when approvals are on (to seal a continuation
    /// if the server asks for more input). Boxed: most requests are not calls.
    Call {
        decision: Box<Decision>,
        binding: Option<Box<ApprovalBinding>>,
        /// The id of the decision's audit record.
        audit: Option<String>,
    },
    /// The retry of a call the server asked more input for: charged already.
    Continuation(Box<ApprovalBinding>),
    ToolsList,
    Initialize,
    Other,
}

impl Relay {
    /// Starts configuring a relay that enforces `engine`'s policy.
    ///
    /// Pass an `Arc<Engine>` to share one engine (its policy, counts and approvals)
    /// between relays, such as one per HTTP request.
    pub fn builder(engine: impl Into<Arc<Engine>>) -> RelayBuilder {
        RelayBuilder {
            relay: Relay {
                engine: engine.into(),
                grant: None,
                agent: None,
                session: None,
                max_message: DEFAULT_MAX_MESSAGE,
                max_pending: 1024,
                request_timeout: Duration::from_secs(600),
                clock: Arc::new(SystemClock::new()),
                approvals: None,
                audit: false,
                policy_sha256: Mutex::new(None),
                state: Mutex::new(State {
                    next_id: 1,
                    ..State::default()
                }),
            },
        }
    }

    /// The engine, to reload its policy.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Names the policy file in audit records from now on: the lowercase hex SHA-256 of
    /// its bytes (a gateway sets it at start and on each reload).
    pub fn set_policy_sha256(&self, hex: impl Into<String>) {
        *self.policy_sha256.lock() = Some(hex.into());
    }

    /// The largest message accepted, in bytes: a transport reads no more than this.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// How many requests wait for the server now.
    pub fn pending(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Handles one message from the client.
    pub fn from_client(&self, bytes: &[u8]) -> Output {
        let mut out = Output::default();
        match parse_message(bytes, self.max_message) {
            Ok(message) => self.client_message(message, &mut out),
            Err(e) => client_error(&mut out, &Value::Null, e.code(), &e.to_string()),
        }
        out
    }

    /// Answers a client message the transport could not read whole because it is longer
    /// than [`max_message`](Self::max_message) (`size` bytes or more).
    pub fn client_message_too_large(&self, size: usize) -> Output {
        let mut out = Output::default();
        let e = MessageError::TooLarge {
            size,
            limit: self.max_message,
        };
        client_error(&mut out, &Value::Null, e.code(), &e.to_string());
        out
    }

    /// Handles one message from the server.
    pub fn from_server(&self, bytes: &[u8]) -> Output {
        let mut out = Output::default();
        match parse_message(bytes, self.max_message) {
            Ok(message) => self.server_message(message, &mut out),
            Err(e) => server_error(&mut out, e.code(), &e.to_string()),
        }
        out
    }

    /// Handles a server message longer than [`max_message`](Self::max_message).
    pub fn server_message_too_large(&self, size: usize) -> Output {
        let mut out = Output::default();
        let e = MessageError::TooLarge {
            size,
            limit: self.max_message,
        };
        server_error(&mut out, e.code(), &e.to_string());
        out
    }

    /// Answers, with an error, every request that has waited for the server longer than
    /// the request timeout, and forgets the server's requests the client left unanswered
    /// as long. A call that timed out keeps its units: it may have run. Call it now and
    /// then (a gateway does once a second).
    pub fn expire(&self) -> Output {
        let now = self.clock.now();
        let mut out = Output::default();
        let mut state = self.state.lock();
        let late: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            if let Some(pending) = state.pending.remove(&id) {
                let message = format!(
                    "the MCP server did not answer within {} s; if this was a tool call, it \
                     may or may not have run",
                    self.request_timeout.as_secs()
                );
                self.settle(&pending, Outcome::Unknown, &mut out);
                client_error(&mut out, &pending.client_id, GATEWAY_ERROR, &message);
            }
        }
        let unanswered: Vec<String> = state
            .asking
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for key in unanswered {
            if let Some(asking) = state.asking.remove(&key) {
                let call = tool_call(&asking.request)
                    .unwrap_or_else(|_| ToolCall::new(""))
                    .ids(
                        self.grant.as_deref(),
                        self.agent.as_deref(),
                        self.session.as_deref(),
                    );
                let denial = Decision::refused(
                    &call,
                    DenyCode::ApprovalDeclined,
                    "no person answered the approval request in time".into(),
                );
                out.notes.push(denial.to_string());
                self.refuse(&asking.client_id, &call, &denial, asking.revision, &mut out);
            }
        }
        let before = state.server_requests.len();
        state.server_requests.retain(|_, deadline| *deadline > now);
        let forgotten = before - state.server_requests.len();
        if forgotten > 0 {
            out.notes.push(format!(
                "forgot {forgotten} server request(s) the client did not answer in time"
            ));
        }
        out
    }

    /// The transport gave up on one request it forwarded (`sent`, as this relay wrote it
    /// for the server): no answer came within its timeout, or the connection failed.
    /// Answers the client's request with an error naming `why`; a call keeps its units,
    /// since it may have run. Nothing happens for a message that is not a request still
    /// waiting.
    pub fn abandon(&self, sent: &str, why: &str) -> Output {
        let mut out = Output::default();
        let minted = serde_json::from_str::<Value>(sent)
            .ok()
            .and_then(|message| message.get("id").and_then(Value::as_u64));
        let pending = minted.and_then(|id| self.state.lock().pending.remove(&id));
        if let Some(pending) = pending {
            self.settle(&pending, Outcome::Unknown, &mut out);
            client_error(
                &mut out,
                &pending.client_id,
                GATEWAY_ERROR,
                &format!("{why}; if this was a tool call, it may or may not have run"),
            );
        }
        out
    }

    /// The server is gone (it exited, or its stream broke): answers every request still
    /// waiting with an error, and every later request too. Calls that were sent keep
    /// their units: they may have run.
    pub fn server_closed(&self) -> Output {
        let mut out = Output::default();
        let mut state = self.state.lock();
        state.server_gone = true;
        let pending: Vec<Pending> = state.pending.drain().map(|(_, p)| p).collect();
        drop(state);
        for pending in pending {
            self.settle(&pending, Outcome::Unknown, &mut out);
            client_error(
                &mut out,
                &pending.client_id,
                GATEWAY_ERROR,
                "the MCP server exited before answering; if this was a tool call, it may or \
                 may not have run",
            );
        }
        out
    }

    fn client_message(&self, message: Value, out: &mut Output) {
        // The request's W3C trace context, carried into the span of everything it causes.
        #[cfg(feature = "tracing")]
        let _span = {
            let text = |pointer: &str| {
                message
                    .pointer(pointer)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (method, traceparent, tracestate) = (
                text("/method"),
                text("/params/_meta/traceparent"),
                text("/params/_meta/tracestate"),
            );
            tracing::info_span!(
                "mcp_policy.request",
                method = method.as_str(),
                traceparent = traceparent.as_str(),
                tracestate = tracestate.as_str(),
            )
            .entered()
        };
        let Value::Object(mut map) = message else {
            let why = if message.is_array() {
                "batches (JSON arrays) are not accepted: send each message on its own"
            } else {
                "a JSON-RPC message is a JSON object"
            };
            return client_error(out, &Value::Null, INVALID_REQUEST, why);
        };
        // The id to answer with, if the message has a usable one.
        let id = match map.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
            Some(_) => {
                return client_error(
                    out,
                    &Value::Null,
                    INVALID_REQUEST,
                    "\"id\" must be a string or a number",
                )
            }
        };
        let answer_id = id.clone().unwrap_or(Value::Null);
        if let Err(why) = check_envelope(&map) {
            return client_error(out, &answer_id, INVALID_REQUEST, &why);
        }
        let method = match map.remove("method") {
            Some(Value::String(method)) => method,
            Some(_) => {
                return client_error(
                    out,
                    &answer_id,
                    INVALID_REQUEST,
                    "\"method\" must be a string",
                )
            }
            None => return self.client_response(map, id, out),
        };
        if let Some(exact) = case_variant_of(&method, INTERPRETED_METHODS) {
            return client_error(
                out,
                &answer_id,
                INVALID_REQUEST,
                &format!(
                    "unknown method {}; method names are case-sensitive: did you mean \
                     \"{exact}\"?",
                    json!(method)
                ),
            );
        }
        let params = map.remove("params");
        if matches!(&params, Some(p) if !p.is_object() && !p.is_array()) {
            return client_error(
                out,
                &answer_id,
                INVALID_REQUEST,
                "\"params\" must be an object or an array",
            );
        }
        let Some(id) = id else {
            return self.client_notification(method, params, out);
        };
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let (Some(params), Some(request)) = (params, request.as_object_mut()) {
            request.insert("params".into(), params);
        }
        let revision = self.revision_of(&request);
        let kind = match method.as_str() {
            "tools/call" => match self.evaluate(&mut request, &id, revision, out) {
                Some(kind) => kind,
                None => return,
            },
            "tools/list" => Kind::ToolsList,
            "initialize" => {
                let elicits = request
                    .pointer("/params/capabilities/elicitation")
                    .is_some();
                self.state.lock().client_elicits = elicits;
                Kind::Initialize
            }
            _ => Kind::Other,
        };
        self.forward(request, id, kind, revision, out);
    }

    /// Evaluates a `tools/call` request; answers it here and returns `None` unless it may
    /// go to the server. A retry carrying this relay's sealed state has it checked and
    /// removed from `request` (a continuation's server state put back) before it is
    /// forwarded.
    fn evaluate(
        &self,
        request: &mut Value,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        if let Some(Value::Object(params)) = request.get("params") {
            if let Some((found, exact)) = params
                .keys()
                .find_map(|k| case_variant_of(k, CALL_PARAMS).map(|e| (k, e)))
            {
                client_error(
                    out,
                    id,
                    INVALID_PARAMS,
                    &format!(
                        "params member {} is not \"{exact}\"; member names are case-sensitive",
                        json!(found)
                    ),
                );
                return None;
            }
        }
        let retry = match self.take_state(request) {
            None => None,
            Some(state) => match self.open_state(&state) {
                Ok(sealed) if sealed.continuation => {
                    return self.continuation(request, sealed, id, revision, out);
                }
                Ok(sealed) => Some((Ok(sealed), take_approval_answer(request))),
                Err(e) => Some((Err(e), None)),
            },
        };
        let can_elicit = revision.requires_result_type()
            && request
                .pointer("/params/_meta")
                .and_then(|meta| meta.get(CLIENT_CAPABILITIES_META))
                .and_then(|caps| caps.get("elicitation"))
                .is_some();
        let call = self.checked_call(request, id, out)?;
        if let Some((sealed, answer)) = retry {
            let decision =
                self.approved_retry(&call, sealed, answer.as_ref(), id, revision, out)?;
            return Some(self.call_kind(decision, &call, id, out));
        }
        let decision = self.engine.evaluate(&call);
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(self.call_kind(decision, &call, id, out));
        }
        if let (Decision::RequireApproval { reason, .. }, Some(approvals)) =
            (&decision, &self.approvals)
        {
            if can_elicit {
                self.record(id, &call, &decision, out);
                self.ask_in_result(approvals, &call, reason, id, out);
                return None;
            }
            if !revision.requires_result_type() && self.state.lock().client_elicits {
                self.ask_by_request(
                    approvals, &call, &decision, reason, request, id, revision, out,
                );
                return None;
            }
        }
        self.refuse(id, &call, &decision, revision, out);
        None
    }

    /// The call a `tools/call` request makes, with the relay's identity; `None` after
    /// answering a request that is malformed, or that arrives once the server is gone.
    fn checked_call<'r>(
        &'r self,
        request: &'r Value,
        id: &Value,
        out: &mut Output,
    ) -> Option<ToolCall<'r>> {
        let call = match tool_call(request) {
            Ok(call) => call,
            Err(e) => {
                client_error(out, id, e.code(), &e.to_string());
                return None;
            }
        };
        let policy = self.engine.policy();
        if let Some(variant) = call.args().and_then(|a| policy.case_variant_argument(a)) {
            let exact = variant.expected;
            client_error(
                out,
                id,
                INVALID_PARAMS,
                &format!(
                    "argument {} is spelled \"{exact}\" in the policy; argument names are \
                     case-sensitive, and a server that ignores case would read it as \"{exact}\"",
                    json!(variant.found)
                ),
            );
            return None;
        }
        if self.state.lock().server_gone {
            client_error(out, id, GATEWAY_ERROR, "the MCP server has exited");
            return None;
        }
        Some(call.ids(
            self.grant.as_deref(),
            self.agent.as_deref(),
            self.session.as_deref(),
        ))
    }

    /// Answers a refused call with its refusal.
    fn refuse(
        &self,
        id: &Value,
        call: &ToolCall<'_>,
        decision: &Decision,
        revision: Revision,
        out: &mut Output,
    ) {
        let cannot_ask =
            self.approvals.is_some() && matches!(decision, Decision::RequireApproval { .. });
        let note = cannot_ask.then_some(
            "This client cannot show approval requests (it declared no elicitation \
             capability), so the call cannot be approved from here.",
        );
        self.refuse_with_note(id, call, decision, revision, note, out);
    }

    /// Answers a refused call with its refusal, `note` added to its text.
    fn refuse_with_note(
        &self,
        id: &Value,
        call: &ToolCall<'_>,
        decision: &Decision,
        revision: Revision,
        note: Option<&str>,
        out: &mut Output,
    ) {
        self.record(id, call, decision, out);
        if let Some(mut answer) = refusal(id, decision, revision) {
            if let (Some(note), Some(Value::String(text))) =
                (note, answer.pointer_mut("/result/content/0/text"))
            {
                text.push(' ');
                text.push_str(note);
            }
            out.to_client.push(answer.to_string());
        }
    }

    /// Keeps the audit record of `decision` (when auditing); its id.
    fn record(
        &self,
        id: &Value,
        call: &ToolCall<'_>,
        decision: &Decision,
        out: &mut Output,
    ) -> Option<String> {
        // The shadow policy decides every call once, audited or not, with its own counts.
        let shadow = self.engine.shadow_evaluate(call);
        if !self.audit && !tracing_on() {
            return None;
        }
        let mut nonce = [0u8; 12];
        let _ = getrandom::fill(&mut nonce);
        let record_id = super::digest::hex(&nonce);
        let mut record = AuditRecord::new(&record_id, id, call, decision);
        if let Some(hex) = self.policy_sha256.lock().clone() {
            record = record.policy_sha256(hex);
        }
        if let Some(shadow) =
            shadow.filter(|s| s.code() != decision.code() || s.rule() != decision.rule())
        {
            record = record.shadow(&shadow);
        }
        trace_decision(&record);
        if !self.audit {
            return None;
        }
        out.audit
            .push(serde_json::to_string(&record).unwrap_or_default());
        Some(record_id)
    }

    /// Removes this relay's sealed state from a retried call; `None` when the call has
    /// none (no state, or the upstream server's, which is relayed untouched).
    fn take_state(&self, request: &mut Value) -> Option<String> {
        self.approvals.as_ref()?;
        let params = request.get_mut("params")?.as_object_mut()?;
        let ours = params
            .get("requestState")
            .and_then(Value::as_str)
            .is_some_and(|state| state.starts_with(STATE_PREFIX));
        if !ours {
            return None;
        }
        params.remove("requestState")?.as_str().map(str::to_owned)
    }

    fn open_state(&self, state: &str) -> Result<SealedApproval, ApprovalError> {
        match &self.approvals {
            Some(approvals) => approvals.key.open(state, self.now_ms()),
            None => Err(ApprovalError::Forged),
        }
    }

    /// What an allowed call waits as: a call whose outcome settles its charges, with its
    /// binding when a continuation may have to be sealed.
    fn call_kind(
        &self,
        decision: Decision,
        call: &ToolCall<'_>,
        id: &Value,
        out: &mut Output,
    ) -> Kind {
        let audit = self.record(id, call, &decision, out);
        let binding = self
            .approvals
            .as_ref()
            .map(|_| Box::new(self.binding(call)));
        Kind::Call {
            decision: Box::new(decision),
            binding,
            audit,
        }
    }

    /// The retry of a call the server asked more input for: checked against its seal and
    /// used once, then forwarded with the server's state and without being charged again.
    fn continuation(
        &self,
        request: &mut Value,
        sealed: SealedApproval,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        if let (Some(inner), Some(params)) = (
            sealed.inner.clone(),
            request.get_mut("params").and_then(Value::as_object_mut),
        ) {
            params.insert("requestState".into(), inner.into());
        }
        let call = self.checked_call(request, id, out)?;
        let binding = self.binding(&call);
        let problem = match (sealed.check(&binding), &self.approvals) {
            (Err(e), _) => Some((DenyCode::ApprovalInvalid, e.to_string())),
            (Ok(()), Some(approvals)) => self.use_approval(approvals, &sealed),
            (Ok(()), None) => Some((DenyCode::ApprovalInvalid, ApprovalError::Forged.to_string())),
        };
        if let Some((code, reason)) = problem {
            let denial = Decision::refused(&call, code, reason);
            out.notes.push(denial.to_string());
            self.refuse(id, &call, &denial, revision, out);
            return None;
        }
        out.notes.push(format!(
            "{}: the continuation of an allowed call, forwarded uncharged",
            call.name()
        ));
        Some(Kind::Continuation(Box::new(binding)))
    }

    /// Records `sealed` as used, once for good: in the ledger when there is one, else in
    /// the engine's counter store. `None` the first time; else why the call is refused.
    fn use_approval(
        &self,
        approvals: &Approvals,
        sealed: &SealedApproval,
    ) -> Option<(DenyCode, String)> {
        let used = match &approvals.ledger {
            Some(ledger) => ledger
                .use_once(&sealed.nonce, sealed.expires_ms, self.now_ms())
                .map_err(|e| {
                    format!(
                        "cannot record the approval's use in {}: {e}",
                        ledger.path().display()
                    )
                }),
            None => self
                .engine
                .use_once(&sealed.nonce, approvals.ttl)
                .map_err(|e| e.to_string()),
        };
        match used {
            Ok(true) => None,
            Ok(false) => Some((DenyCode::ApprovalInvalid, ApprovalError::Reused.to_string())),
            Err(e) => Some((DenyCode::StoreFailed, e)),
        }
    }

    fn binding(&self, call: &ToolCall<'_>) -> ApprovalBinding {
        ApprovalBinding {
            tool: call.name().to_owned(),
            args: arguments_sha256(call.args()),
            grant: self.grant.clone(),
            agent: self.agent.clone(),
            session: self.session.clone(),
            rule: self
                .engine
                .policy()
                .rule_for(call.name())
                .map(str::to_owned),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now().as_nanos() / 1_000_000
    }

    /// MCP 2026-07-28: answers with an `InputRequiredResult` asking for approval, with a
    /// sealed state the client's retry must carry.
    fn ask_in_result(
        &self,
        approvals: &Approvals,
        call: &ToolCall<'_>,
        reason: &str,
        id: &Value,
        out: &mut Output,
    ) -> Option<Decision> {
        let ttl = u64::try_from(approvals.ttl.as_millis()).unwrap_or(u64::MAX);
        match approvals.key.seal(&self.binding(call), self.now_ms(), ttl) {
            Ok(state) => {
                let params = approval_request(call.name(), reason, call.args());
                let result = json!({
                    "resultType": "input_required",
                    "inputRequests": {APPROVAL_INPUT: {"method": "elicitation/create", "params": params}},
                    "requestState": state,
                });
                out.notes
                    .push(format!("{}: asked the client for approval", call.name()));
                out.to_client
                    .push(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string());
            }
            Err(e) => client_error(out, id, GATEWAY_ERROR, &e.to_string()),
        }
        None
    }

    /// Older revisions: sends the client an `elicitation/create` request and holds the
    /// call until the answer (or the approval timeout).
    #[allow(clippy::too_many_arguments)]
    fn ask_by_request(
        &self,
        approvals: &Approvals,
        call: &ToolCall<'_>,
        decision: &Decision,
        reason: &str,
        request: &Value,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Decision> {
        let bytes = call.args().map_or(0, |args| args.to_string().len());
        let ticket = match approvals.held.hold(bytes) {
            Ok(ticket) => ticket,
            Err(why) => {
                out.notes
                    .push(format!("{}: not held for approval: {why}", call.name()));
                self.refuse_with_note(id, call, decision, revision, Some(&why), out);
                return None;
            }
        };
        self.record(id, call, decision, out);
        let params = approval_request(call.name(), reason, call.args());
        let deadline = self.clock.now().saturating_add(approvals.timeout);
        let mut state = self.state.lock();
        // Unique beyond this relay: an HTTP gateway matches answers to the relay of the
        // request that asked, among many.
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let ask_id = Value::from(format!(
            "mcp-policy-approval-{}-{}",
            state.next_id,
            super::digest::hex(&nonce)
        ));
        state.next_id += 1;
        state.asking.insert(
            ask_id.to_string(),
            Asking {
                request: request.clone(),
                client_id: id.clone(),
                revision,
                deadline,
                _ticket: ticket,
            },
        );
        drop(state);
        out.notes
            .push(format!("{}: asked the client for approval", call.name()));
        out.to_client.push(
            json!({"jsonrpc": "2.0", "id": ask_id, "method": "elicitation/create", "params": params})
                .to_string(),
        );
        None
    }

    /// A retry carrying this relay's sealed approval: forwarded only if the seal is
    /// intact, unexpired, unused and for this call, the person approved, and the policy
    /// still allows the call once approved.
    fn approved_retry(
        &self,
        call: &ToolCall<'_>,
        opened: Result<SealedApproval, ApprovalError>,
        answer: Option<&Value>,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Decision> {
        let Some(approvals) = &self.approvals else {
            return None;
        };
        let checked = opened.and_then(|sealed| sealed.check(&self.binding(call)).map(|()| sealed));
        let sealed = match checked {
            Ok(sealed) => sealed,
            Err(e) => {
                let denial = Decision::refused(call, DenyCode::ApprovalInvalid, e.to_string());
                out.notes.push(denial.to_string());
                self.refuse(id, call, &denial, revision, out);
                return None;
            }
        };
        // The state is used up by any answer: a decline cannot be accepted later.
        let problem = self.use_approval(approvals, &sealed).or_else(|| {
            let approved = answer.map_or(ApprovalAnswer::Declined, ApprovalAnswer::of);
            (approved != ApprovalAnswer::Approved).then(|| {
                (
                    DenyCode::ApprovalDeclined,
                    "the person asked did not approve this call".to_owned(),
                )
            })
        });
        if let Some((code, reason)) = problem {
            let denial = Decision::refused(call, code, reason);
            out.notes.push(denial.to_string());
            self.refuse(id, call, &denial, revision, out);
            return None;
        }
        let decision = self.engine.evaluate(&call.approval(&sealed.nonce));
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(decision);
        }
        self.refuse(id, call, &decision, revision, out);
        None
    }

    /// The client answered an approval request of an older revision.
    fn answered_approval(
        &self,
        asking: Asking,
        ask_id: &Value,
        result: Option<&Value>,
        out: &mut Output,
    ) {
        let Asking {
            request,
            client_id,
            revision,
            ..
        } = asking;
        let approved = result.map_or(ApprovalAnswer::Declined, ApprovalAnswer::of);
        let approval_id = ask_id.as_str().unwrap_or_default().to_owned();
        let kind = {
            let Some(call) = self.checked_call(&request, &client_id, out) else {
                return;
            };
            let decision = if approved != ApprovalAnswer::Approved {
                Decision::refused(
                    &call,
                    DenyCode::ApprovalDeclined,
                    "the person asked did not approve this call".into(),
                )
            } else {
                self.engine.evaluate(&call.approval(&approval_id))
            };
            out.notes.push(decision.to_string());
            if !decision.is_allowed() {
                return self.refuse(&client_id, &call, &decision, revision, out);
            }
            self.call_kind(decision, &call, &client_id, out)
        };
        self.forward(request, client_id, kind, revision, out);
    }

    /// Sends a request to the server under a fresh id, or answers it with an error when
    /// too many are waiting or the server is gone.
    fn forward(
        &self,
        mut request: Value,
        client_id: Value,
        kind: Kind,
        revision: Revision,
        out: &mut Output,
    ) {
        let mut state = self.state.lock();
        let refused = if state.server_gone {
            Some("the MCP server has exited".to_string())
        } else if state.pending.len() >= self.max_pending {
            Some(format!(
                "{} requests are already waiting for the MCP server; wait for their answers",
                state.pending.len()
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            drop(state);
            let pending = Pending {
                client_id,
                kind,
                revision,
                deadline: Timestamp::EPOCH,
            };
            // It never reached the server.
            self.settle(&pending, Outcome::NotRun, out);
            return client_error(out, &pending.client_id, GATEWAY_ERROR, &why);
        }
        let id = state.next_id;
        state.next_id += 1;
        if let Some(map) = request.as_object_mut() {
            map.insert("id".into(), id.into());
        }
        let deadline = self.clock.now().saturating_add(self.request_timeout);
        state.pending.insert(
            id,
            Pending {
                client_id,
                kind,
                revision,
                deadline,
            },
        );
        out.to_server.push(request.to_string());
    }

    fn client_notification(&self, method: String, params: Option<Value>, out: &mut Output) {
        if method == "tools/call" {
            return client_error(
                out,
                &Value::Null,
                INVALID_REQUEST,
                "a tools/call needs an \"id\"; without one it is a notification, which is \
                 never relayed",
            );
        }
        let mut params = params;
        if method == "notifications/cancelled" {
            // The client names its own id; the server knows the relay's.
            let client_id = params.as_ref().and_then(|p| p.get("requestId")).cloned();
            let state = self.state.lock();
            let ours = state
                .pending
                .iter()
                .find(|(_, p)| Some(&p.client_id) == client_id.as_ref())
                .map(|(&id, _)| id);
            drop(state);
            match (ours, params.as_mut().and_then(Value::as_object_mut)) {
                (Some(ours), Some(p)) => {
                    p.insert("requestId".into(), ours.into());
                }
                _ => {
                    out.notes.push(format!(
                        "dropped a cancellation of request {}, which is not waiting for the \
                         server",
                        client_id.unwrap_or(Value::Null)
                    ));
                    return;
                }
            }
        }
        out.to_server.push(notification(method, params));
    }

    /// A response from the client: relayed only if it answers an open server request.
    fn client_response(&self, mut map: Map<String, Value>, id: Option<Value>, out: &mut Output) {
        let (result, error) = (map.remove("result"), map.remove("error"));
        let (Some(id), true) = (id, result.is_some() != error.is_some()) else {
            out.notes.push(
                "dropped a message from the client that is neither a request, a \
                 notification, nor a response with an id and one of result or error"
                    .into(),
            );
            return;
        };
        let asking = self.state.lock().asking.remove(&id.to_string());
        if let Some(asking) = asking {
            return self.answered_approval(asking, &id, result.as_ref(), out);
        }
        let open = self.state.lock().server_requests.remove(&id.to_string());
        if open.is_none() {
            out.notes.push(format!(
                "dropped a response from the client to {id}, which the server did not ask"
            ));
            return;
        }
        out.to_server.push(response(id, result, error));
    }

    fn server_message(&self, message: Value, out: &mut Output) {
        let Value::Object(mut map) = message else {
            return server_error(
                out,
                INVALID_REQUEST,
                "batches and non-objects are not accepted: send each message on its own",
            );
        };
        if let Err(why) = check_envelope(&map) {
            return server_error(out, INVALID_REQUEST, &why);
        }
        let id = map.remove("id");
        match map.remove("method") {
            Some(Value::String(method)) => {
                let params = map.remove("params");
                match id {
                    None => out.to_client.push(notification(method, params)),
                    Some(id @ (Value::String(_) | Value::Number(_))) => {
                        let mut state = self.state.lock();
                        if state.server_requests.len() >= self.max_pending {
                            drop(state);
                            return out.to_server.push(
                                error_response(
                                    &id,
                                    GATEWAY_ERROR,
                                    "too many requests are waiting for the client",
                                )
                                .to_string(),
                            );
                        }
                        let deadline = self.clock.now().saturating_add(self.request_timeout);
                        state.server_requests.insert(id.to_string(), deadline);
                        drop(state);
                        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
                        if let (Some(params), Some(request)) = (params, request.as_object_mut()) {
                            request.insert("params".into(), params);
                        }
                        out.to_client.push(request.to_string());
                    }
                    Some(_) => {
                        server_error(out, INVALID_REQUEST, "\"id\" must be a string or a number")
                    }
                }
            }
            Some(_) => server_error(out, INVALID_REQUEST, "\"method\" must be a string"),
            None => self.server_response(map, id, out),
        }
    }

    fn server_response(&self, mut map: Map<String, Value>, id: Option<Value>, out: &mut Output) {
        let (result, error) = (map.remove("result"), map.remove("error"));
        let ours = id.as_ref().and_then(Value::as_u64);
        let pending = ours.and_then(|ours| self.state.lock().pending.remove(&ours));
        let Some(pending) = pending else {
            out.notes.push(format!(
                "dropped a response from the server to {}, which no request is waiting for",
                id.unwrap_or(Value::Null)
            ));
            return;
        };
        let (mut result, error) = match (result, error) {
            (Some(result), None) => (Some(result), None),
            (None, Some(error)) => (None, Some(error)),
            _ => {
                // Unreadable: the call may have run.
                self.settle(&pending, Outcome::Unknown, out);
                return client_error(
                    out,
                    &pending.client_id,
                    GATEWAY_ERROR,
                    "the MCP server sent an answer with neither or both of result and error",
                );
            }
        };
        match (&pending.kind, result.as_mut()) {
            (
                Kind::Call {
                    binding: Some(binding),
                    ..
                }
                | Kind::Continuation(binding),
                Some(result),
            ) if pending.revision.requires_result_type()
                && result.get("resultType").and_then(Value::as_str) == Some("input_required") =>
            {
                // The server asks for more input: the call is not over. Its retry must
                // carry the gateway's state, so it is not charged (or asked) again.
                self.settle(&pending, Outcome::InputRequired, out);
                self.wrap_server_state(binding, result, out);
            }
            (Kind::Call { .. }, _) => {
                let outcome = match &result {
                    None => Outcome::NotRun,
                    Some(r)
                        if r.get("resultType").and_then(Value::as_str)
                            == Some("input_required") =>
                    {
                        Outcome::InputRequired
                    }
                    Some(r) if r.get("isError") == Some(&Value::Bool(true)) => Outcome::Failed,
                    Some(_) => Outcome::Succeeded,
                };
                self.settle(&pending, outcome, out);
            }
            (Kind::ToolsList, Some(result)) => {
                match filter_tools_list(&self.engine, result, pending.revision) {
                    Ok(0) => {}
                    Ok(removed) => out.notes.push(format!(
                        "tools/list: removed {removed} tool(s) the policy refuses"
                    )),
                    Err(e) => {
                        out.notes.push(e.to_string());
                        return client_error(
                            out,
                            &pending.client_id,
                            GATEWAY_ERROR,
                            &e.to_string(),
                        );
                    }
                }
            }
            (Kind::Initialize, Some(result)) => {
                let chosen = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .and_then(Revision::parse);
                self.state.lock().negotiated = chosen;
            }
            _ => {}
        }
        // A 2026-07-28 client needs `resultType`, which an older server does not send.
        if let Some(result) = result.as_mut() {
            pending.revision.complete_result(result);
        }
        out.to_client
            .push(response(pending.client_id, result, error));
    }

    /// Seals the server's `requestState` (if any) inside a continuation of the gateway's.
    fn wrap_server_state(&self, binding: &ApprovalBinding, result: &mut Value, out: &mut Output) {
        let (Some(approvals), Some(map)) = (&self.approvals, result.as_object_mut()) else {
            return;
        };
        let inner = map
            .remove("requestState")
            .and_then(|state| state.as_str().map(str::to_owned));
        let ttl = u64::try_from(approvals.ttl.as_millis()).unwrap_or(u64::MAX);
        match approvals
            .key
            .seal_continuation(binding, self.now_ms(), ttl, inner)
        {
            Ok(state) => {
                map.insert("requestState".into(), state.into());
            }
            Err(e) => out.notes.push(format!("cannot seal a continuation: {e}")),
        }
    }

    /// Reports a call's outcome to the engine; notes a refund or its failure.
    fn settle(&self, pending: &Pending, outcome: Outcome, out: &mut Output) {
        let Kind::Call {
            decision, audit, ..
        } = &pending.kind
        else {
            return;
        };
        let refunded = self.engine.report_outcome(decision, outcome);
        if let Some(audit) = audit {
            let record = OutcomeRecord::new(
                audit,
                &pending.client_id,
                outcome,
                matches!(refunded, Ok(true)),
            );
            out.audit
                .push(serde_json::to_string(&record).unwrap_or_default());
        }
        match refunded {
            Ok(true) => out.notes.push(format!(
                "{}: outcome {}; its units were given back",
                decision.tool(),
                outcome.as_str()
            )),
            Ok(false) => {}
            Err(e) => out.notes.push(format!(
                "{}: outcome {}; giving back its units failed: {e}",
                decision.tool(),
                outcome.as_str()
            )),
        }
    }

    fn revision_of(&self, request: &Value) -> Revision {
        Revision::of_request(request)
            .or(self.state.lock().negotiated)
            .unwrap_or(Revision::V2025_06_18)
    }
}

/// Checks `jsonrpc` and refuses members that equal a JSON-RPC member only when case is
/// ignored (`"Method"`): a server could read them as that member.
fn check_envelope(map: &Map<String, Value>) -> Result<(), String> {
    if let Some((found, exact)) = map
        .keys()
        .find_map(|k| case_variant_of(k, MEMBERS).map(|e| (k, e)))
    {
        return Err(format!(
            "member {} is not \"{exact}\"; JSON-RPC member names are case-sensitive",
            json!(found)
        ));
    }
    match map.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => Ok(()),
        _ => Err("not a JSON-RPC 2.0 message: expected \"jsonrpc\": \"2.0\"".into()),
    }
}

/// `Some(exact)` when `name` equals one of `known` only when case is ignored.
fn case_variant_of(name: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&name) {
        return None;
    }
    let folded = fold_case(name);
    known.iter().copied().find(|k| folded == *k)
}

fn notification(method: String, params: Option<Value>) -> String {
    let mut message = json!({"jsonrpc": "2.0", "method": method});
    if let (Some(params), Some(map)) = (params, message.as_object_mut()) {
        map.insert("params".into(), params);
    }
    message.to_string()
}

fn response(id: Value, result: Option<Value>, error: Option<Value>) -> String {
    match (result, error) {
        (Some(result), _) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        (None, error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    }
    .to_string()
}

fn client_error(out: &mut Output, id: &Value, code: i64, message: &str) {
    out.notes
        .push(format!("refused a client message: {message}"));
    out.to_client
        .push(error_response(id, code, message).to_string());
}

fn server_error(out: &mut Output, code: i64, message: &str) {
    out.notes
        .push(format!("refused a server message: {message}"));
    out.to_server
        .push(error_response(&Value::Null, code, message).to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    const POLICY: &str = r#"{"version": "1", "hide": ["whmcs_delete_*"], "tools": {
        "whmcs_get_ticket": {},
        "whmcs_update_ticket": {
            "limits": [{"window": "minute", "max": 2}],
            "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency"}]},
        "whmcs_add_credit": {"require": [{"path": "args.amount", "op": "lte", "value": 100}]},
        "whmcs_retry": {"limits": [{"window": "minute", "max": 1, "refund": "failed"}]},
        "whmcs_close_client": {"action": "deny"}}}"#;

    fn relay() -> (Relay, ManualClock) {
        let clock = ManualClock::new();
        let engine = Engine::builder(POLICY.parse().unwrap())
            .clock(clock.clone())
            .build();
        let relay = Relay::builder(engine)
            .grant("g1")
            .max_message(1000)
            .max_pending(3)
            .request_timeout(Duration::from_secs(30))
            .clock(clock.clone())
            .build();
        (relay, clock)
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    fn call(id: Value, tool: &str, args: Value) -> Vec<u8> {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}})
        .to_string()
        .into_bytes()
    }

    /// The single answer to the client, parsed; the server must get nothing.
    fn refused(out: &Output) -> Value {
        assert!(out.to_server.is_empty(), "{out:?}");
        assert_eq!(out.to_client.len(), 1, "{out:?}");
        parse(&out.to_client[0])
    }

    fn forwarded(out: &Output) -> Value {
        assert!(out.to_client.is_empty(), "{out:?}");
        assert_eq!(out.to_server.len(), 1, "{out:?}");
        parse(&out.to_server[0])
    }

    fn answer(relay: &Relay, id: &Value, result: Value) -> Value {
        let out = relay.from_server(
            json!({"jsonrpc": "2.0", "id": id, "result": result})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(out.to_client.len(), 1, "{out:?}");
        parse(&out.to_client[0])
    }

    #[test]
    fn batches_are_answered_once_with_a_null_id_and_never_relayed() {
        let (relay, _) = relay();
        for batch in [
            "[]".to_string(),
            format!(
                "[{}]",
                String::from_utf8(call(json!(1), "whmcs_close_client", json!({}))).unwrap()
            ),
            r#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#.to_string(),
        ] {
            let answer = refused(&relay.from_client(batch.as_bytes()));
            assert_eq!(answer["id"], Value::Null);
            assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        }
    }

    #[test]
    fn a_call_without_id_or_with_a_case_variant_method_is_refused() {
        let (relay, _) = relay();
        let answer = refused(&relay.from_client(
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whmcs_get_ticket"}}"#,
        ));
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        for method in ["Tools/Call", "TOOLS/CALL", "tools/List", "Initialize"] {
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":5,"method":"{method}","params":{{"name":"whmcs_close_client"}}}}"#
            );
            let answer = refused(&relay.from_client(line.as_bytes()));
            assert_eq!(answer["id"], 5);
            assert_eq!(answer["error"]["code"], INVALID_REQUEST, "{method}");
            assert!(answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("case-sensitive"));
            // As a notification it is dropped with an error too.
            let line = format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#);
            assert_eq!(
                refused(&relay.from_client(line.as_bytes()))["id"],
                Value::Null
            );
        }
    }

    #[test]
    fn ambiguous_keys_anywhere_are_refused() {
        let (relay, _) = relay();
        for line in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket","NAME":"whmcs_close_client"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5},"Arguments":{"amount":5000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5,"Amount":5000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket"},"params":{"name":"whmcs_close_client"}}"#,
        ] {
            let answer = refused(&relay.from_client(line.as_bytes()));
            assert_eq!(answer["error"]["code"], INVALID_REQUEST, "{line}");
        }
        // A lone case variant of a member the gateway reads is refused too: a server
        // that matches names ignoring case would read it.
        for line in [
            r#"{"jsonrpc":"2.0","ID":6,"method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"whmcs_close_client"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_update_ticket","Arguments":{"priority":"Emergency"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_update_ticket","arguments":{"Priority":"Emergency"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"AMOUNT":5000}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket","arguments":{"x":[{"pRiOrItY":1}]}}}"#,
        ] {
            let answer = refused(&relay.from_client(line.as_bytes()));
            let code = answer["error"]["code"].as_i64().unwrap();
            assert!(
                code == INVALID_REQUEST || code == INVALID_PARAMS,
                "{line}: {answer}"
            );
        }
    }

    #[test]
    fn argument_names_the_policy_does_not_read_keep_any_case() {
        let (relay, _) = relay();
        let line = call(
            json!(1),
            "whmcs_get_ticket",
            json!({"TicketId": 7, "Status": "x"}),
        );
        forwarded(&relay.from_client(&line));
    }

    #[test]
    fn what_is_relayed_is_rebuilt_from_what_was_evaluated() {
        let (relay, _) = relay();
        let line = br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","extra":{"x":1},
            "params":{"name":"whmcs_get_ticket","arguments":{"ticket_id":7},"_meta":{"progressToken":3}}}"#;
        let sent = forwarded(&relay.from_client(line));
        assert_eq!(
            sent,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "whmcs_get_ticket", "arguments": {"ticket_id": 7}, "_meta": {"progressToken": 3}}})
        );
    }

    #[test]
    fn client_ids_never_alias_one_another() {
        let (relay, _) = relay();
        // An unknown method and an allowed call under the same client id get two ids.
        let first =
            forwarded(&relay.from_client(br#"{"jsonrpc":"2.0","id":9,"method":"x/unknown"}"#));
        let second =
            forwarded(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
        assert_ne!(first["id"], second["id"]);
        // The server's error for the unknown method refunds nothing.
        let out = relay.from_server(
            json!({"jsonrpc": "2.0", "id": first["id"], "error": {"code": -32601, "message": "no"}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(parse(&out.to_client[0])["id"], 9);
        assert!(
            out.notes.iter().all(|n| !n.contains("given back")),
            "{out:?}"
        );
        answer(&relay, &second["id"], json!({"content": []}));
        forwarded(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
        let limited =
            refused(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
        assert_eq!(
            limited["result"]["structuredContent"]["code"],
            "rate_limited"
        );
        // A server answer to an id the relay never minted, or already answered, is dropped.
        let out = relay.from_server(
            br#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"whmcs_delete_x"}]}}"#,
        );
        assert!(out.to_client.is_empty());
        let out = relay.from_server(
            json!({"jsonrpc": "2.0", "id": second["id"], "result": {}})
                .to_string()
                .as_bytes(),
        );
        assert!(out.to_client.is_empty());
    }

    #[test]
    fn outcomes_refund_only_what_the_limit_says() {
        let (relay, _) = relay();
        // isError: failed, which the default `refund: not_run` keeps charged.
        for id in 1..=2 {
            let sent =
                forwarded(&relay.from_client(&call(json!(id), "whmcs_update_ticket", json!({}))));
            answer(&relay, &sent["id"], json!({"isError": true, "content": []}));
        }
        let limited =
            refused(&relay.from_client(&call(json!(3), "whmcs_update_ticket", json!({}))));
        assert_eq!(
            limited["result"]["structuredContent"]["code"],
            "rate_limited"
        );
        // `refund: failed` gives a failed call back.
        let sent = forwarded(&relay.from_client(&call(json!(4), "whmcs_retry", json!({}))));
        answer(&relay, &sent["id"], json!({"isError": true, "content": []}));
        let sent = forwarded(&relay.from_client(&call(json!(5), "whmcs_retry", json!({}))));
        // A JSON-RPC error is not_run: refunded.
        let out = relay.from_server(
            json!({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32602, "message": "bad"}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(parse(&out.to_client[0])["error"]["code"], -32602);
        forwarded(&relay.from_client(&call(json!(6), "whmcs_retry", json!({}))));
    }

    #[test]
    fn bad_bytes_get_an_error_on_either_side_and_the_relay_goes_on() {
        let (relay, _) = relay();
        for bytes in [
            &b"\xff\xfe"[..],
            b"not json",
            b"{\"jsonrpc\":\"2.0\",",
            b"{} {}",
        ] {
            let answer = refused(&relay.from_client(bytes));
            assert_eq!(answer["error"]["code"], -32700);
            assert_eq!(answer["id"], Value::Null);
            let out = relay.from_server(bytes);
            assert!(out.to_client.is_empty());
            assert_eq!(parse(&out.to_server[0])["error"]["code"], -32700);
        }
        let answer = refused(&relay.from_client(&vec![b' '; 1001]));
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
        let answer = refused(&relay.client_message_too_large(50_000_000));
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 1000 bytes"));
        for bad_id in ["null", "true", "{}", "[1]"] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{bad_id},"method":"ping"}}"#);
            assert_eq!(
                refused(&relay.from_client(line.as_bytes()))["id"],
                Value::Null
            );
        }
        forwarded(&relay.from_client(&call(json!(1), "whmcs_get_ticket", json!({}))));
    }

    #[test]
    fn pending_requests_are_bounded_and_time_out() {
        let (relay, clock) = relay();
        for (id, tool) in [
            "whmcs_update_ticket",
            "whmcs_update_ticket",
            "whmcs_get_ticket",
        ]
        .into_iter()
        .enumerate()
        {
            forwarded(&relay.from_client(&call(json!(id), tool, json!({}))));
        }
        // The fourth is refused before it is charged.
        let busy = refused(&relay.from_client(&call(json!(3), "whmcs_get_ticket", json!({}))));
        assert_eq!(busy["error"]["code"], GATEWAY_ERROR);
        clock.advance(Duration::from_secs(29));
        assert!(relay.expire().to_client.is_empty());
        clock.advance(Duration::from_secs(1));
        let out = relay.expire();
        let mut ids: Vec<i64> = out
            .to_client
            .iter()
            .map(|l| parse(l)["id"].as_i64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(relay.pending(), 0);
        // Timed-out calls may have run: they keep their units (2 of 2 used).
        let limited =
            refused(&relay.from_client(&call(json!(4), "whmcs_update_ticket", json!({}))));
        assert_eq!(
            limited["result"]["structuredContent"]["code"],
            "rate_limited"
        );
    }

    #[test]
    fn the_server_exiting_answers_every_waiting_request() {
        let (relay, _) = relay();
        forwarded(&relay.from_client(&call(json!("a"), "whmcs_get_ticket", json!({}))));
        forwarded(&relay.from_client(br#"{"jsonrpc":"2.0","id":"b","method":"tools/list"}"#));
        let out = relay.server_closed();
        assert_eq!(out.to_client.len(), 2);
        let gone = refused(&relay.from_client(&call(json!("c"), "whmcs_get_ticket", json!({}))));
        assert_eq!(gone["error"]["code"], GATEWAY_ERROR);
    }

    #[test]
    fn tools_list_is_filtered_and_2026_results_are_marked() {
        let (relay, _) = relay();
        let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
        let sent = forwarded(
            &relay.from_client(
                json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": meta})
                    .to_string()
                    .as_bytes(),
            ),
        );
        let list = answer(
            &relay,
            &sent["id"],
            json!({"resultType": "complete", "tools": [
            {"name": "whmcs_get_ticket"}, {"name": "whmcs_delete_client"}, {"name": "whmcs_close_client"}]}),
        );
        assert_eq!(
            list["result"]["tools"],
            json!([{"name": "whmcs_get_ticket"}])
        );
        assert_eq!(list["result"]["cacheScope"], "private");
        let refusal = refused(
            &relay.from_client(
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params":
                {"name": "whmcs_close_client", "_meta": meta["_meta"]}})
                .to_string()
                .as_bytes(),
            ),
        );
        assert_eq!(refusal["result"]["resultType"], "complete");
        // An older client negotiated in initialize gets no resultType.
        let sent = forwarded(
            &relay.from_client(br#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}"#),
        );
        answer(
            &relay,
            &sent["id"],
            json!({"protocolVersion": "2025-06-18"}),
        );
        let refusal = refused(&relay.from_client(&call(json!(4), "whmcs_close_client", json!({}))));
        assert!(refusal["result"].get("resultType").is_none());
    }

    #[test]
    fn client_responses_reach_the_server_only_for_its_open_requests() {
        let (relay, _) = relay();
        let out = relay.from_server(br#"{"jsonrpc":"2.0","id":"s1","method":"roots/list"}"#);
        assert_eq!(parse(&out.to_client[0])["id"], "s1");
        let reply = br#"{"jsonrpc":"2.0","id":"s1","result":{"roots":[]}}"#;
        assert_eq!(forwarded(&relay.from_client(reply))["id"], "s1");
        // Answered already: a second response is dropped.
        let out = relay.from_client(reply);
        assert!(out.to_server.is_empty() && out.to_client.is_empty());
        // A cancellation names the client's id; the server gets the relay's.
        let sent = forwarded(&relay.from_client(&call(json!("x"), "whmcs_get_ticket", json!({}))));
        let cancel = forwarded(&relay.from_client(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x"}}"#,
        ));
        assert_eq!(cancel["params"]["requestId"], sent["id"]);
        let out = relay.from_client(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}}"#,
        );
        assert!(out.to_server.is_empty());
    }
}

#[cfg(test)]
mod approval_tests {
    use super::*;
    use crate::ManualClock;

    const POLICY: &str = r#"{"version": "1", "tools": {
        "whmcs_send_email": {"action": "require_approval", "reason": "emails are reviewed",
            "limits": [{"window": "minute", "max": 2}]},
        "whmcs_report": {"limits": [{"window": "minute", "max": 1}]}}}"#;

    fn relay() -> (Relay, ManualClock) {
        let clock = ManualClock::new();
        let engine = Engine::builder(POLICY.parse().unwrap())
            .clock(clock.clone())
            .build();
        let key = ApprovalKey::from_hex(&"7".repeat(64)).unwrap();
        let relay = Relay::builder(engine)
            .grant("g1")
            .clock(clock.clone())
            .approvals(Approvals::new(key).timeout(Duration::from_secs(5)))
            .build();
        (relay, clock)
    }

    fn modern(id: i64, args: Value, extra: Value) -> Vec<u8> {
        modern_call("whmcs_send_email", id, args, extra)
    }

    fn modern_call(tool: &str, id: i64, args: Value, extra: Value) -> Vec<u8> {
        let mut params = json!({"name": tool, "arguments": args, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}}});
        if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
            .to_string()
            .into_bytes()
    }

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    fn accept() -> Value {
        json!({"approval": {"action": "accept", "content": {"approve": true}}})
    }

    /// The sealed state of an `InputRequiredResult`.
    fn ask(relay: &Relay, args: Value) -> String {
        let out = relay.from_client(&modern(1, args, json!({})));
        assert!(out.to_server.is_empty(), "{out:?}");
        let answer = parse(&out.to_client[0]);
        assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
        let ask = &answer["result"]["inputRequests"]["approval"];
        assert_eq!(ask["method"], "elicitation/create");
        assert!(ask["params"]["message"]
            .as_str()
            .unwrap()
            .contains("emails are reviewed"));
        answer["result"]["requestState"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn retry(relay: &Relay, args: Value, state: &str, responses: Value) -> Output {
        relay.from_client(&modern(
            2,
            args,
            json!({"requestState": state, "inputResponses": responses}),
        ))
    }

    fn refused_code(out: &Output) -> Value {
        assert!(out.to_server.is_empty(), "{out:?}");
        parse(&out.to_client[0])["result"]["structuredContent"]["code"].clone()
    }

    #[test]
    fn an_accepted_approval_forwards_the_call_once_without_the_approval() {
        let (relay, _) = relay();
        let args = json!({"client_id": 7});
        let state = ask(&relay, args.clone());
        let out = retry(&relay, args.clone(), &state, accept());
        assert_eq!(out.to_server.len(), 1, "{out:?}");
        let sent = parse(&out.to_server[0]);
        assert_eq!(sent["params"]["arguments"], args);
        assert!(sent["params"].get("requestState").is_none());
        assert!(sent["params"].get("inputResponses").is_none());
        // The server's answer reaches a 2026-07-28 client as a complete result.
        let answer = relay.from_server(
            json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"content": []}})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            parse(&answer.to_client[0])["result"]["resultType"],
            "complete"
        );
        // The same state again: used.
        let again = retry(&relay, args, &state, accept());
        assert_eq!(refused_code(&again), "approval_invalid");
    }

    #[test]
    fn declines_and_bad_states_never_reach_the_server() {
        let (relay, clock) = relay();
        let args = json!({"client_id": 7});
        for answer in [
            json!({"approval": {"action": "decline"}}),
            json!({"approval": {"action": "cancel"}}),
            json!({"approval": {"action": "accept", "content": {"approve": false}}}),
            json!({}),
        ] {
            let state = ask(&relay, args.clone());
            assert_eq!(
                refused_code(&retry(&relay, args.clone(), &state, answer)),
                "approval_declined"
            );
        }
        let state = ask(&relay, args.clone());
        let changed = retry(&relay, json!({"client_id": 8}), &state, accept());
        assert_eq!(refused_code(&changed), "approval_invalid");
        let mut tampered = state.clone();
        tampered.insert(STATE_PREFIX.len() + 3, 'x');
        assert_eq!(
            refused_code(&retry(&relay, args.clone(), &tampered, accept())),
            "approval_invalid"
        );
        clock.advance(Duration::from_secs(601));
        assert_eq!(
            refused_code(&retry(&relay, args, &state, accept())),
            "approval_invalid"
        );
    }

    #[test]
    fn limits_still_apply_to_approved_calls() {
        let (relay, _) = relay();
        for expected in [true, true, false] {
            let args = json!({"client_id": 7});
            let state = ask(&relay, args.clone());
            let out = retry(&relay, args, &state, accept());
            assert_eq!(out.to_server.len() == 1, expected, "{out:?}");
            if !expected {
                assert_eq!(refused_code(&out), "rate_limited");
            }
        }
    }

    #[test]
    fn a_client_that_cannot_elicit_gets_approval_required() {
        let (relay, _) = relay();
        let line = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "whmcs_send_email", "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        let out = relay.from_client(line.to_string().as_bytes());
        assert_eq!(refused_code(&out), "approval_required");
        assert!(out.to_client[0].contains("cannot show approval requests"));
    }

    /// The server answers `sent` with `input_required` and its own state; the client gets
    /// the gateway's state instead.
    fn server_asks(relay: &Relay, sent: &Value) -> String {
        let answer = json!({"jsonrpc": "2.0", "id": sent["id"], "result": {
            "resultType": "input_required", "requestState": "server-state-1",
            "inputRequests": {"which": {"method": "elicitation/create", "params": {"message": "which one?"}}}}});
        let out = relay.from_server(answer.to_string().as_bytes());
        let result = &parse(&out.to_client[0])["result"];
        assert_eq!(
            result["inputRequests"]["which"]["params"]["message"],
            "which one?"
        );
        let state = result["requestState"].as_str().unwrap().to_owned();
        assert!(state.starts_with(STATE_PREFIX), "{state}");
        state
    }

    #[test]
    fn a_server_asking_for_input_gets_its_state_back_and_the_retry_is_not_charged_again() {
        let (relay, _) = relay();
        let args = json!({"month": 11});
        let out = relay.from_client(&modern_call("whmcs_report", 1, args.clone(), json!({})));
        let sent = parse(&out.to_server[0]);
        let state = server_asks(&relay, &sent);
        let answers = json!({"which": {"action": "accept", "content": {"pick": "a"}}});
        let retry = |id| {
            relay.from_client(&modern_call(
                "whmcs_report",
                id,
                args.clone(),
                json!({"requestState": state, "inputResponses": answers}),
            ))
        };
        // One call a minute: charging the retry again would refuse it.
        let out = retry(2);
        assert_eq!(out.to_server.len(), 1, "{out:?}");
        let sent = parse(&out.to_server[0]);
        assert_eq!(sent["params"]["requestState"], "server-state-1");
        assert_eq!(sent["params"]["inputResponses"], answers);
        assert_eq!(
            refused_code(&retry(3)),
            "approval_invalid",
            "a continuation works once"
        );
        // A new call is charged: the one unit is used.
        let out = relay.from_client(&modern_call("whmcs_report", 4, args, json!({})));
        assert_eq!(refused_code(&out), "rate_limited");
    }

    #[test]
    fn an_approved_call_the_server_asks_more_of_stays_approved() {
        let (relay, _) = relay();
        let args = json!({"client_id": 7});
        let state = ask(&relay, args.clone());
        let out = retry(&relay, args.clone(), &state, accept());
        let sent = parse(&out.to_server[0]);
        let continuation = server_asks(&relay, &sent);
        let out = relay.from_client(&modern(
            3,
            args,
            json!({"requestState": continuation, "inputResponses": {"which": {"action": "accept"}}}),
        ));
        assert_eq!(out.to_server.len(), 1, "not asked again: {out:?}");
        assert_eq!(
            parse(&out.to_server[0])["params"]["requestState"],
            "server-state-1"
        );
    }

    #[test]
    fn older_clients_are_asked_with_a_request_and_the_call_waits() {
        let (relay, clock) = relay();
        let init = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"capabilities":{"elicitation":{}}}}"#;
        relay.from_client(init);
        let call = br#"{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"whmcs_send_email","arguments":{"client_id":7}}}"#;
        let out = relay.from_client(call);
        assert!(out.to_server.is_empty());
        let ask = parse(&out.to_client[0]);
        assert_eq!(ask["method"], "elicitation/create");
        // Other traffic flows meanwhile.
        assert_eq!(
            relay
                .from_client(br#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#)
                .to_server
                .len(),
            1
        );
        let yes = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"approve": true}}});
        let out = relay.from_client(yes.to_string().as_bytes());
        let sent = parse(&out.to_server[0]);
        assert_eq!(sent["params"]["name"], "whmcs_send_email");
        // A decline, and a request nobody answers.
        let out = relay.from_client(call);
        let ask = parse(&out.to_client[0]);
        let no = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}});
        assert_eq!(
            refused_code(&relay.from_client(no.to_string().as_bytes())),
            "approval_declined"
        );
        relay.from_client(call);
        clock.advance(Duration::from_secs(6));
        let out = relay.expire();
        assert_eq!(refused_code(&out), "approval_declined");
        assert_eq!(parse(&out.to_client[0])["id"], "c1");
    }
}

/// An event for a decision (feature `tracing`): refusals at INFO, allows at DEBUG, with
/// the audit record's fields but never the arguments.
#[cfg(feature = "tracing")]
fn trace_decision(record: &AuditRecord) {
    let limit = record.limit.as_ref().map(Value::to_string);
    let shadow = record.shadow.as_ref().map(Value::to_string);
    macro_rules! decided {
        ($level:expr) => {
            tracing::event!(
                $level,
                id = record.id.as_str(),
                request_id = %record.request_id,
                tool = record.tool.as_str(),
                grant = record.grant.as_deref(),
                agent = record.agent.as_deref(),
                session = record.session.as_deref(),
                decision = record.decision,
                code = record.code,
                rule = record.rule.as_deref(),
                reason = record.reason.as_deref(),
                limit = limit.as_deref(),
                retry_after_ms = record.retry_after_ms,
                approval = record.approval.as_deref(),
                args_sha256 = record.args_sha256.as_str(),
                policy_sha256 = record.policy_sha256.as_deref(),
                shadow = shadow.as_deref(),
                "decision"
            )
        };
    }
    if record.decision == "allow" {
        decided!(tracing::Level::DEBUG);
    } else {
        decided!(tracing::Level::INFO);
    }
}

/// Without the `tracing` feature: nothing.
#[cfg(not(feature = "tracing"))]
fn trace_decision(_: &AuditRecord) {}

/// Whether a subscriber listens to decision events (and records are worth building).
#[cfg(feature = "tracing")]
fn tracing_on() -> bool {
    tracing::enabled!(tracing::Level::INFO)
}

#[cfg(not(feature = "tracing"))]
fn tracing_on() -> bool {
    false
}

/// Removes the answer to this relay's approval request from a retried call's
/// `inputResponses` (and the member, once empty).
fn take_approval_answer(request: &mut Value) -> Option<Value> {
    let params = request.get_mut("params")?.as_object_mut()?;
    let responses = params.get_mut("inputResponses")?.as_object_mut()?;
    let answer = responses.remove(APPROVAL_INPUT);
    if responses.is_empty() {
        params.remove("inputResponses");
    }
    answer
}
