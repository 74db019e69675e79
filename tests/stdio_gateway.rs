//! End to end: the stdio gateway example between a scripted MCP client and the example
//! WHMCS server, both real processes speaking newline-delimited JSON-RPC.
//!
//! `cargo test` builds the examples this test runs (target/<profile>/examples/).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_*":{},"whmcs_list_*":{},
  "whmcs_update_ticket":{"rate_limit":"2/minute"},
  "whmcs_add_ticket_reply":{"limits":[{"counter":"replies","window":"minute","max":1,"scope":"grant"}]},
  "whmcs_close_client":{"action":"deny","reason":"closing accounts is never automated"},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;

fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().and_then(Path::parent).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples (cargo test does)",
        path.display()
    );
    path
}

struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    dir: PathBuf,
}

impl Session {
    fn start(policy: &str, server: &[&str]) -> Session {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-policy-gw-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.json"), policy).unwrap();
        let mut child = Command::new(example("stdio_gateway"))
            .arg("--policy")
            .arg(dir.join("policy.json"))
            .args(["--grant", "g1", "--reload-interval-ms", "50", "--"])
            .args(server)
            .env("WHMCS_SERVER_LOG", dir.join("server.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            lines,
            dir,
        }
    }

    fn whmcs(policy: &str) -> Session {
        let server = example("whmcs_server");
        Session::start(policy, &[server.to_str().unwrap()])
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("no answer from the gateway");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        let answer = self.next();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }

    fn handshake(&mut self) {
        let init = self.request(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "whmcs-demo");
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    /// The tools the server ran, in order.
    fn server_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn finish(mut self) -> (std::process::ExitStatus, String) {
        drop(self.stdin.take());
        let output = wait_with_timeout(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
        output
    }
}

fn wait_with_timeout(child: &mut Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status, stderr);
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn allowed_calls_reach_the_server_and_come_back_unchanged() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    let answer = gw.call(1, "whmcs_get_ticket", json!({"ticket_id": 1}));
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text",
        "text": "#1 Ticket 1: invoice question — status Open, priority Medium, 0 replies"}], "isError": false}})
    );
    assert_eq!(gw.server_log(), ["whmcs_get_ticket"]);
    let (status, _) = gw.finish();
    assert!(status.success());
}

#[test]
fn refused_calls_are_answered_by_the_gateway_and_never_reach_the_server() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();

    let denied = gw.call(1, "whmcs_close_client", json!({"client_id": 7}));
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(denied["result"]["structuredContent"]["code"], "rule_denied");
    assert!(text(&denied).starts_with("denied: closing accounts is never automated."));

    assert_eq!(
        gw.call(2, "whmcs_delete_client", json!({}))["result"]["structuredContent"]["code"],
        "hidden"
    );
    assert_eq!(
        gw.call(3, "whmcs_unknown", json!({}))["result"]["structuredContent"]["code"],
        "default_denied"
    );

    let approval = gw.call(4, "whmcs_send_email", json!({"client_id": 7}));
    assert_eq!(
        approval["result"]["structuredContent"]["code"],
        "approval_required"
    );
    assert!(text(&approval).starts_with("needs approval: emails are reviewed."));

    for id in 5..7 {
        assert_eq!(
            gw.call(
                id,
                "whmcs_update_ticket",
                json!({"ticket_id": 1, "status": "Answered"})
            )["result"]["isError"],
            false
        );
    }
    let limited = gw.call(
        7,
        "whmcs_update_ticket",
        json!({"ticket_id": 1, "status": "Answered"}),
    );
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    assert!(
        text(&limited).starts_with("rate limit: retry in "),
        "{limited}"
    );

    assert_eq!(
        gw.server_log(),
        ["whmcs_update_ticket", "whmcs_update_ticket"],
        "only the two allowed calls ran"
    );
    gw.finish();
}

