//! Drives `mcp-policy gateway` as a real process between a scripted client (the test) and
//! a real MCP server process: the library's example WHMCS server, or the Go-like server of
//! `tests/servers/go_like_server.py`, which logs every message that reaches it.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for an answer before it fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The `mcp-policy` binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-policy"))
}

/// The library's example WHMCS server, built on first use.
pub fn whmcs_server() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let release = binary().components().any(|c| c.as_os_str() == "release");
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args([
                    "build",
                    "--quiet",
                    "--example",
                    "whmcs_server",
                    "--manifest-path",
                ])
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"));
            if release {
                cargo.arg("--release");
            }
            let status = cargo.status().unwrap();
            assert!(status.success(), "building the whmcs_server example failed");
            let profile_dir = binary().parent().unwrap().to_path_buf();
            let path = profile_dir.join("examples").join("whmcs_server");
            assert!(path.exists(), "{} is missing", path.display());
            path
        })
        .clone()
}

/// A Python that can import the MCP SDK (`$MCP_PYTHON`, else `python3`). Tests that need
/// one are `#[ignore = "needs the MCP Python SDK"]`; run without one, they fail saying
/// what to install (`.ci/run` installs it and runs them with `--include-ignored`).
pub fn python_with_sdk() -> String {
    let candidates = std::env::var("MCP_PYTHON")
        .into_iter()
        .chain(["python3".to_string()]);
    for python in candidates {
        let found = Command::new(&python)
            .args(["-c", "import mcp.client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return python;
        }
    }
    panic!("this test needs the MCP Python SDK: pip install 'mcp>=2,<3', and set MCP_PYTHON to that python");
}

/// Runs `tests/e2e/SCRIPT` with the SDK's Python as `SCRIPT POLICY SERVER_LOG mcp-policy
/// gateway`, for `policy` written to a fresh file; its stdout once it succeeded.
pub fn run_sdk_script(script: &str, policy: &str) -> String {
    let python = python_with_sdk();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mcp-policy-sdk-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy_path = dir.join("policy.json");
    std::fs::write(&policy_path, policy).unwrap();
    let output = Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/e2e")
                .join(script),
        )
        .arg(&policy_path)
        .arg(dir.join("server.log"))
        .arg(binary())
        .arg("gateway")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script}: {stdout}\n{stderr}");
    stdout
}

/// The command line of the Go-like server.
pub fn go_like_server() -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/go_like_server.py");
    vec!["python3".into(), script.display().to_string()]
}

pub struct Session {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Vec<u8>>,
    /// Everything the gateway wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
    pub dir: PathBuf,
}

impl Session {
    /// Starts the gateway with `policy`, `--grant g1` and `flags`, in front of `server`.
    pub fn start(policy: &str, flags: &[&str], server: &[String]) -> Session {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-policy-gw-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.json"), policy).unwrap();
        let mut child = Command::new(binary())
            .args(["gateway", "--policy"])
            .arg(dir.join("policy.json"))
            .args(["--reload-interval-ms", "50"])
            .args(flags)
            .arg("--")
            .args(server)
            .env("WHMCS_SERVER_LOG", dir.join("server.log"))
            .env("GO_SERVER_LOG", dir.join("server.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let errors = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(errors).lines().map_while(Result::ok) {
                let mut all = sink.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            lines,
            stderr,
            dir,
        }
    }

    /// The gateway with `--grant g1` in front of the example WHMCS server.
    pub fn whmcs(policy: &str) -> Session {
        let server = whmcs_server().display().to_string();
        Session::start(policy, &["--grant", "g1"], &[server])
    }

    /// The gateway with `--grant g1` and `flags` in front of the Go-like server.
    pub fn go_like(policy: &str, flags: &[&str]) -> Session {
        let mut all = vec!["--grant", "g1"];
        all.extend_from_slice(flags);
        Session::start(policy, &all, &go_like_server())
    }

    /// Writes `bytes` and a newline to the gateway.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
    }

    /// The next line from the gateway, which must be UTF-8 JSON.
    pub fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(ANSWER_TIMEOUT)
            .expect("no answer from the gateway");
        let text = String::from_utf8(line).expect("the gateway wrote non-UTF-8");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// The next line if one comes within `wait`.
    pub fn next_within(&self, wait: Duration) -> Option<Value> {
        match self.lines.recv_timeout(wait) {
            Ok(line) => Some(serde_json::from_slice(&line).unwrap()),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    pub fn request(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        let answer = self.next();
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    pub fn call(&mut self, id: u64, tool: &str, arguments: Value) -> Value {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }

    pub fn handshake(&mut self) {
        let init = self.request(
            0,
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}),
        );
        assert!(init["result"]["serverInfo"]["name"].is_string(), "{init}");
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    /// The lines the server logged: tool names (WHMCS server) or JSON records (Go-like).
    pub fn server_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The Go-like server's records of the tools it ran: (tool, arguments).
    pub fn tools_run(&self) -> Vec<(String, Value)> {
        self.server_log()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|record| record.get("ran").is_some())
            .map(|record| {
                let tool = record["ran"].as_str().unwrap_or_default().to_owned();
                (tool, record["args"].clone())
            })
            .collect()
    }

    /// The gateway's peak resident memory in KiB (Linux `VmHWM`).
    pub fn peak_memory_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits until the gateway has written `text` to stderr.
    pub fn wait_for_stderr(&self, text: &str) {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while !self.stderr.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the gateway never said {text:?}; it said: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Closes the client's side and waits for the gateway to exit; its status and stderr.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = wait_with_timeout(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
        // The stderr reader ends with the process; give it the last lines.
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while Arc::strong_count(&self.stderr) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stderr = self.stderr.lock().unwrap().clone();
        (status, stderr)
    }
}

/// Waits for `child` to exit.
fn wait_with_timeout(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn text(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

// Shared with the library's approval tests; not every test crate including this file uses it.
#[path = "../../../tests/common/modern_call.rs"]
mod modern;
#[allow(unused_imports)]
pub use modern::modern_call;
