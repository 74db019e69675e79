//! The HTTP gateway process in front of an upstream (the SDK's server, or a hostile one),
//! and raw HTTP/1.1 requests to it.

use super::gateway;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const POLICY: &str = r#"{"version":"1","default":"deny","hide":["whmcs_delete_*"],"tools":{
  "whmcs_get_ticket":{"limits":[{"counter":"reads","window":"hour","max":1000,"scope":"global"}]},
  "whmcs_update_ticket":{"rate_limit":"1/minute"},
  "whmcs_slow":{}, "whmcs_ping":{},
  "whmcs_close_client":{"action":"deny","reason":"never automated"},
  "whmcs_send_email":{"action":"require_approval","reason":"emails are reviewed"}}}"#;
pub const TOKEN: &str = "secret-token";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child process when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    _server: Running,
    pub gateway: Running,
    pub url: String,
    pub addr: String,
    pub dir: PathBuf,
}

impl Stack {
    /// The SDK server (`mode`: json, sse or resumable) and the gateway in front of it.
    pub fn start(python: &str, mode: &str) -> Stack {
        Stack::start_with(python, mode, &[])
    }

    /// The same, with more flags for the gateway.
    pub fn start_with(python: &str, mode: &str, flags: &[String]) -> Stack {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/sdk_server.py");
        let server = vec![python.to_owned(), script.display().to_string()];
        Stack::start_upstream(&server, &["http", "{port}", mode], flags, POLICY)
    }

    /// The hostile upstream (`tests/servers/hostile_http_server.py`) behind the gateway.
    pub fn hostile(flags: &[String]) -> Stack {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/servers/hostile_http_server.py");
        let server = vec!["python3".to_owned(), script.display().to_string()];
        Stack::start_upstream(&server, &["{port}"], flags, POLICY)
    }

    /// The SDK server (`mode`) or the hostile one (`mode` `hostile`) behind the gateway
    /// with `flags` (which may name its own `--listen`) and `policy`.
    pub fn start_custom(python: &str, mode: &str, flags: &[String], policy: &str) -> Stack {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        match mode {
            "beyond" => {
                let script = manifest.join("tests/e2e/sdk_beyond_server.py");
                let server = vec![python.to_owned(), script.display().to_string()];
                Stack::start_upstream(&server, &["http", "{port}"], flags, policy)
            }
            "hostile" => {
                let script = manifest.join("tests/servers/hostile_http_server.py");
                let server = vec!["python3".to_owned(), script.display().to_string()];
                Stack::start_upstream(&server, &["{port}"], flags, policy)
            }
            mode => {
                let script = manifest.join("tests/e2e/sdk_server.py");
                let server = vec![python.to_owned(), script.display().to_string()];
                Stack::start_upstream(&server, &["http", "{port}", mode], flags, policy)
            }
        }
    }

    /// `server` and `args` (`{port}` replaced by its port) behind the gateway with `flags`.
    fn start_upstream(server: &[String], args: &[&str], flags: &[String], policy: &str) -> Stack {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-policy-http-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.json"), policy).unwrap();
        let digest = sha256_hex(TOKEN.as_bytes());
        std::fs::write(
            dir.join("tokens.json"),
            json!({"tokens": [{"sha256": digest, "grant": "g-http"}]}).to_string(),
        )
        .unwrap();
        let server_port = free_port();
        let port = server_port.to_string();
        let server = Running(
            Command::new(&server[0])
                .args(&server[1..])
                .args(args.iter().map(|a| a.replace("{port}", &port)))
                .env("SDK_SERVER_LOG", dir.join("server.log"))
                .env("HOSTILE_LOG", dir.join("server.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for_port(server_port);
        let mut gateway = Command::new(gateway::binary())
            .args(["gateway", "--policy"])
            .arg(dir.join("policy.json"))
            .args(["--reload-interval-ms", "50"])
            .args(match flags.iter().any(|f| f == "--listen") {
                true => &[][..],
                false => &["--listen", "127.0.0.1:0"][..],
            })
            .arg("--upstream")
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
            gateway: Running(gateway),
            url,
            addr,
            dir,
        }
    }

    pub fn tools_run(&self, tool: &str) -> usize {
        std::fs::read_to_string(self.dir.join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let record = serde_json::from_str::<Value>(l).unwrap();
                record["tool"] == tool || record["ran"] == tool
            })
            .count()
    }

    /// One raw HTTP/1.1 POST; the status, the head (lowercase) and the body.
    pub fn post(&self, body: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        self.send("POST", body, headers)
    }

    /// One raw HTTP/1.1 request with any method; the status, the head and the body.
    pub fn send(
        &self,
        method: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String, String) {
        let accept = ("accept", "application/json, text/event-stream");
        let headers: Vec<_> = std::iter::once(accept)
            .chain(headers.iter().copied())
            .collect();
        exchange(&self.addr, method, "/mcp", &headers, body)
    }
}

/// One raw HTTP/1.1 request to `addr` (JSON unless `headers` say otherwise); the status,
/// the head (lowercase) and the body.
pub fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if !headers.iter().any(|(name, _)| *name == "content-type") {
        request.push_str("content-type: application/json\r\n");
    }
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

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + gateway::ANSWER_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
