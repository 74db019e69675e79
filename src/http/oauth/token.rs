//! [`Verifier`]: one bearer token checked against the issuer's keys and this resource.

use super::config::OAuthConfig;
use super::keys::{JwksSource, KeyCache, Why};
use crate::clock::{Clock, SystemClock, Timestamp};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use std::sync::Arc;

/// The four signature algorithms a token may use (RFC 8725: never `none`, never an HMAC,
/// whose secret would be the public key).
const ACCEPTED: [(Algorithm, &str); 4] = [
    (Algorithm::RS256, "RS256"),
    (Algorithm::PS256, "PS256"),
    (Algorithm::ES256, "ES256"),
    (Algorithm::EdDSA, "EdDSA"),
];

/// Why a token was refused: for the operator's log and the audit record, never for the
/// client, which gets the same challenge whatever failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the bound (16 KiB): refused unread.
    #[error("the token is longer than {0} bytes")]
    TooLarge(usize),
    /// Not three base64url parts of JSON.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// Signed with an algorithm other than RS256, PS256, ES256, EdDSA (`none`, HS256…).
    #[error("the token's algorithm {0} is not accepted (RS256, PS256, ES256 or EdDSA)")]
    Algorithm(String),
    /// No key of the issuer's (after a fetch, when one was allowed) fits the token's `kid`
    /// and `alg`.
    #[error("no key of the issuer fits the token (kid {0:?})")]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is missing or not the issuer.
    #[error("the token's issuer is not the configured issuer")]
    Issuer,
    /// `aud` is missing or holds neither the resource nor an accepted audience.
    #[error("the token is not for this resource (aud)")]
    Audience,
    /// `exp` has passed (beyond the leeway).
    #[error("the token expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    #[error("the token is not valid yet (nbf or iat in the future)")]
    NotYetValid,
    /// A claim the gateway needs is missing or not of the right type.
    #[error("the token lacks the claim {0:?}, or it has the wrong type")]
    Claim(String),
}

/// A verified token: who is calling, and with which scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    grant: String,
    agent: Option<String>,
    scopes: Vec<String>,
}

impl Verified {
    /// The grant: the configured claim (default `sub`).
    pub fn grant(&self) -> &str {
        &self.grant
    }

    /// The agent: the configured claim, else `client_id`, else `azp`.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The token's scopes: its `scope` (space-separated) or `scp` (an array).
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

/// Checks bearer tokens for one resource; keeps the issuer's keys.
///
/// ```
/// use mcp_policy::http::oauth::{JwksDocument, JwksSource, OAuthConfig, TokenError, Verifier};
/// use std::future::Future;
/// use std::pin::Pin;
///
/// struct NoKeys;
/// impl JwksSource for NoKeys {
///     fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<JwksDocument, String>> + Send + '_>> {
///         Box::pin(async { Err("the issuer is down".to_owned()) })
///     }
/// }
/// let verifier = Verifier::new(OAuthConfig::new("https://auth.example.com", "https://mcp.example.com/mcp"), NoKeys);
/// // `alg: none` never verifies, keys or not.
/// let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
/// let refused = futures_executor_block_on(verifier.verify(none));
/// assert!(matches!(refused, Err(TokenError::Algorithm(_) | TokenError::Malformed)));
/// # fn futures_executor_block_on<F: Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
pub struct Verifier {
    config: Arc<OAuthConfig>,
    keys: KeyCache,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier for `config`'s issuer and resource, with keys from `source`, on the
    /// system clock. It holds no keys until [`load_keys`](Self::load_keys) (or the first
    /// token) fetches them; until then every token is refused.
    pub fn new(config: OAuthConfig, source: impl JwksSource) -> Verifier {
        Verifier {
            config: Arc::new(config),
            keys: KeyCache::new(source),
            clock: Arc::new(SystemClock::new()),
        }
    }

    /// Uses `clock` for `exp`, `nbf`, `iat` and the key cache's ages.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Verifier {
        self.clock = Arc::new(clock);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Fetches the issuer's keys now (at start); how many usable keys it published.
    ///
    /// # Errors
    /// Why the fetch failed; the verifier then refuses tokens until a later fetch works.
    pub async fn load_keys(&self) -> Result<usize, String> {
        self.keys.refresh(self.clock.now(), Why::Start).await?;
        Ok(self.keys.keys().len())
    }

