//! [`PolicyService`]: one request through the layer, from its method and headers to the
//! inner service's answer.

use super::held::{HeldCall, Owner};
use super::{answer, audited, empty, headers, stream, BoxError, Identity, PolicyBody, PolicyLayer};
use crate::mcp::{self, ClientElicitation, Relay};
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The service [`PolicyLayer`] wraps around an MCP service.
pub struct PolicyService<S, F> {
    pub(crate) inner: S,
    pub(crate) layer: PolicyLayer<F>,
}

impl<S: Clone, F> Clone for PolicyService<S, F> {
    fn clone(&self) -> Self {
        PolicyService {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
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
        let inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move { layer.handle(inner, request).await })
    }
}

impl<F> PolicyLayer<F>
where
    F: Fn(&http::request::Parts) -> Identity + Send + Sync + 'static,
{
    async fn handle<S, ReqBody, ResBody>(
        self,
        mut inner: S,
        request: Request<ReqBody>,
    ) -> Result<Response<PolicyBody>, S::Error>
    where
        S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        // Only these reach the upstream: a body under any other method (or `post`, which
        // is another method) would go there unevaluated.
        if ![Method::POST, Method::GET, Method::DELETE].contains(&parts.method) {
            let mut refused = error(
                StatusCode::METHOD_NOT_ALLOWED,
                mcp::INVALID_REQUEST,
                "only POST, GET and DELETE are served",
            );
            refused
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            return Ok(refused);
        }
        if let Some(refused) = headers::repeated_header(&parts.headers) {
            return Ok(answer(StatusCode::BAD_REQUEST, &refused));
        }
        let read = Limited::new(body, self.max_body).collect();
        let bytes = match self.within(self.body_timeout, read).await {
            Some(Ok(collected)) => collected.to_bytes(),
            Some(Err(_)) => {
                let why = format!(
                    "the request body is larger than {} bytes, or unreadable",
                    self.max_body
                );
                return Ok(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    mcp::INVALID_REQUEST,
                    &why,
                ));
            }
            None => {
                let why = format!(
                    "the request body did not arrive within {} s",
                    self.body_timeout.as_secs()
                );
                return Ok(error(
                    StatusCode::REQUEST_TIMEOUT,
                    mcp::INVALID_REQUEST,
                    &why,
                ));
            }
        };
        let identity = (self.identity)(&parts);
        let session = parts
            .headers
            .get(headers::MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if parts.method != Method::POST {
            return self
                .stream_request(inner, parts, bytes, identity, session)
                .await;
        }
        // Parsed once: read here for the headers and the routing, then handed to the relay.
        let parsed = mcp::parse_message(&bytes, self.max_body);
        let message = parsed.as_ref().ok();
        if let Some(refused) = message
            .as_ref()
            .and_then(|m| headers::header_mismatch(&parts.headers, m))
        {
            return Ok(answer(StatusCode::BAD_REQUEST, &refused));
        }
        let owner = Owner {
            session: session.clone(),
            identity: identity.clone(),
        };
        // A person's answer to an approval request this layer made, from whoever asked.
        if let Some(id) = message
            .as_ref()
            .filter(|m| m.get("method").is_none())
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
        {
            if self.shared.waiting.answer(id, &owner, bytes.clone()) {
                return Ok(empty(StatusCode::ACCEPTED));
            }
        }
        let initialize = message
            .as_ref()
            .is_some_and(|m| m.get("method").and_then(Value::as_str) == Some("initialize"));
        let elicits = ClientElicitation::of(
            message
                .filter(|_| initialize)
                .and_then(|m| crate::json::at(m, &["params", "capabilities", "elicitation"])),
        );
        let relay = match &session {
            Some(id) => self.session_relay(id, &identity),
            None => Arc::new(self.relay(&identity, elicits)),
        };
        let decider = Arc::clone(&relay);
        let Some(out) = self.run(move || decider.from_client_parsed(parsed)).await else {
            return Ok(error(
                StatusCode::SERVICE_UNAVAILABLE,
                mcp::GATEWAY_ERROR,
                "the gateway is shutting down",
            ));
        };
        audited(self.audit.as_ref(), &out);
        if out.to_server.is_empty() {
            if let Some(ask) = out.to_client.first().filter(|m| is_approval_request(m)) {
                let held = HeldCall {
                    ask: ask.clone(),
                    owner,
                    relay,
                    inner,
                    parts,
                    layer: self.clone(),
                };
                return Ok(held.into_response());
            }
        }
        if let Some(scope) = &out.step_up {
            return Ok(self.step_up(scope, out.to_client.first()));
        }
        let Some(forward) = out.to_server.into_iter().next() else {
            return Ok(match out.to_client.first() {
                Some(text) => {
                    let message: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                    let status = match message.pointer("/error/code").and_then(Value::as_i64) {
                        Some(mcp::INVALID_REQUEST | mcp::PARSE_ERROR) => StatusCode::BAD_REQUEST,
                        _ => StatusCode::OK,
                    };
                    answer(status, &message)
                }
                // A notification the relay dropped: nothing to say.
                None => empty(StatusCode::ACCEPTED),
            });
        };
        let reply = stream::replier(inner.clone(), &parts);
        let response = match self.send_upstream(&mut inner, &relay, parts, forward).await {
            Sent::Answered(response) => response,
            Sent::Unreachable(e, _) => return Err(e),
            Sent::TimedOut(out) => {
                let message = out.to_client.first().map_or(Value::Null, |text| {
                    serde_json::from_str(text).unwrap_or(Value::Null)
                });
                return Ok(answer(StatusCode::GATEWAY_TIMEOUT, &message));
            }
        };
        if initialize {
            if let Some(created) = response
                .headers()
                .get(headers::MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
            {
                if let Ok(mut sessions) = self.shared.sessions.lock() {
                    sessions.start(created, elicits);
                }
            }
        }
        Ok(stream::relay_response(&self, relay, response, Some(reply)).await)
    }

    /// `GET` (the server's stream, or one resumed with `Last-Event-ID`) and `DELETE`:
    /// no body; the response goes through the session's relay, so every message on it
    /// is checked and matched as the POST responses are.
    async fn stream_request<S, ResBody>(
        self,
        mut inner: S,
        parts: http::request::Parts,
        body: Bytes,
        identity: Identity,
        session: Option<String>,
    ) -> Result<Response<PolicyBody>, S::Error>
    where
        S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>>
            + Clone
            + Send
            + 'static,
        S::Future: Send,
        ResBody: Body<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        if !body.is_empty() {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                mcp::INVALID_REQUEST,
                "a GET or DELETE request has no body; send messages with POST",
            ));
        }
        let relay = match &session {
            Some(id) => self.session_relay(id, &identity),
            None => Arc::new(self.relay(&identity, ClientElicitation::default())),
        };
        let ends = parts.method == Method::DELETE;
        let reply = stream::replier(inner.clone(), &parts);
        let mut parts = parts;
        parts.headers.remove(CONTENT_LENGTH);
        let request = Request::from_parts(parts, Full::new(Bytes::new()));
        let response = match self.within(self.request_timeout, inner.call(request)).await {
            Some(response) => response?,
            None => {
                return Ok(error(
                    StatusCode::GATEWAY_TIMEOUT,
                    mcp::GATEWAY_ERROR,
                    "the MCP server did not answer in time",
                ))
            }
        };
        if let (true, Some(id), true) = (ends, &session, response.status().is_success()) {
            if let Ok(mut sessions) = self.shared.sessions.lock() {
                sessions.end(id, &identity);
            }
        }
        Ok(stream::relay_response(&self, relay, response, Some(reply)).await)
    }

    /// The relay of session `id` for `identity`.
    fn session_relay(&self, id: &str, identity: &Identity) -> Arc<Relay> {
        let found = self.shared.sessions.lock().ok().map(|mut sessions| {
            sessions.relay(id, identity, |elicits| self.relay(identity, elicits))
        });
        match found {
            Some((relay, swept)) => {
                swept
                    .iter()
                    .for_each(|out| audited(self.audit.as_ref(), out));
                relay
            }
            None => Arc::new(self.relay(identity, ClientElicitation::default())),
        }
    }
}

