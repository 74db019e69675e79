//! The organisation's authorization server: the `--oauth-*` flags, and its metadata and
//! keys fetched over HTTPS (or HTTP) for the library's token verifier.

use crate::Failure;
use bytes::Bytes;
use clap::Args;
use http::header::CACHE_CONTROL;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_policy::http::oauth::{JwksDocument, JwksSource, OAuthConfig, Verifier};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `gateway --listen` flags of an OAuth 2.1 resource server.
#[derive(Args, Clone, Default)]
pub struct OAuthArgs {
    /// Accept access tokens (JWTs) of this authorization server (with --listen). Its
    /// metadata is read from ISSUER/.well-known/oauth-authorization-server, else
    /// /.well-known/openid-configuration; its keys from the metadata's jwks_uri. Clients
    /// are told where to log in by a 401 and the protected resource metadata this
    /// gateway serves. Needs --resource.
    #[arg(long, value_name = "ISSUER", requires_all = ["listen", "resource"])]
    pub oauth_issuer: Option<String>,
    /// This gateway's URI as clients reach it (such as `https://mcp.example.com/mcp`):
    /// tokens must name it in `aud` (RFC 8707).
    #[arg(long, value_name = "URI", requires = "oauth_issuer")]
    pub resource: Option<String>,
    /// Where the issuer's keys are, instead of the metadata's jwks_uri.
    #[arg(long, value_name = "URL", requires = "oauth_issuer")]
    pub jwks_uri: Option<String>,
    /// Also accept tokens whose `aud` holds AUD (repeatable).
    #[arg(long, value_name = "AUD", requires = "oauth_issuer")]
    pub oauth_audience: Vec<String>,
    /// The claim that names the grant limits count by.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "sub",
        requires = "oauth_issuer"
    )]
    pub grant_claim: String,
    /// The claim that names the agent [default: client_id, else azp].
    #[arg(long, value_name = "NAME", requires = "oauth_issuer")]
    pub agent_claim: Option<String>,
    /// The scopes the protected resource metadata lists: what clients ask for first.
    #[arg(
        long,
        value_name = "S1,S2",
        value_delimiter = ',',
        requires = "oauth_issuer"
    )]
    pub scopes_supported: Vec<String>,
}

/// How long one request to the authorization server may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest metadata or JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The token verifier the flags describe, if they name an issuer.
pub fn verifier(args: &OAuthArgs) -> Result<Option<Arc<Verifier>>, Failure> {
    let (Some(issuer), Some(resource)) = (&args.oauth_issuer, &args.resource) else {
        return Ok(None);
    };
    for (flag, url) in [("--oauth-issuer", issuer), ("--resource", resource)]
        .into_iter()
        .chain(args.jwks_uri.iter().map(|u| ("--jwks-uri", u)))
    {
        let parsed: Result<Uri, _> = url.parse();
        if !matches!(
            parsed
                .ok()
                .and_then(|u| u.scheme_str().map(str::to_owned))
                .as_deref(),
            Some("https" | "http")
        ) {
            return Err(Failure::Usage(format!(
                "{flag} {url:?}: expected an http:// or https:// URL"
            )));
        }
    }
    let mut config = OAuthConfig::new(issuer.clone(), resource.clone())
        .grant_claim(args.grant_claim.clone())
        .scopes_supported(args.scopes_supported.iter().cloned());
    for audience in &args.oauth_audience {
        config = config.audience(audience.clone());
    }
    if let Some(claim) = &args.agent_claim {
        config = config.agent_claim(claim.clone());
    }
    let source = IssuerKeys {
        http: IssuerHttp::new(issuer),
        jwks_uri: Mutex::new(args.jwks_uri.clone()),
    };
    Ok(Some(Arc::new(Verifier::new(config, source))))
}

/// HTTP to the authorization server: its metadata, its keys, its token endpoint.
pub struct IssuerHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    issuer: String,
}

/// The issuer's keys, found through its metadata on first use.
struct IssuerKeys {
    http: IssuerHttp,
    /// Known once the metadata was read (or given by --jwks-uri).
    jwks_uri: Mutex<Option<String>>,
}

impl JwksSource for IssuerKeys {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send + '_>> {
        Box::pin(async move {
            let known = self.jwks_uri.lock().ok().and_then(|uri| uri.clone());
            let uri = match known {
                Some(uri) => uri,
                None => {
                    let uri = self.http.discover("jwks_uri").await?;
                    if let Ok(mut known) = self.jwks_uri.lock() {
                        *known = Some(uri.clone());
                    }
                    uri
                }
            };
            let (body, max_age) = self.http.get(&uri).await?;
            Ok(JwksDocument { body, max_age })
        })
    }
}

impl IssuerHttp {
    /// A client for `issuer`, over HTTPS (Mozilla's roots) or HTTP.
    pub fn new(issuer: &str) -> IssuerHttp {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        IssuerHttp {
            client: Client::builder(TokioExecutor::new()).build(https),
            issuer: issuer.to_owned(),
        }
    }

    /// The member `field` (such as `jwks_uri`) of the issuer's metadata: RFC 8414's
    /// well-known URL first (inserted before the issuer's path), then OpenID Connect
    /// discovery's (appended). The metadata must name this issuer exactly (RFC 8414 §3.3).
    pub async fn discover(&self, field: &str) -> Result<String, String> {
        let issuer = self.issuer.trim_end_matches('/');
        let after_scheme = issuer.find("://").map_or(0, |i| i + 3);
        let (origin, path) = match issuer.get(after_scheme..).and_then(|rest| rest.find('/')) {
            Some(i) => issuer.split_at(after_scheme + i),
            None => (issuer, ""),
        };
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut why = Vec::new();
        for url in candidates {
            match self.get(&url).await {
                Ok((body, _)) => {
                    let metadata: Value =
                        serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
                    if metadata.get("issuer").and_then(Value::as_str) != Some(&self.issuer) {
                        return Err(format!("{url}: the metadata names another issuer"));
                    }
                    return metadata
                        .get(field)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{url}: the metadata has no {field}"));
                }
                Err(e) => why.push(e),
            }
        }
        Err(why.join("; "))
    }

    /// GETs `url`: its body (1 MiB at most, within 10 s) and `Cache-Control: max-age`.
    pub async fn get(&self, url: &str) -> Result<(String, Option<Duration>), String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let request = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|e| format!("{url}: {e}"))?;
        self.exchange(url, request).await
    }

    /// POSTs `fields` as a form to `url` (a token endpoint): the body of its 200 answer.
    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> Result<String, String> {
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let request = Request::post(uri)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("{url}: {e}"))?;
        self.exchange(url, request).await.map(|(body, _)| body)
    }

    async fn exchange(
        &self,
        url: &str,
        request: Request<Full<Bytes>>,
    ) -> Result<(String, Option<Duration>), String> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let max_age = response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .and_then(max_age);
            let body = Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body, max_age))
        };
        let (status, body, max_age) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("{url}: no answer within {} s", FETCH_TIMEOUT.as_secs()))?
            .map_err(|e| format!("{url}: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!("{url}: HTTP {status}"));
        }
        let text = String::from_utf8(body.to_vec()).map_err(|_| format!("{url}: not UTF-8"))?;
        Ok((text, max_age))
    }
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok().map(Duration::from_secs))?
    })
}
