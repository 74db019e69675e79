//! Messages from the server: its requests to the client, and its answers, matched to
//! the requests they answer.

use super::jsonrpc::*;
use super::table::*;
use super::*;
use crate::clock::Clock;
use crate::mcp::{error_response, filter_tools_list, Revision, INVALID_REQUEST};
use crate::policy::Outcome;
use serde_json::{json, Map, Value};

impl Relay {
    pub(super) fn server_message(&self, message: Value, out: &mut Output) {
        let Value::Object(mut map) = message else {
            return server_error(
                out,
                INVALID_REQUEST,
                "batches and non-objects are not accepted: send each message on its own",
            );
        };
        if let Err(why) = check_envelope(&map) {
            return server_error(out, INVALID_REQUEST, &why);
        }
        let id = map.remove("id");
        match map.remove("method") {
            Some(Value::String(method)) => {
                let params = map.remove("params");
                match id {
                    None => out.to_client.push(notification(method, params)),
                    Some(id @ (Value::String(_) | Value::Number(_))) => {
                        if let Some(refusal) =
                            self.refuse_server_request(&id, &method, params.as_ref(), out)
                        {
                            return out.to_server.push(refusal.to_string());
                        }
                        let mut state = self.state.lock();
                        if state.server_requests.len() >= self.max_pending {
                            drop(state);
                            return out.to_server.push(
                                error_response(
                                    &id,
                                    GATEWAY_ERROR,
                                    "too many requests are waiting for the client",
                                )
                                .to_string(),
                            );
                        }
                        let deadline = self.clock.now().saturating_add(self.request_timeout);
                        state.server_requests.insert(id.to_string(), deadline);
                        drop(state);
                        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": method});
                        if let (Some(params), Some(request)) = (params, request.as_object_mut()) {
                            request.insert("params".into(), params);
                        }
                        out.to_client.push(crate::json::text(&request));
                    }
                    Some(_) => {
                        server_error(out, INVALID_REQUEST, "\"id\" must be a string or a number")
                    }
                }
            }
            Some(_) => server_error(out, INVALID_REQUEST, "\"method\" must be a string"),
            None => self.server_response(map, id, out),
        }
    }

    pub(super) fn server_response(
        &self,
        mut map: Map<String, Value>,
        id: Option<Value>,
        out: &mut Output,
    ) {
        let (result, error) = (map.remove("result"), map.remove("error"));
        let ours = id.as_ref().and_then(Value::as_u64);
        let pending = ours.and_then(|ours| self.state.lock().pending.remove(&ours));
        let Some(pending) = pending else {
            out.notes.push(format!(
                "dropped a response from the server to {}, which no request is waiting for",
                id.unwrap_or(Value::Null)
            ));
            return;
        };
        let (mut result, error) = match (result, error) {
            (Some(result), None) => (Some(result), None),
            (None, Some(error)) => (None, Some(error)),
            _ => {
                // Unreadable: the call may have run.
                self.settle(&pending, Outcome::Unknown, out);
                return client_error(
                    out,
                    &pending.client_id,
                    GATEWAY_ERROR,
                    "the MCP server sent an answer with neither or both of result and error",
                );
            }
        };
        // The server's own requests inside an `input_required` result are decided as if it
        // had sent them: one the policy refuses withholds the whole result.
        if let Some(refusal) = result
            .as_ref()
            .filter(|r| r.get("resultType").and_then(Value::as_str) == Some("input_required"))
            .and_then(|r| self.refuse_input_requests(&pending.client_id, r, out))
        {
            self.settle(&pending, Outcome::Unknown, out);
            return out.to_client.push(refusal.to_string());
        }
        match (&pending.kind, result.as_mut()) {
            (
                Kind::Call {
                    binding: Some(binding),
                    ..
                }
                | Kind::Continuation(binding),
                Some(result),
            ) if pending.revision.requires_result_type()
                && result.get("resultType").and_then(Value::as_str) == Some("input_required") =>
            {
                // The server asks for more input: the call is not over. Its retry must
                // carry the gateway's state, so it is not charged (or asked) again.
                self.settle(&pending, Outcome::InputRequired, out);
                self.wrap_server_state(binding, result, out);
            }
            (Kind::Call { .. }, _) => {
                let outcome = match &result {
                    None => Outcome::NotRun,
                    Some(r)
                        if r.get("resultType").and_then(Value::as_str)
                            == Some("input_required") =>
                    {
                        Outcome::InputRequired
                    }
                    Some(r) if r.get("isError") == Some(&Value::Bool(true)) => Outcome::Failed,
                    Some(_) => Outcome::Succeeded,
                };
                self.settle(&pending, outcome, out);
            }
            (Kind::ToolsList | Kind::Listing(_), Some(result)) => {
                let filtered = match &pending.kind {
                    Kind::Listing(listing) => crate::mcp::lists::filter_listing(
                        &self.engine,
                        result,
                        *listing,
                        pending.revision,
                    ),
                    _ => filter_tools_list(&self.engine, result, pending.revision),
                };
                match filtered {
                    Ok(0) => {}
                    Ok(removed) => out.notes.push(format!(
                        "removed {removed} listed item(s) the policy refuses"
                    )),
                    Err(e) => {
                        out.notes.push(e.to_string());
                        return client_error(
                            out,
                            &pending.client_id,
                            GATEWAY_ERROR,
                            &e.to_string(),
                        );
                    }
                }
            }
            (Kind::Initialize, Some(result)) => {
                let chosen = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .and_then(Revision::parse);
                self.state.lock().negotiated = chosen;
            }
            _ => {}
        }
        // A 2026-07-28 client needs `resultType`, which an older server does not send.
        if let Some(result) = result.as_mut() {
            pending.revision.complete_result(result);
        }
        out.to_client
            .push(response(pending.client_id, result, error));
    }
}
