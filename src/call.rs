//! [`ToolCall`]: one `tools/call` as the engine sees it.

use crate::policy::Scope;
use serde_json::Value;

/// One tool call to evaluate: the tool's name, who is calling, and its arguments.
///
/// A `ToolCall` borrows everything it holds; building one allocates nothing and it is
/// `Copy`. Identity ids are optional, but a limit scoped to an id the call lacks denies
/// the call. An empty id counts as missing.
///
/// ```
/// use mcp_policy::ToolCall;
/// use serde_json::json;
///
/// let args = json!({"ticket_id": 7, "status": "Open"});
/// let call = ToolCall::new("whmcs_update_ticket")
///     .grant("g1")
///     .session("s1")
///     .arguments(&args);
/// assert_eq!(call.name(), "whmcs_update_ticket");
/// assert_eq!(call.grant_id(), Some("g1"));
/// assert!(!call.is_approved());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolCall<'a> {
    kind: CallKind,
    name: &'a str,
    grant: Option<&'a str>,
    agent: Option<&'a str>,
    session: Option<&'a str>,
    arguments: Option<&'a Value>,
    approved: bool,
    approval: Option<&'a str>,
    scopes: Option<Scopes<'a>>,
}

/// What a call asks for: a tool run, a resource read, a prompt, or (from the server) a
/// request to the client. Each kind has its own rules in a policy (`tools`, `resources`,
/// `prompts`, `server_requests`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallKind {
    /// `tools/call`: the name is the tool's.
    #[default]
    Tool,
    /// `resources/read`, `resources/subscribe`: the name is the resource's URI.
    Resource,
    /// `prompts/get`: the name is the prompt's.
    Prompt,
    /// A request the server sends the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`): the name is its method, the arguments its
    /// `params`.
    ServerRequest,
}

impl CallKind {
    /// `"tool"`, `"resource"`, `"prompt"` or `"server_request"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Tool => "tool",
            CallKind::Resource => "resource",
            CallKind::Prompt => "prompt",
            CallKind::ServerRequest => "server_request",
        }
    }
}

/// The OAuth scopes a caller's token carries, borrowed from wherever the gateway keeps
/// them (`&["a", "b"]`, a `Vec<String>`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scopes<'a>(ScopeList<'a>);

#[derive(Debug, Clone, Copy, PartialEq)]
enum ScopeList<'a> {
    Strs(&'a [&'a str]),
    Strings(&'a [String]),
}

impl<'a> Scopes<'a> {
    /// Whether `scope` is among them.
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|own| own == scope)
    }

    /// Each scope, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> {
        let (strs, strings) = match self.0 {
            ScopeList::Strs(list) => (list, &[][..]),
            ScopeList::Strings(list) => (&[][..], list),
        };
        strs.iter()
            .copied()
            .chain(strings.iter().map(String::as_str))
    }
}

impl<'a> From<&'a [&'a str]> for Scopes<'a> {
    fn from(list: &'a [&'a str]) -> Scopes<'a> {
        Scopes(ScopeList::Strs(list))
    }
}

impl<'a, const N: usize> From<&'a [&'a str; N]> for Scopes<'a> {
    fn from(list: &'a [&'a str; N]) -> Scopes<'a> {
        Scopes(ScopeList::Strs(list))
    }
}

impl<'a> From<&'a [String]> for Scopes<'a> {
    fn from(list: &'a [String]) -> Scopes<'a> {
        Scopes(ScopeList::Strings(list))
    }
}

impl<'a> From<&'a Vec<String>> for Scopes<'a> {
    fn from(list: &'a Vec<String>) -> Scopes<'a> {
        Scopes(ScopeList::Strings(list))
    }
}

