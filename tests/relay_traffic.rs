//! `mcp::Relay` on ordinary traffic: what it relays (re-serialized, under its own ids),
//! what it refuses (batches, id-less calls, case-variant methods, ambiguous keys, bad
//! bytes), outcomes and refunds, bounds and timeouts, the server exiting, `tools/list`.

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

const POLICY: &str = r#"{"version": "1", "hide": ["whmcs_delete_*"], "tools": {
    "whmcs_get_ticket": {},
    "whmcs_update_ticket": {
        "limits": [{"window": "minute", "max": 2}],
        "deny_if": [{"path": "args.priority", "op": "eq", "value": "Emergency"}]},
    "whmcs_add_credit": {"require": [{"path": "args.amount", "op": "lte", "value": 100}]},
    "whmcs_retry": {"limits": [{"window": "minute", "max": 1, "refund": "failed"}]},
    "whmcs_close_client": {"action": "deny"}}}"#;

fn relay() -> (Relay, ManualClock) {
    let clock = ManualClock::new();
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .build();
    let relay = Relay::builder(engine)
        .grant("g1")
        .max_message(1000)
        .max_pending(3)
        .request_timeout(Duration::from_secs(30))
        .clock(clock.clone())
        .build();
    (relay, clock)
}

fn call(id: Value, tool: &str, args: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
    .to_string()
    .into_bytes()
}

fn answer(relay: &Relay, id: &Value, result: Value) -> Value {
    let out = relay.from_server(
        json!({"jsonrpc": "2.0", "id": id, "result": result})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(out.to_client.len(), 1, "{out:?}");
    parse(&out.to_client[0])
}

#[test]
fn batches_are_answered_once_with_a_null_id_and_never_relayed() {
    let (relay, _) = relay();
    for batch in [
        "[]".to_string(),
        format!(
            "[{}]",
            String::from_utf8(call(json!(1), "whmcs_close_client", json!({}))).unwrap()
        ),
        r#"[{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#.to_string(),
    ] {
        let answer = refused(&relay.from_client(batch.as_bytes()));
        assert_eq!(answer["id"], Value::Null);
        assert_eq!(answer["error"]["code"], INVALID_REQUEST);
    }
}

#[test]
fn a_call_without_id_or_with_a_case_variant_method_is_refused() {
    let (relay, _) = relay();
    let answer = refused(&relay.from_client(
        br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whmcs_get_ticket"}}"#,
    ));
    assert_eq!(answer["error"]["code"], INVALID_REQUEST);
    for method in ["Tools/Call", "TOOLS/CALL", "tools/List", "Initialize"] {
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"{method}","params":{{"name":"whmcs_close_client"}}}}"#
        );
        let answer = refused(&relay.from_client(line.as_bytes()));
        assert_eq!(answer["id"], 5);
        assert_eq!(answer["error"]["code"], INVALID_REQUEST, "{method}");
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("case-sensitive"));
        // As a notification it is dropped with an error too.
        let line = format!(r#"{{"jsonrpc":"2.0","method":"{method}"}}"#);
        assert_eq!(
            refused(&relay.from_client(line.as_bytes()))["id"],
            Value::Null
        );
    }
}

#[test]
fn ambiguous_keys_anywhere_are_refused() {
    let (relay, _) = relay();
    for line in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket","NAME":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5},"Arguments":{"amount":5000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"amount":5,"Amount":5000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket"},"params":{"name":"whmcs_close_client"}}"#,
    ] {
        let answer = refused(&relay.from_client(line.as_bytes()));
        assert_eq!(answer["error"]["code"], INVALID_REQUEST, "{line}");
    }
    // A lone case variant of a member the gateway reads is refused too: a server
    // that matches names ignoring case would read it.
    for line in [
        r#"{"jsonrpc":"2.0","ID":6,"method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"whmcs_close_client"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_update_ticket","Arguments":{"priority":"Emergency"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_update_ticket","arguments":{"Priority":"Emergency"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_add_credit","arguments":{"AMOUNT":5000}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whmcs_get_ticket","arguments":{"x":[{"pRiOrItY":1}]}}}"#,
    ] {
        let answer = refused(&relay.from_client(line.as_bytes()));
        let code = answer["error"]["code"].as_i64().unwrap();
        assert!(
            code == INVALID_REQUEST || code == INVALID_PARAMS,
            "{line}: {answer}"
        );
    }
}

