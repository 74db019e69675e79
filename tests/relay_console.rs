//! `mcp::Relay` with an approval console: calls whose rule names `approvers: "console"`
//! are posted on a board and run only once a console approver approves them — pointed
//! at by a URL elicitation held until the decision (2025-11-25), answered `input_required`
//! until it (2026-07-28), or refused `approval_pending` with the page's address — and
//! never approved by the client's own user.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/relay_output.rs"]
mod relay_output;
use relay_output::parse;

use mcp_policy::mcp::*;
use mcp_policy::{Engine, ManualClock};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"{"version": "1", "tools": {
    "whmcs_add_credit": {"action": "require_approval", "reason": "credits need a second person",
        "approvers": "console", "limits": [{"window": "minute", "max": 5}]},
    "whmcs_send_email": {"action": "require_approval", "reason": "emails are reviewed",
        "approvers": "either"},
    "whmcs_get_ticket": {}}}"#;

const BASE: &str = "https://approvals.example.test";

struct Setup {
    relay: Relay,
    board: Arc<MemoryBoard>,
    clock: ManualClock,
}

fn setup(elicits: ClientElicitation) -> Setup {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1_000));
    let engine = Engine::builder(POLICY.parse().unwrap())
        .clock(clock.clone())
        .build();
    let board = Arc::new(MemoryBoard::new());
    let key = ApprovalKey::from_hex(&"7".repeat(64)).unwrap();
    let approvals = Approvals::new(key)
        .timeout(Duration::from_secs(60))
        .console(board.clone(), &format!("{BASE}/"));
    let relay = Relay::builder(engine)
        .grant("g1")
        .agent("bot")
        .clock(clock.clone())
        .audit(true)
        .client_elicitation(elicits)
        .approvals(approvals)
        .build();
    Setup {
        relay,
        board,
        clock,
    }
}

fn elicits(form: bool, url: bool) -> ClientElicitation {
    let mut capability = serde_json::Map::new();
    if form {
        capability.insert("form".into(), json!({}));
    }
    if url {
        capability.insert("url".into(), json!({}));
    }
    if !form && !url {
        return ClientElicitation::default();
    }
    ClientElicitation::of(Some(&Value::Object(capability)))
}

fn old_call(id: i64, tool: &str, args: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
    .to_string()
    .into_bytes()
}

