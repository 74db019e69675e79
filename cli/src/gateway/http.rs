//! `mcp-policy gateway --listen`: the gateway for Streamable HTTP servers. A reverse proxy
//! (hyper) that serves one path, authenticates callers (`auth`: a tokens file, an
//! authorization server, or both), and forwards through the library's
//! `http::PolicyLayer` to the upstream URL.

use super::auth::{load_tokens, Auth, Tokens};
use super::reload::{file_sha256, reload, watch, RECLAIM_EVERY};
use crate::Failure;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use mcp_policy::http::oauth::metadata_response;
use mcp_policy::http::{Identity, PolicyBody, PolicyLayer, PolicyService};
use mcp_policy::mcp::Approvals;
use mcp_policy::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// What the HTTP gateway needs from the command line.
pub struct HttpOptions {
    pub listen: SocketAddr,
    pub upstream: Uri,
    pub path: String,
    pub tokens: Option<PathBuf>,
    /// Access tokens of the organisation's authorization server, when configured.
    pub oauth: Option<Arc<mcp_policy::http::oauth::Verifier>>,
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    pub policy: PathBuf,
    pub reload_interval: Duration,
    pub max_message: usize,
    pub audit: Option<super::AuditLog>,
    pub shadow: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
    /// How long the upstream may take to start answering.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// Whether counts are kept in a store that makes network round trips (Redis): its
    /// work then runs on the blocking pool, never on the runtime's workers.
    pub remote_store: bool,
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session may go unused before it is forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// The most sessions remembered; past it the one unused longest is forgotten.
const MAX_SESSIONS: usize = 100_000;

/// Forwards requests to the upstream URL, with the configured headers.
#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl Service<Request<Full<Bytes>>> for Upstream {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Full<Bytes>>) -> Self::Future {
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.remove(http::header::HOST);
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        let client = self.client.clone();
        Box::pin(async move { client.request(request).await })
    }
}

/// The identity the authentication step found, carried to the layer in the extensions.
#[derive(Clone)]
struct Caller(Identity);

fn identity_of(parts: &http::request::Parts) -> Identity {
    parts
        .extensions
        .get::<Caller>()
        .map(|caller| caller.0.clone())
        .unwrap_or_default()
}

struct Shared {
    service: PolicyService<Upstream, fn(&http::request::Parts) -> Identity>,
    /// The layer, to name a reloaded policy in audit records.
    layer: PolicyLayer<fn(&http::request::Parts) -> Identity>,
    auth: Auth,
    /// 2025-era `Mcp-Session-Id` → the digest of the token that created it, and when the
    /// session was last used.
    sessions: Mutex<HashMap<String, (String, Instant)>>,
    path: String,
}

pub fn run(options: HttpOptions, engine: Engine, approvals: Approvals) -> Result<(), Failure> {
    let tokens = match &options.tokens {
        Some(path) => load_tokens(path).map_err(Failure::Usage)?,
        None => Tokens::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(options, engine, approvals, tokens))
}

