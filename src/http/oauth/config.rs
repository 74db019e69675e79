//! [`OAuthConfig`]: which authorization server, which resource, which claims.

use serde_json::{json, Value};
use std::time::Duration;

/// What a resource server needs to know of its authorization server and of itself.
///
/// ```
/// use mcp_policy::http::oauth::OAuthConfig;
///
/// let config = OAuthConfig::new("https://auth.example.com", "https://mcp.example.com/mcp")
///     .scopes_supported(["tickets:read", "tickets:write"]);
/// assert_eq!(
///     config.metadata_url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// assert_eq!(config.metadata()["authorization_servers"][0], "https://auth.example.com");
/// ```
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub(crate) issuer: String,
    pub(crate) resource: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) grant_claim: String,
    pub(crate) agent_claim: Option<String>,
    pub(crate) scopes_supported: Vec<String>,
    pub(crate) leeway: Duration,
    pub(crate) max_token: usize,
}

impl OAuthConfig {
    /// Tokens of `issuer` (compared as an exact string with their `iss`) for `resource`
    /// (this server's URI, which their `aud` must hold, RFC 8707). The grant is the
    /// `sub` claim, the agent `client_id` (else `azp`), with 60 s of leeway on times.
    pub fn new(issuer: impl Into<String>, resource: impl Into<String>) -> OAuthConfig {
        OAuthConfig {
            issuer: issuer.into(),
            resource: resource.into(),
            audiences: Vec::new(),
            grant_claim: "sub".to_owned(),
            agent_claim: None,
            scopes_supported: Vec::new(),
            leeway: Duration::from_secs(60),
            max_token: 16 * 1024,
        }
    }

    /// Also accepts tokens whose `aud` holds `audience` (an issuer that names the API by
    /// an identifier rather than its URI).
    pub fn audience(mut self, audience: impl Into<String>) -> OAuthConfig {
        self.audiences.push(audience.into());
        self
    }

    /// The claim that names the grant limits count by (default `sub`).
    pub fn grant_claim(mut self, claim: impl Into<String>) -> OAuthConfig {
        self.grant_claim = claim.into();
        self
    }

    /// The claim that names the agent (default `client_id`, else `azp`).
    pub fn agent_claim(mut self, claim: impl Into<String>) -> OAuthConfig {
        self.agent_claim = Some(claim.into());
        self
    }

    /// The scopes the metadata lists (`scopes_supported`): what clients ask for first.
    pub fn scopes_supported<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> OAuthConfig {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The resource URI.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Where the protected resource metadata is served (RFC 9728 §3.1): the resource's
    /// origin, `/.well-known/oauth-protected-resource`, then the resource's path.
    pub fn metadata_url(&self) -> String {
        let (origin, path) = split_resource(&self.resource);
        format!("{origin}/.well-known/oauth-protected-resource{path}")
    }

    /// The protected resource metadata document (RFC 9728).
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.scopes_supported,
            "bearer_methods_supported": ["header"],
        })
    }

    /// Whether a request path asks for the metadata: the well-known path alone, or with
    /// the resource's path after it.
    pub fn is_metadata_path(&self, path: &str) -> bool {
        let (_, resource_path) = split_resource(&self.resource);
        match path.strip_prefix("/.well-known/oauth-protected-resource") {
            Some(rest) => rest.is_empty() || rest == resource_path,
            None => false,
        }
    }
}

/// `https://host:port/path` → (`https://host:port`, `/path`); a trailing `/` alone is no path.
fn split_resource(resource: &str) -> (&str, &str) {
    let after_scheme = resource.find("://").map_or(0, |i| i + 3);
    let tail = resource.get(after_scheme..).unwrap_or("");
    match tail.find('/') {
        Some(i) => {
            let cut = after_scheme + i;
            let path = resource.get(cut..).unwrap_or("");
            let origin = resource.get(..cut).unwrap_or(resource);
            (origin, if path == "/" { "" } else { path })
        }
        None => (resource, ""),
    }
}