impl<'a> ToolCall<'a> {
    /// A call of the tool `name`, with no identity, no arguments, not approved.
    pub fn new(name: &'a str) -> ToolCall<'a> {
        ToolCall {
            kind: CallKind::Tool,
            name,
            grant: None,
            agent: None,
            session: None,
            arguments: None,
            approved: false,
            approval: None,
            scopes: None,
        }
    }

    /// A read (or subscription) of the resource at `uri`. The engine matches the URI in
    /// the form a server resolves it to, and refuses one it cannot read unambiguously
    /// (`invalid_uri`).
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "resources": {
    ///     "whmcs://desk/tickets/*": {}, "whmcs://desk/admin/*": {"action": "deny"}}}"#.parse()?;
    /// let engine = Engine::new(policy);
    /// assert!(engine.evaluate(&ToolCall::resource("whmcs://desk/tickets/7/a.pdf")).is_allowed());
    /// let sneaky = ToolCall::resource("WHMCS://Desk/tickets/../admin/users");
    /// assert_eq!(engine.evaluate(&sneaky).code(), "rule_denied");
    /// let encoded = ToolCall::resource("whmcs://desk/tickets/..%2Fadmin");
    /// assert_eq!(engine.evaluate(&encoded).code(), "invalid_uri");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn resource(uri: &'a str) -> ToolCall<'a> {
        ToolCall {
            kind: CallKind::Resource,
            ..ToolCall::new(uri)
        }
    }

    /// A `prompts/get` of the prompt `name`; its arguments are the prompt's.
    pub fn prompt(name: &'a str) -> ToolCall<'a> {
        ToolCall {
            kind: CallKind::Prompt,
            ..ToolCall::new(name)
        }
    }

    /// A request of `method` the server sends the client; its arguments are the request's
    /// `params`, and its ids those of the session it arrives in.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    /// use serde_json::json;
    ///
    /// let policy: Policy = r#"{"version": "1", "server_requests": {"sampling/createMessage": {
    ///     "deny_if": [{"path": "params.includeContext", "op": "eq", "value": "allServers"}]}}}"#
    ///     .parse()?;
    /// let engine = Engine::new(policy);
    /// let params = json!({"includeContext": "allServers", "maxTokens": 100});
    /// let call = ToolCall::server_request("sampling/createMessage").arguments(&params);
    /// assert_eq!(engine.evaluate(&call).code(), "deny_condition");
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn server_request(method: &'a str) -> ToolCall<'a> {
        ToolCall {
            kind: CallKind::ServerRequest,
            ..ToolCall::new(method)
        }
    }

    /// What the call asks for.
    pub fn kind(&self) -> CallKind {
        self.kind
    }

    /// Sets the grant id: the credential the agent calls with.
    pub fn grant(mut self, id: &'a str) -> ToolCall<'a> {
        self.grant = Some(id);
        self
    }

    /// Sets the agent id.
    pub fn agent(mut self, id: &'a str) -> ToolCall<'a> {
        self.agent = Some(id);
        self
    }

    /// Sets the session id.
    pub fn session(mut self, id: &'a str) -> ToolCall<'a> {
        self.session = Some(id);
        self
    }

    /// Sets whichever ids are given, for callers that hold them as options (a config, a
    /// log record); `None` leaves that id unset.
    ///
    /// ```
    /// use mcp_policy::ToolCall;
    ///
    /// let session: Option<String> = None;
    /// let call = ToolCall::new("t").ids(Some("g1"), None, session.as_deref());
    /// assert_eq!((call.grant_id(), call.agent_id(), call.session_id()), (Some("g1"), None, None));
    /// ```
    pub fn ids(
        mut self,
        grant: Option<&'a str>,
        agent: Option<&'a str>,
        session: Option<&'a str>,
    ) -> ToolCall<'a> {
        self.grant = grant.or(self.grant);
        self.agent = agent.or(self.agent);
        self.session = session.or(self.session);
        self
    }

    /// Sets the call's arguments when there are some; `None` leaves them unset.
    pub fn arguments_opt(mut self, arguments: Option<&'a Value>) -> ToolCall<'a> {
        self.arguments = arguments.or(self.arguments);
        self
    }

    /// Sets the call's arguments (normally a JSON object).
    pub fn arguments(mut self, arguments: &'a Value) -> ToolCall<'a> {
        self.arguments = Some(arguments);
        self
    }

    /// Marks whether a person approved this call. The gateway sets it when it re-submits
    /// a call that was answered with `RequireApproval`.
    pub fn approved(mut self, approved: bool) -> ToolCall<'a> {
        self.approved = approved;
        self
    }

    /// Marks the call approved by the approval `id` (such as the nonce of a sealed
    /// approval), which an `Allow` then names for the audit log.
    ///
    /// ```
    /// use mcp_policy::{Decision, Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {"t": {"action": "require_approval"}}}"#
    ///     .parse()?;
    /// let engine = Engine::new(policy);
    /// let decision = engine.evaluate(&ToolCall::new("t").approval("a1b2"));
    /// assert!(matches!(&decision, Decision::Allow { approval: Some(id), .. } if id == "a1b2"));
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn approval(mut self, id: &'a str) -> ToolCall<'a> {
        self.approved = true;
        self.approval = Some(id);
        self
    }

    /// Sets the OAuth scopes the caller's token carries. A rule with `scopes` refuses a
    /// call that lacks one of them, and a call whose scopes were never set, with
    /// `insufficient_scope`.
    ///
    /// ```
    /// use mcp_policy::{Engine, Policy, ToolCall};
    ///
    /// let policy: Policy = r#"{"version": "1", "tools": {
    ///     "whmcs_update_ticket": {"scopes": ["tickets:write"]}}}"#.parse()?;
    /// let engine = Engine::new(policy);
    /// let reader = ToolCall::new("whmcs_update_ticket").scopes(&["tickets:read"]);
    /// assert_eq!(engine.evaluate(&reader).code(), "insufficient_scope");
    /// let writer = ToolCall::new("whmcs_update_ticket").scopes(&["tickets:read", "tickets:write"]);
    /// assert!(engine.evaluate(&writer).is_allowed());
    /// # Ok::<(), mcp_policy::PolicyError>(())
    /// ```
    pub fn scopes(mut self, scopes: impl Into<Scopes<'a>>) -> ToolCall<'a> {
        self.scopes = Some(scopes.into());
        self
    }

    /// The caller's scopes, if they were set.
    pub fn granted_scopes(&self) -> Option<Scopes<'a>> {
        self.scopes
    }

    /// The tool's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The grant id, if set and not empty.
    pub fn grant_id(&self) -> Option<&'a str> {
        self.grant.filter(|id| !id.is_empty())
    }

    /// The agent id, if set and not empty.
    pub fn agent_id(&self) -> Option<&'a str> {
        self.agent.filter(|id| !id.is_empty())
    }

    /// The session id, if set and not empty.
    pub fn session_id(&self) -> Option<&'a str> {
        self.session.filter(|id| !id.is_empty())
    }

    /// The call's arguments, if any.
    pub fn args(&self) -> Option<&'a Value> {
        self.arguments
    }

    /// Whether a person approved the call.
    pub fn is_approved(&self) -> bool {
        self.approved
    }

    /// The approval that approved the call, if one was named.
    pub fn approval_id(&self) -> Option<&'a str> {
        self.approval
    }

    /// The id that keys a counter of `scope`: `""` for [`Scope::Global`], `None` when the
    /// call lacks that id.
    pub fn scope_id(&self, scope: Scope) -> Option<&'a str> {
        match scope {
            Scope::Grant => self.grant_id(),
            Scope::Session => self.session_id(),
            Scope::Agent => self.agent_id(),
            Scope::Global => Some(""),
        }
    }
}

/// One call written down: an owned [`ToolCall`], as policy test files, replayed logs and
/// call files hold it (`{"tool": "t", "args": {…}, "grant": "g1", "approved": true}`).
///
/// A resource read, a prompt or a server request names it in place of `tool`:
/// `{"resource": "whmcs://desk/tickets/7"}`, `{"prompt": "summarize", "args": {…}}`,
/// `{"server_request": "sampling/createMessage", "args": {…params}}`.
///
/// Every field but the name may be left out. Files that add fields of their own embed it
/// with `#[serde(flatten)]`; it does not refuse unknown fields itself, so such a file
/// checks them against [`CallRecord::FIELDS`] and its own.
///
/// ```
/// use mcp_policy::{CallRecord, Engine, Policy};
///
/// let record: CallRecord = serde_json::from_str(
///     r#"{"tool": "whmcs_update_ticket", "args": {"ticket_id": 7}, "grant": "g1"}"#,
/// )?;
/// let engine = Engine::new(r#"{"version": "1", "default": "allow"}"#.parse::<Policy>()?);
/// assert!(engine.evaluate(&record.call()).is_allowed());
/// assert_eq!(record.call().grant_id(), Some("g1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RecordFields", into = "RecordFields")]
pub struct CallRecord {
    /// What the call asks for.
    pub kind: CallKind,
    /// The tool's name (the resource's URI, the prompt's name, the server request's
    /// method, by `kind`).
    pub tool: String,
    /// The call's arguments (normally a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// The grant id: the credential the agent calls with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Whether a person approved the call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approved: bool,
    /// The OAuth scopes the caller's token carries; `None`: no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl CallRecord {
    /// The names of the fields a record reads.
    pub const FIELDS: &'static [&'static str] = &[
        "tool",
        "resource",
        "prompt",
        "server_request",
        "args",
        "grant",
        "agent",
        "session",
        "approved",
        "scopes",
    ];

