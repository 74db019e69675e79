//! `http::PolicyLayer` against what an attacker tried this round: other methods, repeated
//! headers, event streams with CR line endings, the server's `GET` stream and streams
//! resumed with `Last-Event-ID`, an upstream that never answers; and the blocking pool.

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
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_policy::http::{Identity, PolicyLayer, PolicyService, Timer};
use mcp_policy::{Engine, ManualClock, Policy};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

type Answer = Arc<dyn Fn(&Method, &Value) -> Option<Response<Full<Bytes>>> + Send + Sync>;

/// An upstream that records what reaches it and answers with `answer` (never, for `None`).
#[derive(Clone)]
struct Upstream {
    received: Arc<Mutex<Vec<(Method, Value)>>>,
    answer: Answer,
}

impl Service<Request<Full<Bytes>>> for Upstream {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let method = request.method().clone();
        let body = block_on(request.into_body().collect()).unwrap().to_bytes();
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        self.received
            .lock()
            .unwrap()
            .push((method.clone(), message.clone()));
        match (self.answer)(&method, &message) {
            Some(response) => Box::pin(std::future::ready(Ok(response))),
            None => Box::pin(std::future::pending()),
        }
    }
}

fn sse(text: String) -> Option<Response<Full<Bytes>>> {
    Some(
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from(text)))
            .unwrap(),
    )
}

const POLICY: &str = r#"{"version": "1", "default": "allow", "hide": ["delete_*"],
    "tools": {"close_client": {"action": "deny"}}}"#;

type Gate = PolicyService<Upstream, fn(&http::request::Parts) -> Identity>;

fn identity(_: &http::request::Parts) -> Identity {
    Identity {
        grant: Some("g1".into()),
        ..Identity::default()
    }
}

fn gate(answer: Answer, configure: impl FnOnce(TestLayer) -> TestLayer) -> (Gate, Upstream) {
    let engine = Engine::builder(POLICY.parse::<Policy>().unwrap())
        .clock(ManualClock::new())
        .build();
    let identity: fn(&http::request::Parts) -> Identity = identity;
    let upstream = Upstream {
        received: Arc::default(),
        answer,
    };
    let layer = configure(PolicyLayer::new(engine, identity));
    (layer.layer(upstream.clone()), upstream)
}

type TestLayer = PolicyLayer<fn(&http::request::Parts) -> Identity>;

fn send(
    gate: &mut Gate,
    method: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri("/mcp");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = block_on(gate.call(request)).unwrap();
    let status = response.status();
    let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn close_client_call() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "close_client", "arguments": {}}})
    .to_string()
}

fn listing(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
        {"name": "get_ticket"}, {"name": "delete_client"}]}})
}

/// The `data` of each event of an event stream (LF endings, as the layer writes them).
fn messages(stream: &str) -> Vec<Value> {
    stream
        .split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

#[test]
fn only_post_get_and_delete_reach_the_upstream_and_only_post_with_a_body() {
    let ok: Answer = Arc::new(|_, _| sse(String::new()));
    let (mut gate, upstream) = gate(ok, |layer| layer);
    for method in ["PUT", "PATCH", "OPTIONS", "post", "TRACE", "CONNECT"] {
        let (status, _) = send(&mut gate, method, &[], &close_client_call());
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
    for method in ["DELETE", "GET"] {
        let (status, _) = send(&mut gate, method, &[], &close_client_call());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} with a body");
    }
    assert!(upstream.received.lock().unwrap().is_empty());
    let (status, _) = send(&mut gate, "DELETE", &[("mcp-session-id", "s1")], "");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(upstream.received.lock().unwrap().len(), 1);
}

#[test]
fn a_repeated_mcp_header_is_refused() {
    let ok: Answer = Arc::new(|_, m| sse(format!("data: {}\n\n", listing(&m["id"]))));
    let (mut gate, upstream) = gate(ok, |layer| layer);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "get_ticket", "arguments": {}}})
    .to_string();
    for headers in [
        [("mcp-name", "get_ticket"), ("mcp-name", "close_client")],
        [("mcp-method", "tools/call"), ("mcp-method", "tools/list")],
    ] {
        let (status, body) = send(&mut gate, "POST", &headers, &call);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("-32020"), "{body}");
    }
    assert!(upstream.received.lock().unwrap().is_empty());
}

#[test]
fn event_streams_with_cr_line_endings_are_parsed_and_filtered() {
    // `id: 1\rdata: …` once passed through unparsed, hidden tool and all.
    let cr: Answer = Arc::new(|_, m| {
        sse(format!(
            "id: 1\rdata: {}\r\r: comment\r\nid: 2\r\ndata: {}\r\n\r\n",
            listing(&m["id"]),
            listing(&m["id"])
        ))
    });
    let (mut gate, _) = gate(cr, |layer| layer);
    let list = json!({"jsonrpc": "2.0", "id": "l1", "method": "tools/list"}).to_string();
    let (status, body) = send(&mut gate, "POST", &[], &list);
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("delete_client"), "{body:?}");
    let got = messages(&body);
    assert_eq!(got.len(), 1, "one answer per request: {body:?}");
    assert_eq!(got[0]["id"], "l1");
    assert_eq!(got[0]["result"]["tools"], json!([{"name": "get_ticket"}]));
    assert!(body.contains("id: 1\n"), "event ids pass: {body:?}");
}

