//! `http::PolicyLayer` in front of a `tower` service that answers like an MCP Streamable
//! HTTP server (JSON or an event stream, as the request asks) and records every request
//! that reaches it. Futures are driven by a small executor on the test thread.

#![cfg(feature = "http")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/block_on.rs"]
mod block_on;

use block_on::block_on;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_policy::http::{Identity, PolicyLayer};
use mcp_policy::{Engine, ManualClock, Policy};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// An MCP server's HTTP side: `tools/list` lists a hidden and a denied tool; `tools/call`
/// of `fail` is an `isError` result and of `missing` a JSON-RPC error; answers are
/// event streams when the request's `x-test-sse` header is set.
#[derive(Clone, Default)]
struct Server {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Service<Request<Full<Bytes>>> for Server {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let sse = request.headers().contains_key("x-test-sse");
        let body = block_on(request.into_body().collect()).unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&body).unwrap();
        self.received.lock().unwrap().push(message.clone());
        let id = message["id"].clone();
        let answer = match (
            message["method"].as_str(),
            message["params"]["name"].as_str(),
        ) {
            (Some("tools/list"), _) => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
                {"name": "get_ticket"}, {"name": "delete_client"}, {"name": "close_client"}]}}),
            (Some("tools/call"), Some("missing")) => json!({"jsonrpc": "2.0", "id": id,
                "error": {"code": -32602, "message": "no such tool"}}),
            (Some("tools/call"), Some(name)) => json!({"jsonrpc": "2.0", "id": id, "result": {
                "content": [{"type": "text", "text": format!("ran {name}")}], "isError": name == "fail"}}),
            (Some("initialize"), _) => json!({"jsonrpc": "2.0", "id": id, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {}}}}),
            _ => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        };
        let session = message["method"] == "initialize";
        let response = if sse {
            let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": 1, "progress": 0.5}});
            let stream = format!("event: message\ndata: {progress}\n\nid: 7\ndata: {answer}\n\n");
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(stream)))
        } else {
            let mut builder = Response::builder().header("content-type", "application/json");
            if session {
                builder = builder.header("mcp-session-id", "s1");
            }
            builder.body(Full::new(Bytes::from(answer.to_string())))
        };
        std::future::ready(Ok(response.unwrap()))
    }
}

const POLICY: &str = r#"{"version": "1", "hide": ["delete_*"], "tools": {
    "get_ticket": {}, "fail": {"limits": [{"window": "minute", "max": 1}]},
    "missing": {"limits": [{"window": "minute", "max": 1}]},
    "close_client": {"action": "deny", "reason": "never automated"},
    "send_email": {"action": "require_approval", "reason": "emails are reviewed"},
    "add_credit": {"action": "require_approval", "reason": "credits need a second person",
        "approvers": "console"}}}"#;

type LayerService = mcp_policy::http::PolicyService<Server, fn(&http::request::Parts) -> Identity>;

struct Harness {
    server: Server,
    service: LayerService,
}