fn modern_call(id: i64, tool: &str, args: &Value, capability: Value, extra: Value) -> Vec<u8> {
    let mut params = json!({"name": tool, "arguments": args, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": capability}}});
    params
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        .to_string()
        .into_bytes()
}

fn approve(board: &MemoryBoard, id: &str, by: &str, now_ms: u64) {
    let entry = board
        .decide(id, Verdict::by(by, true, None, now_ms))
        .unwrap()
        .unwrap();
    assert!(entry.verdict.unwrap().approved);
}

fn now_ms(clock: &ManualClock) -> u64 {
    use mcp_policy::Clock;
    clock.now().as_nanos() / 1_000_000
}

fn refusal_code(out: &Output) -> String {
    let answer = parse(&out.to_client[0]);
    answer["result"]["structuredContent"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_client_that_can_do_nothing_is_refused_approval_pending_and_its_retry_runs_once_approved() {
    let s = setup(elicits(false, false));
    let args = json!({"client_id": 7, "amount": 25});
    let out = s
        .relay
        .from_client(&old_call(1, "whmcs_add_credit", args.clone()));
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_pending");
    let pending = s.board.pending(now_ms(&s.clock)).unwrap();
    assert_eq!(pending.len(), 1);
    let page = format!("{BASE}/approvals/{}", pending[0].id);
    assert!(out.to_client[0].contains(&page), "{}", out.to_client[0]);
    assert_eq!(pending[0].grant.as_deref(), Some("g1"));
    assert_eq!(pending[0].args, args);

    // Retried before the decision: still pending, and no second approval posted.
    let out = s
        .relay
        .from_client(&old_call(2, "whmcs_add_credit", args.clone()));
    assert_eq!(refusal_code(&out), "approval_pending");
    assert_eq!(s.board.pending(now_ms(&s.clock)).unwrap().len(), 1);

    // Other arguments are another call: never covered by this approval.
    approve(&s.board, &pending[0].id, "ana", now_ms(&s.clock));
    let other = json!({"client_id": 7, "amount": 2500});
    let out = s.relay.from_client(&old_call(3, "whmcs_add_credit", other));
    assert_eq!(refusal_code(&out), "approval_pending");

    let out = s
        .relay
        .from_client(&old_call(4, "whmcs_add_credit", args.clone()));
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    let record = out
        .audit
        .iter()
        .map(|line| parse(line))
        .find(|r| r["decision"] == "allow")
        .unwrap();
    assert_eq!(record["approver"], "ana");
    assert_eq!(record["approval"], pending[0].id.as_str());

    // Once: the same call again needs a new approval.
    let out = s.relay.from_client(&old_call(5, "whmcs_add_credit", args));
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_pending");
}

#[test]
fn a_declined_or_timed_out_console_approval_refuses_the_call_and_the_next_try_asks_again() {
    let s = setup(elicits(false, false));
    let args = json!({"client_id": 8, "amount": 10});
    s.relay
        .from_client(&old_call(1, "whmcs_add_credit", args.clone()));
    let id = s.board.pending(now_ms(&s.clock)).unwrap()[0].id.clone();
    let verdict = Verdict::by("bo", false, Some("not this month".into()), now_ms(&s.clock));
    s.board.decide(&id, verdict).unwrap();
    let out = s
        .relay
        .from_client(&old_call(2, "whmcs_add_credit", args.clone()));
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_declined");
    assert!(out.to_client[0].contains("not this month"));
    let record = parse(out.audit.last().unwrap());
    assert_eq!(record["approver"], "bo");

    // The next try posts a new approval, which times out undecided.
    let out = s
        .relay
        .from_client(&old_call(3, "whmcs_add_credit", args.clone()));
    assert_eq!(refusal_code(&out), "approval_pending");
    s.clock.advance(Duration::from_secs(61));
    assert!(s.board.pending(now_ms(&s.clock)).unwrap().is_empty());
    let out = s.relay.from_client(&old_call(4, "whmcs_add_credit", args));
    assert_eq!(refusal_code(&out), "approval_declined");
    // An approval after the timeout is recorded as a decline.
    let late = s.board.decided().unwrap();
    assert!(late.iter().all(|e| !e.verdict.as_ref().unwrap().approved));
}

#[test]
fn a_2025_11_25_client_with_url_elicitation_is_held_until_the_console_decides() {
    let s = setup(elicits(false, true));
    let out = s.relay.from_client(&old_call(
        1,
        "whmcs_add_credit",
        json!({"client_id": 9, "amount": 5}),
    ));
    assert!(out.to_server.is_empty());
    let ask = parse(&out.to_client[0]);
    assert_eq!(ask["method"], "elicitation/create");
    assert_eq!(ask["params"]["mode"], "url");
    let approval = ask["params"]["elicitationId"].as_str().unwrap().to_owned();
    assert_eq!(ask["params"]["url"], format!("{BASE}/approvals/{approval}"));

    // The user opened the page: still held.
    let accept = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}});
    let out = s.relay.from_client(accept.to_string().as_bytes());
    assert!(
        out.to_server.is_empty() && out.to_client.is_empty(),
        "{out:?}"
    );
    assert!(s.relay.poll_approvals().to_server.is_empty());

    approve(&s.board, &approval, "ana", now_ms(&s.clock));
    let out = s.relay.poll_approval(&ask["id"]);
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    assert!(out.to_server[0].contains("whmcs_add_credit"));
    // Settled once: polling again sends nothing.
    assert!(s.relay.poll_approvals().to_server.is_empty());
}

#[test]
fn a_held_call_is_refused_when_the_user_declines_the_url_or_the_console_does_not_decide() {
    let s = setup(elicits(false, true));
    let out = s.relay.from_client(&old_call(
        1,
        "whmcs_add_credit",
        json!({"client_id": 1, "amount": 1}),
    ));
    let ask = parse(&out.to_client[0]);
    let decline = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}});
    let out = s.relay.from_client(decline.to_string().as_bytes());
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_declined");
    assert!(s.board.pending(now_ms(&s.clock)).unwrap().is_empty());

    let out = s.relay.from_client(&old_call(
        2,
        "whmcs_add_credit",
        json!({"client_id": 2, "amount": 1}),
    ));
    assert_eq!(parse(&out.to_client[0])["params"]["mode"], "url");
    s.clock.advance(Duration::from_secs(61));
    let out = s.relay.poll_approvals();
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_declined");
}

