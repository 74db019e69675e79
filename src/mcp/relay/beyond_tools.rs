//! Requests beyond tools: the resources and prompts a client asks for, and the requests
//! a server sends the client. Each is decided by the policy's section for its kind before
//! the other side sees it; a refusal is a JSON-RPC error to whoever asked.

use super::jsonrpc::*;
use super::table::*;
use super::*;
use crate::call::CallKind;
use crate::decision::Decision;
use crate::mcp::{refusal_error, INVALID_PARAMS, INVALID_REQUEST};
use serde_json::{json, Map, Value};

/// The methods a server sends the client that `server_requests` governs, so that a case
/// variant of one is refused rather than relayed.
pub(super) const SERVER_REQUESTS: &[&str] =
    &["sampling/createMessage", "elicitation/create", "roots/list"];

impl Relay {
    /// Evaluates a `resources/read`, `resources/subscribe` or `prompts/get`; answers it
    /// here and returns `None` unless it may go to the server.
    pub(super) fn evaluate_other(
        &self,
        request: &Value,
        method: &str,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        let params = request.get("params").and_then(Value::as_object);
        let (member, members): (&str, &[&str]) = match method {
            "prompts/get" => ("name", &["name", "arguments"]),
            _ => ("uri", &["uri"]),
        };
        if let Some(why) = params.and_then(|p| case_variant_member(p, members)) {
            client_error(out, id, INVALID_PARAMS, &why);
            return None;
        }
        let Some(name) = params.and_then(|p| p.get(member)).and_then(Value::as_str) else {
            let why = format!("{method} needs \"params.{member}\" as a string");
            client_error(out, id, INVALID_PARAMS, &why);
            return None;
        };
        let call = match method {
            "prompts/get" => {
                let arguments = params.and_then(|p| p.get("arguments"));
                if arguments.is_some_and(|a| !a.is_object()) {
                    let why = "\"params.arguments\" must be an object when present";
                    client_error(out, id, INVALID_PARAMS, why);
                    return None;
                }
                ToolCall::prompt(name).arguments_opt(arguments)
            }
            _ => ToolCall::resource(name),
        };
        let call = Call::new(self.identified(call));
        if let Some(why) = call
            .args()
            .and_then(|a| self.case_variant_argument(a, "server"))
        {
            client_error(out, id, INVALID_PARAMS, &why);
            return None;
        }
        let decision = self.engine.evaluate(&call);
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(self.call_kind(decision, &call, id, revision, out));
        }
        self.refuse(id, &call, &decision, revision, out);
        None
    }

    /// Decides a request the server sends the client (`sampling/createMessage`,
    /// `elicitation/create`, `roots/list`, …) with the session's identity: `Some` with
    /// the error to answer the server when the policy refuses it (the client never sees
    /// it), `None` when it may be relayed.
    pub(super) fn refuse_server_request(
        &self,
        id: &Value,
        method: &str,
        params: Option<&Value>,
        out: &mut Output,
    ) -> Option<Value> {
        // A method, or a parameter, that a lenient client would read as one the policy
        // governs or reads is refused.
        let refused = match case_variant_method(method, SERVER_REQUESTS) {
            Some(why) => Some((INVALID_REQUEST, why)),
            None => params
                .and_then(|p| self.case_variant_argument(p, "client"))
                .map(|why| (INVALID_PARAMS, why)),
        };
        if let Some((code, why)) = refused {
            out.notes.push(format!("refused a server request: {why}"));
            return Some(crate::mcp::error_response(id, code, &why));
        }
        let call =
            Call::new(self.identified(ToolCall::server_request(method).arguments_opt(params)));
        let decision = self.engine.evaluate(&call);
        if decision.is_allowed() {
            if self
                .engine
                .policy()
                .section(CallKind::ServerRequest)
                .is_some()
            {
                self.record(id, &call, &decision, out);
            }
            return None;
        }
        out.notes.push(format!("server request: {decision}"));
        self.record(id, &call, &decision, out);
        refusal_error(id, &decision)
    }

    /// Checks the server's own requests inside a 2026-07-28 `input_required` result:
    /// `Some` with the refusal when the policy refuses any of them (the whole result is
    /// then withheld from the client).
    pub(super) fn refuse_input_requests(
        &self,
        client_id: &Value,
        result: &Value,
        out: &mut Output,
    ) -> Option<Value> {
        let requests = result.get("inputRequests").and_then(Value::as_object)?;
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or("");
            let id = json!(key);
            if let Some(refusal) =
                self.refuse_server_request(&id, method, request.get("params"), out)
            {
                let data = refusal
                    .pointer("/error/data")
                    .cloned()
                    .unwrap_or(Value::Null);
                let message = refusal
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("refused by the gateway's policy")
                    .to_owned();
                let mut error = Map::new();
                error.insert("code".into(), GATEWAY_ERROR.into());
                error.insert(
                    "message".into(),
                    format!("the MCP server asked the client for input the policy refuses ({key}): {message}").into(),
                );
                error.insert("data".into(), data);
                return Some(json!({"jsonrpc": "2.0", "id": client_id, "error": error}));
            }
        }
        None
    }

    /// The refusal of a call of `kind`: a tool's is a result with `isError`, the others'
    /// a JSON-RPC error.
    pub(super) fn refusal_for(
        kind: CallKind,
        id: &Value,
        decision: &Decision,
        revision: Revision,
        note: Option<&str>,
    ) -> Option<Value> {
        match kind {
            CallKind::Tool => crate::mcp::refusal_with_note(id, decision, revision, note),
            _ => refusal_error(id, decision),
        }
    }
}
