//! Approvals a person gives through the MCP client: the elicitation that asks, the sealed
//! `requestState` that carries the question to the client's retry (MCP 2026-07-28), and
//! reading the answer.
//!
//! A sealed state is `mcp-policy.1.` + base64url(JSON) + `.` + base64url(HMAC-SHA256 of
//! that JSON). It binds the tool, the SHA-256 of the arguments in canonical form (RFC 8785
//! with numbers exact: [`canonical_json`](super::canonical_json)),
//! the grant, agent and session ids, the rule key, an expiry and a 128-bit random nonce,
//! so an approval cannot be replayed for other arguments, another caller or after it
//! expired, and its nonce makes it usable once (see [`Engine::use_once`]).
//!
//! [`Engine::use_once`]: crate::Engine::use_once

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use std::fmt;

/// The prefix of every state this crate seals, which tells it from an upstream server's.
pub const STATE_PREFIX: &str = "mcp-policy.1.";

/// The key of the elicitation request and response an approval uses.
pub const APPROVAL_INPUT: &str = "approval";

/// The most characters of the arguments an approval message shows.
const MAX_MESSAGE_ARGS: usize = 1000;
/// The least of a value shown, however many arguments share the message.
const MIN_VALUE_CHARS: usize = 40;
/// The most of an argument's name shown.
const MAX_NAME_CHARS: usize = 200;

/// A secret key for sealing approval state: at least 32 bytes. Gateway replicas that
/// share approvals must share the key.
#[derive(Clone)]
pub struct ApprovalKey(Vec<u8>);

impl fmt::Debug for ApprovalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApprovalKey(…)")
    }
}

/// Why an approval key could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("approval key: {0}")]
pub struct ApprovalKeyError(String);

impl ApprovalKey {
    /// Reads a key written as at least 64 hexadecimal digits (32 bytes); whitespace around
    /// it is ignored.
    ///
    /// ```
    /// use mcp_policy::mcp::ApprovalKey;
    ///
    /// assert!(ApprovalKey::from_hex(&"ab".repeat(32)).is_ok());
    /// assert!(ApprovalKey::from_hex("abcd").is_err());
    /// ```
    ///
    /// # Errors
    /// Fewer than 64 digits, an odd count, or a character that is not hexadecimal.
    pub fn from_hex(text: &str) -> Result<ApprovalKey, ApprovalKeyError> {
        let text = text.trim();
        if text.len() < 64 || text.len() % 2 != 0 {
            return Err(ApprovalKeyError(format!(
                "expected at least 64 hexadecimal digits (32 bytes), in pairs; found {}",
                text.len()
            )));
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| {
                        ApprovalKeyError(format!("not a hexadecimal digit pair at offset {i}"))
                    })
            })
            .collect::<Result<Vec<u8>, _>>()?;
        Ok(ApprovalKey(bytes))
    }

    /// A new random 32-byte key from the operating system. Approvals sealed with it do not
    /// survive a restart, and no other replica can open them.
    ///
    /// # Errors
    /// The operating system's random source failed.
    pub fn generate() -> Result<ApprovalKey, ApprovalKeyError> {
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| ApprovalKeyError(format!("no random source: {e}")))?;
        Ok(ApprovalKey(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()))
    }
}

/// What an approval is for: the call it binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalBinding {
    /// The tool.
    pub tool: String,
    /// Lowercase hex SHA-256 of the arguments in RFC 8785 canonical form
    /// ([`arguments_sha256`](super::arguments_sha256)).
    pub args: String,
    /// The grant id, if any.
    pub grant: Option<String>,
    /// The agent id, if any.
    pub agent: Option<String>,
    /// The session id, if any.
    pub session: Option<String>,
    /// The key of the rule that asked for approval.
    pub rule: Option<String>,
}

/// The content of a sealed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedApproval {
    /// The call it binds.
    pub binding: ApprovalBinding,
    /// When it expires, in milliseconds of the gateway's clock.
    pub expires_ms: u64,
    /// 128 random bits, hex: recorded on use, so the approval works once.
    pub nonce: String,
    /// A continuation: the call was allowed (and charged) already, and the server asked
    /// for more input; its retry is forwarded without being evaluated or charged again.
    #[serde(default)]
    pub continuation: bool,
    /// The upstream server's own `requestState`, carried inside a continuation and given
    /// back to the server on the retry.
    #[serde(default)]
    pub inner: Option<String>,
    /// The approval console's approval this state waits on, when a console approver
    /// decides the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<String>,
}

