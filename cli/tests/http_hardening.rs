//! The HTTP gateway process against this round's attacks: a hostile, lenient upstream
//! (`tests/servers/hostile_http_server.py`: runs calls under any method, answers
//! `tools/list` with CR-only event streams, has a tool that takes 20 s), the SDK's own
//! resumable server, and clients that send half a request and stop.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::{gateway, http_stack, redis_server};

use http_stack::{Stack, TOKEN};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn call(tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": {}}})
    .to_string()
}

#[test]
fn other_methods_and_their_bodies_never_reach_a_lenient_upstream() {
    let stack = Stack::hostile(&[]);
    let bearer = bearer();
    let auth = ("authorization", bearer.as_str());
    for method in ["PUT", "PATCH", "OPTIONS", "post"] {
        let (status, head, _) = stack.send(method, &call("whmcs_close_client"), &[auth]);
        assert_eq!(status, 405, "{method}");
        assert!(head.contains("allow: get, post, delete"), "{head}");
    }
    let (status, _, _) = stack.send("DELETE", &call("whmcs_close_client"), &[auth]);
    assert_eq!(status, 400, "DELETE with a body");
    // A second Mcp-Name naming the denied tool.
    let headers = [
        auth,
        ("mcp-name", "whmcs_get_ticket"),
        ("mcp-name", "whmcs_close_client"),
    ];
    let (status, _, body) = stack.post(&call("whmcs_get_ticket"), &headers);
    assert_eq!(status, 400, "{body}");
    assert_eq!(stack.tools_run("whmcs_close_client"), 0);
    assert_eq!(stack.tools_run("whmcs_get_ticket"), 0);
    // The one route that remains works.
    let (status, _, body) = stack.post(&call("whmcs_get_ticket"), &[auth]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.tools_run("whmcs_get_ticket"), 1);
}

#[test]
fn an_event_stream_with_cr_line_endings_is_filtered() {
    let stack = Stack::hostile(&[]);
    let bearer = bearer();
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).to_string();
    let (status, _, body) = stack.post(&list, &[("authorization", bearer.as_str())]);
    assert_eq!(status, 200);
    assert!(body.contains("whmcs_get_ticket"), "{body:?}");
    assert!(!body.contains("whmcs_delete_client"), "{body:?}");
}

#[test]
fn the_request_timeout_holds_in_http_mode() {
    let stack = Stack::hostile(&["--request-timeout".into(), "2".into()]);
    let bearer = bearer();
    let started = Instant::now();
    let (status, _, body) = stack.post(&call("whmcs_slow"), &[("authorization", bearer.as_str())]);
    // The upstream takes 20 s; the gateway answers at its 2 s timeout (loose bound).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within 2 s"), "{body}");
}

#[test]
fn half_sent_requests_are_dropped_and_the_connection_cap_waits_without_spinning() {
    let stack = Stack::hostile(&["--max-connections".into(), "2".into()]);
    // Two connections that send half a head and stop hold both places...
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&stack.addr).unwrap();
            stream
                .write_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // ...so a real request waits in the queue until the header timeout (10 s) frees one.
    let bearer = bearer();
    let (status, _, _) = stack.post(
        &call("whmcs_get_ticket"),
        &[("authorization", bearer.as_str())],
    );
    assert_eq!(status, 200);
    for stream in &mut stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the gateway: the read ends (an error response, then EOF, or a reset).
        let _ = stream.read_to_end(&mut rest);
    }
    // The gateway stayed idle meanwhile (no accept loop spinning at 100 %).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", stack.gateway.0.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    assert!(ticks < 500, "the gateway used {ticks} clock ticks of CPU");
}

/// The SDK's own resumable server: a client that resumes a stream with `GET` and
/// `Last-Event-ID` must not get its `tools/list` answer replayed unfiltered.
#[test]
#[ignore = "needs the MCP Python SDK"]
fn a_resumed_stream_replays_nothing_unfiltered() {
    let python = gateway::python_with_sdk();
    let stack = Stack::start(&python, "resumable");
    let bearer = bearer();
    let auth = ("authorization", bearer.as_str());
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let (status, head, _) = stack.post(&init, &[auth]);
    assert_eq!(status, 200, "{head}");
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .unwrap()
        .trim()
        .to_owned();
    let in_session = [
        auth,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    stack.post(initialized, &in_session);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let (status, _, body) = stack.post(&list, &in_session);
    assert_eq!(status, 200);
    assert!(
        body.contains("whmcs_get_ticket") && !body.contains("whmcs_delete_client"),
        "{body}"
    );
    let first_id = body
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("the resumable server numbers its events")
        .trim()
        .to_owned();
    // Resume after the first event: the server replays the listing.
    let mut stream = TcpStream::connect(&stack.addr).unwrap();
    let mut request = format!(
        "GET /mcp HTTP/1.1\r\nhost: {}\r\naccept: text/event-stream\r\nlast-event-id: {first_id}\r\n",
        stack.addr
    );
    for (name, value) in in_session {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut replayed = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        replayed.extend_from_slice(&chunk[..n]);
    }
    let replayed = String::from_utf8_lossy(&replayed);
    assert!(replayed.starts_with("HTTP/1.1 200"), "{replayed}");
    // The listing's event was replayed (its id passes); its message, answered already,
    // is not relayed a second time, and never unfiltered.
    assert!(
        replayed.contains("event: message"),
        "nothing was replayed: {replayed}"
    );
    assert!(!replayed.contains("whmcs_delete_client"), "{replayed}");
}

/// With counts in Redis and Redis paused, limited calls wait out the store's timeout on
/// the blocking pool: the runtime's workers go on serving, so a call with no limit is
/// answered at once, and every limited call is refused within about the timeout.
#[test]
#[ignore = "needs redis-server"]
fn a_paused_redis_holds_no_runtime_worker() {
    let redis = redis_server::RedisServer::start();
    let stack = Stack::hostile(&["--redis".into(), redis.url()]);
    let bearer = bearer();
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(stack.post(&call("whmcs_get_ticket"), &auth).0, 200);
    redis.pause();
    let started = Instant::now();
    let (limited, free) = std::thread::scope(|scope| {
        let limited: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    let began = Instant::now();
                    let answer = stack.post(&call("whmcs_get_ticket"), &auth);
                    (answer, began.elapsed())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let before = Instant::now();
        let (status, _, body) = stack.post(&call("whmcs_ping"), &auth);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ran whmcs_ping"), "{body}");
        let free = before.elapsed();
        let limited: Vec<_> = limited.into_iter().map(|t| t.join().unwrap()).collect();
        (limited, free)
    });
    let all = started.elapsed();
    redis.resume();
    let slowest = limited
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    println!(
        "Redis paused: a call with no limit took {free:?}; 32 limited calls all refused \
         within {all:?}, the slowest after {slowest:?}"
    );
    for ((status, _, body), _) in &limited {
        assert_eq!(*status, 200);
        assert!(body.contains("store_failed"), "{body}");
    }
    // Loose bounds: 32 calls blocking two workers for 1 s each took 16 s and more.
    assert!(
        free < Duration::from_secs(3),
        "the call with no limit took {free:?}"
    );
    assert!(
        all < Duration::from_secs(6),
        "the limited calls took {all:?}"
    );
}
