//! An MCP stdio gateway: enforces a policy between an MCP client and any stdio MCP server.
//!
//! ```sh
//! cargo run --example stdio_gateway -- --policy examples/policies/whmcs.json \
//!     --grant g-support -- cargo run -q --example whmcs_server
//! ```
//!
//! The MCP client talks to this process on stdin/stdout; it spawns the server command and
//! relays newline-delimited JSON-RPC both ways. Every `tools/call` is evaluated first:
//! allowed calls go to the server, the rest are answered here and never reach it.
//! `tools/list` results lose the tools the policy hides or denies outright. When the
//! server answers an allowed call with an error, its quota is refunded. The policy file is
//! reloaded when it changes (a bad edit is reported and the old policy kept). A line from
//! the client that is not JSON gets a JSON-RPC parse error; the gateway keeps running.
//!
//! Flags: `--policy FILE` (required), `--grant ID`, `--agent ID`, `--session ID` (default:
//! a new id per process), `--reload-interval-ms N` (default 1000).

use mcp_policy::{mcp, Decision, Engine, Policy};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

struct Options {
    policy: String,
    grant: Option<String>,
    agent: Option<String>,
    session: String,
    reload_interval: Duration,
    server: Vec<String>,
}

/// What the gateway remembers about a request it forwarded, until the server answers.
enum Pending {
    /// An allowed call: refund its quota if the server fails it.
    Call(Decision<'static>),
    /// A `tools/list`: filter the answer.
    List,
}

struct Gateway {
    engine: Engine,
    options: Options,
    pending: Mutex<HashMap<String, Pending>>,
    client: Mutex<std::io::Stdout>,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("stdio_gateway: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let options = parse_args(std::env::args().skip(1).collect())?;
    let policy = load(&options.policy)?;
    let (program, args) = options
        .server
        .split_first()
        .ok_or("no server command given after --")?;
    let mut child: Child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the MCP server {program:?}: {e}"))?;
    let server_in = child.stdin.take().ok_or("the server has no stdin")?;
    let server_out = child.stdout.take().ok_or("the server has no stdout")?;

    let gateway = Arc::new(Gateway {
        engine: Engine::new(policy),
        options,
        pending: Mutex::new(HashMap::new()),
        client: Mutex::new(std::io::stdout()),
    });
    {
        let gateway = Arc::clone(&gateway);
        std::thread::spawn(move || gateway.watch_policy());
    }
    {
        let gateway = Arc::clone(&gateway);
        std::thread::spawn(move || gateway.relay_client(server_in));
    }
    gateway.relay_server(server_out);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the server: {e}"))?;
    eprintln!("stdio_gateway: the MCP server exited ({status}); stopping");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

impl Gateway {
    /// Client → server: evaluate calls, answer refusals here, forward the rest.
    fn relay_client(&self, mut server: ChildStdin) {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let message: Value = match serde_json::from_str(&line) {
                Ok(message) => message,
                Err(e) => {
                    let reply = mcp::error_response(
                        &Value::Null,
                        mcp::PARSE_ERROR,
                        &format!("parse error: {e}"),
                    );
                    self.to_client(&reply.to_string());
                    continue;
                }
            };
            if self.answered_here(&message) {
                continue;
            }
            if writeln!(server, "{line}")
                .and_then(|()| server.flush())
                .is_err()
            {
                break;
            }
        }
        // The client is gone: closing the server's stdin asks it to finish.
        drop(server);
    }

    /// Handles a client request the gateway answers itself (a refused or malformed
    /// `tools/call`) and remembers what it must do with the server's answer to the rest.
    /// Returns whether the message was answered here, so must not reach the server.
    fn answered_here(&self, message: &Value) -> bool {
        let (Some(method), Some(id)) = (
            message.get("method").and_then(Value::as_str),
            message.get("id"),
        ) else {
            return false;
        };
        match method {
            "tools/list" => {
                self.remember(id, Pending::List);
                false
            }
            "tools/call" => {
                let call = match mcp::tool_call(message) {
                    Ok(call) => call,
                    Err(e) => {
                        self.to_client(
                            &mcp::error_response(id, e.code(), &e.to_string()).to_string(),
                        );
                        return true;
                    }
                };
                let mut call = call.session(&self.options.session);
                if let Some(grant) = &self.options.grant {
                    call = call.grant(grant);
                }
                if let Some(agent) = &self.options.agent {
                    call = call.agent(agent);
                }
                let decision = self.engine.evaluate(&call);
                eprintln!("stdio_gateway: {decision}");
                match mcp::refusal(id, &decision) {
                    Some(refusal) => {
                        self.to_client(&refusal.to_string());
                        true
                    }
                    None => {
                        self.remember(id, Pending::Call(decision.into_owned()));
                        false
                    }
                }
            }
            _ => false,
        }
    }

    /// Server → client: refund failed calls, filter tool lists, pass everything on.
    fn relay_server(&self, server: impl std::io::Read) {
        for line in BufReader::new(server).lines() {
            let Ok(line) = line else { break };
            let Ok(mut message) = serde_json::from_str::<Value>(&line) else {
                self.to_client(&line);
                continue;
            };
            let pending = message
                .get("id")
                .filter(|_| message.get("method").is_none())
                .and_then(|id| self.pending.lock().ok()?.remove(&id.to_string()));
            match pending {
                Some(Pending::Call(decision)) => {
                    let failed = message.get("error").is_some()
                        || message.pointer("/result/isError") == Some(&Value::Bool(true));
                    if failed {
                        match self.engine.refund(&decision) {
                            Ok(()) => eprintln!(
                                "stdio_gateway: the server failed {}; quota refunded",
                                decision.tool()
                            ),
                            Err(e) => eprintln!("stdio_gateway: refund failed: {e}"),
                        }
                    }
                    self.to_client(&line);
                }
                Some(Pending::List) => {
                    let removed = mcp::filter_tools_list(&self.engine, &mut message);
                    if removed > 0 {
                        self.to_client(&message.to_string());
                    } else {
                        self.to_client(&line);
                    }
                }
                None => self.to_client(&line),
            }
        }
    }

    /// Reloads the policy file whenever its modification time changes.
    fn watch_policy(&self) {
        let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&self.options.policy);
        loop {
            std::thread::sleep(self.options.reload_interval);
            let now = modified(&self.options.policy);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.options.policy) {
                Ok(policy) => {
                    self.engine.reload(policy);
                    eprintln!("stdio_gateway: reloaded {}", self.options.policy);
                }
                Err(e) => eprintln!("stdio_gateway: keeping the previous policy: {e}"),
            }
        }
    }