#[test]
fn argument_names_the_policy_does_not_read_keep_any_case() {
    let (relay, _) = relay();
    let line = call(
        json!(1),
        "whmcs_get_ticket",
        json!({"TicketId": 7, "Status": "x"}),
    );
    forwarded(&relay.from_client(&line));
}

#[test]
fn what_is_relayed_is_rebuilt_from_what_was_evaluated() {
    let (relay, _) = relay();
    let line = br#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","extra":{"x":1},
        "params":{"name":"whmcs_get_ticket","arguments":{"ticket_id":7},"_meta":{"progressToken":3}}}"#;
    let sent = forwarded(&relay.from_client(line));
    assert_eq!(
        sent,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "whmcs_get_ticket", "arguments": {"ticket_id": 7}, "_meta": {"progressToken": 3}}})
    );
}

#[test]
fn client_ids_never_alias_one_another() {
    let (relay, _) = relay();
    // An unknown method and an allowed call under the same client id get two ids.
    let first = forwarded(&relay.from_client(br#"{"jsonrpc":"2.0","id":9,"method":"x/unknown"}"#));
    let second = forwarded(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
    assert_ne!(first["id"], second["id"]);
    // The server's error for the unknown method refunds nothing.
    let out = relay.from_server(
        json!({"jsonrpc": "2.0", "id": first["id"], "error": {"code": -32601, "message": "no"}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(parse(&out.to_client[0])["id"], 9);
    assert!(
        out.notes.iter().all(|n| !n.contains("given back")),
        "{out:?}"
    );
    answer(&relay, &second["id"], json!({"content": []}));
    forwarded(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
    let limited = refused(&relay.from_client(&call(json!(9), "whmcs_update_ticket", json!({}))));
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    // A server answer to an id the relay never minted, or already answered, is dropped.
    let out = relay
        .from_server(br#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"whmcs_delete_x"}]}}"#);
    assert!(out.to_client.is_empty());
    let out = relay.from_server(
        json!({"jsonrpc": "2.0", "id": second["id"], "result": {}})
            .to_string()
            .as_bytes(),
    );
    assert!(out.to_client.is_empty());
}

#[test]
fn outcomes_refund_only_what_the_limit_says() {
    let (relay, _) = relay();
    // isError: failed, which the default `refund: not_run` keeps charged.
    for id in 1..=2 {
        let sent =
            forwarded(&relay.from_client(&call(json!(id), "whmcs_update_ticket", json!({}))));
        answer(&relay, &sent["id"], json!({"isError": true, "content": []}));
    }
    let limited = refused(&relay.from_client(&call(json!(3), "whmcs_update_ticket", json!({}))));
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    // `refund: failed` gives a failed call back.
    let sent = forwarded(&relay.from_client(&call(json!(4), "whmcs_retry", json!({}))));
    answer(&relay, &sent["id"], json!({"isError": true, "content": []}));
    let sent = forwarded(&relay.from_client(&call(json!(5), "whmcs_retry", json!({}))));
    // A JSON-RPC error is not_run: refunded.
    let out = relay.from_server(
        json!({"jsonrpc": "2.0", "id": sent["id"], "error": {"code": -32602, "message": "bad"}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(parse(&out.to_client[0])["error"]["code"], -32602);
    forwarded(&relay.from_client(&call(json!(6), "whmcs_retry", json!({}))));
}

#[test]
fn bad_bytes_get_an_error_on_either_side_and_the_relay_goes_on() {
    let (relay, _) = relay();
    for bytes in [
        &b"\xff\xfe"[..],
        b"not json",
        b"{\"jsonrpc\":\"2.0\",",
        b"{} {}",
    ] {
        let answer = refused(&relay.from_client(bytes));
        assert_eq!(answer["error"]["code"], -32700);
        assert_eq!(answer["id"], Value::Null);
        let out = relay.from_server(bytes);
        assert!(out.to_client.is_empty());
        assert_eq!(parse(&out.to_server[0])["error"]["code"], -32700);
    }
    let answer = refused(&relay.from_client(&vec![b' '; 1001]));
    assert_eq!(answer["error"]["code"], INVALID_REQUEST);
    let answer = refused(&relay.client_message_too_large(50_000_000));
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit is 1000 bytes"));
    for bad_id in ["null", "true", "{}", "[1]"] {
        let line = format!(r#"{{"jsonrpc":"2.0","id":{bad_id},"method":"ping"}}"#);
        assert_eq!(
            refused(&relay.from_client(line.as_bytes()))["id"],
            Value::Null
        );
    }
    forwarded(&relay.from_client(&call(json!(1), "whmcs_get_ticket", json!({}))));
}

#[test]
fn pending_requests_are_bounded_and_time_out() {
    let (relay, clock) = relay();
    for (id, tool) in [
        "whmcs_update_ticket",
        "whmcs_update_ticket",
        "whmcs_get_ticket",
    ]
    .into_iter()
    .enumerate()
    {
        forwarded(&relay.from_client(&call(json!(id), tool, json!({}))));
    }
    // The fourth is refused before it is charged.
    let busy = refused(&relay.from_client(&call(json!(3), "whmcs_get_ticket", json!({}))));
    assert_eq!(busy["error"]["code"], GATEWAY_ERROR);
    clock.advance(Duration::from_secs(29));
    assert!(relay.expire().to_client.is_empty());
    clock.advance(Duration::from_secs(1));
    let out = relay.expire();
    let mut ids: Vec<i64> = out
        .to_client
        .iter()
        .map(|l| parse(l)["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(relay.pending(), 0);
    // Timed-out calls may have run: they keep their units (2 of 2 used).
    let limited = refused(&relay.from_client(&call(json!(4), "whmcs_update_ticket", json!({}))));
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
}

#[test]
fn the_server_exiting_answers_every_waiting_request() {
    let (relay, _) = relay();
    forwarded(&relay.from_client(&call(json!("a"), "whmcs_get_ticket", json!({}))));
    forwarded(&relay.from_client(br#"{"jsonrpc":"2.0","id":"b","method":"tools/list"}"#));
    let out = relay.server_closed();
    assert_eq!(out.to_client.len(), 2);
    let gone = refused(&relay.from_client(&call(json!("c"), "whmcs_get_ticket", json!({}))));
    assert_eq!(gone["error"]["code"], GATEWAY_ERROR);
}

#[test]
fn tools_list_is_filtered_and_2026_results_are_marked() {
    let (relay, _) = relay();
    let meta = json!({"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}});
    let sent = forwarded(
        &relay.from_client(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": meta})
                .to_string()
                .as_bytes(),
        ),
    );
    let list = answer(
        &relay,
        &sent["id"],
        json!({"resultType": "complete", "tools": [
        {"name": "whmcs_get_ticket"}, {"name": "whmcs_delete_client"}, {"name": "whmcs_close_client"}]}),
    );
    assert_eq!(
        list["result"]["tools"],
        json!([{"name": "whmcs_get_ticket"}])
    );
    assert_eq!(list["result"]["cacheScope"], "private");
    let refusal = refused(
        &relay.from_client(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params":
            {"name": "whmcs_close_client", "_meta": meta["_meta"]}})
            .to_string()
            .as_bytes(),
        ),
    );
    assert_eq!(refusal["result"]["resultType"], "complete");
    // An older client negotiated in initialize gets no resultType.
    let sent = forwarded(
        &relay.from_client(br#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}"#),
    );
    answer(
        &relay,
        &sent["id"],
        json!({"protocolVersion": "2025-06-18"}),
    );
    let refusal = refused(&relay.from_client(&call(json!(4), "whmcs_close_client", json!({}))));
    assert!(refusal["result"].get("resultType").is_none());
}

#[test]
fn client_responses_reach_the_server_only_for_its_open_requests() {
    let (relay, _) = relay();
    let out = relay.from_server(br#"{"jsonrpc":"2.0","id":"s1","method":"roots/list"}"#);
    assert_eq!(parse(&out.to_client[0])["id"], "s1");
    let reply = br#"{"jsonrpc":"2.0","id":"s1","result":{"roots":[]}}"#;
    assert_eq!(forwarded(&relay.from_client(reply))["id"], "s1");
    // Answered already: a second response is dropped.
    let out = relay.from_client(reply);
    assert!(out.to_server.is_empty() && out.to_client.is_empty());
    // A cancellation names the client's id; the server gets the relay's.
    let sent = forwarded(&relay.from_client(&call(json!("x"), "whmcs_get_ticket", json!({}))));
    let cancel = forwarded(&relay.from_client(
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x"}}"#,
    ));
    assert_eq!(cancel["params"]["requestId"], sent["id"]);
    let out = relay.from_client(
        br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"nope"}}"#,
    );
    assert!(out.to_server.is_empty());
}