#[test]
fn a_2026_07_28_retry_gets_input_required_until_approved_then_runs_once() {
    let s = setup(ClientElicitation::default());
    let args = json!({"client_id": 3, "amount": 40});
    let url = json!({"url": {}});
    let call = |id, extra: Value| {
        s.relay.from_client(&modern_call(
            id,
            "whmcs_add_credit",
            &args,
            url.clone(),
            extra,
        ))
    };
    let out = call(1, json!({}));
    let answer = parse(&out.to_client[0]);
    assert_eq!(answer["result"]["resultType"], "input_required");
    let ask = &answer["result"]["inputRequests"]["approval"]["params"];
    assert_eq!(ask["mode"], "url");
    let approval = ask["elicitationId"].as_str().unwrap().to_owned();
    let state = answer["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned();

    let retry = |id, state: &str| {
        call(
            id,
            json!({"requestState": state,
                "inputResponses": {"approval": {"action": "accept"}}}),
        )
    };
    let out = retry(2, &state);
    let again = parse(&out.to_client[0]);
    assert_eq!(again["result"]["resultType"], "input_required", "{again}");
    assert!(out.to_server.is_empty());

    approve(&s.board, &approval, "ana", now_ms(&s.clock));
    let out = retry(3, &state);
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    let forwarded = parse(&out.to_server[0]);
    assert!(forwarded["params"].get("requestState").is_none());
    assert!(forwarded["params"].get("inputResponses").is_none());
    let out = retry(4, &state);
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_invalid");
}

#[test]
fn a_console_rule_is_never_approved_by_the_clients_own_answer() {
    let s = setup(ClientElicitation::default());
    let args = json!({"client_id": 4, "amount": 40});
    let form = json!({"form": {}, "url": {}});
    let out = s.relay.from_client(&modern_call(
        1,
        "whmcs_add_credit",
        &args,
        form.clone(),
        json!({}),
    ));
    let answer = parse(&out.to_client[0]);
    let state = answer["result"]["requestState"].as_str().unwrap();
    let yes = json!({"approval": {"action": "accept", "content": {"approve": true}}});
    let out = s.relay.from_client(&modern_call(
        2,
        "whmcs_add_credit",
        &args,
        form,
        json!({"requestState": state, "inputResponses": yes}),
    ));
    assert!(
        out.to_server.is_empty(),
        "the client approved its own call: {out:?}"
    );
    assert_eq!(
        parse(&out.to_client[0])["result"]["resultType"],
        "input_required"
    );

    // Nor on an older revision, where a form-only client cannot be pointed anywhere.
    let old = setup(elicits(true, false));
    let out = old
        .relay
        .from_client(&old_call(1, "whmcs_add_credit", args));
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_pending");
}

#[test]
fn under_either_the_clients_form_or_the_console_decides_whichever_is_first() {
    // The client answers first: its answer decides and the console's entry is closed.
    let s = setup(elicits(true, false));
    let out = s
        .relay
        .from_client(&old_call(1, "whmcs_send_email", json!({"to": "a@b.test"})));
    let ask = parse(&out.to_client[0]);
    assert_eq!(ask["params"]["mode"], "form");
    assert_eq!(s.board.pending(now_ms(&s.clock)).unwrap().len(), 1);
    let yes = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"approve": true}}});
    let out = s.relay.from_client(yes.to_string().as_bytes());
    assert_eq!(out.to_server.len(), 1, "{out:?}");
    assert!(s.board.pending(now_ms(&s.clock)).unwrap().is_empty());

    // The console decides first: the client's later answer changes nothing.
    let out = s
        .relay
        .from_client(&old_call(2, "whmcs_send_email", json!({"to": "c@d.test"})));
    let ask = parse(&out.to_client[0]);
    let approval = s.board.pending(now_ms(&s.clock)).unwrap()[0].id.clone();
    let verdict = Verdict::by("bo", false, None, now_ms(&s.clock));
    s.board.decide(&approval, verdict).unwrap();
    let out = s.relay.poll_approvals();
    assert_eq!(refusal_code(&out), "approval_declined");
    let late = json!({"jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "accept", "content": {"approve": true}}});
    let out = s.relay.from_client(late.to_string().as_bytes());
    assert!(out.to_server.is_empty(), "{out:?}");
}

#[test]
fn without_a_console_a_console_rule_is_refused_not_asked_of_the_client() {
    let engine = Engine::new(POLICY.parse().unwrap());
    let key = ApprovalKey::from_hex(&"7".repeat(64)).unwrap();
    let relay = Relay::builder(engine)
        .grant("g1")
        .client_elicits(true)
        .approvals(Approvals::new(key))
        .build();
    let out = relay.from_client(&old_call(1, "whmcs_add_credit", json!({"amount": 1})));
    assert!(out.to_server.is_empty());
    assert_eq!(refusal_code(&out), "approval_required");
    assert!(out.to_client[0].contains("approval console"));
}

#[test]
fn an_approver_decision_is_audited_on_the_call_record() {
    let s = setup(elicits(false, true));
    s.relay.from_client(&old_call(
        1,
        "whmcs_add_credit",
        json!({"client_id": 5, "amount": 5}),
    ));
    let approval = s.board.pending(now_ms(&s.clock)).unwrap()[0].id.clone();
    approve(&s.board, &approval, "ana", now_ms(&s.clock));
    let out = s.relay.poll_approvals();
    let record = out
        .audit
        .iter()
        .map(|l| parse(l))
        .find(|r| r["decision"] == "allow")
        .unwrap();
    assert_eq!(record["approver"], "ana");
    assert_eq!(record["approval"], approval.as_str());
    // Records of calls no console approver decided carry a null approver.
    let out = s
        .relay
        .from_client(&old_call(2, "whmcs_get_ticket", json!({"ticket_id": 1})));
    assert_eq!(parse(&out.audit[0])["approver"], Value::Null);
}
