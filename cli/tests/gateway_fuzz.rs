//! Gateway fuzz test: random streams of JSON-RPC traffic through the real stdio gateway,
//! in front of the Go-like server (`tests/servers/go_like_server.py`), which logs every
//! message it receives as Go's `encoding/json` would read it and answers some calls
//! slowly, out of order, never, with garbage, or too long.
//!
//! Streams mix valid and refused calls, `tools/list`, batches, notifications, odd and
//! reused ids, duplicate and case-variant keys, case-variant methods, garbage, lines over
//! the size limit, invalid UTF-8, and ticket ids spelled every way a lenient server reads
//! as one number. Some streams run against a server whose `tools/list` answers nest a
//! listing inside the listing or spell its members in another case. After each stream:
//! - no refused call reached the server: every tool it ran is allowed, with arguments the
//!   policy admits, within its limit, and every `tools/call` it received had an id;
//! - no `tools/list` answer holds a hidden or denied tool;
//! - no ticket was read more often than its per-ticket limit, however its id was spelled;
//! - every client request got exactly one answer (matched by id, `null` for messages
//!   whose id cannot be trusted), and notifications none;
//! - the gateway's peak memory stayed bounded.
//!
//! `GATEWAY_FUZZ_STREAMS` (default 6) and `GATEWAY_FUZZ_SEED` choose the streams; a
//! failure names the seed that reproduces it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::fuzz::{env_number, Rng};
use common::gateway;

use gateway::Session;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_ticket":{"limits":[{"window":"minute","max":2,"key":"args.ticket_id"}]},
  "whmcs_update_ticket":{"limits":[{"window":"minute","max":3}],
    "deny_if":[{"path":"args.priority","op":"eq","value":"Emergency"}]},
  "whmcs_add_credit":{"require":[{"path":"args.amount","op":"lte","value":100}]},
  "whmcs_fail":{"limits":[{"window":"minute","max":4}]},
  "whmcs_error":{}, "whmcs_garbage":{}, "whmcs_silent":{}, "whmcs_huge":{},
  "whmcs_slow":{}, "whmcs_ask":{},
  "whmcs_close_client":{"action":"deny"},
  "whmcs_send_email":{"action":"require_approval"}},
  "resources":{"whmcs://desk/tickets/*":{"limits":[{"window":"minute","max":3}]},
    "whmcs://desk/admin/*":{"action":"deny"}},
  "prompts":{"summarize":{"deny_if":[{"path":"args.scope","op":"eq","value":"all"}]}}}"#;

/// Resource URIs the fuzz reads: allowed, denied, spelled to slip past, unreadable.
const URIS: &[&str] = &[
    "whmcs://desk/tickets/7",
    "WHMCS://Desk/tickets/8",
    "whmcs://desk/admin/users",
    "whmcs://desk/tickets/../admin/users",
    "whmcs://desk/tickets/..%2Fadmin",
    "whmcs://desk/%61dmin/x",
    "whmcs://desk/a%zz",
    "file:///etc/passwd",
];

/// The tools the policy lets through; the fuzz calls them and the refused ones below.
const ALLOWED: &[&str] = &[
    "whmcs_get_ticket",
    "whmcs_update_ticket",
    "whmcs_add_credit",
    "whmcs_fail",
    "whmcs_error",
    "whmcs_garbage",
    "whmcs_silent",
    "whmcs_huge",
    "whmcs_slow",
    "whmcs_ask",
];
const REFUSED: &[&str] = &[
    "whmcs_close_client",
    "whmcs_delete_client",
    "whmcs_send_email",
    "whmcs_unknown",
];
const MAX_MESSAGE: usize = 65_536;

/// xorshift64*: small, seedable, enough for choosing traffic.
/// One message for the gateway and the answer it must get: `Some(id)` for exactly one
/// answer with that id (`null` included), `None` for no answer.
struct Message {
    bytes: Vec<u8>,
    answer: Option<Value>,
}

