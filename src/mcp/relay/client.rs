//! Messages from the client: requests evaluated against the policy, refusals, audit
//! records, notifications and answers to the server's requests.

use super::approvals::*;
use super::call::Call;
use super::console::Asked;
use super::jsonrpc::*;
use super::table::*;
use super::trace::*;
use super::*;
use crate::audit::AuditRecord;
use crate::decision::Decision;
use crate::mcp::{
    tool_call, ClientElicitation, Revision, SealedApproval, INVALID_PARAMS, INVALID_REQUEST,
};
use serde_json::{json, Map, Value};

impl Relay {
    pub(super) fn client_message(&self, message: Value, out: &mut Output) {
        // The request's W3C trace context, carried into the span of everything it causes.
        #[cfg(feature = "tracing")]
        let _span = {
            let text = |path: &[&str]| {
                crate::json::at(&message, path)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            };
            tracing::info_span!(
                "mcp_policy.request",
                method = text(&["method"]),
                traceparent = text(&["params", "_meta", "traceparent"]),
                tracestate = text(&["params", "_meta", "tracestate"]),
            )
            .entered()
        };
        let Value::Object(mut map) = message else {
            let why = if message.is_array() {
                "batches (JSON arrays) are not accepted: send each message on its own"
            } else {
                "a JSON-RPC message is a JSON object"
            };
            return client_error(out, &Value::Null, INVALID_REQUEST, why);
        };
        // The id to answer with, if the message has a usable one.
        let id = match map.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
            Some(_) => {
                return client_error(
                    out,
                    &Value::Null,
                    INVALID_REQUEST,
                    "\"id\" must be a string or a number",
                )
            }
        };
        let answer_id = id.clone().unwrap_or(Value::Null);
        if let Err(why) = check_envelope(&map) {
            return client_error(out, &answer_id, INVALID_REQUEST, &why);
        }
        let method = match map.remove("method") {
            Some(Value::String(method)) => method,
            Some(_) => {
                return client_error(
                    out,
                    &answer_id,
                    INVALID_REQUEST,
                    "\"method\" must be a string",
                )
            }
            None => return self.client_response(map, id, out),
        };
        if let Some(why) = case_variant_method(&method, INTERPRETED_METHODS) {
            return client_error(out, &answer_id, INVALID_REQUEST, &why);
        }
        let params = map.remove("params");
        if matches!(&params, Some(p) if !p.is_object() && !p.is_array()) {
            return client_error(
                out,
                &answer_id,
                INVALID_REQUEST,
                "\"params\" must be an object or an array",
            );
        }
        let Some(id) = id else {
            return self.client_notification(method, params, out);
        };
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let (Some(params), Some(request)) = (params, request.as_object_mut()) {
            request.insert("params".into(), params);
        }
        let revision = self.revision_of(&request);
        let kind = match method.as_str() {
            "tools/call" => match self.evaluate(&mut request, &id, revision, out) {
                Some(kind) => kind,
                None => return,
            },
            "tools/list" => Kind::ToolsList,
            "resources/read" | "resources/subscribe" | "prompts/get" => {
                match self.evaluate_other(&request, &method, &id, revision, out) {
                    Some(kind) => kind,
                    None => return,
                }
            }
            listing if crate::mcp::lists::Listing::of(listing).is_some() => {
                match crate::mcp::lists::Listing::of(listing) {
                    Some(listing) => Kind::Listing(listing),
                    None => Kind::Other,
                }
            }
            "initialize" => {
                let elicits = ClientElicitation::of(crate::json::at(
                    &request,
                    &["params", "capabilities", "elicitation"],
                ));
                self.state.lock().client_elicits = elicits;
                Kind::Initialize
            }
            _ => Kind::Other,
        };
        self.forward(request, id, kind, revision, out);
    }

    /// Evaluates a `tools/call` request; answers it here and returns `None` unless it may
    /// go to the server. A retry carrying this relay's sealed state has it checked and
    /// removed from `request` (a continuation's server state put back) before it is
    /// forwarded.
    pub(super) fn evaluate(
        &self,
        request: &mut Value,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        if let Some(Value::Object(params)) = request.get("params") {
            if let Some(why) = case_variant_member(params, CALL_PARAMS) {
                client_error(out, id, INVALID_PARAMS, &why);
                return None;
            }
        }
        let retry = match self.take_state(request) {
            None => None,
            Some(state) => match self.open_state(&state) {
                Ok(sealed) if sealed.continuation => {
                    return self.continuation(request, sealed, id, revision, out);
                }
                Ok(sealed) => Some((Ok(sealed), take_approval_answer(request))),
                Err(e) => Some((Err(e), None)),
            },
        };
        // What this client can be asked: on 2026-07-28, what the request declares; on
        // older revisions, what `initialize` did (asked by a request, the call held).
        let elicits = if revision.requires_result_type() {
            ClientElicitation::of(
                crate::json::at(request, &["params", "_meta"])
                    .and_then(|meta| meta.get(CLIENT_CAPABILITIES_META))
                    .and_then(|caps| caps.get("elicitation")),
            )
        } else {
            self.state.lock().client_elicits
        };
        let call = self.checked_call(request, id, out)?;
        if let Some((sealed, answer)) = retry {
            if let Ok(
                opened @ SealedApproval {
                    console: Some(_), ..
                },
            ) = &sealed
            {
                return self.console_retry(call, opened, answer.as_ref(), id, revision, out);
            }
            let decision =
                self.approved_retry(&call, sealed, answer.as_ref(), id, revision, out)?;
            return Some(self.call_kind(decision, &call, id, revision, out));
        }
        let decision = self.engine.evaluate(&call);
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(self.call_kind(decision, &call, id, revision, out));
        }
        if let (Decision::RequireApproval { .. }, Some(approvals)) = (&decision, &self.approvals) {
            let asked = Asked {
                call,
                decision,
                request: &*request,
                id,
                revision,
                elicits,
            };
            return self.ask_for_approval(approvals, asked, out);
        }
        self.refuse(id, &call, &decision, revision, out);
        None
    }

    /// The call a `tools/call` request makes, with the relay's identity; `None` after
    /// answering a request that is malformed, or that arrives once the server is gone.
    pub(super) fn checked_call<'r>(
        &'r self,
        request: &'r Value,
        id: &Value,
        out: &mut Output,
    ) -> Option<Call<'r>> {
        let call = match tool_call(request) {
            Ok(call) => call,
            Err(e) => {
                client_error(out, id, e.code(), &e.to_string());
                return None;
            }
        };
        if let Some(why) = call
            .args()
            .and_then(|a| self.case_variant_argument(a, "server"))
        {
            client_error(out, id, INVALID_PARAMS, &why);
            return None;
        }
        if self.state.lock().server_gone {
            client_error(out, id, GATEWAY_ERROR, "the MCP server has exited");
            return None;
        }
        Some(Call::new(self.identified(call)))
    }

    /// Why `args` is refused when a name in it differs only in case from one the policy
    /// reads: a `peer` that ignores case would act on a value the policy never saw.
    pub(super) fn case_variant_argument(&self, args: &Value, peer: &str) -> Option<String> {
        let variant = self.engine.policy().case_variant_argument(args)?;
        let exact = variant.expected;
        Some(format!(
            "argument {} is spelled \"{exact}\" in the policy; argument names are \
             case-sensitive, and a {peer} that ignores case would read it as \"{exact}\"",
            json!(variant.found)
        ))
    }

    /// `call` with the caller's identity: ids and scopes.
    pub(super) fn identified<'c>(&'c self, call: ToolCall<'c>) -> ToolCall<'c> {
        let call = call.ids(
            self.grant.as_deref(),
            self.agent.as_deref(),
            self.session.as_deref(),
        );
        match &self.scopes {
            Some(scopes) => call.scopes(scopes),
            None => call,
        }
    }

    /// Answers a refused call with its refusal.
    pub(super) fn refuse(
        &self,
        id: &Value,
        call: &Call<'_>,
        decision: &Decision,
        revision: Revision,
        out: &mut Output,
    ) {
        let cannot_ask =
            self.approvals.is_some() && matches!(decision, Decision::RequireApproval { .. });
        let note = cannot_ask.then_some(
            "This client cannot show approval requests (it declared no elicitation \
             capability), so the call cannot be approved from here.",
        );
        self.refuse_with_note(id, call, decision, revision, note, out);
    }

    /// Refuses `call` for a reason of the gateway's own, outside the policy's steps (an
    /// approval declined, invalid or unanswered): the denial is counted in metrics as the
    /// engine counts its own, noted, audited and answered.
    pub(super) fn refuse_outside_policy(
        &self,
        id: &Value,
        call: &Call<'_>,
        code: DenyCode,
        reason: String,
        revision: Revision,
        out: &mut Output,
    ) {
        let denial = Decision::refused(call, code, reason);
        crate::observe::decided(&denial.answer());
        out.notes.push(denial.to_string());
        self.refuse(id, call, &denial, revision, out);
    }

    /// Answers a refused call with its refusal, `note` added to its text.
    pub(super) fn refuse_with_note(
        &self,
        id: &Value,
        call: &Call<'_>,
        decision: &Decision,
        revision: Revision,
        note: Option<&str>,
        out: &mut Output,
    ) {
        self.record(id, call, decision, out);
        if decision.code() == DenyCode::InsufficientScope.as_str() {
            out.step_up = Some(self.engine.step_up_scopes(call));
        }
        if let Some(answer) = Relay::refusal_for(call.kind(), id, decision, revision, note) {
            out.to_client.push(answer.to_string());
        }
    }

    /// Keeps the audit record of `decision` (when auditing); its id.
    pub(super) fn record(
        &self,
        id: &Value,
        call: &Call<'_>,
        decision: &Decision,
        out: &mut Output,
    ) -> Option<String> {
        // The shadow policy decides every call once, audited or not, with its own counts.
        let shadow = self.engine.shadow_evaluate(call);
        if !self.audit && !tracing_on() {
            return None;
        }
        let mut nonce = [0u8; 12];
        let _ = getrandom::fill(&mut nonce);
        let record_id = hex::encode(nonce);
        let mut record = AuditRecord::with_args_sha256(
            &record_id,
            id,
            call,
            decision,
            call.args_sha256().to_owned(),
        );
        if let Some(hex) = self.policy_sha256.lock().clone() {
            record = record.policy_sha256(hex);
        }
        if let Some(approver) = call.approver() {
            record = record.approver(approver);
        }
        if let Some(shadow) =
            shadow.filter(|s| s.code() != decision.code() || s.rule() != decision.rule())
        {
            record = record.shadow(&shadow);
        }
        trace_decision(&record);
        if !self.audit {
            return None;
        }
        out.audit
            .push(serde_json::to_string(&record).unwrap_or_default());
        Some(record_id)
    }

    /// What an allowed call waits as: a call whose outcome settles its charges, with its
    /// binding when a continuation may have to be sealed (on 2026-07-28, the only revision
    /// whose servers answer `input_required`: on older ones the arguments are not hashed).
    pub(super) fn call_kind(
        &self,
        decision: Decision,
        call: &Call<'_>,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Kind {
        let audit = self.record(id, call, &decision, out);
        let binding = self
            .approvals
            .as_ref()
            .filter(|_| revision.requires_result_type())
            .map(|_| Box::new(self.binding(call)));
        Kind::Call {
            decision: Box::new(decision),
            binding,
            audit,
        }
    }

    pub(super) fn client_notification(
        &self,
        method: String,
        params: Option<Value>,
        out: &mut Output,
    ) {
        if method == "tools/call" {
            return client_error(
                out,
                &Value::Null,
                INVALID_REQUEST,
                "a tools/call needs an \"id\"; without one it is a notification, which is \
                 never relayed",
            );
        }
        let mut params = params;
        if method == "notifications/cancelled" {
            // The client names its own id; the server knows the relay's.
            let client_id = params.as_ref().and_then(|p| p.get("requestId")).cloned();
            let state = self.state.lock();
            let ours = state
                .pending
                .iter()
                .find(|(_, p)| Some(&p.client_id) == client_id.as_ref())
                .map(|(&id, _)| id);
            drop(state);
            match (ours, params.as_mut().and_then(Value::as_object_mut)) {
                (Some(ours), Some(p)) => {
                    p.insert("requestId".into(), ours.into());
                }
                _ => {
                    out.notes.push(format!(
                        "dropped a cancellation of request {}, which is not waiting for the \
                         server",
                        client_id.unwrap_or(Value::Null)
                    ));
                    return;
                }
            }
        }
        out.to_server.push(notification(method, params));
    }

    /// A response from the client: relayed only if it answers an open server request.
    pub(super) fn client_response(
        &self,
        mut map: Map<String, Value>,
        id: Option<Value>,
        out: &mut Output,
    ) {
        let (result, error) = (map.remove("result"), map.remove("error"));
        let (Some(id), true) = (id, result.is_some() != error.is_some()) else {
            out.notes.push(
                "dropped a message from the client that is neither a request, a \
                 notification, nor a response with an id and one of result or error"
                    .into(),
            );
            return;
        };
        let asking = self.state.lock().asking.remove(&id.to_string());
        if let Some(asking) = asking {
            return self.answered_approval(asking, &id, result.as_ref(), out);
        }
        let open = self.state.lock().server_requests.remove(&id.to_string());
        if open.is_none() {
            out.notes.push(format!(
                "dropped a response from the client to {id}, which the server did not ask"
            ));
            return;
        }
        out.to_server.push(response(id, result, error));
    }
}
