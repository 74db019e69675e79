//! Feature `http`: [`PolicyLayer`], a `tower` layer that enforces a policy in front of any
//! `tower` service serving MCP Streamable HTTP (an axum router, a reverse proxy, …).
//!
//! Only `POST` (a JSON-RPC message, evaluated), `GET` (the server's event stream, or one
//! resumed with `Last-Event-ID`) and `DELETE` (the end of a session) reach the inner
//! service, and only `POST` with a body; any other method gets 405, a `GET` or `DELETE`
//! with a body 400, and a repeated `Mcp-Method`, `Mcp-Name` or `MCP-Protocol-Version`
//! header 400.
//!
//! Each POST body is one JSON-RPC message, read up to a limit (more: 413). It goes
//! through an [`mcp::Relay`] with the identity your function reads from the request's
//! parts — the session's relay when the request names a session (`Mcp-Session-Id`), so
//! the answers to a session's requests are matched to them on whatever stream they come,
//! resumed streams included — so everything the relay guarantees holds: refused calls,
//! batches, id-less calls, ambiguous keys and approval round trips (2026-07-28) are
//! answered by the layer and never reach the inner service; what is forwarded is
//! re-serialized from what was evaluated. On 2026-07-28 requests the `Mcp-Method` and, for
//! `tools/call`, `Mcp-Name` headers must be present and match the body (else 400,
//! `-32020`); on older revisions a present header must match.
//!
//! Every response is read as JSON, or as an event stream parsed as the SSE specification
//! says (lines ending in CR, LF or CRLF, in time linear in its size) whose events are
//! relayed as they arrive: `tools/list` results lose what the policy refuses wherever
//! they arrive, and the outcome of each call is reported to the engine.
//!
//! # Resources
//!
//! With a timer ([`PolicyLayer::timer`]), a request body must arrive within
//! [`body_timeout`](PolicyLayer::body_timeout) (default 30 s) and the inner service must
//! start answering within [`request_timeout`](PolicyLayer::request_timeout) (default
//! 600 s). Sessions are forgotten once they end (`DELETE`) or idle for
//! [`session_idle`](PolicyLayer::session_idle). Held approvals are bounded by
//! [`Approvals::max_held`].
//!
//! # Blocking
//!
//! Without [`PolicyLayer::blocking`], evaluation runs inside the service's future, on
//! the executor thread that polls it: with `MemoryStore` about a microsecond that never
//! waits. A store that makes network round trips (`RedisStore`) would hold that thread
//! up to the store's timeout when its server is slow; give such a layer a blocking pool
//! (`tokio::task::spawn_blocking`), and the decisions and refunds that touch the store
//! run there while the executor threads serve other requests.
//!
//! # Approvals on older revisions
//!
//! A session whose `initialize` declared elicitation (2025 revisions) is asked by answering
//! the held call's POST with an event stream whose first event is the `elicitation/create`
//! request; the client answers with a POST (202) in the same session with the same
//! identity (anyone else's answer is not taken), and the same stream then carries the
//! call's result. Give the layer a timer so that an unanswered request counts as a decline
//! after the approvals' timeout; without one the call waits until the client goes away.

mod challenge;
mod headers;
mod held;
#[cfg(feature = "oauth")]
pub mod oauth;
mod service;
mod sessions;
mod sse;
mod stream;

pub use challenge::{bearer_challenge, Challenge};
pub use headers::HEADER_MISMATCH;
pub use service::PolicyService;

use crate::engine::Engine;
use crate::mcp::{self, Approvals, ClientElicitation, Output, Relay};
use bytes::Bytes;
use futures_channel::oneshot;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The error type of bodies the layer makes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who is calling: the ids a request's limits count by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The grant id (the credential).
    pub grant: Option<String>,
    /// The agent id.
    pub agent: Option<String>,
    /// The session id.
    pub session: Option<String>,
    /// The OAuth scopes of the caller's token; `None` when it has no token (then rules
    /// with `scopes` refuse its calls).
    pub scopes: Option<Vec<String>>,
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
    blocking: Option<Blocking>,
    audit: Option<AuditSink>,
    request_timeout: Duration,
    body_timeout: Duration,
    /// The protected resource metadata URL a step-up challenge names.
    resource_metadata: Option<Arc<str>>,
}

/// Receives audit records, one JSON object per call (see [`crate::audit`]).
pub type AuditSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Sleeps for a duration: the runtime's timer, for timeouts.
pub type Timer = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Work that may wait for the counter store.
pub type BlockingJob = Box<dyn FnOnce() + Send>;

/// Runs a job on a pool of threads that may block, such as
/// `Arc::new(|job| drop(tokio::task::spawn_blocking(job)))`.
pub type Blocking = Arc<dyn Fn(BlockingJob) + Send + Sync>;

/// What requests of one layer share.
struct Shared {
    /// Relays of the sessions in use, by session id and identity.
    sessions: Mutex<sessions::Sessions>,
    /// Held calls waiting for a person's answer, by the id of the approval request.
    waiting: held::Waiting,
    /// The policy file's SHA-256, for audit records.
    policy_sha256: Mutex<Option<String>>,
}