/// Why a state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// Not a state this key sealed, or altered since.
    #[error("the approval state is not one this gateway sealed, or it was altered")]
    Forged,
    /// Past its expiry.
    #[error("the approval expired; ask again")]
    Expired,
    /// Sealed for another call (tool, arguments, identity or rule).
    #[error("the approval was given for another call ({0} differs); ask again")]
    Mismatch(&'static str),
    /// Used before.
    #[error("the approval was used already; ask again")]
    Reused,
    /// The random source failed while sealing.
    #[error("cannot seal an approval: {0}")]
    Random(String),
}

impl ApprovalKey {
    /// Seals `binding` for `ttl_ms` from `now_ms`, with a fresh nonce.
    ///
    /// ```
    /// use mcp_policy::mcp::{ApprovalBinding, ApprovalKey, ApprovalError};
    ///
    /// let key = ApprovalKey::generate()?;
    /// let binding = ApprovalBinding { tool: "t".into(), args: "00".into(), grant: None,
    ///     agent: None, session: None, rule: None };
    /// let state = key.seal(&binding, 1_000, 600_000)?;
    /// assert!(state.starts_with("mcp-policy.1."));
    /// assert_eq!(key.open(&state, 2_000)?.binding, binding);
    /// assert_eq!(key.open(&state, 700_000), Err(ApprovalError::Expired));
    /// let mut forged = state.clone();
    /// forged.pop();
    /// assert_eq!(key.open(&forged, 2_000), Err(ApprovalError::Forged));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`ApprovalError::Random`] if no nonce could be drawn.
    pub fn seal(
        &self,
        binding: &ApprovalBinding,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<String, ApprovalError> {
        self.seal_state(binding, now_ms, ttl_ms, false, None, None)
    }

    /// Seals `binding` as waiting on the approval console's approval `console` (its id),
    /// with a fresh nonce.
    ///
    /// # Errors
    /// [`ApprovalError::Random`] if no nonce could be drawn.
    pub fn seal_console(
        &self,
        binding: &ApprovalBinding,
        now_ms: u64,
        ttl_ms: u64,
        console: &str,
    ) -> Result<String, ApprovalError> {
        self.seal_state(
            binding,
            now_ms,
            ttl_ms,
            false,
            None,
            Some(console.to_owned()),
        )
    }

    /// Seals a continuation of an allowed call the server answered with
    /// `input_required`, carrying the server's own state (`inner`), with a fresh nonce.
    ///
    /// # Errors
    /// [`ApprovalError::Random`] if no nonce could be drawn.
    pub fn seal_continuation(
        &self,
        binding: &ApprovalBinding,
        now_ms: u64,
        ttl_ms: u64,
        inner: Option<String>,
    ) -> Result<String, ApprovalError> {
        self.seal_state(binding, now_ms, ttl_ms, true, inner, None)
    }

    fn seal_state(
        &self,
        binding: &ApprovalBinding,
        now_ms: u64,
        ttl_ms: u64,
        continuation: bool,
        inner: Option<String>,
        console: Option<String>,
    ) -> Result<String, ApprovalError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ApprovalError::Random(e.to_string()))?;
        let sealed = SealedApproval {
            binding: binding.clone(),
            expires_ms: now_ms.saturating_add(ttl_ms),
            nonce: hex::encode(nonce),
            continuation,
            inner,
            console,
        };
        let payload = serde_json::to_vec(&sealed).unwrap_or_default();
        let mut mac = self.mac();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        Ok(format!(
            "{STATE_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// Opens a state this key sealed, checking its integrity (in constant time) and
    /// expiry. The caller checks the binding and records the nonce.
    ///
    /// # Errors
    /// [`ApprovalError::Forged`] or [`ApprovalError::Expired`].
    pub fn open(&self, state: &str, now_ms: u64) -> Result<SealedApproval, ApprovalError> {
        let body = state
            .strip_prefix(STATE_PREFIX)
            .ok_or(ApprovalError::Forged)?;
        let (payload, tag) = body.split_once('.').ok_or(ApprovalError::Forged)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ApprovalError::Forged)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApprovalError::Forged)?;
        let mut mac = self.mac();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| ApprovalError::Forged)?;
        let sealed: SealedApproval =
            serde_json::from_slice(&payload).map_err(|_| ApprovalError::Forged)?;
        if now_ms >= sealed.expires_ms {
            return Err(ApprovalError::Expired);
        }
        Ok(sealed)
    }
}