fn grant_header(parts: &http::request::Parts) -> Identity {
    Identity {
        grant: parts
            .headers
            .get("x-grant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..Identity::default()
    }
}

fn harness() -> Harness {
    harness_with(|layer| layer)
}

type TestLayer = PolicyLayer<fn(&http::request::Parts) -> Identity>;

fn harness_with(configure: impl FnOnce(TestLayer) -> TestLayer) -> Harness {
    let engine = Engine::builder(POLICY.parse::<Policy>().unwrap())
        .clock(ManualClock::new())
        .build();
    let identity: fn(&http::request::Parts) -> Identity = grant_header;
    let layer = configure(PolicyLayer::new(engine, identity).max_body(10_000));
    let server = Server::default();
    Harness {
        service: layer.layer(server.clone()),
        server,
    }
}

impl Harness {
    fn post(&mut self, body: &str, headers: &[(&str, &str)]) -> (StatusCode, String, String) {
        let mut request = Request::post("/mcp").header("x-grant", "g1");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = block_on(self.service.call(request)).unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
        (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn call(&mut self, id: u64, tool: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": {}}});
        let (status, _, text) = self.post(&body.to_string(), headers);
        (status, serde_json::from_str(&text).unwrap())
    }

    fn received(&self) -> usize {
        self.server.received.lock().unwrap().len()
    }

    /// How many calls of `tool` reached the service.
    fn calls_of(&self, tool: &str) -> usize {
        self.server
            .received
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m["params"]["name"] == tool)
            .count()
    }
}

#[test]
fn allowed_calls_are_forwarded_and_refusals_answered_by_the_layer() {
    let mut h = harness();
    let (status, answer) = h.call(41, "get_ticket", &[]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["id"], 41, "the client's id comes back: {answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "ran get_ticket");
    let (status, answer) = h.call(42, "close_client", &[]);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"]["structuredContent"]["code"], "rule_denied");
    assert_eq!(h.received(), 1, "only the allowed call reached the server");
}

#[test]
fn batches_id_less_calls_and_large_bodies_never_reach_the_service() {
    let mut h = harness();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket"}}"#;
    let (status, _, text) = h.post(&format!("[{call}]"), &[]);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, _, _) = h.post(
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"get_ticket"}}"#,
        &[],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = h.post(&format!("{{\"pad\":\"{}\"}}", "x".repeat(20_000)), &[]);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, _) = h.post(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_ticket","NAME":"close_client"}}"#,
        &[],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(h.received(), 0);
}

#[test]
fn headers_must_match_the_body_and_are_required_on_2026_07_28() {
    let mut h = harness();
    let modern = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        .to_string()
    };
    let (status, _, text) = h.post(&modern("get_ticket"), &[]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("-32020") && text.contains("Mcp-Method"),
        "{text}"
    );
    let (status, _, text) = h.post(
        &modern("get_ticket"),
        &[("mcp-method", "tools/call"), ("mcp-name", "close_client")],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, _, text) = h.post(
        &modern("get_ticket"),
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?Z2V0X3RpY2tldA==?="),
        ],
    );
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("resultType"), "a 2026 result: {text}");
    // A protocol version header that contradicts the request's _meta.
    let (status, _, text) = h.post(
        &modern("get_ticket"),
        &[
            ("mcp-method", "tools/call"),
            ("mcp-name", "get_ticket"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("MCP-Protocol-Version"), "{text}");
    // Older revisions: optional, but a contradicting one is refused.
    assert_eq!(h.call(2, "get_ticket", &[]).0, StatusCode::OK);
    assert_eq!(
        h.call(3, "get_ticket", &[("mcp-method", "tools/list")]).0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(h.received(), 2);
}

#[test]
fn tools_list_is_filtered_in_json_and_in_event_streams() {
    let mut h = harness();
    let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
    let (_, kind, text) = h.post(list, &[]);
    assert_eq!(kind, "application/json");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["result"]["tools"], json!([{"name": "get_ticket"}]));
    let (_, kind, text) = h.post(list, &[("x-test-sse", "1")]);
    assert_eq!(kind, "text/event-stream");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(events[0].starts_with("event: message\ndata: "), "{text}");
    assert!(events[0].contains("notifications/progress"));
    assert!(events[1].starts_with("id: 7\ndata: "), "{text}");
    let answer: Value =
        serde_json::from_str(events[1].trim_start_matches("id: 7\ndata: ")).unwrap();
    assert_eq!(answer["id"], 5);
    assert_eq!(answer["result"]["tools"], json!([{"name": "get_ticket"}]));
}

#[test]
fn outcomes_are_read_from_json_and_from_event_streams() {
    for sse in [false, true] {
        let mut h = harness();
        let headers: &[(&str, &str)] = if sse { &[("x-test-sse", "1")] } else { &[] };
        let read = |h: &mut Harness, id, tool| -> Value {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool}});
            let (_, _, text) = h.post(&body.to_string(), headers);
            let data = text
                .split("\n\n")
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .last()
                .map(str::to_owned)
                .unwrap_or(text);
            serde_json::from_str(&data).unwrap()
        };
        // A failing call counts (one a minute): the next is limited.
        assert_eq!(read(&mut h, 1, "fail")["result"]["isError"], true);
        assert_eq!(
            read(&mut h, 2, "fail")["result"]["structuredContent"]["code"],
            "rate_limited"
        );
        // A call the server never ran (JSON-RPC error) is given back.
        assert_eq!(read(&mut h, 3, "missing")["error"]["code"], -32602);
        assert_eq!(
            read(&mut h, 4, "missing")["error"]["code"],
            -32602,
            "sse: {sse}"
        );
        assert_eq!(h.received(), 3);
    }
}

fn approvals() -> mcp_policy::mcp::Approvals {
    let key = mcp_policy::mcp::ApprovalKey::from_hex(&"3".repeat(64)).unwrap();
    mcp_policy::mcp::Approvals::new(key)
}

/// Initializes a session that can elicit, then asks to call `send_email`: the held
/// response, whose first event is the approval request (returned with its id).
fn held_call(h: &mut Harness) -> (HeldBody, Value) {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{}}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"x"}}}"#;
    let (body, ask) = initialized_and_asked(h, init, call);
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    (body, ask)
}

/// Initializes session `s1` with `init`, then posts `call` for grant `g1`: the held
/// response and its first event.
fn initialized_and_asked(h: &mut Harness, init: &str, call: &'static str) -> (HeldBody, Value) {
    assert_eq!(h.post(init, &[]).0, StatusCode::OK);
    let request = Request::post("/mcp")
        .header("x-grant", "g1")
        .header("mcp-session-id", "s1")
        .body(Full::new(Bytes::from(call)))
        .unwrap();
    asked(&mut h.service, request)
}

type HeldBody = http_body_util::combinators::UnsyncBoxBody<Bytes, mcp_policy::http::BoxError>;