#[test]
fn the_get_stream_and_a_resumed_stream_are_filtered_and_matched() {
    // The upstream answers the POST with a stream cut before its answer; the answer comes
    // again on the resumed GET stream, as the SDK's resumable server does.
    let minted = Arc::new(Mutex::new(Value::Null));
    let seen = Arc::clone(&minted);
    let upstream: Answer = Arc::new(move |method, message| {
        if method == Method::POST {
            *seen.lock().unwrap() = message["id"].clone();
            return sse("id: 1\ndata:\n\n".into());
        }
        let id = seen.lock().unwrap().clone();
        sse(format!(
            "id: 2\ndata: {}\n\nid: 3\ndata: {}\n\n",
            listing(&id),
            listing(&json!(999))
        ))
    });
    let (mut gate, _) = gate(upstream, |layer| layer);
    let session = [("mcp-session-id", "s1")];
    let list = json!({"jsonrpc": "2.0", "id": "mine", "method": "tools/list"}).to_string();
    let (status, body) = send(&mut gate, "POST", &session, &list);
    assert_eq!(status, StatusCode::OK);
    assert!(messages(&body).is_empty(), "{body:?}");
    assert_ne!(
        *minted.lock().unwrap(),
        json!("mine"),
        "the upstream sees the gateway's id"
    );
    let resume = [("mcp-session-id", "s1"), ("last-event-id", "1")];
    let (status, body) = send(&mut gate, "GET", &resume, "");
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("delete_client"), "{body:?}");
    let got = messages(&body);
    // The answer goes back under the client's id, filtered; an answer to no request of
    // this session is dropped.
    assert_eq!(got.len(), 1, "{body:?}");
    assert_eq!(got[0]["id"], "mine");
    assert_eq!(got[0]["result"]["tools"], json!([{"name": "get_ticket"}]));
    // Another session's stream gets nothing of this one's.
    let (_, other) = send(&mut gate, "GET", &[("mcp-session-id", "s2")], "");
    assert!(messages(&other).is_empty(), "{other:?}");
}

#[test]
fn an_upstream_that_never_answers_times_out_and_the_call_keeps_its_units() {
    let never: Answer = Arc::new(|_, _| None);
    // A timer that has run out: the upstream's answer is never awaited.
    let timer: Timer = Arc::new(|_| Box::pin(std::future::ready(())));
    let (mut gate, upstream) = gate(never, |layer| layer.timer(timer));
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "get_ticket", "arguments": {}}})
    .to_string();
    let (status, body) = send(&mut gate, "POST", &[], &call);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["id"], 5, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("may or may not have run"));
    assert_eq!(upstream.received.lock().unwrap().len(), 1);
}

#[test]
fn a_blocking_pool_runs_the_decisions() {
    let jobs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&jobs);
    let pool: mcp_policy::http::Blocking = Arc::new(move |job| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(job);
    });
    let ok: Answer = Arc::new(|_, m| sse(format!("data: {}\n\n", listing(&m["id"]))));
    let (mut gate, upstream) = gate(ok, |layer| layer.blocking(pool));
    let (_, body) = send(&mut gate, "POST", &[], &close_client_call());
    assert!(body.contains("rule_denied"), "{body}");
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string();
    let (_, body) = send(&mut gate, "POST", &[], &list);
    assert_eq!(
        messages(&body)[0]["result"]["tools"],
        json!([{"name": "get_ticket"}])
    );
    assert_eq!(upstream.received.lock().unwrap().len(), 1);
    assert_eq!(
        jobs.load(Ordering::SeqCst),
        3,
        "two decisions and one answer"
    );
}

/// A body that never finishes arriving.
struct Trickle;

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Pending
    }
}

#[test]
fn a_body_that_never_arrives_times_out() {
    let upstream = Upstream {
        received: Arc::default(),
        answer: Arc::new(|_, _| sse(String::new())),
    };
    let timer: Timer = Arc::new(|_| Box::pin(std::future::ready(())));
    let engine = Engine::new(POLICY.parse::<Policy>().unwrap());
    let identity: fn(&http::request::Parts) -> Identity = identity;
    let mut service = PolicyLayer::new(engine, identity)
        .timer(timer)
        .layer(upstream.clone());
    let request = Request::post("/mcp").body(Trickle).unwrap();
    let response = block_on(service.call(request)).unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(upstream.received.lock().unwrap().is_empty());
}