    /// Checks `token` (the bearer value, without `Bearer `).
    ///
    /// # Errors
    /// Why it was refused: [`TokenError`].
    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let config = &self.config;
        if token.len() > config.max_token {
            return Err(TokenError::TooLarge(config.max_token));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // `none` and names jsonwebtoken does not know fail to parse: say which.
            match algorithm_named(token) {
                Some(alg) => TokenError::Algorithm(alg),
                None => TokenError::Malformed,
            }
        })?;
        let Some(&(alg, name)) = ACCEPTED.iter().find(|(alg, _)| *alg == header.alg) else {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        };
        let now = self.clock.now();
        if self.keys.is_stale(now) {
            // Fetched again when its max-age passed; a failure keeps the keys in use.
            let _ = self.keys.refresh(now, Why::Stale).await;
        }
        let kid = header.kid.as_deref();
        let mut keys = self.keys.keys();
        if keys.candidates(kid, alg, name).next().is_none() {
            // A key not yet seen: the issuer may have rotated.
            let _ = self.keys.refresh(now, Why::UnknownKey).await;
            keys = self.keys.keys();
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&config.issuer]);
        let mut audiences = vec![config.resource.clone()];
        audiences.extend(config.audiences.iter().cloned());
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Times are checked below, on the verifier's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut outcome = Err(TokenError::UnknownKey(header.kid.clone()));
        for key in keys.candidates(kid, alg, name) {
            outcome = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
                .map(|data| data.claims)
                .map_err(|e| refusal(e.kind()));
            if !matches!(outcome, Err(TokenError::Signature)) {
                break;
            }
        }
        let claims = outcome?;
        self.check_times(&claims, now)?;
        self.identity(&claims)
    }

    fn check_times(&self, claims: &Value, now: Timestamp) -> Result<(), TokenError> {
        let leeway = self.config.leeway.as_secs();
        let now = now.as_nanos() / 1_000_000_000;
        let seconds = |name: &str| -> Result<Option<u64>, TokenError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => value
                    .as_u64()
                    .or_else(|| value.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| TokenError::Claim(name.to_owned())),
            }
        };
        let exp = seconds("exp")?.ok_or_else(|| TokenError::Claim("exp".to_owned()))?;
        if exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        for name in ["nbf", "iat"] {
            if seconds(name)?.is_some_and(|at| at > now.saturating_add(leeway)) {
                return Err(TokenError::NotYetValid);
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &Value) -> Result<Verified, TokenError> {
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let grant = text(&self.config.grant_claim)
            .ok_or_else(|| TokenError::Claim(self.config.grant_claim.clone()))?;
        let agent = match &self.config.agent_claim {
            Some(claim) => text(claim),
            None => text("client_id").or_else(|| text("azp")),
        };
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(scope)), _) => {
                scope.split_ascii_whitespace().map(str::to_owned).collect()
            }
            (None, Some(Value::Array(scp))) => scp
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::Claim("scp".to_owned()))?,
            (None, Some(Value::String(scp))) => {
                scp.split_ascii_whitespace().map(str::to_owned).collect()
            }
            (None, None) => Vec::new(),
            _ => return Err(TokenError::Claim("scope".to_owned())),
        };
        Ok(Verified {
            grant: grant.to_owned(),
            agent: agent.map(str::to_owned),
            scopes,
        })
    }
}

fn refusal(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => TokenError::Issuer,
            "aud" => TokenError::Audience,
            other => TokenError::Claim(other.to_owned()),
        },
        ErrorKind::InvalidClaimFormat(claim) => TokenError::Claim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            TokenError::Algorithm("mismatched".to_owned())
        }
        ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => TokenError::Malformed,
        _ => TokenError::Signature,
    }
}

/// The `alg` a header names, for the log, when it is not one jsonwebtoken knows (`none`).
fn algorithm_named(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|h| {
            h.get("alg")
                .and_then(Value::as_str)
                .map(|a| a.chars().take(16).collect())
        })
}
