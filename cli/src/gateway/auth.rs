//! Who is calling the HTTP gateway: a bearer token from the tokens file (its SHA-256
//! names a grant), or an access token of the organisation's authorization server
//! (`--oauth-issuer`), checked by the library's verifier. One answer either way: the
//! caller's identity and the owner its sessions are bound to, or the 401 to send.

use crate::files::read_text;
use crate::Failure;
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};
use mcp_policy::http::oauth::{bearer_token, unauthorized, Verifier};
use mcp_policy::http::{Challenge, Identity, PolicyBody};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

/// One entry of the tokens file: the token's SHA-256 and whom it names.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    sha256: String,
    grant: String,
    agent: Option<String>,
}

impl TokenEntry {
    /// The grant the token names.
    pub fn grant(&self) -> &str {
        &self.grant
    }
}

/// Bearer token digests → identities.
pub type Tokens = HashMap<String, TokenEntry>;

/// Reads a tokens file: `{"tokens": [{"sha256": HEX, "grant": ID, "agent"?: ID}]}`.
pub fn load_tokens(path: &Path) -> Result<Tokens, String> {
    let text = read_text(path).map_err(|e| match e {
        Failure::Usage(m) | Failure::Checked(m) => m,
    })?;
    let file: TokenFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tokens = Tokens::new();
    for (i, entry) in file.tokens.into_iter().enumerate() {
        let Some(digest) = token_digest(&entry.sha256) else {
            return Err(format!(
                "{}: tokens[{i}].sha256 must be 64 hexadecimal digits (the SHA-256 of the token)",
                path.display()
            ));
        };
        tokens.insert(digest, entry);
    }
    Ok(tokens)
}

/// A token's SHA-256 as a tokens or approvers file writes it: 64 hexadecimal digits,
/// lowercased; `None` if it is not one.
pub fn token_digest(text: &str) -> Option<String> {
    let digest = text.to_ascii_lowercase();
    (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

/// A caller the gateway knows.
pub struct Caller {
    /// The identity the policy decides with (the session is set by the caller of
    /// [`Auth::authenticate`]).
    pub identity: Identity,
    /// Who a session this caller creates belongs to: the token's digest, or the
    /// OAuth grant (access tokens are renewed; their subject stays).
    pub owner: String,
}

/// The gateway's credentials: a tokens file, an authorization server, or both.
pub struct Auth {
    tokens: RwLock<Tokens>,
    oauth: Option<std::sync::Arc<Verifier>>,
}

impl Auth {
    pub fn new(tokens: Tokens, oauth: Option<std::sync::Arc<Verifier>>) -> Auth {
        Auth {
            tokens: RwLock::new(tokens),
            oauth,
        }
    }

    pub fn oauth(&self) -> Option<&Verifier> {
        self.oauth.as_deref()
    }

    pub fn replace_tokens(&self, tokens: Tokens) {
        if let Ok(mut current) = self.tokens.write() {
            *current = tokens;
        }
    }

    /// The caller of a request with these headers, or the 401 to answer. A bearer value
    /// shaped like a JWT is checked as an access token when an issuer is configured; any
    /// other against the tokens file. Why a token was refused goes to stderr only.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Response<PolicyBody>> {
        let token = bearer_token(headers);
        if let (Some(verifier), Some(token)) = (&self.oauth, &token) {
            if token.split('.').count() == 3 {
                return match verifier.verify(token).await {
                    Ok(verified) => Ok(Caller {
                        identity: Identity {
                            grant: Some(verified.grant().to_owned()),
                            agent: verified.agent().map(str::to_owned),
                            session: None,
                            scopes: Some(verified.scopes().to_vec()),
                        },
                        owner: format!("oauth:{}", verified.grant()),
                    }),
                    Err(why) => {
                        eprintln!("mcp-policy gateway: access token refused: {why}");
                        Err(self.refusal(Challenge::InvalidToken))
                    }
                };
            }
        }
        let digest = token.map(|token| hex::encode(Sha256::digest(token.as_bytes())));
        let entry = digest.as_ref().and_then(|d| {
            self.tokens
                .read()
                .ok()
                .and_then(|tokens| tokens.get(d).cloned())
        });
        match (digest, entry) {
            (Some(digest), Some(entry)) => Ok(Caller {
                identity: Identity {
                    grant: Some(entry.grant),
                    agent: entry.agent,
                    session: None,
                    scopes: None,
                },
                owner: digest,
            }),
            (Some(_), None) => Err(self.refusal(Challenge::InvalidToken)),
            (None, _) => Err(self.refusal(Challenge::LogIn)),
        }
    }

    /// 401: with an issuer, the challenge MCP clients follow to its metadata.
    fn refusal(&self, challenge: Challenge<'_>) -> Response<PolicyBody> {
        if let Some(verifier) = &self.oauth {
            return unauthorized(challenge, &verifier.config().metadata_url());
        }
        let mut response =
            super::http::plain(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mcp\""),
        );
        response
    }
}