fn request(id: &Value, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn arguments(rng: &mut Rng) -> Value {
    let mut args = serde_json::Map::new();
    if rng.chance(50) {
        // Ticket ids in every spelling a lenient server reads as the same number.
        let n = rng.below(5);
        let id = match rng.below(8) {
            0 => json!(n.to_string()),
            1 => json!(format!("0{n}")),
            2 => json!(format!(" {n}")),
            3 => json!(format!("+{n}")),
            4 => json!(format!("{n}.0")),
            5 => json!(format!("{n}\n")),
            _ => json!(n),
        };
        args.insert("ticket_id".into(), id);
    }
    // Now and then a name in another case, which a Go server reads as the same field.
    if rng.chance(30) {
        let priority = *rng.pick(&["Emergency", "Low", "emergency"]);
        let name = *rng.pick(&["priority", "priority", "Priority"]);
        args.insert(name.into(), json!(priority));
    }
    if rng.chance(40) {
        let name = *rng.pick(&["amount", "amount", "AMOUNT"]);
        args.insert(name.into(), json!(rng.below(200)));
    }
    if rng.chance(30) {
        args.insert("delay_ms".into(), json!(rng.below(300)));
    }
    Value::Object(args)
}

fn odd_id(rng: &mut Rng, used: &mut Vec<Value>) -> Value {
    if !used.is_empty() && rng.chance(15) {
        return rng.pick(used).clone();
    }
    let id = match rng.below(8) {
        0 => json!(format!("s-{}", rng.next())),
        1 => json!(-(rng.below(1000) as i64)),
        2 => json!(1.5),
        3 => json!(u64::MAX),
        4 => json!("é\u{0}\"\\ id"),
        5 => json!("x".repeat(300)),
        _ => json!(rng.next() >> 11),
    };
    used.push(id.clone());
    id
}

fn message(rng: &mut Rng, used: &mut Vec<Value>) -> Message {
    let tools: Vec<&str> = ALLOWED.iter().chain(REFUSED).copied().collect();
    let tool = *rng.pick(&tools);
    match rng.below(20) {
        0..=6 => {
            let id = odd_id(rng, used);
            let line = request(
                &id,
                "tools/call",
                json!({"name": tool, "arguments": arguments(rng)}),
            );
            Message {
                bytes: line.into_bytes(),
                answer: Some(id),
            }
        }
        7 => {
            let id = odd_id(rng, used);
            Message {
                bytes: request(&id, "tools/list", json!({})).into_bytes(),
                answer: Some(id),
            }
        }
        8 => {
            let id = odd_id(rng, used);
            let (method, params) = match rng.below(6) {
                0 => ("ping", json!({})),
                1 => ("x/unknown", json!({})),
                2 => ("resources/list", json!({})),
                3 => (
                    *rng.pick(&["resources/read", "resources/subscribe", "Resources/Read"]),
                    json!({"uri": *rng.pick(URIS)}),
                ),
                4 => {
                    // Two spellings of `uri`: the whole message is refused unread.
                    let line = request(&id, "resources/read", json!({"uri": *rng.pick(URIS)}));
                    let line =
                        line.replacen("\"uri\"", "\"URI\":\"whmcs://desk/admin/x\",\"uri\"", 1);
                    return Message {
                        bytes: line.into_bytes(),
                        answer: Some(Value::Null),
                    };
                }
                _ => (
                    *rng.pick(&["prompts/get", "Prompts/Get"]),
                    json!({"name": *rng.pick(&["summarize", "other"]),
                           "arguments": {"scope": *rng.pick(&["one", "all"])}}),
                ),
            };
            Message {
                bytes: request(&id, method, params).into_bytes(),
                answer: Some(id),
            }
        }
        9 => {
            let method = *rng.pick(&[
                "notifications/initialized",
                "notifications/cancelled",
                "notifications/x",
            ]);
            let requested = used.last().cloned().unwrap_or(json!(0));
            let line =
                json!({"jsonrpc": "2.0", "method": method, "params": {"requestId": requested}});
            Message {
                bytes: line.to_string().into_bytes(),
                answer: None,
            }
        }
        10 => {
            let line = json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": tool}});
            Message {
                bytes: line.to_string().into_bytes(),
                answer: Some(Value::Null),
            }
        }
        11 => {
            let inner = request(&json!(1), "tools/call", json!({"name": tool}));
            let bytes = match rng.below(3) {
                0 => "[]".to_string(),
                1 => format!("[{inner}]"),
                _ => format!("[{inner},{}]", request(&json!(2), "tools/list", json!({}))),
            };
            Message {
                bytes: bytes.into_bytes(),
                answer: Some(Value::Null),
            }
        }
        12 => {
            let id = odd_id(rng, used);
            let id = id.to_string();
            let line = match rng.below(6) {
                0 => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"whmcs_get_ticket","NAME":"{tool}"}}}}"#
                ),
                1 => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","Method":"tools/call","params":{{"name":"{tool}"}}}}"#
                ),
                2 => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"whmcs_add_credit","arguments":{{"amount":5}},"Arguments":{{"amount":5000}}}}}}"#
                ),
                3 => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"whmcs_add_credit","arguments":{{"amount":5,"Amount":5000}}}}}}"#
                ),
                4 => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"id":7,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
                ),
                _ => format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"ID":{id},"method":"tools/call","params":{{"name":"{tool}"}}}}"#
                ),
            };
            Message {
                bytes: line.into_bytes(),
                answer: Some(Value::Null),
            }
        }
        13 => {
            let id = odd_id(rng, used);
            let method = *rng.pick(&["Tools/Call", "TOOLS/CALL", "tools/CALL", "Tools/List"]);
            if rng.chance(50) {
                let line = request(&id, method, json!({"name": tool}));
                Message {
                    bytes: line.into_bytes(),
                    answer: Some(id),
                }
            } else {
                let line = json!({"jsonrpc": "2.0", "method": method, "params": {"name": tool}});
                Message {
                    bytes: line.to_string().into_bytes(),
                    answer: Some(Value::Null),
                }
            }
        }
        14 => {
            let garbage = *rng.pick(&[
                "not json",
                "{",
                "{\"jsonrpc\":\"2.0\",}",
                "nul",
                "{} {}",
                "\"\\ud800\"",
            ]);
            Message {
                bytes: garbage.as_bytes().to_vec(),
                answer: Some(Value::Null),
            }
        }
        15 => Message {
            bytes: b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\"\xff\xfe\"}"
                .to_vec(),
            answer: Some(Value::Null),
        },
        16 => {
            let size = MAX_MESSAGE + 1 + rng.below(3 * MAX_MESSAGE);
            let line = request(
                &json!(1),
                "tools/call",
                json!({"name": "whmcs_get_ticket", "arguments": {"pad": "p".repeat(size)}}),
            );
            Message {
                bytes: line.into_bytes(),
                answer: Some(Value::Null),
            }
        }
        17 => {
            let bad = *rng.pick(&["null", "true", "{}", "[1]"]);
            let line = format!(
                r#"{{"jsonrpc":"2.0","id":{bad},"method":"tools/call","params":{{"name":"{tool}"}}}}"#
            );
            Message {
                bytes: line.into_bytes(),
                answer: Some(Value::Null),
            }
        }
        18 => {
            // A response to a request the server never made: neither answered nor relayed.
            let line = json!({"jsonrpc": "2.0", "id": "srv-unknown", "result": {}});
            Message {
                bytes: line.to_string().into_bytes(),
                answer: None,
            }
        }
        _ => {
            let id = odd_id(rng, used);
            let line = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments(rng),
                    "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
            Message {
                bytes: line.to_string().into_bytes(),
                answer: Some(id),
            }
        }
    }
}