    /// A record of a call of `tool`, with no identity, no arguments, not approved.
    ///
    /// ```
    /// use mcp_policy::CallRecord;
    ///
    /// let record = CallRecord::new("t");
    /// assert_eq!(serde_json::to_string(&record)?, r#"{"tool":"t"}"#);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn new(tool: impl Into<String>) -> CallRecord {
        CallRecord {
            tool: tool.into(),
            ..CallRecord::default()
        }
    }

    /// The call to evaluate, borrowing this record.
    ///
    /// ```
    /// use mcp_policy::CallRecord;
    ///
    /// let record = CallRecord { approved: true, ..CallRecord::new("t") };
    /// assert!(record.call().is_approved());
    /// ```
    pub fn call(&self) -> ToolCall<'_> {
        let call = ToolCall {
            kind: self.kind,
            ..ToolCall::new(&self.tool)
        };
        let call = call
            .arguments_opt(self.args.as_ref())
            .ids(
                self.grant.as_deref(),
                self.agent.as_deref(),
                self.session.as_deref(),
            )
            .approved(self.approved);
        match &self.scopes {
            Some(scopes) => call.scopes(scopes),
            None => call,
        }
    }
}

/// A call record as written: the name under the key of its kind.
#[derive(serde::Serialize, serde::Deserialize)]
struct RecordFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    server_request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
}

