//! Signing approvers in through the organisation's authorization server: the
//! authorization code grant with PKCE (S256), as a public client. The access token it
//! returns is checked by the gateway's own verifier (issuer, audience, signature, expiry),
//! and the approver is who its grant claim names.

use crate::gateway::issuer::IssuerHttp;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mcp_policy::http::oauth::Verifier;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a sign-in may take between the redirect and the callback.
const SIGN_IN_LIFE: Duration = Duration::from_secs(600);
/// The most sign-ins under way at once; the oldest are forgotten past it.
const MAX_UNDER_WAY: usize = 1024;

/// The console as an OAuth client of the gateway's authorization server.
pub struct ConsoleOAuth {
    client_id: String,
    redirect_uri: String,
    resource: String,
    verifier: Arc<Verifier>,
    http: IssuerHttp,
    /// `state` → the PKCE verifier of a sign-in under way.
    under_way: Mutex<HashMap<String, (String, Instant)>>,
}

fn random_b64() -> String {
    let mut bytes = [0u8; 32];
    let _ = getrandom::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

impl ConsoleOAuth {
    pub fn new(client_id: &str, base_url: &str, verifier: Arc<Verifier>) -> ConsoleOAuth {
        let config = verifier.config();
        ConsoleOAuth {
            client_id: client_id.to_owned(),
            redirect_uri: format!("{base_url}/login/callback"),
            resource: config.resource().to_owned(),
            http: IssuerHttp::new(config.issuer()),
            verifier,
            under_way: Mutex::new(HashMap::new()),
        }
    }

    /// Where to send the browser to sign in, and the `state` to remember in its cookie.
    pub async fn start(&self) -> Result<(String, String), String> {
        let endpoint = self.http.discover("authorization_endpoint").await?;
        let (state, pkce) = (random_b64(), random_b64());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pkce.as_bytes()));
        if let Ok(mut under_way) = self.under_way.lock() {
            under_way.retain(|_, (_, started)| started.elapsed() < SIGN_IN_LIFE);
            if under_way.len() >= MAX_UNDER_WAY {
                under_way.clear();
            }
            under_way.insert(state.clone(), (pkce, Instant::now()));
        }
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", &state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("resource", &self.resource)
            .finish();
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok((format!("{endpoint}{separator}{query}"), state))
    }

    /// Finishes a sign-in: `state` must be one this console started (and the browser's
    /// cookie's), the code is exchanged with its PKCE verifier, and the access token is
    /// verified. The approver's identity: the token's grant claim.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
    ) -> Result<String, String> {
        if cookie_state != Some(state) {
            return Err("the sign-in was not started in this browser; start again".into());
        }
        let pkce = self
            .under_way
            .lock()
            .ok()
            .and_then(|mut under_way| under_way.remove(state))
            .filter(|(_, started)| started.elapsed() < SIGN_IN_LIFE)
            .map(|(pkce, _)| pkce)
            .ok_or("the sign-in expired or was used already; start again")?;
        let endpoint = self.http.discover("token_endpoint").await?;
        let body = self
            .http
            .post_form(
                &endpoint,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &self.redirect_uri),
                    ("client_id", &self.client_id),
                    ("code_verifier", &pkce),
                    ("resource", &self.resource),
                ],
            )
            .await?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("the token endpoint's answer: {e}"))?;
        let token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or("the token endpoint gave no access_token")?;
        let verified = self
            .verifier
            .verify(token)
            .await
            .map_err(|e| format!("the access token was refused: {e}"))?;
        Ok(verified.grant().to_owned())
    }
}