impl SealedApproval {
    /// Checks that the approval is for `binding`.
    ///
    /// # Errors
    /// [`ApprovalError::Mismatch`] naming the first part that differs.
    pub fn check(&self, binding: &ApprovalBinding) -> Result<(), ApprovalError> {
        let ours = &self.binding;
        let differs = if ours.tool != binding.tool {
            "the tool"
        } else if ours.args != binding.args {
            "the arguments"
        } else if (&ours.grant, &ours.agent, &ours.session)
            != (&binding.grant, &binding.agent, &binding.session)
        {
            "the caller"
        } else if ours.rule != binding.rule {
            "the policy rule"
        } else {
            return Ok(());
        };
        Err(ApprovalError::Mismatch(differs))
    }
}

/// The `elicitation/create` params that ask a person to approve a call: a form with one
/// boolean `approve`, and a message naming the tool, the reason and the arguments.
///
/// Every top-level argument is shown by name, one line each, whatever the others hold:
/// each value (compact JSON) is cut on its own, to a share of about 1 000 characters, so
/// a padded argument cannot push `bcc` out of view. Control characters, bidirectional
/// overrides and invisible characters are shown escaped (`\u{202e}`), in names and
/// values, so what the person reads is what the server gets.
///
/// ```
/// use mcp_policy::mcp::approval_request;
/// use serde_json::json;
///
/// let params = approval_request("whmcs_send_email", "emails are reviewed",
///     Some(&json!({"body": "x".repeat(5000), "to": "a@b.test", "bcc": "all@evil.test"})));
/// assert_eq!(params["mode"], "form");
/// assert_eq!(params["requestedSchema"]["required"], json!(["approve"]));
/// let message = params["message"].as_str().unwrap();
/// assert!(message.contains("whmcs_send_email") && message.contains("emails are reviewed"));
/// assert!(message.contains(r#""bcc": "all@evil.test""#) && message.contains(r#""to": "a@b.test""#));
/// assert!(message.len() < 2000);
///
/// let hidden = approval_request("t", "r", Some(&json!({"name": "invoice\u{202e}fdp.exe"})));
/// assert!(hidden["message"].as_str().unwrap().contains(r"invoice\u{202e}fdp.exe"));
/// ```
pub fn approval_request(tool: &str, reason: &str, arguments: Option<&Value>) -> Value {
    json!({
        "mode": "form",
        "message": format!(
            "An AI agent wants to call the tool {}, which needs a person's approval: \
             {}.\nArguments:\n{}Approve this call?",
            shown(&Value::from(tool).to_string()),
            shown(reason),
            shown_arguments(arguments)
        ),
        "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": "Approve this call",
                "description": "Run the tool with exactly these arguments, once."}},
            "required": ["approve"],
        },
    })
}

/// One line per argument, `  "name": value`, each value cut to its share.
fn shown_arguments(arguments: Option<&Value>) -> String {
    let Some(Value::Object(map)) = arguments else {
        return "  (none)\n".to_owned();
    };
    if map.is_empty() {
        return "  (none)\n".to_owned();
    }
    let share = (MAX_MESSAGE_ARGS / map.len()).max(MIN_VALUE_CHARS);
    let mut lines = String::new();
    for (name, value) in map {
        lines.push_str("  ");
        lines.push_str(&cut(
            &shown(&Value::from(name.as_str()).to_string()),
            MAX_NAME_CHARS,
        ));
        lines.push_str(": ");
        lines.push_str(&cut(&shown(&value.to_string()), share));
        lines.push('\n');
    }
    lines
}