impl<F> PolicyLayer<F> {
    /// Sends the message the relay forwarded (`forward`) to the inner service, within the
    /// request timeout. When no answer comes, the relay answers the request with an error
    /// (a call keeps its units: it may have run) and that outcome goes to the audit log.
    pub(super) async fn send_upstream<S, ResBody>(
        &self,
        inner: &mut S,
        relay: &Relay,
        mut parts: http::request::Parts,
        forward: String,
    ) -> Sent<Response<ResBody>, S::Error>
    where
        S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    {
        parts.headers.remove(CONTENT_LENGTH);
        let request = Request::from_parts(parts, Full::new(Bytes::from(forward.clone())));
        let (out, error) = match self.within(self.request_timeout, inner.call(request)).await {
            Some(Ok(response)) => return Sent::Answered(response),
            Some(Err(e)) => (
                relay.abandon(&forward, "the MCP server cannot be reached"),
                Some(e),
            ),
            None => {
                let why = format!(
                    "the MCP server did not answer within {} s",
                    self.request_timeout.as_secs()
                );
                (relay.abandon(&forward, &why), None)
            }
        };
        audited(self.audit.as_ref(), &out);
        match error {
            Some(e) => Sent::Unreachable(e, out),
            None => Sent::TimedOut(out),
        }
    }
}

/// What became of a message sent to the inner service.
pub(super) enum Sent<R, E> {
    Answered(R),
    /// The service failed; the relay's answer to the client.
    Unreachable(E, crate::mcp::Output),
    /// No answer within the request timeout; the relay's answer to the client.
    TimedOut(crate::mcp::Output),
}

/// A JSON-RPC error (`id: null`) with `status`.
fn error(status: StatusCode, code: i64, why: &str) -> Response<PolicyBody> {
    answer(status, &mcp::error_response(&Value::Null, code, why))
}

/// Whether a message the relay wrote for the client is its approval request.
fn is_approval_request(message: &str) -> bool {
    serde_json::from_str::<Value>(message).is_ok_and(|m| {
        m.get("method").and_then(Value::as_str) == Some("elicitation/create")
            && m.get("id").is_some()
    })
}