/// Folds keys as the Go-like server does, to compare with its log.
fn allowed_run(tool: &str, args: &Value) -> Result<(), String> {
    if !ALLOWED.contains(&tool) {
        return Err(format!("the server ran {tool}, which the policy refuses"));
    }
    if tool == "whmcs_update_ticket" && args.get("priority") == Some(&json!("Emergency")) {
        return Err(format!("the server ran an emergency update: {args}"));
    }
    if tool == "whmcs_add_credit"
        && !args
            .get("amount")
            .and_then(Value::as_f64)
            .is_some_and(|a| a <= 100.0)
    {
        return Err(format!(
            "the server ran a credit the policy refuses: {args}"
        ));
    }
    Ok(())
}

fn key(id: &Value) -> String {
    id.to_string()
}

/// The ticket a lenient server reads from an argument (Python's `int`, after `float`).
fn lenient_ticket(id: &Value) -> Option<i64> {
    match id {
        Value::Number(n) => n.as_f64().map(|f| f as i64),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|f| f as i64),
        _ => None,
    }
}

fn run_stream(seed: u64, length: usize) {
    let mut rng = Rng(seed | 1);
    let mut used = Vec::new();
    let messages: Vec<Message> = (0..length).map(|_| message(&mut rng, &mut used)).collect();
    let mut server = gateway::go_like_server();
    match seed % 3 {
        1 => server.push("--nested-listing".into()),
        2 => server.push("--case-variant-listing".into()),
        _ => {}
    }
    let max_message = MAX_MESSAGE.to_string();
    let mut gw = Session::start(
        POLICY,
        &[
            "--grant",
            "g1",
            "--max-message",
            &max_message,
            "--request-timeout",
            "1",
        ],
        &server,
    );
    let mut expected: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        if let Some(id) = &m.answer {
            *expected.entry(key(id)).or_default() += 1;
        }
        gw.send_bytes(&m.bytes);
    }
    let total: usize = expected.values().sum();
    let mut answered: HashMap<String, usize> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer_server = |gw: &mut Session, message: &Value| {
        // A request from the server: answer it, as a client would.
        let reply = json!({"jsonrpc": "2.0", "id": message["id"], "result": {"roots": []}});
        gw.send(&reply.to_string());
    };
    while count < total {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = gw.next_within(left) else {
            panic!(
                "seed {seed}: {count} of {total} answers; missing: {:?}",
                diff(&expected, &answered)
            );
        };
        if message.get("method").is_some() {
            if message.get("id").is_some() {
                answer_server(&mut gw, &message);
            }
            continue;
        }
        check_tools_list(seed, &message);
        *answered.entry(key(&message["id"])).or_default() += 1;
        count += 1;
    }
    // Nothing more may come: slow answers are due within the request timeout.
    while let Some(extra) = gw.next_within(Duration::from_millis(1500)) {
        if extra.get("method").is_none() {
            panic!("seed {seed}: an answer too many: {extra}");
        }
    }
    assert_eq!(answered, expected, "seed {seed}: answers by id");

    let mut updates = 0;
    let mut failures = 0;
    let mut reads: HashMap<i64, usize> = HashMap::new();
    for (tool, args) in gw.tools_run() {
        if let Err(why) = allowed_run(&tool, &args) {
            panic!("seed {seed}: {why}");
        }
        updates += usize::from(tool == "whmcs_update_ticket");
        failures += usize::from(tool == "whmcs_fail");
        if tool == "whmcs_get_ticket" {
            let ticket = args.get("ticket_id").and_then(lenient_ticket);
            let ticket = ticket.unwrap_or_else(|| {
                panic!("seed {seed}: a read without a usable ticket id ran: {args}")
            });
            *reads.entry(ticket).or_default() += 1;
        }
    }
    for (ticket, n) in reads {
        assert!(
            n <= 2,
            "seed {seed}: ticket {ticket} was read {n} times; the limit is 2"
        );
    }
    assert!(
        updates <= 3,
        "seed {seed}: {updates} updates ran; the limit is 3"
    );
    assert!(
        failures <= 4,
        "seed {seed}: {failures} failing calls ran; the limit is 4"
    );
    // Resources and prompts reached the server only as the policy allows, within limits.
    let policy: mcp_policy::Policy = POLICY.parse().unwrap();
    let judge = mcp_policy::Engine::new(policy);
    let mut reads = 0;
    for line in gw.server_log() {
        let record: Value = serde_json::from_str(&line).unwrap();
        if let Some(uri) = record.get("read") {
            let uri = uri.as_str().unwrap_or_default();
            let decision = judge.peek(&mcp_policy::ToolCall::resource(uri).grant("g1"));
            assert!(
                decision.is_allowed(),
                "seed {seed}: {uri} reached the server: {decision}"
            );
            assert!(
                ["resources/read", "resources/subscribe"]
                    .contains(&record["method"].as_str().unwrap()),
                "seed {seed}: {record}"
            );
            reads += 1;
        }
        if let Some(name) = record.get("prompt") {
            assert_eq!(name, "summarize", "seed {seed}: {record}");
            assert_eq!(record["method"], "prompts/get", "seed {seed}: {record}");
        }
    }
    assert!(reads <= 3, "seed {seed}: {reads} reads ran; the limit is 3");
    for line in gw.server_log() {
        let record: Value = serde_json::from_str(&line).unwrap();
        if let Some(received) = record.get("received") {
            assert!(
                received.is_object(),
                "seed {seed}: the server got {received}"
            );
            if received["method"]
                .as_str()
                .map(str::to_lowercase)
                .as_deref()
                == Some("tools/call")
            {
                assert_eq!(received["method"], "tools/call", "seed {seed}: {received}");
                assert!(received["id"].is_u64(), "seed {seed}: {received}");
            }
        }
        assert!(
            record.get("unreadable").is_none(),
            "seed {seed}: the server got {record}"
        );
    }
    let peak = gw.peak_memory_kib();
    assert!(
        peak < 64 * 1024,
        "seed {seed}: the gateway peaked at {peak} KiB"
    );
    let (status, stderr) = gw.finish();
    assert!(status.success(), "seed {seed}: {stderr}");
}

fn check_tools_list(seed: u64, answer: &Value) {
    if let Some(tools) = answer["result"]["tools"].as_array() {
        for tool in tools {
            let name = tool["name"].as_str().unwrap_or_default();
            assert!(
                !name.starts_with("whmcs_delete_") && name != "whmcs_close_client",
                "seed {seed}: tools/list shows {name}"
            );
        }
    }
}

fn diff(expected: &HashMap<String, usize>, answered: &HashMap<String, usize>) -> Vec<String> {
    expected
        .iter()
        .filter(|(id, n)| answered.get(*id) != Some(n))
        .map(|(id, n)| format!("{id}: {} of {n}", answered.get(id).copied().unwrap_or(0)))
        .collect()
}

#[test]
fn random_traffic_never_gets_past_the_gateway() {
    let streams: u64 = env_number("GATEWAY_FUZZ_STREAMS", 6);
    let first: u64 = env_number("GATEWAY_FUZZ_SEED", 0x9e37_79b9_7f4a_7c15);
    for n in 0..streams {
        run_stream(first.wrapping_add(n.wrapping_mul(0x1000_0001)), 150);
    }
}
