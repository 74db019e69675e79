//! Feature `http`: [`PolicyLayer`], a `tower` layer that enforces a policy in front of any
//! `tower` service serving MCP Streamable HTTP (an axum router, a reverse proxy, …).
//!
//! Each POST body is one JSON-RPC message, read up to a limit (more: 413). It goes
//! through an [`mcp::Relay`] built for the request, with the identity
//! your function reads from the request's parts, so everything the relay guarantees holds:
//! refused calls, batches, id-less calls, ambiguous keys and approval round trips
//! (2026-07-28) are answered by the layer and never reach the inner service; what is
//! forwarded is re-serialized from what was evaluated. On 2026-07-28 requests the
//! `Mcp-Method` and, for `tools/call`, `Mcp-Name` headers must be present and match the
//! body (else 400, `-32020`); on older revisions a present header must match. The
//! response is read as JSON, or as an event stream whose events are relayed as they
//! arrive: `tools/list` results lose what the policy refuses, and the outcome of each call
//! is reported to the engine.
//!
//! # Blocking
//!
//! Evaluation runs inside the service's future, on the executor thread that polls it.
//! With `MemoryStore` it takes about a microsecond and never waits. With `RedisStore` each
//! decision makes one blocking round trip to Redis, about 54 µs over loopback (the
//! `redis` bench), and up to the store's timeout when Redis is slow; that thread serves
//! nothing else meanwhile. Run such a layer on a multi-threaded runtime with more worker
//! threads than you expect decisions in flight, keep the store's timeout short, or keep
//! counts in memory.
//!
//! # Approvals on older revisions
//!
//! A session whose `initialize` declared elicitation (2025 revisions) is asked by answering
//! the held call's POST with an event stream whose first event is the `elicitation/create`
//! request; the client answers with a POST (202), and the same stream then carries the
//! call's result. Give the layer a timer ([`PolicyLayer::timer`]) so that an unanswered
//! request counts as a decline after the approvals' timeout; without one the call waits
//! until the client goes away. Other client responses to server requests are relayed
//! re-serialized.

use crate::engine::Engine;
use crate::mcp::{self, Approvals, Relay};
use bytes::Bytes;
use futures_channel::oneshot;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// The JSON-RPC error code for a header that contradicts the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The error type of bodies the layer makes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who is calling: the ids a request's limits count by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The grant id (the credential).
    pub grant: Option<String>,
    /// The agent id.
    pub agent: Option<String>,
    /// The session id.
    pub session: Option<String>,
}

/// A `tower` layer enforcing a policy in front of an MCP Streamable HTTP service.
///
/// ```
/// use mcp_policy::http::{Identity, PolicyLayer};
/// use mcp_policy::{Engine, Policy};
///
/// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_get_*": {}}}"#.parse()?;
/// let layer = PolicyLayer::new(Engine::new(policy), |parts: &http::request::Parts| Identity {
///     // The credential an authentication layer put in the extensions, say.
///     grant: parts.headers.get("x-grant").and_then(|v| v.to_str().ok()).map(str::to_owned),
///     ..Identity::default()
/// });
/// // let app = tower::ServiceBuilder::new().layer(layer).service(mcp_app);
/// # let _ = layer;
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
pub struct PolicyLayer<F> {
    engine: Arc<Engine>,
    identity: Arc<F>,
    approvals: Option<Approvals>,
    max_body: usize,
    shared: Arc<Shared>,
    timer: Option<Timer>,
    audit: Option<AuditSink>,
}

/// Receives audit records, one JSON object per call (see [`crate::audit`]).
pub type AuditSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Sleeps for a duration: the runtime's timer, for approval timeouts.
pub type Timer = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What requests of one layer share.
#[derive(Default)]
struct Shared {
    /// Sessions (`Mcp-Session-Id`) whose `initialize` declared elicitation.
    elicits: Mutex<HashSet<String>>,
    /// Held calls waiting for a person's answer, by the id of the approval request.
    waiting: Mutex<HashMap<String, oneshot::Sender<Bytes>>>,
    /// The policy file's SHA-256, for audit records.
    policy_sha256: Mutex<Option<String>>,
}

/// The most sessions remembered as able to elicit; past it the set starts over (those
/// sessions then get `approval_required` until they initialize again).
const MAX_SESSIONS: usize = 100_000;

