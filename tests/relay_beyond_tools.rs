//! `mcp::Relay` beyond tools: resources and prompts the client asks for, the lists of them
//! the server answers, and the requests the server sends the client — each decided before
//! the other side sees it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/relay_output.rs"]
mod relay_output;
use relay_output::{forwarded, parse, refused};

use mcp_policy::mcp::*;
use mcp_policy::{Engine, ManualClock};
use serde_json::{json, Value};
use std::time::Duration;

const POLICY: &str = r#"{"version": "1", "default": "deny",
  "tools": {"whmcs_draft_reply": {}},
  "resources": {
    "whmcs://desk/tickets/*": {"limits": [{"window": "minute", "max": 2, "scope": "grant"}]},
    "whmcs://desk/admin/*": {"action": "deny", "reason": "the admin area is not for agents"}},
  "prompts": {
    "summarize_ticket": {"deny_if": [{"path": "args.scope", "op": "eq", "value": "all"}]}},
  "server_requests": {
    "sampling/createMessage": {
      "deny_if": [{"path": "params.includeContext", "op": "eq", "value": "allServers"}],
      "limits": [{"window": "minute", "max": 1, "scope": "session"}]},
    "elicitation/create": {}}}"#;

fn relay() -> Relay {
    let clock = ManualClock::new();
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .build();
    Relay::builder(engine)
        .grant("g1")
        .session("s1")
        .audit(true)
        .request_timeout(Duration::from_secs(30))
        .clock(clock)
        .build()
}

fn request(id: u64, method: &str, params: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
        .to_string()
        .into_bytes()
}

#[test]
fn resource_reads_are_decided_before_the_server_sees_them() {
    let relay = relay();
    let read =
        |id, uri: &str| relay.from_client(&request(id, "resources/read", json!({"uri": uri})));
    let sent = forwarded(&read(1, "whmcs://desk/tickets/7/attachment.pdf"));
    assert_eq!(
        sent["params"]["uri"], "whmcs://desk/tickets/7/attachment.pdf",
        "relayed as sent"
    );
    let admin = refused(&read(2, "whmcs://desk/admin/users"));
    assert_eq!(admin["error"]["code"], GATEWAY_ERROR);
    assert_eq!(admin["error"]["data"]["code"], "rule_denied");
    assert_eq!(
        admin["error"]["data"]["reason"],
        "the admin area is not for agents"
    );
    // The same place spelled another way is the same place.
    let sneaky = refused(&read(3, "WHMCS://Desk/tickets/../admin/users"));
    assert_eq!(sneaky["error"]["data"]["code"], "rule_denied");
    // What cannot be read unambiguously is refused, never relayed.
    for uri in [
        "whmcs://desk/tickets/..%2Fadmin",
        "whmcs://desk/../../etc",
        "whmcs://desk/a%zz",
    ] {
        let answer = refused(&read(4, uri));
        assert_eq!(answer["error"]["data"]["code"], "invalid_uri", "{uri}");
    }
    // Limited per grant: one more read fits the minute, then none.
    forwarded(&read(5, "whmcs://desk/tickets/8"));
    let limited = refused(&read(6, "whmcs://desk/tickets/9"));
    assert_eq!(limited["error"]["data"]["code"], "rate_limited");
    assert!(limited["error"]["data"]["retry_after_ms"].as_u64().unwrap() > 0);
    // Anything else falls to the default (deny), subscriptions included.
    let other = relay.from_client(&request(
        7,
        "resources/subscribe",
        json!({"uri": "file:///etc/passwd"}),
    ));
    assert_eq!(refused(&other)["error"]["data"]["code"], "default_denied");
    // A case variant of the method, or of its member, is refused.
    let variant = relay.from_client(&request(
        8,
        "Resources/Read",
        json!({"uri": "whmcs://desk/tickets/1"}),
    ));
    assert!(refused(&variant)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("case-sensitive"));
    let member = relay.from_client(&request(
        9,
        "resources/read",
        json!({"URI": "whmcs://desk/admin/x"}),
    ));
    assert_eq!(refused(&member)["error"]["code"], INVALID_PARAMS);
    let audit: Vec<Value> = read(10, "whmcs://desk/admin/x")
        .audit
        .iter()
        .map(|r| parse(r))
        .collect();
    assert_eq!(audit[0]["kind"], "resource");
    assert_eq!(audit[0]["tool"], "whmcs://desk/admin/x");
}

#[test]
fn prompts_are_decided_with_their_arguments() {
    let relay = relay();
    let get = |id, name: &str, args: Value| {
        relay.from_client(&request(
            id,
            "prompts/get",
            json!({"name": name, "arguments": args}),
        ))
    };
    forwarded(&get(1, "summarize_ticket", json!({"scope": "one"})));
    assert_eq!(
        refused(&get(2, "summarize_ticket", json!({"scope": "all"})))["error"]["data"]["code"],
        "deny_condition"
    );
    assert_eq!(
        refused(&get(3, "export_everything", json!({})))["error"]["data"]["code"],
        "default_denied"
    );
}

