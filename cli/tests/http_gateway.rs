//! `mcp-policy gateway --listen` end to end: the official MCP Python SDK's Streamable HTTP
//! client through the real gateway process to the SDK's Streamable HTTP server
//! (`tests/e2e/sdk_server.py http`) (JSON and
//! event-stream responses; 2026-07-28 and the 2025 handshake), plus raw HTTP requests
//! the SDK never sends (unknown tokens, batches, id-less calls, contradicting headers),
//! and a bounded load test: 100 concurrent clients on loopback, limits exact.
//!
//! Needs a Python with the SDK (`$MCP_PYTHON`, else `python3`); without one the tests say
//! so and pass, except under CI, where `.ci/run` installs it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "common/gateway.rs"]
mod gateway;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_ticket":{"limits":[{"counter":"reads","window":"hour","max":1000,"scope":"global"}]},
  "whmcs_update_ticket":{"rate_limit":"1/minute"},
  "whmcs_close_client":{"action":"deny","reason":"never automated"},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;
const TOKEN: &str = "secret-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stack {
    _server: Running,
    _gateway: Running,
    url: String,
    addr: String,
    dir: PathBuf,
}

impl Stack {
    /// The SDK server (`mode`: json or sse) and the gateway in front of it.
    fn start(python: &str, mode: &str) -> Stack {
        Stack::start_with(python, mode, &[])
    }

    /// The same, with more flags for the gateway.
    fn start_with(python: &str, mode: &str, flags: &[String]) -> Stack {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-policy-http-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.json"), POLICY).unwrap();
        let digest = sha256_hex(TOKEN.as_bytes());
        std::fs::write(
            dir.join("tokens.json"),
            json!({"tokens": [{"sha256": digest, "grant": "g-http"}]}).to_string(),
        )
        .unwrap();
        let server_port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_server.py");
        let server = Running(
            Command::new(python)
                .arg(script)
                .arg("http")
                .arg(server_port.to_string())
                .arg(mode)
                .env("SDK_SERVER_LOG", dir.join("server.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(server_port);
        let mut gateway = Command::new(gateway::binary())
            .args(["gateway", "--policy"])
            .arg(dir.join("policy.json"))
            .args([
                "--reload-interval-ms",
                "50",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
            ])
            .arg(format!("http://127.0.0.1:{server_port}/mcp"))
            .arg("--tokens")
            .arg(dir.join("tokens.json"))
            .arg("--audit")
            .arg(dir.join("audit.jsonl"))
            .args(flags)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The gateway says where it listens; the rest of its stderr is drained.
        let stderr = gateway.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let url = loop {
            let line = rx
                .recv_timeout(gateway::ANSWER_TIMEOUT)
                .expect("the gateway did not start");
            if let Some(rest) = line.strip_prefix("mcp-policy gateway: listening on ") {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .to_owned();
        Stack {
            _server: server,
            _gateway: Running(gateway),
            url,
            addr,
            dir,
        }
    }

    fn tools_run(&self, tool: &str) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).unwrap()["tool"] == tool)
            .count()
    }

    /// One raw HTTP/1.1 POST; the status and the body.
    fn post(&self, body: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        let mut request = format!(
            "POST /mcp HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_owned())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn the_python_sdk_works_through_the_http_gateway_on_json_and_event_streams() {
    let Some(python) = gateway::python_with_sdk() else {
        return;
    };
    for mode in ["json", "sse"] {
        let stack = Stack::start(&python, mode);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_http_client.py");
        let output = Command::new(&python)
            .arg(script)
            .arg(&stack.url)
            .arg(TOKEN)
            .arg(stack.dir.join("server.log"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stdout}\n{stderr}");
        for check in [
            "auto: tools/list filtered",
            "auto: allowed call",
            "auto: denied call never ran",
            "auto: limited call",
            "auto: approved call ran once",
            "legacy: tools/list filtered",
            "legacy: allowed call",
            "legacy: denied call never ran",
            "legacy: limited call",
            "legacy: approved call ran once",
        ] {
            assert!(
                stdout.contains(&format!("ok: {check}")),
                "{mode}: {check}\n{stdout}"
            );
        }
        assert!(stdout.contains("auto: protocol 2026-07-28"), "{stdout}");
    }
}

#[test]
fn unknown_tokens_batches_id_less_calls_and_contradicting_headers_never_reach_the_server() {
    let Some(python) = gateway::python_with_sdk() else {
        return;
    };
    let stack = Stack::start(&python, "json");
    let bearer = format!("Bearer {TOKEN}");
    let auth = ("authorization", bearer.as_str());
    let call = |tool: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool,
            "arguments": {"client_id": 7},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        .to_string()
    };
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
    ];
    // No token, and an unknown one: 401 with a Bearer challenge.
    for headers in [vec![], vec![("authorization", "Bearer nope")]] {
        let (status, head, _) = stack.post(&call("whmcs_close_client"), &headers);
        assert_eq!(status, 401);
        assert!(head.contains("www-authenticate: bearer"), "{head}");
    }
    // A session this gateway never saw created (another token's would be the same).
    let (status, _, _) = stack.post(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[auth, ("mcp-session-id", "made-up")],
    );
    assert_eq!(status, 404);
    // A header naming another tool than the body.
    let mut headers = modern.to_vec();
    headers.extend([auth, ("mcp-name", "whmcs_get_ticket")]);
    let (status, _, body) = stack.post(&call("whmcs_close_client"), &headers);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("-32020"), "{body}");
    // A batch, and a call without an id.
    let batch = format!("[{}]", call("whmcs_close_client"));
    assert_eq!(stack.post(&batch, &[auth]).0, 400);
    let id_less =
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"whmcs_close_client"}}"#;
    assert_eq!(stack.post(id_less, &[auth]).0, 400);
    assert_eq!(stack.tools_run("whmcs_close_client"), 0);
    // The same call with matching headers reaches the policy, which denies it.
    let mut headers = modern.to_vec();
    headers.extend([auth, ("mcp-name", "whmcs_close_client")]);
    let (status, _, body) = stack.post(&call("whmcs_close_client"), &headers);
    assert_eq!(status, 200);
    assert!(body.contains("rule_denied"), "{body}");
    assert_eq!(stack.tools_run("whmcs_close_client"), 0);
}

