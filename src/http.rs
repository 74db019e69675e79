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
//! # Not yet
//!
//! Approvals on revisions before 2026-07-28 need a server-to-client request inside the
//! call's event stream; the layer answers those calls with `approval_required`. Client
//! responses to server requests are relayed re-serialized but not matched to the request.

use crate::engine::Engine;
use crate::mcp::{self, Approvals, Relay};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

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
}

impl<F> Clone for PolicyLayer<F> {
    fn clone(&self) -> Self {
        PolicyLayer {
            engine: Arc::clone(&self.engine),
            identity: Arc::clone(&self.identity),
            approvals: self.approvals.clone(),
            max_body: self.max_body,
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
        }
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
            layer: PolicyLayer {
                engine: Arc::clone(&self.engine),
                identity: Arc::clone(&self.identity),
                approvals: self.approvals.clone(),
                max_body: self.max_body,
            },
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
            if let Some(refused) = header_mismatch(&parts.headers, &bytes) {
                return Ok(answer(StatusCode::BAD_REQUEST, &refused));
            }
            let identity = (layer.identity)(&parts);
            let mut relay = Relay::builder(Arc::clone(&layer.engine)).max_message(layer.max_body);
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
            let out = relay.from_client(&bytes);
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
            Ok(relay_response(relay, response, layer.max_body).await)
        })
    }
}

/// The inner service's response, rewritten by the relay: whole for JSON, event by event
/// for an event stream.
async fn relay_response<B>(relay: Relay, response: Response<B>, max: usize) -> Response<PolicyBody>
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
                let rewritten = rewrite_event(this.relay, &event);
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
                    let rewritten = rewrite_event(this.relay, &event);
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(rewritten)))));
                }
            }
        }
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
fn rewrite_event(relay: &Relay, event: &[u8]) -> Vec<u8> {
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
fn header_mismatch(headers: &http::HeaderMap, body: &[u8]) -> Option<Value> {
    let message = mcp::parse_message(body, usize::MAX).ok()?;
    let method = message.get("method")?.as_str()?;
    let name = message.pointer("/params/name").and_then(Value::as_str);
    let header = |key: &str| headers.get(key).map(decode_header);
    let modern = mcp::Revision::of_request(&message)
        .is_some_and(mcp::Revision::requires_result_type)
        || headers
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .and_then(mcp::Revision::parse)
            .is_some_and(mcp::Revision::requires_result_type);
    let refuse = |why: String| {
        Some(
            json!({"jsonrpc": "2.0", "id": message.get("id").cloned().unwrap_or(Value::Null),
            "error": {"code": HEADER_MISMATCH, "message": why}}),
        )
    };
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
