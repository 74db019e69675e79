//! `WWW-Authenticate: Bearer …` challenges (RFC 6750 §3, RFC 9728 §5.1): one writer for
//! the 401s of token checks and the 403 of a step-up.

use http::HeaderValue;

/// What a challenge asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge<'s> {
    /// No token was sent: log in (no `error`, RFC 6750 §3.1).
    LogIn,
    /// The token was refused, whatever the reason (`error="invalid_token"`).
    InvalidToken,
    /// The token lacks scopes: ask for these (`error="insufficient_scope"`, `scope`).
    InsufficientScope(&'s str),
}

/// The `WWW-Authenticate` value of `challenge`, naming the protected resource metadata
/// when there is one. `None` only if a scope holds characters a header cannot carry.
///
/// ```
/// use mcp_policy::http::{bearer_challenge, Challenge};
///
/// let value = bearer_challenge(
///     Challenge::InsufficientScope("tickets:write tickets:read"),
///     Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp"),
/// ).unwrap();
/// assert_eq!(
///     value.to_str().unwrap(),
///     "Bearer error=\"insufficient_scope\", scope=\"tickets:write tickets:read\", \
///      resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
/// );
/// ```
pub fn bearer_challenge(
    challenge: Challenge<'_>,
    metadata_url: Option<&str>,
) -> Option<HeaderValue> {
    let mut parts = Vec::new();
    match challenge {
        Challenge::LogIn => {}
        Challenge::InvalidToken => parts.push("error=\"invalid_token\"".to_owned()),
        Challenge::InsufficientScope(scope) => {
            parts.push("error=\"insufficient_scope\"".to_owned());
            parts.push(format!("scope=\"{}\"", quoted(scope)?));
        }
    }
    if let Some(url) = metadata_url {
        parts.push(format!("resource_metadata=\"{}\"", quoted(url)?));
    }
    let value = match parts.is_empty() {
        true => "Bearer".to_owned(),
        false => format!("Bearer {}", parts.join(", ")),
    };
    HeaderValue::from_str(&value).ok()
}

/// `text` as the inside of a quoted-string: no quotes, backslashes or control characters
/// (scope tokens and URLs never need them).
fn quoted(text: &str) -> Option<&str> {
    (!text
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control()))
    .then_some(text)
}