impl<F> Clone for PolicyLayer<F> {
    fn clone(&self) -> Self {
        PolicyLayer {
            engine: Arc::clone(&self.engine),
            identity: Arc::clone(&self.identity),
            approvals: self.approvals.clone(),
            max_body: self.max_body,
            shared: Arc::clone(&self.shared),
            timer: self.timer.clone(),
            audit: self.audit.clone(),
        }
    }
}

impl<F> PolicyLayer<F>
where
    F: Fn(&http::request::Parts) -> Identity + Send + Sync + 'static,
{
    /// Enforces `engine`'s policy; `identity` says who calls, from the request's parts.
    pub fn new(engine: impl Into<Arc<Engine>>, identity: F) -> PolicyLayer<F> {
        PolicyLayer {
            engine: engine.into(),
            identity: Arc::new(identity),
            approvals: None,
            max_body: mcp::DEFAULT_MAX_MESSAGE,
            shared: Arc::default(),
            timer: None,
            audit: None,
        }
    }

    /// Hands an audit record of every decision, and of every allowed call's outcome, to
    /// `sink` (one JSON object each).
    pub fn audit(mut self, sink: AuditSink) -> PolicyLayer<F> {
        self.audit = Some(sink);
        self
    }

    /// Names the policy file in audit records from now on (the lowercase hex SHA-256 of
    /// its bytes); every clone of the layer and its services sees it.
    pub fn set_policy_sha256(&self, hex: impl Into<String>) {
        if let Ok(mut current) = self.shared.policy_sha256.lock() {
            *current = Some(hex.into());
        }
    }

    /// Writes what the relay recorded to the audit sink.
    fn emit(&self, records: &[String]) {
        if let Some(sink) = &self.audit {
            for record in records {
                sink(record);
            }
        }
    }

    /// The runtime's sleep, so that an approval request nobody answers (revisions before
    /// 2026-07-28) counts as a decline after the approvals' timeout; for tokio,
    /// `Arc::new(|d| Box::pin(tokio::time::sleep(d)))`.
    pub fn timer(mut self, timer: Timer) -> PolicyLayer<F> {
        self.timer = Some(timer);
        self
    }

    /// Asks a person to approve held calls through the client (MCP 2026-07-28), as
    /// [`RelayBuilder::approvals`](crate::mcp::RelayBuilder::approvals) does.
    pub fn approvals(mut self, approvals: Approvals) -> PolicyLayer<F> {
        self.approvals = Some(approvals);
        self
    }

    /// The largest request body read, in bytes (default 4 MiB); a larger one gets 413.
    pub fn max_body(mut self, bytes: usize) -> PolicyLayer<F> {
        self.max_body = bytes;
        self
    }
}

impl<S, F> tower_layer::Layer<S> for PolicyLayer<F> {
    type Service = PolicyService<S, F>;

