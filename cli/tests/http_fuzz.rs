//! HTTP gateway fuzz test: random requests through the real HTTP gateway to a hostile,
//! lenient upstream (`tests/servers/hostile_http_server.py`), which runs any call it finds
//! under any method and answers `tools/list` with event streams whose lines end in CR,
//! LF or CRLF. Requests mix methods (`PUT`, `PATCH`, `OPTIONS`, a lowercase `post`…),
//! allowed and refused calls, listings, batches, garbage, and repeated or contradicting
//! `Mcp-Method`/`Mcp-Name` headers. After the run:
//! - the upstream ran only allowed tools, only under `POST`, within their limits;
//! - no answer shows a hidden tool.
//!
//! `HTTP_FUZZ_REQUESTS` (default 120) and `HTTP_FUZZ_SEED` choose the requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::fuzz::{env_number, Rng};
use common::http_stack;

use http_stack::{Stack, TOKEN};
use serde_json::{json, Value};

const TOOLS: &[&str] = &[
    "whmcs_get_ticket",
    "whmcs_update_ticket",
    "whmcs_close_client",
    "whmcs_delete_client",
    "whmcs_send_email",
    "whmcs_unknown",
];

fn body(rng: &mut Rng) -> String {
    let tool = *rng.pick(TOOLS);
    let call = json!({"jsonrpc": "2.0", "id": rng.below(1000), "method": "tools/call",
        "params": {"name": tool, "arguments": {"ticket_id": rng.below(3)}}});
    match rng.below(6) {
        0 => json!({"jsonrpc": "2.0", "id": "l", "method": "tools/list"}).to_string(),
        1 => format!("[{call}]"),
        2 => "{not json".into(),
        3 => call.to_string().replace("\"name\"", "\"NAME\""),
        _ => call.to_string(),
    }
}

#[test]
fn random_requests_never_get_past_the_http_gateway() {
    let requests: usize = env_number("HTTP_FUZZ_REQUESTS", 120);
    let seed: u64 = env_number("HTTP_FUZZ_SEED", 0x2545_f491);
    let mut rng = Rng(seed | 1);
    let stack = Stack::hostile(&[]);
    let bearer = format!("Bearer {TOKEN}");
    for n in 0..requests {
        let method = rng.pick(&[
            "POST", "POST", "POST", "POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS", "post",
        ]);
        let text = body(&mut rng);
        let mut headers = vec![("authorization", bearer.as_str())];
        match rng.below(5) {
            0 => headers.extend([
                ("mcp-name", *rng.pick(TOOLS)),
                ("mcp-name", *rng.pick(TOOLS)),
            ]),
            1 => headers.push(("mcp-name", *rng.pick(TOOLS))),
            2 => headers.extend([("mcp-method", "tools/call"), ("mcp-method", "tools/list")]),
            _ => {}
        }
        let (status, _, answer) = stack.send(method, &text, &headers);
        let compact: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(
            !compact.contains(r#""name":"whmcs_delete_client""#) && !compact.contains("made-up"),
            "seed {seed}, request {n}: {method} {text} got {status}: {answer}"
        );
    }
    let log = std::fs::read_to_string(stack.dir.join("server.log")).unwrap_or_default();
    let mut updates = 0;
    for line in log.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["method"], "POST", "seed {seed}: {record}");
        let tool = record["ran"].as_str().unwrap();
        assert!(
            ["whmcs_get_ticket", "whmcs_update_ticket"].contains(&tool),
            "seed {seed}: the upstream ran {tool}"
        );
        updates += usize::from(tool == "whmcs_update_ticket");
    }
    assert!(
        updates <= 1,
        "seed {seed}: {updates} updates; the limit is 1 a minute"
    );
}
