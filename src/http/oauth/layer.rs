//! [`OAuthLayer`]: tokens checked in front of a service, the metadata served, and the
//! verified identity handed on in the request's extensions.

use super::token::{Verified, Verifier};
use crate::http::challenge::{bearer_challenge, Challenge};
use crate::http::{answer, Identity, PolicyBody};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A `tower` layer that makes the service behind it an OAuth 2.1 resource server: it
/// serves the protected resource metadata at both well-known paths, answers a request
/// without a valid bearer token with 401 and the challenge MCP clients follow to log in,
/// and passes a verified request on with its [`Verified`] token in the extensions and
/// without its `Authorization` header (the token never reaches the upstream).
///
/// Put it outside [`PolicyLayer`](crate::http::PolicyLayer), whose identity function is
/// then [`identity`]:
///
/// ```
/// use mcp_policy::http::oauth::{identity, JwksDocument, JwksSource, OAuthConfig, OAuthLayer, Verifier};
/// use mcp_policy::http::PolicyLayer;
/// use mcp_policy::{Engine, Policy};
/// use std::future::Future;
/// use std::pin::Pin;
///
/// struct Jwks; // fetches the issuer's jwks_uri with your HTTP client
/// impl JwksSource for Jwks {
///     fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send + '_>> {
///         Box::pin(async { Ok(JwksDocument { body: r#"{"keys": []}"#.into(), max_age: None }) })
///     }
/// }
/// let config = OAuthConfig::new("https://auth.example.com", "https://mcp.example.com/mcp");
/// let metadata_url = config.metadata_url();
/// let oauth = OAuthLayer::new(Verifier::new(config, Jwks));
/// let policy: Policy = r#"{"version": "1", "tools": {"whmcs_get_*": {}}}"#.parse()?;
/// let policy = PolicyLayer::new(Engine::new(policy), identity).resource_metadata(metadata_url);
/// // tower::ServiceBuilder::new().layer(oauth).layer(policy).service(upstream)
/// # Ok::<(), mcp_policy::PolicyError>(())
/// ```
#[derive(Clone)]
pub struct OAuthLayer {
    verifier: Arc<Verifier>,
}

impl OAuthLayer {
    /// A layer checking tokens with `verifier`.
    pub fn new(verifier: Verifier) -> OAuthLayer {
        OAuthLayer {
            verifier: Arc::new(verifier),
        }
    }

    /// The verifier, to [`load_keys`](Verifier::load_keys) at start.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

impl<S> tower_layer::Layer<S> for OAuthLayer {
    type Service = OAuthService<S>;

    fn layer(&self, inner: S) -> OAuthService<S> {
        OAuthService {
            inner,
            verifier: Arc::clone(&self.verifier),
        }
    }
}

/// The service [`OAuthLayer`] makes.
#[derive(Clone)]
pub struct OAuthService<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S, B> tower_service::Service<Request<B>> for OAuthService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<PolicyBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<PolicyBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<PolicyBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The service that was polled ready serves this request; a clone waits its turn.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = Arc::clone(&self.verifier);
        Box::pin(async move {
            let config = verifier.config();
            if request.method() == Method::GET && config.is_metadata_path(request.uri().path()) {
                return Ok(metadata_response(config));
            }
            let metadata_url = config.metadata_url();
            let Some(token) = bearer_token(request.headers()) else {
                return Ok(unauthorized(Challenge::LogIn, &metadata_url));
            };
            match verifier.verify(&token).await {
                Ok(verified) => {
                    request.headers_mut().remove(AUTHORIZATION);
                    request.extensions_mut().insert(verified);
                    inner.call(request).await
                }
                Err(why) => {
                    #[cfg(feature = "tracing")]
                    tracing::info!(reason = %why, "bearer token refused");
                    let _ = why;
                    Ok(unauthorized(Challenge::InvalidToken, &metadata_url))
                }
            }
        })
    }
}

/// The bearer token of a request's `Authorization` header (scheme matched ignoring case).
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "bearer abc.def.ghi".parse().unwrap());
/// assert_eq!(mcp_policy::http::oauth::bearer_token(&headers).as_deref(), Some("abc.def.ghi"));
/// ```
pub fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The identity of a request [`OAuthLayer`] verified, for
/// [`PolicyLayer::new`](crate::http::PolicyLayer::new): grant, agent and scopes from the
/// token, the session from `Mcp-Session-Id`. A request without a verified token gets an
/// empty identity (which limits and rules with `scopes` refuse).
pub fn identity(parts: &http::request::Parts) -> Identity {
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match parts.extensions.get::<Verified>() {
        Some(verified) => Identity {
            grant: Some(verified.grant().to_owned()),
            agent: verified.agent().map(str::to_owned),
            session,
            scopes: Some(verified.scopes().to_vec()),
        },
        None => Identity::default(),
    }
}

/// The protected resource metadata, as served.
pub fn metadata_response(config: &super::OAuthConfig) -> Response<PolicyBody> {
    answer(StatusCode::OK, &config.metadata())
}

/// 401 with the challenge (`LogIn` for a request without a token, RFC 6750 §3.1), the
/// same whatever check failed.
pub fn unauthorized(challenge: Challenge<'_>, metadata_url: &str) -> Response<PolicyBody> {
    let body = serde_json::json!({"error": "a valid bearer token is required"});
    let mut response = answer(StatusCode::UNAUTHORIZED, &body);
    if let Some(value) = bearer_challenge(challenge, Some(metadata_url)) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}