#[test]
fn lists_lose_what_the_policy_refuses_outright() {
    let relay = relay();
    let listed = |method: &str, result: Value| {
        let sent = forwarded(&relay.from_client(&request(1, method, json!({}))));
        let answer = json!({"jsonrpc": "2.0", "id": sent["id"], "result": result});
        let out = relay.from_server(answer.to_string().as_bytes());
        parse(&out.to_client[0])["result"].clone()
    };
    let resources = listed(
        "resources/list",
        json!({"resources": [
        {"uri": "whmcs://desk/tickets/7", "name": "t7"},
        {"uri": "whmcs://desk/admin/users", "name": "users"},
        {"uri": "file:///etc/passwd", "name": "passwd"}], "nextCursor": "2"}),
    );
    let uris: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["whmcs://desk/tickets/7"]);
    assert_eq!(resources["nextCursor"], "2", "pagination is kept");
    let templates = listed(
        "resources/templates/list",
        json!({"resourceTemplates": [
        {"uriTemplate": "whmcs://desk/tickets/{id}", "name": "ticket"},
        {"uriTemplate": "whmcs://desk/admin/{page}", "name": "admin"}]}),
    );
    assert_eq!(templates["resourceTemplates"].as_array().unwrap().len(), 1);
    let prompts = listed(
        "prompts/list",
        json!({"prompts": [{"name": "summarize_ticket"}, {"name": "export_everything"}]}),
    );
    assert_eq!(prompts["prompts"], json!([{"name": "summarize_ticket"}]));
    // A listing the gateway would have to guess about is not relayed.
    let sent = forwarded(&relay.from_client(&request(2, "resources/list", json!({}))));
    let odd = json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"resources": [{"URI": "whmcs://desk/admin/x", "name": "x"}]}});
    let answer = parse(&relay.from_server(odd.to_string().as_bytes()).to_client[0]);
    assert_eq!(answer["error"]["code"], GATEWAY_ERROR, "{answer}");
}

#[test]
fn server_requests_are_decided_before_the_client_sees_them() {
    let relay = relay();
    let ask = |id: u64, method: &str, params: Value| {
        relay.from_server(request(id, method, params).as_slice())
    };
    // Sampling that asks for every server's context: answered to the server, never seen.
    let out = ask(
        1,
        "sampling/createMessage",
        json!({"includeContext": "allServers", "maxTokens": 10, "messages": []}),
    );
    assert!(out.to_client.is_empty(), "{out:?}");
    let answer = parse(&out.to_server[0]);
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["error"]["data"]["code"], "deny_condition");
    // Allowed once a minute for this session, then limited.
    let out = ask(
        2,
        "sampling/createMessage",
        json!({"includeContext": "none", "maxTokens": 10, "messages": []}),
    );
    assert_eq!(parse(&out.to_client[0])["method"], "sampling/createMessage");
    let out = ask(
        3,
        "sampling/createMessage",
        json!({"maxTokens": 10, "messages": []}),
    );
    assert!(out.to_client.is_empty());
    assert_eq!(
        parse(&out.to_server[0])["error"]["data"]["code"],
        "rate_limited"
    );
    // An allowed elicitation round-trips; roots/list falls to the default.
    let out = ask(
        4,
        "elicitation/create",
        json!({"message": "ok?", "requestedSchema": {"type": "object", "properties": {}}}),
    );
    assert_eq!(parse(&out.to_client[0])["id"], 4);
    let back = relay.from_client(
        json!({"jsonrpc": "2.0", "id": 4, "result": {"action": "accept", "content": {}}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(parse(&back.to_server[0])["result"]["action"], "accept");
    let roots = ask(5, "roots/list", json!({}));
    assert_eq!(
        parse(&roots.to_server[0])["error"]["data"]["code"],
        "default_denied"
    );
    // A parameter spelled so that a lenient client reads it as `includeContext`.
    let sneaky = ask(
        7,
        "sampling/createMessage",
        json!({"IncludeContext": "allServers", "messages": []}),
    );
    assert!(sneaky.to_client.is_empty(), "{sneaky:?}");
    assert_eq!(parse(&sneaky.to_server[0])["error"]["code"], INVALID_PARAMS);
    // A case variant of a governed method is refused.
    let variant = ask(6, "Sampling/CreateMessage", json!({}));
    assert!(variant.to_client.is_empty());
    assert_eq!(parse(&variant.to_server[0])["error"]["code"], -32600);
}

#[test]
fn a_refused_request_inside_an_input_required_result_withholds_the_result() {
    let relay = relay();
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "whmcs_draft_reply", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
    let sent = forwarded(&relay.from_client(call.to_string().as_bytes()));
    let result = json!({"jsonrpc": "2.0", "id": sent["id"], "result": {"resultType": "input_required",
        "inputRequests": {"draft": {"method": "sampling/createMessage",
            "params": {"includeContext": "allServers", "maxTokens": 10, "messages": []}}}}});
    let out = relay.from_server(result.to_string().as_bytes());
    let answer = parse(&out.to_client[0]);
    assert_eq!(answer["id"], 9);
    assert_eq!(
        answer["error"]["data"]["code"], "deny_condition",
        "{answer}"
    );
    assert!(answer.get("result").is_none());
}

#[test]
fn a_policy_without_the_sections_relays_everything_as_before() {
    let engine = Engine::new(
        r#"{"version": "1", "default": "deny"}"#.parse::<mcp_policy::Policy>().unwrap(),
    );
    let relay = Relay::builder(engine).grant("g").build();
    forwarded(&relay.from_client(&request(
        1,
        "resources/read",
        json!({"uri": "file:///etc/passwd"}),
    )));
    forwarded(&relay.from_client(&request(2, "prompts/get", json!({"name": "x"}))));
    let out = relay.from_server(
        request(
            3,
            "sampling/createMessage",
            json!({"includeContext": "allServers"}),
        )
        .as_slice(),
    );
    assert_eq!(parse(&out.to_client[0])["method"], "sampling/createMessage");
}