    fn layer(&self, inner: S) -> PolicyService<S, F> {
        PolicyService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`PolicyLayer`] wraps around an MCP service.
pub struct PolicyService<S, F> {
    inner: S,
    layer: PolicyLayer<F>,
}

impl<S: Clone, F> Clone for PolicyService<S, F> {
    fn clone(&self) -> Self {
        PolicyService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

/// The body of the layer's responses: its own answers, or the inner service's response
/// as the relay rewrites it.
pub type PolicyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, F, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for PolicyService<S, F>
where
    S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Send,
    F: Fn(&http::request::Parts) -> Identity + Send + Sync + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<PolicyBody>;
    type Error = S::Error;
    type Future = BoxFuture<Response<PolicyBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready clone serves this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match Limited::new(body, layer.max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok(answer(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &mcp::error_response(
                            &Value::Null,
                            mcp::INVALID_REQUEST,
                            &format!(
                                "the request body is larger than {} bytes, or unreadable",
                                layer.max_body
                            ),
                        ),
                    ))
                }
            };
            if parts.method != http::Method::POST {
                let request = Request::from_parts(parts, Full::new(bytes));
                let response = inner.call(request).await?;
                return Ok(response.map(|b| b.map_err(Into::into).boxed_unsync()));
            }
            // Read once here for the headers and the routing; the relay reads it again,
            // strictly, as the one that decides.
            let message = mcp::parse_message(&bytes, layer.max_body).ok();
            if let Some(refused) = message
                .as_ref()
                .and_then(|m| header_mismatch(&parts.headers, m))
            {
                return Ok(answer(StatusCode::BAD_REQUEST, &refused));
            }
            // A person's answer to an approval request this layer made.
            if let Some(id) = message
                .as_ref()
                .filter(|m| m.get("method").is_none())
                .and_then(|m| m.get("id"))
                .and_then(Value::as_str)
            {
                let waiting = layer
                    .shared
                    .waiting
                    .lock()
                    .ok()
                    .and_then(|mut w| w.remove(id));
                if let Some(sender) = waiting {
                    let _ = sender.send(bytes);
                    return Ok(empty(StatusCode::ACCEPTED));
                }
            }
            let session = parts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let elicits = session
                .as_ref()
                .is_some_and(|s| layer.shared.elicits.lock().is_ok_and(|set| set.contains(s)));
            let declares_elicitation = message.as_ref().is_some_and(|m| {
                m.get("method").and_then(Value::as_str) == Some("initialize")
                    && m.pointer("/params/capabilities/elicitation").is_some()
            });
            let identity = (layer.identity)(&parts);
            let mut relay = Relay::builder(Arc::clone(&layer.engine))
                .max_message(layer.max_body)
                .client_elicits(elicits)
                .audit(layer.audit.is_some());
            if let Some(approvals) = &layer.approvals {
                relay = relay.approvals(approvals.clone());
            }
            if let Some(grant) = identity.grant {
                relay = relay.grant(grant);
            }
            if let Some(agent) = identity.agent {
                relay = relay.agent(agent);
            }
            if let Some(session) = identity.session {
                relay = relay.session(session);
            }
            let relay = relay.build();
            if let Some(hex) = layer
                .shared
                .policy_sha256
                .lock()
                .ok()
                .and_then(|h| h.clone())
            {
                relay.set_policy_sha256(hex);
            }
            let out = relay.from_client(&bytes);
            layer.emit(&out.audit);
            if out.to_server.is_empty() {
                if let Some(ask) = out.to_client.first().filter(|m| is_approval_request(m)) {
                    let held = HeldCall {
                        ask: ask.clone(),
                        relay,
                        inner,
                        method: parts.method.clone(),
                        uri: parts.uri.clone(),
                        headers: parts.headers.clone(),
                        layer: layer.clone(),
                    };
                    return Ok(held.into_response());
                }
            }
            let Some(forward) = out.to_server.into_iter().next() else {
                return Ok(match out.to_client.first() {
                    Some(text) => {
                        let message: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                        let status = match message.pointer("/error/code").and_then(Value::as_i64) {
                            Some(mcp::INVALID_REQUEST | mcp::PARSE_ERROR) => {
                                StatusCode::BAD_REQUEST
                            }
                            _ => StatusCode::OK,
                        };
                        answer(status, &message)
                    }
                    // A notification the relay dropped: nothing to say.
                    None => empty(StatusCode::ACCEPTED),
                });
            };
            let mut parts = parts;
            parts.headers.remove(CONTENT_LENGTH);
            let response = inner
                .call(Request::from_parts(parts, Full::new(Bytes::from(forward))))
                .await?;
            if declares_elicitation {
                if let Some(created) = response
                    .headers()
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                {
                    if let Ok(mut set) = layer.shared.elicits.lock() {
                        if set.len() >= MAX_SESSIONS {
                            set.clear();
                        }
                        set.insert(created.to_owned());
                    }
                }
            }
            Ok(relay_response(relay, response, layer.max_body, layer.audit.clone()).await)
        })
    }
}

/// The inner service's response, rewritten by the relay: whole for JSON, event by event
/// for an event stream.
async fn relay_response<B>(
    relay: Relay,
    response: Response<B>,
    max: usize,
    audit: Option<AuditSink>,
) -> Response<PolicyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let kind = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    parts.headers.remove(CONTENT_LENGTH);
    if kind.starts_with("text/event-stream") {
        let body = EventStream {
            inner: body,
            relay,
            pending: Vec::new(),
            max,
            audit,
        };
        return Response::from_parts(parts, body.boxed_unsync());
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return answer(
                StatusCode::BAD_GATEWAY,
                &mcp::error_response(
                    &Value::Null,
                    mcp::GATEWAY_ERROR,
                    "the MCP server's answer was too large or unreadable",
                ),
            )
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Response::from_parts(
            parts,
            Full::new(bytes).map_err(|e| match e {}).boxed_unsync(),
        );
    }
    let out = relay.from_server(&bytes);
    if let Some(sink) = &audit {
        out.audit.iter().for_each(|record| sink(record));
    }
    let text = out.to_client.into_iter().next().unwrap_or_default();
    Response::from_parts(
        parts,
        Full::new(Bytes::from(text))
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
}

