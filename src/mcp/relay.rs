//! [`Relay`]: the transport-neutral core of a gateway, which relays only what it evaluated.

use super::{
    error_response, filter_tools_list, parse_message, refusal, tool_call, MessageError,
    Revision, DEFAULT_MAX_MESSAGE, INVALID_PARAMS, INVALID_REQUEST,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::decision::Decision;
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
    engine: Engine,
    grant: Option<String>,
    agent: Option<String>,
    session: Option<String>,
    max_message: usize,
    max_pending: usize,
    request_timeout: Duration,
    clock: Arc<dyn Clock>,
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
}

struct Pending {
    client_id: Value,
    kind: Kind,
    revision: Revision,
    deadline: Timestamp,
}

enum Kind {
    Call(Decision<'static>),
    ToolsList,
    Initialize,
    Other,
}

impl Relay {
    /// Starts configuring a relay that enforces `engine`'s policy.
    pub fn builder(engine: Engine) -> RelayBuilder {
        RelayBuilder {
            relay: Relay {
                engine,
                grant: None,
                agent: None,
                session: None,
                max_message: DEFAULT_MAX_MESSAGE,
                max_pending: 1024,
                request_timeout: Duration::from_secs(600),
                clock: Arc::new(SystemClock::new()),
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
            "tools/call" => match self.evaluate(&request, &id, revision, out) {
                Some(decision) => Kind::Call(decision),
                None => return,
            },
            "tools/list" => Kind::ToolsList,
            "initialize" => Kind::Initialize,
            _ => Kind::Other,
        };
        self.forward(request, id, kind, revision, out);
    }

    /// Evaluates a `tools/call` request; answers it here and returns `None` unless the
    /// policy allows it.
    fn evaluate(
        &self,
        request: &Value,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Decision<'static>> {
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
        let call = match tool_call(request) {
            Ok(call) => call,
            Err(e) => {
                client_error(out, id, e.code(), &e.to_string());
                return None;
            }
        };
        if self.state.lock().server_gone {
            client_error(out, id, GATEWAY_ERROR, "the MCP server has exited");
            return None;
        }
        let mut call = call;
        if let Some(grant) = &self.grant {
            call = call.grant(grant);
        }
        if let Some(agent) = &self.agent {
            call = call.agent(agent);
        }
        if let Some(session) = &self.session {
            call = call.session(session);
        }
        let decision = self.engine.evaluate(&call);
        out.notes.push(decision.to_string());
        match refusal(id, &decision, revision) {
            Some(answer) => {
                out.to_client.push(answer.to_string());
                None
            }
            None => Some(decision.into_owned()),
        }
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
                        if let (Some(params), Some(request)) = (params, request.as_object_mut())
                        {
                            request.insert("params".into(), params);
                        }
                        out.to_client.push(request.to_string());
                    }
                    Some(_) => server_error(
                        out,
                        INVALID_REQUEST,
                        "\"id\" must be a string or a number",
                    ),
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
            (Kind::Call(_), _) => {
                let outcome = match &result {
                    None => Outcome::NotRun,
                    Some(r) if r.get("resultType").and_then(Value::as_str) == Some("input_required") => {
                        Outcome::InputRequired
                    }
                    Some(r) if r.get("isError") == Some(&Value::Bool(true)) => Outcome::Failed,
                    Some(_) => Outcome::Succeeded,
                };
                self.settle(&pending, outcome, out);
            }
            (Kind::ToolsList, Some(result)) => {
                let removed = filter_tools_list(&self.engine, result, pending.revision);
                if removed > 0 {
                    out.notes
                        .push(format!("tools/list: removed {removed} tool(s) the policy refuses"));
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
        out.to_client
            .push(response(pending.client_id, result, error));
    }

    /// Reports a call's outcome to the engine; notes a refund or its failure.
    fn settle(&self, pending: &Pending, outcome: Outcome, out: &mut Output) {
        let Kind::Call(decision) = &pending.kind else {
            return;
        };
        match self.engine.report_outcome(decision, outcome) {
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
    out.notes.push(format!("refused a client message: {message}"));
    out.to_client
        .push(error_response(id, code, message).to_string());
}

fn server_error(out: &mut Output, code: i64, message: &str) {
    out.notes.push(format!("refused a server message: {message}"));
    out.to_server
        .push(error_response(&Value::Null, code, message).to_string());
}