#[test]
fn a_hundred_concurrent_clients_never_pass_a_limit() {
    let Some(python) = gateway::python_with_sdk() else {
        return;
    };
    let stack = std::sync::Arc::new(Stack::start(&python, "json"));
    // 100 clients, 12 calls each, against a global limit of 1 000 an hour.
    let bearer = format!("Bearer {TOKEN}");
    let allowed: usize = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..100)
            .map(|c| {
                let stack = std::sync::Arc::clone(&stack);
                let bearer = bearer.clone();
                scope.spawn(move || {
                    (0..12)
                        .filter(|i| {
                            let body = json!({"jsonrpc": "2.0", "id": c * 100 + i,
                                "method": "tools/call",
                                "params": {"name": "whmcs_get_ticket", "arguments": {"ticket_id": i},
                                    "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                        "io.modelcontextprotocol/clientCapabilities": {},
                                        "io.modelcontextprotocol/clientInfo": {"name": "load", "version": "1"}}}});
                            let (status, _, text) = stack.post(
                                &body.to_string(),
                                &[
                                    ("authorization", bearer.as_str()),
                                    ("mcp-protocol-version", "2026-07-28"),
                                    ("mcp-method", "tools/call"),
                                    ("mcp-name", "whmcs_get_ticket"),
                                ],
                            );
                            assert_eq!(status, 200, "{text}");
                            let answer: Value = serde_json::from_str(&text).unwrap();
                            match answer["result"]["structuredContent"]["code"].as_str() {
                                Some(code) => {
                                    assert_eq!(code, "rate_limited", "{text}");
                                    false
                                }
                                None => true,
                            }
                        })
                        .count()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).sum()
    });
    assert_eq!(allowed, 1000, "1 200 calls, limit 1 000");
    assert_eq!(stack.tools_run("whmcs_get_ticket"), 1000);
    // The audit log: a valid record per decision, an outcome per allowed call.
    let schema: Value = serde_json::from_str(mcp_policy::audit::AUDIT_RECORD_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let log = std::fs::read_to_string(stack.dir.join("audit.jsonl")).unwrap();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records.iter().all(|r| validator.is_valid(r)));
    let decided = |code: &str| records.iter().filter(|r| r["code"] == code).count();
    assert_eq!((decided("allowed"), decided("rate_limited")), (1000, 200));
    let outcomes = records.iter().filter(|r| r["outcome"] == "ok").count();
    assert_eq!(outcomes, 1000);
    assert!(records
        .iter()
        .any(|r| r["grant"] == "g-http" && r["session"] == "g-http"));
}

#[test]
fn tokens_are_reloaded_on_change_and_sigterm_stops_the_gateway_cleanly() {
    let Some(python) = gateway::python_with_sdk() else {
        return;
    };
    let mut stack = Stack::start(&python, "json");
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let (status, _, _) = stack.post(list, &[("authorization", "Bearer new-token")]);
    assert_eq!(status, 401);
    std::thread::sleep(Duration::from_millis(20)); // a new modification time
    let tokens = json!({"tokens": [
        {"sha256": sha256_hex(TOKEN.as_bytes()), "grant": "g-http"},
        {"sha256": sha256_hex(b"new-token"), "grant": "g-new"}]});
    std::fs::write(stack.dir.join("tokens.json"), tokens.to_string()).unwrap();
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    while stack.post(list, &[("authorization", "Bearer new-token")]).0 == 401 {
        assert!(
            Instant::now() < deadline,
            "the tokens file was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = stack._gateway.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    let status = loop {
        if let Some(status) = stack._gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the gateway did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn decision_metrics_are_served_for_prometheus() {
    let Some(python) = gateway::python_with_sdk() else {
        return;
    };
    let port = free_port();
    let stack = Stack::start_with(
        &python,
        "json",
        &["--metrics".into(), format!("127.0.0.1:{port}")],
    );
    let bearer = format!("Bearer {TOKEN}");
    for tool in ["whmcs_close_client", "whmcs_close_client", "whmcs_unknown"] {
        let body =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool}});
        assert_eq!(
            stack
                .post(&body.to_string(), &[("authorization", bearer.as_str())])
                .0,
            200
        );
    }
    wait_for_port(port);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut scraped = String::new();
    stream.read_to_string(&mut scraped).unwrap();
    let line = |labels: &str| {
        scraped
            .lines()
            .find(|l| {
                l.starts_with("mcp_policy_decisions_total{")
                    && labels.split(',').all(|p| l.contains(p))
            })
            .map(str::to_owned)
    };
    let denied = line(r#"decision="deny",code="rule_denied",rule="whmcs_close_client""#)
        .unwrap_or_else(|| panic!("{scraped}"));
    assert!(denied.ends_with(" 2"), "{denied}");
    let default = line(r#"code="default_denied",rule="""#).unwrap_or_else(|| panic!("{scraped}"));
    assert!(default.ends_with(" 1"), "{default}");
}