impl<F> Clone for PolicyLayer<F> {
    fn clone(&self) -> Self {
        PolicyLayer {
            engine: Arc::clone(&self.engine),
            identity: Arc::clone(&self.identity),
            approvals: self.approvals.clone(),
            max_body: self.max_body,
            shared: Arc::clone(&self.shared),
            timer: self.timer.clone(),
            blocking: self.blocking.clone(),
            audit: self.audit.clone(),
            request_timeout: self.request_timeout,
            body_timeout: self.body_timeout,
            resource_metadata: self.resource_metadata.clone(),
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
            shared: Arc::new(Shared {
                sessions: Mutex::new(sessions::Sessions::new(Duration::from_secs(3600))),
                waiting: held::Waiting::default(),
                policy_sha256: Mutex::new(None),
            }),
            timer: None,
            blocking: None,
            audit: None,
            request_timeout: Duration::from_secs(600),
            resource_metadata: None,
            body_timeout: Duration::from_secs(30),
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

    /// The runtime's sleep, for the timeouts (request, body, approval answers); for
    /// tokio, `Arc::new(|d| Box::pin(tokio::time::sleep(d)))`. Without it nothing times
    /// out.
    pub fn timer(mut self, timer: Timer) -> PolicyLayer<F> {
        self.timer = Some(timer);
        self
    }

    /// Runs what may wait for the counter store (decisions, refunds) on `pool` instead
    /// of the executor thread; for tokio, `Arc::new(|job| drop(tokio::task::spawn_blocking(job)))`.
    pub fn blocking(mut self, pool: Blocking) -> PolicyLayer<F> {
        self.blocking = Some(pool);
        self
    }

    /// How long the inner service may take to start answering a request (default
    /// 600 s; needs a [`timer`](Self::timer)); past it the client gets an error and a
    /// call keeps its units (it may have run).
    pub fn request_timeout(mut self, timeout: Duration) -> PolicyLayer<F> {
        self.request_timeout = timeout;
        self
    }

    /// The protected resource metadata URL (RFC 9728) that a step-up challenge names: a
    /// call refused `insufficient_scope` gets HTTP 403 with `WWW-Authenticate: Bearer
    /// error="insufficient_scope", scope="…", resource_metadata="…"`, so that an MCP
    /// client asks its authorization server for the scopes and tries again.
    pub fn resource_metadata(mut self, url: impl Into<String>) -> PolicyLayer<F> {
        self.resource_metadata = Some(Arc::from(url.into()));
        self
    }

    /// How long a request body may take to arrive (default 30 s; needs a
    /// [`timer`](Self::timer)); past it the request gets 408.
    pub fn body_timeout(mut self, timeout: Duration) -> PolicyLayer<F> {
        self.body_timeout = timeout;
        self
    }

    /// How long a session may go unused before the layer forgets it (default one hour).
    pub fn session_idle(self, idle: Duration) -> PolicyLayer<F> {
        if let Ok(mut sessions) = self.shared.sessions.lock() {
            sessions.set_idle(idle);
        }
        self
    }

    /// Asks a person to approve held calls through the client, as
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

impl<F> PolicyLayer<F> {
    /// A relay for `identity`, configured as this layer is.
    /// HTTP 403 for a call refused `insufficient_scope`: the refusal as the body, and the
    /// step-up challenge naming `scope`.
    fn step_up(&self, scope: &str, refusal: Option<&String>) -> Response<PolicyBody> {
        let message = refusal
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let mut response = answer(StatusCode::FORBIDDEN, &message);
        let challenge = Challenge::InsufficientScope(scope);
        if let Some(value) = bearer_challenge(challenge, self.resource_metadata.as_deref()) {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, value);
        }
        response
    }

    fn relay(&self, identity: &Identity, elicits: ClientElicitation) -> Relay {
        let mut relay = Relay::builder(Arc::clone(&self.engine))
            .max_message(self.max_body)
            .client_elicitation(elicits)
            .request_timeout(self.request_timeout)
            .audit(self.audit.is_some());
        if let Some(approvals) = &self.approvals {
            relay = relay.approvals(approvals.clone());
        }
        if let Some(grant) = &identity.grant {
            relay = relay.grant(grant.clone());
        }
        if let Some(agent) = &identity.agent {
            relay = relay.agent(agent.clone());
        }
        if let Some(session) = &identity.session {
            relay = relay.session(session.clone());
        }
        if let Some(scopes) = &identity.scopes {
            relay = relay.scopes(scopes.iter().cloned());
        }
        let relay = relay.build();
        if let Some(hex) = self
            .shared
            .policy_sha256
            .lock()
            .ok()
            .and_then(|h| h.clone())
        {
            relay.set_policy_sha256(hex);
        }
        relay
    }

    /// Runs `work` on the blocking pool when there is one, else here.
    fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = Option<R>> + Send>> {
        run_on(self.blocking.as_ref(), work)
    }

    /// `future`, or `None` once `after` has passed (never, without a timer).
    async fn within<T>(&self, after: Duration, future: impl Future<Output = T>) -> Option<T> {
        let deadline = self.timer.as_ref().map(|timer| timer(after));
        held::first_of(future, deadline).await
    }
}

/// Runs `work` on `pool` when there is one, else at once; `None` if the pool dropped it.
fn run_on<R: Send + 'static>(
    pool: Option<&Blocking>,
    work: impl FnOnce() -> R + Send + 'static,
) -> Pin<Box<dyn Future<Output = Option<R>> + Send>> {
    match pool {
        None => Box::pin(std::future::ready(Some(work()))),
        Some(pool) => {
            let (sender, receiver) = oneshot::channel();
            pool(Box::new(move || {
                let _ = sender.send(work());
            }));
            Box::pin(async move { receiver.await.ok() })
        }
    }
}

/// What a relay made of a message, emitted to the audit sink.
fn audited(audit: Option<&AuditSink>, out: &Output) {
    if let Some(sink) = audit {
        out.audit.iter().for_each(|record| sink(record));
    }
}

/// The body of the layer's responses: its own answers, or the inner service's response
/// as the relay rewrites it.
pub type PolicyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A JSON answer the layer writes itself.
pub(crate) fn answer(status: StatusCode, message: &Value) -> Response<PolicyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(crate::json::text(message)))
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