impl TryFrom<RecordFields> for CallRecord {
    type Error = String;

    fn try_from(fields: RecordFields) -> Result<CallRecord, String> {
        let named = [
            (CallKind::Tool, fields.tool),
            (CallKind::Resource, fields.resource),
            (CallKind::Prompt, fields.prompt),
            (CallKind::ServerRequest, fields.server_request),
        ];
        let mut names = named
            .into_iter()
            .filter_map(|(kind, name)| Some((kind, name?)));
        let (kind, tool) = names
            .next()
            .ok_or("missing field `tool` (or `resource`, `prompt`, `server_request`)")?;
        if names.next().is_some() {
            return Err(
                "a call names one of `tool`, `resource`, `prompt`, `server_request`".into(),
            );
        }
        Ok(CallRecord {
            kind,
            tool,
            args: fields.args,
            grant: fields.grant,
            agent: fields.agent,
            session: fields.session,
            approved: fields.approved,
            scopes: fields.scopes,
        })
    }
}

impl From<CallRecord> for RecordFields {
    fn from(record: CallRecord) -> RecordFields {
        let name = Some(record.tool);
        let (mut tool, mut resource, mut prompt, mut server_request) = (None, None, None, None);
        match record.kind {
            CallKind::Resource => resource = name,
            CallKind::Prompt => prompt = name,
            CallKind::ServerRequest => server_request = name,
            CallKind::Tool => tool = name,
        }
        RecordFields {
            tool,
            resource,
            prompt,
            server_request,
            args: record.args,
            grant: record.grant,
            agent: record.agent,
            session: record.session,
            approved: record.approved,
            scopes: record.scopes,
        }
    }
}