pin_project_lite::pin_project! {
    /// An event stream whose `data` events go through the relay as they arrive.
    struct EventStream<B> {
        #[pin]
        inner: B,
        relay: Relay,
        // Bytes of an event not yet complete.
        pending: Vec<u8>,
        max: usize,
        audit: Option<AuditSink>,
    }
}

impl<B> Body for EventStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            // Emit every complete event held.
            if let Some(end) = event_end(this.pending) {
                let event: Vec<u8> = this.pending.drain(..end).collect();
                let rewritten = rewrite_event(this.relay, &event, this.audit.as_ref());
                if rewritten.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rewritten)))));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.pending.extend_from_slice(&data);
                        if this.pending.len() > *this.max {
                            return Poll::Ready(Some(Err(
                                "an event of the MCP server's stream is too large".into(),
                            )));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame.map_data(|d| d)))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    if this.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    let event = std::mem::take(this.pending);
                    let rewritten = rewrite_event(this.relay, &event, this.audit.as_ref());
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rewritten)))));
                }
            }
        }
    }
}

/// Whether a message the relay wrote for the client is its approval request.
fn is_approval_request(message: &str) -> bool {
    serde_json::from_str::<Value>(message).is_ok_and(|m| {
        m.get("method").and_then(Value::as_str) == Some("elicitation/create")
            && m.get("id").is_some()
    })
}

/// A call held for a person's approval on a revision before 2026-07-28: its response is
/// an event stream that first asks, then, once the answer came (by another POST), carries
/// the call's outcome.
struct HeldCall<S, F> {
    ask: String,
    relay: Relay,
    inner: S,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    layer: PolicyLayer<F>,
}

impl<S, F, ResBody> HeldCall<S, F>
where
    S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    F: Send + Sync + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    fn into_response(self) -> Response<PolicyBody> {
        let HeldCall {
            ask,
            relay,
            mut inner,
            method,
            uri,
            headers,
            layer,
        } = self;
        let ask_id = serde_json::from_str::<Value>(&ask)
            .ok()
            .and_then(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiting) = layer.shared.waiting.lock() {
            waiting.insert(ask_id.clone(), sender);
        }
        let guard = Waiting {
            shared: Arc::clone(&layer.shared),
            id: ask_id.clone(),
        };
        let timeout = layer
            .timer
            .as_ref()
            .zip(layer.approvals.as_ref())
            .map(|(timer, approvals)| timer(approvals.answer_timeout()));
        let max = layer.max_body;
        let audit = layer.audit.clone();
        let outcome = async move {
            let _guard = guard;
            let answer = first_of(receiver, timeout).await.unwrap_or_else(|| {
                // No answer in time (or the answer's sender went away): a decline.
                Bytes::from(
                    json!({"jsonrpc": "2.0", "id": ask_id, "result": {"action": "cancel"}})
                        .to_string(),
                )
            });
            let out = relay.from_client(&answer);
            if let Some(sink) = &audit {
                out.audit.iter().for_each(|record| sink(record));
            }
            let Some(forward) = out.to_server.into_iter().next() else {
                return events(out.to_client);
            };
            let mut request = Request::new(Full::new(Bytes::from(forward)));
            *request.method_mut() = method;
            *request.uri_mut() = uri;
            *request.headers_mut() = headers;
            request.headers_mut().remove(CONTENT_LENGTH);
            let Ok(response) = inner.call(request).await else {
                return events(relay.server_closed().to_client);
            };
            let response = relay_response(relay, response, max, audit).await;
            let kind = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if kind.starts_with("text/event-stream") {
                body
            } else {
                events(vec![String::from_utf8_lossy(&body).into_owned()])
            }
        };
        let body = Held {
            first: Some(events(vec![ask])),
            rest: Some(Box::pin(outcome)),
        };
        let mut response = Response::new(body.boxed_unsync());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        response
    }
}