async fn serve(
    mut options: HttpOptions,
    engine: Engine,
    approvals: Approvals,
    tokens: Tokens,
) -> Result<(), Failure> {
    let oauth = options.oauth.take();
    if let Some(verifier) = &oauth {
        // An issuer that is down now does not stop the gateway: tokens are refused until
        // its keys are fetched (again on a token naming a key not yet seen).
        match verifier.load_keys().await {
            Ok(keys) => eprintln!(
                "mcp-policy gateway: {keys} signing key(s) of {}",
                verifier.config().issuer()
            ),
            Err(e) => eprintln!(
                "mcp-policy gateway: warning: the keys of {} cannot be fetched ({e}); access tokens are refused until they are",
                verifier.config().issuer()
            ),
        }
    }
    let engine = Arc::new(engine);
    let identity: fn(&http::request::Parts) -> Identity = identity_of;
    let mut layer = PolicyLayer::new(Arc::clone(&engine), identity);
    if let Some(log) = options.audit {
        layer = layer.audit(Arc::new(move |record: &str| log.write([record])));
    }
    if let Some(hex) = file_sha256(&options.policy) {
        layer.set_policy_sha256(hex);
    }
    if let Some(verifier) = &oauth {
        layer = layer.resource_metadata(verifier.config().metadata_url());
    }
    let mut layer = layer
        .approvals(approvals)
        .timer(Arc::new(|wait| Box::pin(tokio::time::sleep(wait))))
        .request_timeout(options.request_timeout)
        .session_idle(SESSION_IDLE)
        .max_body(options.max_message);
    if options.remote_store {
        // A slow Redis then holds blocking-pool threads, never the runtime's workers.
        layer = layer.blocking(Arc::new(|job| drop(tokio::task::spawn_blocking(job))));
    }
    // Small requests and answers: send them at once rather than wait to fill packets.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let upstream = Upstream {
        client: Client::builder(TokioExecutor::new()).build(connector),
        uri: options.upstream.clone(),
        headers: Arc::new(options.upstream_headers.clone()),
    };
    let shared = Arc::new(Shared {
        service: layer.layer(upstream),
        layer: layer.clone(),
        auth: Auth::new(tokens, oauth),
        sessions: Mutex::new(HashMap::new()),
        path: options.path.clone(),
    });
    if let Some(addr) = options.metrics {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| Failure::Usage(format!("--metrics {addr}: {e}")))?;
        eprintln!("mcp-policy gateway: metrics on http://{addr}/metrics");
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|e| Failure::Usage(format!("cannot listen on {}: {e}", options.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    eprintln!(
        "mcp-policy gateway: listening on http://{local}{} for {}",
        options.path, options.upstream
    );
    {
        let shared = Arc::clone(&shared);
        let engine = Arc::clone(&engine);
        let (policy, tokens, shadow) = (
            options.policy.clone(),
            options.tokens.clone(),
            options.shadow.clone(),
        );
        let files = [policy.clone()]
            .into_iter()
            .chain(tokens.clone())
            .chain(shadow.clone())
            .collect();
        watch(files, options.reload_interval, move |changed| {
            let Some(tokens) = tokens.as_deref().filter(|t| *t == changed) else {
                return reload(&engine, changed, &policy, shadow.as_deref(), |hex| {
                    shared.layer.set_policy_sha256(hex)
                });
            };
            match load_tokens(tokens) {
                Ok(new) => {
                    shared.auth.replace_tokens(new);
                    eprintln!("mcp-policy gateway: reloaded {}", tokens.display());
                }
                Err(e) => eprintln!("mcp-policy gateway: keeping the previous tokens: {e}"),
            }
        });
    }
    {
        // Counts whose window has passed, and sessions idle too long, are forgotten.
        let (engine, shared) = (Arc::clone(&engine), Arc::clone(&shared));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RECLAIM_EVERY);
            loop {
                every.tick().await;
                let engine = Arc::clone(&engine);
                let _ = tokio::task::spawn_blocking(move || engine.reclaim_expired()).await;
                if let Ok(mut sessions) = shared.sessions.lock() {
                    sessions.retain(|_, (_, used)| used.elapsed() < SESSION_IDLE);
                }
            }
        });
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(shutdown_signal());
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    loop {
        // At the cap, wait for a connection to end before accepting another: new ones
        // wait in the kernel's queue, and nothing spins.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors, say: back off rather than spin on the error.
                        eprintln!("mcp-policy gateway: cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let service = hyper::service::service_fn(move |request| {
                    let shared = Arc::clone(&shared);
                    async move { Ok::<_, std::convert::Infallible>(handle(&shared, request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(slot);
                });
            }
            () = &mut stop => break,
        }
    }
    eprintln!("mcp-policy gateway: stopping; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => {
            eprintln!("mcp-policy gateway: requests still in flight after 10 s; stopping anyway");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// One request: the path, the bearer token and the session are checked here, the policy
/// by the layer.
async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<PolicyBody> {
    // The protected resource metadata (RFC 9728), where MCP clients learn where to log in.
    if let Some(verifier) = shared.auth.oauth() {
        let path = request.uri().path();
        if request.method() == http::Method::GET && verifier.config().is_metadata_path(path) {
            return metadata_response(verifier.config());
        }
    }
    if request.uri().path() != shared.path {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let caller = match shared.auth.authenticate(request.headers()).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal,
    };
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(session) = &session {
        let owner = shared.sessions.lock().ok().and_then(|mut sessions| {
            let (owner, used) = sessions.get_mut(session)?;
            *used = Instant::now();
            Some(owner.clone())
        });
        if owner.as_ref() != Some(&caller.owner) {
            // Another token's session, or one this gateway never saw created.
            return plain(StatusCode::NOT_FOUND, "no such session");
        }
    }
    let ends_session = request.method() == http::Method::DELETE;
    let mut identity = caller.identity;
    identity.session = session.clone().or_else(|| identity.grant.clone());
    let (mut parts, body) = request.into_parts();
    // The client's credential is never forwarded.
    parts.headers.remove(AUTHORIZATION);
    parts.extensions.insert(Caller(identity));
    let request = Request::from_parts(parts, body);
    let mut service = shared.service.clone();
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(e) => {
            return plain(
                StatusCode::BAD_GATEWAY,
                &format!("the MCP server cannot be reached: {e}"),
            )
        }
    };
    let Ok(mut sessions) = shared.sessions.lock() else {
        return response;
    };
    if let (true, Some(session), true) = (ends_session, &session, response.status().is_success()) {
        sessions.remove(session);
    }
    // Bind a session the server created to the token that created it.
    if let Some(created) = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
    {
        if sessions.len() >= MAX_SESSIONS && !sessions.contains_key(created) {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions
            .entry(created.to_owned())
            .or_insert((caller.owner, Instant::now()));
    }
    drop(sessions);
    response
}

pub(super) fn plain(status: StatusCode, text: &str) -> Response<PolicyBody> {
    let body = Full::new(Bytes::from(text.to_owned()))
        .map_err(|e| match e {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