#[test]
fn hidden_and_denied_tools_are_absent_from_tools_list() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    let list = gw.request(1, "tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "whmcs_list_tickets",
            "whmcs_get_ticket",
            "whmcs_update_ticket",
            "whmcs_add_ticket_reply",
            "whmcs_send_email"
        ]
    );
    gw.finish();
}

#[test]
fn a_server_error_refunds_the_quota() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    // One reply a minute. The server fails the first (no such ticket): it costs nothing.
    let failed = gw.call(
        1,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 99, "message": "hello"}),
    );
    assert_eq!(failed["result"]["isError"], true);
    assert_eq!(text(&failed), "no such ticket", "the server's own answer");
    let ok = gw.call(
        2,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 1, "message": "hello"}),
    );
    assert_eq!(text(&ok), "reply added (1 in total)");
    let limited = gw.call(
        3,
        "whmcs_add_ticket_reply",
        json!({"ticket_id": 1, "message": "again"}),
    );
    assert_eq!(
        limited["result"]["structuredContent"]["code"],
        "rate_limited"
    );
    // A JSON-RPC error from the server refunds too.
    let mut gw2 = Session::whmcs(&POLICY.replace(
        "\"whmcs_get_*\":{}",
        "\"whmcs_get_*\":{\"rate_limit\":\"1/minute\"}",
    ));
    gw2.handshake();
    let unknown = gw2.call(1, "whmcs_get_nothing", json!({}));
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
    assert_eq!(
        gw2.call(2, "whmcs_get_ticket", json!({"ticket_id": 2}))["result"]["isError"],
        false
    );
    gw.finish();
    gw2.finish();
}

#[test]
fn a_garbage_line_gets_a_parse_error_and_the_gateway_keeps_running() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    gw.send("this is not json");
    let error = gw.next();
    assert_eq!(error["error"]["code"], -32700);
    assert_eq!(error["id"], Value::Null);
    let malformed = gw.request(1, "tools/call", json!({"name": 5}));
    assert_eq!(malformed["error"]["code"], -32602);
    assert_eq!(
        gw.call(2, "whmcs_get_ticket", json!({"ticket_id": 1}))["result"]["isError"],
        false
    );
    let (status, _) = gw.finish();
    assert!(status.success());
}

#[test]
fn the_policy_file_is_reloaded_when_it_changes() {
    let mut gw = Session::whmcs(POLICY);
    gw.handshake();
    assert_eq!(
        gw.call(1, "whmcs_get_ticket", json!({"ticket_id": 1}))["result"]["isError"],
        false
    );
    // Make sure the new file gets a different modification time.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        gw.dir.join("policy.json"),
        r#"{"version":"1","default":"deny"}"#,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 2;
    loop {
        let answer = gw.call(id, "whmcs_get_ticket", json!({"ticket_id": 1}));
        if answer["result"]["structuredContent"]["code"] == "default_denied" {
            break;
        }
        assert!(Instant::now() < deadline, "the policy was not reloaded");
        id += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    // A broken edit keeps the last good policy.
    std::fs::write(gw.dir.join("policy.json"), "{ broken").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gw.call(1000, "whmcs_get_ticket", json!({}))["result"]["structuredContent"]["code"],
        "default_denied"
    );
    let (_, stderr) = gw.finish();
    assert!(stderr.contains("keeping the previous policy"), "{stderr}");
}

#[test]
fn the_server_exiting_ends_the_gateway_with_a_clear_message() {
    let gw = Session::start(POLICY, &["sh", "-c", "exit 3"]);
    let mut gw = gw;
    let (status, stderr) = wait_with_timeout(&mut gw.child);
    assert!(!status.success());
    assert!(
        stderr.contains("the MCP server exited (exit status: 3)"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&gw.dir);
}

#[test]
fn a_server_that_cannot_start_is_a_clear_error() {
    let mut gw = Session::start(POLICY, &["/nonexistent/server"]);
    let (status, stderr) = wait_with_timeout(&mut gw.child);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("cannot start the MCP server \"/nonexistent/server\""),
        "{stderr}"
    );
}