/// Removes a held call's entry when its stream ends or the client goes away.
struct Waiting {
    shared: Arc<Shared>,
    id: String,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.shared.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

/// The answer, or `None` when the timer fires first or the sender went away.
async fn first_of(
    mut receiver: oneshot::Receiver<Bytes>,
    mut timeout: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> Option<Bytes> {
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(answer) = Pin::new(&mut receiver).poll(cx) {
            return Poll::Ready(answer.ok());
        }
        match timeout.as_mut().map(|t| t.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Messages as event-stream events.
fn events(messages: Vec<String>) -> Bytes {
    let mut text = String::new();
    for message in messages {
        text.push_str("event: message\ndata: ");
        text.push_str(&message);
        text.push_str("\n\n");
    }
    Bytes::from(text)
}

/// The body of a held call: the approval request at once, the outcome when it is known.
struct Held {
    first: Option<Bytes>,
    rest: Option<Pin<Box<dyn Future<Output = Bytes> + Send>>>,
}

impl Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let bytes = ready!(rest.as_mut().poll(cx));
        self.rest = None;
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

/// Where the first complete event ends (after its blank line), if one is held.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One event with its `data` (a JSON-RPC message) rewritten by the relay; other fields
/// kept. An event whose message the relay drops disappears.
fn rewrite_event(relay: &Relay, event: &[u8], audit: Option<&AuditSink>) -> Vec<u8> {
    let text = String::from_utf8_lossy(event);
    let mut fields = Vec::new();
    let mut data = String::new();
    for line in text.lines() {
        match line.strip_prefix("data:") {
            Some(rest) => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
            None if line.is_empty() => {}
            None => fields.push(line.to_owned()),
        }
    }
    if data.trim().is_empty() {
        return event.to_vec();
    }
    let out = relay.from_server(data.as_bytes());
    if let Some(sink) = audit {
        out.audit.iter().for_each(|record| sink(record));
    }
    let Some(message) = out.to_client.into_iter().next() else {
        return Vec::new();
    };
    let mut rewritten = fields.join("\n");
    if !rewritten.is_empty() {
        rewritten.push('\n');
    }
    rewritten.push_str("data: ");
    rewritten.push_str(&message);
    rewritten.push_str("\n\n");
    rewritten.into_bytes()
}

/// A JSON-RPC error for a header that contradicts the body, or a required header that is
/// missing (2026-07-28); `None` when the headers agree.
fn header_mismatch(headers: &http::HeaderMap, message: &Value) -> Option<Value> {
    let method = message.get("method")?.as_str()?;
    let name = message.pointer("/params/name").and_then(Value::as_str);
    let header = |key: &str| headers.get(key).map(decode_header);
    let in_meta = message
        .pointer("/params/_meta")
        .and_then(|meta| meta.get(mcp::PROTOCOL_VERSION_META))
        .and_then(Value::as_str);
    let in_header = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let modern = [in_meta, in_header]
        .into_iter()
        .flatten()
        .filter_map(mcp::Revision::parse)
        .any(mcp::Revision::requires_result_type);
    let refuse = |why: String| {
        Some(
            json!({"jsonrpc": "2.0", "id": message.get("id").cloned().unwrap_or(Value::Null),
            "error": {"code": HEADER_MISMATCH, "message": why}}),
        )
    };
    if let (Some(meta), Some(header)) = (in_meta, in_header) {
        if meta != header {
            return refuse(format!(
                "the MCP-Protocol-Version header says {header:?}, the request's _meta {meta:?}"
            ));
        }
    }
    match header("mcp-method") {
        Some(Some(value)) if value != method => {
            return refuse(format!(
                "the Mcp-Method header says {value:?}, the body {method:?}"
            ))
        }
        Some(None) => return refuse("the Mcp-Method header is not readable".into()),
        None if modern => return refuse("a 2026-07-28 request needs an Mcp-Method header".into()),
        _ => {}
    }
    if method == "tools/call" {
        match (header("mcp-name"), name) {
            (Some(Some(value)), Some(name)) if value != name => {
                return refuse(format!(
                    "the Mcp-Name header says {value:?}, the body {name:?}"
                ))
            }
            (Some(None), _) => return refuse("the Mcp-Name header is not readable".into()),
            (None, _) if modern => {
                return refuse("a 2026-07-28 tools/call needs an Mcp-Name header".into())
            }
            _ => {}
        }
    }
    None
}

/// A header's text, decoding the `=?base64?…?=` form; `None` when unreadable.
fn decode_header(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok()),
        None => Some(text.to_owned()),
    }
}

fn answer(status: StatusCode, message: &Value) -> Response<PolicyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(message.to_string()))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn empty(status: StatusCode) -> Response<PolicyBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}