/// `text` cut to `max` characters, saying how much was left out.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!(
            "{}… ({} more characters not shown)",
            text.get(..end).unwrap_or_default(),
            text.chars().count() - max
        ),
    }
}

/// `text` with the characters a person cannot see, or that reorder what they see,
/// written as `\u{…}` escapes.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_deceptive(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters, bidirectional marks, overrides and isolates, invisible
/// separators and joiners, line and paragraph separators.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{00ad}' | '\u{180e}')
}

/// The `elicitation/create` params of an approval decided on the approval console: a
/// URL-mode elicitation (MCP 2025-11-25 and later) pointing the client's user at the
/// console's page of the approval `id`.
///
/// ```
/// let params = mcp_policy::mcp::console_request("whmcs_add_credit", "credits need review",
///     "0a1b", "https://approvals.example/approvals/0a1b");
/// assert_eq!(params["mode"], "url");
/// assert_eq!(params["elicitationId"], "0a1b");
/// assert_eq!(params["url"], "https://approvals.example/approvals/0a1b");
/// ```
pub fn console_request(tool: &str, reason: &str, id: &str, url: &str) -> Value {
    json!({
        "mode": "url",
        "elicitationId": id,
        "url": url,
        "message": format!(
            "The tool {} needs the approval of a person on the approval console: {}. \
             The call runs once they approve it; the page shows its state.",
            shown(&Value::from(tool).to_string()),
            shown(reason),
        ),
    })
}

/// Which elicitation modes a client declared (`capabilities.elicitation` in
/// `initialize`, or the `clientCapabilities` of an MCP 2026-07-28 request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientElicitation {
    /// Forms (`elicitation: {}` declares forms alone).
    pub form: bool,
    /// URL mode: the client shows its user a page to visit.
    pub url: bool,
}

impl ClientElicitation {
    /// Reads a declared `elicitation` capability (`None` when absent).
    ///
    /// ```
    /// use mcp_policy::mcp::ClientElicitation;
    /// use serde_json::json;
    ///
    /// let old = ClientElicitation::of(Some(&json!({})));
    /// assert!(old.form && !old.url);
    /// let both = ClientElicitation::of(Some(&json!({"form": {}, "url": {}})));
    /// assert!(both.form && both.url);
    /// let url = ClientElicitation::of(Some(&json!({"url": {}})));
    /// assert!(!url.form && url.url);
    /// assert_eq!(ClientElicitation::of(None), ClientElicitation::default());
    /// ```
    pub fn of(capability: Option<&Value>) -> ClientElicitation {
        let Some(capability) = capability else {
            return ClientElicitation::default();
        };
        let (form, url) = (capability.get("form"), capability.get("url"));
        ClientElicitation {
            // Before URL mode existed, an empty object meant forms.
            form: form.is_some() || url.is_none(),
            url: url.is_some(),
        }
    }

    /// Whether the client can be asked anything.
    pub fn any(self) -> bool {
        self.form || self.url
    }
}

/// What a person answered to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalAnswer {
    /// `{"action": "accept", "content": {"approve": true}}`.
    Approved,
    /// Anything else: declined, cancelled, `approve: false`, or malformed.
    Declined,
}

impl ApprovalAnswer {
    /// Reads an elicitation result (`ElicitResult`). Only an explicit accept with
    /// `approve: true` approves.
    ///
    /// ```
    /// use mcp_policy::mcp::ApprovalAnswer;
    /// use serde_json::json;
    ///
    /// let yes = json!({"action": "accept", "content": {"approve": true}});
    /// assert_eq!(ApprovalAnswer::of(&yes), ApprovalAnswer::Approved);
    /// for no in [json!({"action": "decline"}), json!({"action": "cancel"}),
    ///            json!({"action": "accept", "content": {"approve": "yes"}})] {
    ///     assert_eq!(ApprovalAnswer::of(&no), ApprovalAnswer::Declined);
    /// }
    /// ```
    pub fn of(result: &Value) -> ApprovalAnswer {
        let accepted = result.get("action").and_then(Value::as_str) == Some("accept");
        let approve = result.pointer("/content/approve") == Some(&Value::Bool(true));
        if accepted && approve {
            ApprovalAnswer::Approved
        } else {
            ApprovalAnswer::Declined
        }
    }
}