/// Sends a call the layer holds: the rest of its event stream, and its first event (the
/// approval request).
fn asked(service: &mut LayerService, request: Request<Full<Bytes>>) -> (HeldBody, Value) {
    let response = block_on(service.call(request)).unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = block_on(body.frame())
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let text = String::from_utf8(first.to_vec()).unwrap();
    let ask = serde_json::from_str(text.trim().trim_start_matches("event: message\ndata: "));
    (body, ask.unwrap())
}

fn rest(body: HeldBody) -> Value {
    let bytes = block_on(body.collect()).unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .next_back()
        .unwrap()
        .to_owned();
    serde_json::from_str(&data).unwrap()
}

#[test]
fn older_sessions_are_asked_on_the_calls_stream_and_answer_with_a_post() {
    let mut h = harness_with(|layer| layer.approvals(approvals()));
    let (body, ask) = held_call(&mut h);
    assert!(ask["params"]["message"]
        .as_str()
        .unwrap()
        .contains("emails are reviewed"));
    let yes = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"approve": true}}});
    let (status, _, _) = h.post(&yes.to_string(), &[("mcp-session-id", "s1")]);
    assert_eq!(status, StatusCode::ACCEPTED);
    let result = rest(body);
    assert_eq!(result["id"], 9);
    assert_eq!(result["result"]["content"][0]["text"], "ran send_email");
    assert_eq!(h.calls_of("send_email"), 1);

    let (body, ask) = held_call(&mut h);
    // Whoever learns the request's id cannot answer it from another session.
    let yes = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept", "content": {"approve": true}}});
    h.post(&yes.to_string(), &[("mcp-session-id", "s2")]);
    h.post(&yes.to_string(), &[]);
    let no = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "decline"}});
    assert_eq!(
        h.post(&no.to_string(), &[("mcp-session-id", "s1")]).0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        rest(body)["result"]["structuredContent"]["code"],
        "approval_declined"
    );
    assert_eq!(h.calls_of("send_email"), 1, "the declined call never ran");
}

#[test]
fn an_unanswered_approval_request_times_out_as_a_decline() {
    // A timer that has already run out.
    let timer: mcp_policy::http::Timer = Arc::new(|_| Box::pin(std::future::ready(())));
    let mut h = harness_with(|layer| layer.approvals(approvals()).timer(timer));
    let (body, _) = held_call(&mut h);
    assert_eq!(
        rest(body)["result"]["structuredContent"]["code"],
        "approval_declined"
    );
    // Without elicitation in initialize, the call gets approval_required.
    let mut h = harness_with(|layer| layer.approvals(approvals()));
    let (_, answer) = h.call(3, "send_email", &[]);
    assert_eq!(
        answer["result"]["structuredContent"]["code"],
        "approval_required"
    );
}

/// The layer with a console board, and a timer whose console polls come at once and whose
/// other deadlines never do.
fn console_harness() -> (Harness, Arc<mcp_policy::mcp::MemoryBoard>) {
    let board = Arc::new(mcp_policy::mcp::MemoryBoard::new());
    let console = approvals().console(board.clone(), "https://console.test");
    let timer: mcp_policy::http::Timer = Arc::new(|after| {
        if after < std::time::Duration::from_secs(1) {
            Box::pin(std::future::ready(()))
        } else {
            Box::pin(std::future::pending())
        }
    });
    (
        harness_with(|layer| layer.approvals(console).timer(timer)),
        board,
    )
}

#[test]
fn a_console_approval_is_asked_with_a_url_on_the_calls_stream_and_the_call_runs_once_decided() {
    use mcp_policy::mcp::{ApprovalBoard, Verdict};
    let (mut h, board) = console_harness();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"elicitation":{"url":{}}}}}"#;
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"add_credit","arguments":{"amount":5}}}"#;
    let (body, ask) = initialized_and_asked(&mut h, init, call);
    assert_eq!(ask["params"]["mode"], "url", "{ask}");
    let id = ask["params"]["elicitationId"].as_str().unwrap().to_owned();
    assert_eq!(
        ask["params"]["url"],
        format!("https://console.test/approvals/{id}")
    );
    // The user opened the page: the call stays held.
    let opened = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}});
    let (status, _, _) = h.post(&opened.to_string(), &[("mcp-session-id", "s1")]);
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(h.calls_of("add_credit"), 0);

    board
        .decide(&id, Verdict::by("ana", true, None, 1))
        .unwrap();
    let result = rest(body);
    assert_eq!(result["id"], 9);
    assert_eq!(result["result"]["content"][0]["text"], "ran add_credit");
    assert_eq!(h.calls_of("add_credit"), 1);

    // A client that can neither show a URL nor wait is refused approval_pending.
    let (_, answer) = h.call(10, "add_credit", &[]);
    assert_eq!(
        answer["result"]["structuredContent"]["code"],
        "approval_pending"
    );
    assert!(answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("https://console.test/approvals/"));
}
