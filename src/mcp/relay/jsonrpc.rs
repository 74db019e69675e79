//! JSON-RPC envelope checks and the messages the relay writes.

use super::*;
use crate::json::fold_case;
use crate::mcp::error_response;
use serde_json::{json, Map, Value};

/// Checks `jsonrpc` and refuses members that equal a JSON-RPC member only when case is
/// ignored (`"Method"`): a server could read them as that member.
pub(super) fn check_envelope(map: &Map<String, Value>) -> Result<(), String> {
    if let Some((found, exact)) = map
        .keys()
        .find_map(|k| case_variant_of(k, MEMBERS).map(|e| (k, e)))
    {
        return Err(format!(
            "member {} is not \"{exact}\"; JSON-RPC member names are case-sensitive",
            json!(found)
        ));
    }
    match map.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => Ok(()),
        _ => Err("not a JSON-RPC 2.0 message: expected \"jsonrpc\": \"2.0\"".into()),
    }
}

/// Why `method` is refused when it equals one of `known` only when case is ignored: a
/// peer that ignores case would run it as that method.
pub(super) fn case_variant_method(method: &str, known: &[&'static str]) -> Option<String> {
    case_variant_of(method, known).map(|exact| {
        format!(
            "unknown method {}; method names are case-sensitive: did you mean \"{exact}\"?",
            json!(method)
        )
    })
}

/// Why `params` is refused when one of its members equals one of `known` only when case
/// is ignored.
pub(super) fn case_variant_member(
    params: &Map<String, Value>,
    known: &[&'static str],
) -> Option<String> {
    params.keys().find_map(|found| {
        case_variant_of(found, known).map(|exact| {
            format!(
                "params member {} is not \"{exact}\"; member names are case-sensitive",
                json!(found)
            )
        })
    })
}

/// `Some(exact)` when `name` equals one of `known` only when case is ignored.
pub(super) fn case_variant_of(name: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&name) {
        return None;
    }
    let folded = fold_case(name);
    known.iter().copied().find(|k| folded == fold_case(k))
}

pub(super) fn notification(method: String, params: Option<Value>) -> String {
    let mut message = json!({"jsonrpc": "2.0", "method": method});
    if let (Some(params), Some(map)) = (params, message.as_object_mut()) {
        map.insert("params".into(), params);
    }
    crate::json::text(&message)
}

pub(super) fn response(id: Value, result: Option<Value>, error: Option<Value>) -> String {
    let message = match (result, error) {
        (Some(result), _) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        (None, error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
    };
    crate::json::text(&message)
}

pub(super) fn client_error(out: &mut Output, id: &Value, code: i64, message: &str) {
    out.notes
        .push(format!("refused a client message: {message}"));
    out.to_client
        .push(error_response(id, code, message).to_string());
}

pub(super) fn server_error(out: &mut Output, code: i64, message: &str) {
    out.notes
        .push(format!("refused a server message: {message}"));
    out.to_server
        .push(error_response(&Value::Null, code, message).to_string());
}
