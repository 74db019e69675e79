//! [`Relay`]: the transport-neutral core of a gateway, which relays only what it evaluated.
//!
//! One file per job: `client` (messages from the client, the policy, refusals and audit
//! records), `server` (messages from the server), `table` (the ids the relay mints, the
//! requests waiting for an answer and the calls held for a person), `approvals` (the
//! approval protocol), `jsonrpc` (envelope checks and the messages the relay writes),
//! `trace` (decision events).

mod approvals;
mod beyond_tools;
mod call;
mod client;
mod console;
mod jsonrpc;
mod server;
mod table;
mod trace;

pub use approvals::Approvals;

use crate::call::ToolCall;
use crate::clock::{Clock, SystemClock};
use crate::decision::DenyCode;
use crate::engine::Engine;
use crate::mcp::{parse_message, tool_call, MessageError, Revision, DEFAULT_MAX_MESSAGE};
use crate::policy::Outcome;
use call::Call;
use jsonrpc::*;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use table::*;

/// JSON-RPC error code (implementation-defined range) for a request the gateway could
/// not get answered: too many in flight, the server gone, or no answer in time.
pub const GATEWAY_ERROR: i64 = -32000;

/// The `_meta` key in which MCP 2026-07-28 requests carry the client's capabilities.
const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";

/// Methods the relay reads, so a case variant of one is refused rather than relayed.
const INTERPRETED_METHODS: &[&str] = &[
    "tools/call",
    "tools/list",
    "initialize",
    "resources/read",
    "resources/subscribe",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
];

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
    scopes: Option<Vec<String>>,
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

    /// The OAuth scopes of the caller's token, which rules with `scopes` need; without
    /// them, such rules refuse every call (`insufficient_scope`, and
    /// [`Output::step_up`] says what to ask for).
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> RelayBuilder {
        self.relay.scopes = Some(scopes.into_iter().map(Into::into).collect());
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
        self.relay.state.lock().client_elicits = crate::mcp::ClientElicitation {
            form: elicits,
            url: false,
        };
        self
    }

    /// Tells the relay which elicitation modes the client declared in an `initialize` it
    /// did not see: forms, URLs (which console approvals use), or both.
    pub fn client_elicitation(self, elicits: crate::mcp::ClientElicitation) -> RelayBuilder {
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
    /// When a call was refused `insufficient_scope`: the scopes to ask the authorization
    /// server for (those the call needs, then those the caller has, space-separated). An
    /// HTTP gateway answers 403 with a step-up challenge naming them.
    pub step_up: Option<String>,
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
                scopes: None,
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
        self.from_client_parsed(parse_message(bytes, self.max_message))
    }

    /// Handles one message from the client that the transport already read with
    /// [`parse_message`] (under this relay's [`max_message`](Self::max_message)), so the
    /// bytes are parsed once on their way through.
    ///
    /// ```
    /// use mcp_policy::mcp::{parse_message, Relay};
    /// use mcp_policy::{Engine, Policy};
    ///
    /// let relay = Relay::builder(Engine::new(r#"{"version": "1"}"#.parse::<Policy>()?)).build();
    /// let bytes = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    /// let parsed = parse_message(bytes, relay.max_message());
    /// assert_eq!(relay.from_client_parsed(parsed).to_server.len(), 1);
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn from_client_parsed(&self, message: Result<Value, MessageError>) -> Output {
        let mut out = Output::default();
        match message {
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
                let why = format!(
                    "the MCP server did not answer within {} s",
                    self.request_timeout.as_secs()
                );
                self.give_up(&pending, &why, &mut out);
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
                let call =
                    Call::new(self.identified(
                        tool_call(&asking.request).unwrap_or_else(|_| ToolCall::new("")),
                    ));
                self.refuse_outside_policy(
                    &asking.client_id,
                    &call,
                    DenyCode::ApprovalDeclined,
                    "no person answered the approval request in time".into(),
                    asking.revision,
                    &mut out,
                );
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
            self.give_up(&pending, why, &mut out);
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
            self.give_up(&pending, "the MCP server exited before answering", &mut out);
        }
        out
    }

    /// Answers a request that will get no answer from the server with an error naming
    /// `why`; a call keeps its units, since it may have run.
    fn give_up(&self, pending: &Pending, why: &str, out: &mut Output) {
        self.settle(pending, Outcome::Unknown, out);
        client_error(
            out,
            &pending.client_id,
            GATEWAY_ERROR,
            &format!("{why}; if this was a tool call, it may or may not have run"),
        );
    }

    fn revision_of(&self, request: &Value) -> Revision {
        Revision::of_request(request)
            .or(self.state.lock().negotiated)
            .unwrap_or(Revision::V2025_06_18)
    }

    fn now_ms(&self) -> u64 {
        self.clock.now().as_nanos() / 1_000_000
    }
}
