//! [`Relay`]: the transport-neutral core of a gateway, which relays only what it evaluated.

use super::{
    error_response, filter_tools_list, parse_message, refusal, tool_call, MessageError, Revision,
    DEFAULT_MAX_MESSAGE, INVALID_PARAMS, INVALID_REQUEST,
};
use crate::clock::{Clock, SystemClock, Timestamp};
use crate::decision::Decision;
use crate::engine::Engine;
use crate::json::fold_case;
use crate::policy::{Outcome, Policy};
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
    /// The policy's argument names by folded case, rebuilt when the policy changes.
    argument_names: Mutex<Option<(Arc<Policy>, Arc<ArgumentNames>)>>,
}

/// Folded argument name → the spellings the policy uses.
type ArgumentNames = HashMap<String, Vec<String>>;

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
    Call(Decision),
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
                argument_names: Mutex::new(None),
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
    ) -> Option<Decision> {
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
        if let Some((found, exact)) = call.args().and_then(|a| self.case_variant_argument(a)) {
            client_error(
                out,
                id,
                INVALID_PARAMS,
                &format!(
                    "argument {} is spelled \"{exact}\" in the policy; argument names are \
                     case-sensitive, and a server that ignores case would read it as \"{exact}\"",
                    json!(found)
                ),
            );
            return None;
        }
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
            None => Some(decision),
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
            (Kind::Call(_), _) => {
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
                let removed = filter_tools_list(&self.engine, result, pending.revision);
                if removed > 0 {
                    out.notes.push(format!(
                        "tools/list: removed {removed} tool(s) the policy refuses"
                    ));
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

    /// An argument name, anywhere in `args`, that the policy reads under another case
    /// only, with the policy's spelling.
    fn case_variant_argument(&self, args: &Value) -> Option<(String, String)> {
        let policy = self.engine.policy();
        let names = {
            let mut cached = self.argument_names.lock();
            match &*cached {
                Some((seen, names)) if Arc::ptr_eq(seen, &policy) => Arc::clone(names),
                _ => {
                    let mut names = ArgumentNames::new();
                    for name in policy.argument_names() {
                        let spellings = names.entry(fold_case(name)).or_default();
                        if !spellings.iter().any(|s| s == name) {
                            spellings.push(name.to_owned());
                        }
                    }
                    let names = Arc::new(names);
                    *cached = Some((Arc::clone(&policy), Arc::clone(&names)));
                    names
                }
            }
        };
        if names.is_empty() {
            return None;
        }
        let mut stack = vec![args];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    for (key, inner) in map {
                        if let Some(spellings) = names.get(&fold_case(key)) {
                            if !spellings.contains(key) {
                                let exact = spellings.first().cloned().unwrap_or_default();
                                return Some((key.clone(), exact));
                            }
                        }
                        stack.push(inner);
                    }
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        None
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