    fn remember(&self, id: &Value, pending: Pending) {
        if let Ok(mut map) = self.pending.lock() {
            map.insert(id.to_string(), pending);
        }
    }

    fn to_client(&self, line: &str) {
        if let Ok(mut out) = self.client.lock() {
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

fn load(path: &str) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Policy::from_json(&text).map_err(|e| format!("{path}: {e}"))
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let usage = "usage: stdio_gateway --policy FILE [--grant ID] [--agent ID] [--session ID] \
                 [--reload-interval-ms N] -- SERVER COMMAND...";
    let mut policy = None;
    let mut grant = None;
    let mut agent = None;
    let mut session = None;
    let mut reload_ms = 1000;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value; {usage}"));
        match flag.as_str() {
            "--policy" => policy = Some(value()?),
            "--grant" => grant = Some(value()?),
            "--agent" => agent = Some(value()?),
            "--session" => session = Some(value()?),
            "--reload-interval-ms" => {
                reload_ms = value()?
                    .parse()
                    .map_err(|e| format!("--reload-interval-ms: {e}"))?
            }
            "--" => break,
            "-h" | "--help" => return Err(usage.into()),
            other => return Err(format!("unknown argument {other:?}; {usage}")),
        }
    }
    let session = session.unwrap_or_else(|| {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("gw-{}-{}", std::process::id(), started.as_millis())
    });
    Ok(Options {
        policy: policy.ok_or(format!("--policy is required; {usage}"))?,
        grant,
        agent,
        session,
        reload_interval: Duration::from_millis(reload_ms.max(10)),
        server: args.collect(),
    })
}
