//! An MCP stdio gateway: enforces a policy between an MCP client and any stdio MCP server.
//!
//! ```sh
//! cargo run --example stdio_gateway -- --policy examples/policies/whmcs.json \
//!     --grant g-support -- cargo run -q --example whmcs_server
//! ```
//!
//! The MCP client talks to this process on stdin/stdout; it spawns the server command and
//! relays newline-delimited JSON-RPC both ways through [`mcp::Relay`], which does the
//! enforcing: every `tools/call` is evaluated and only allowed ones reach the server,
//! re-serialized from what was evaluated and under the gateway's own request ids; batches,
//! id-less calls, ambiguous keys, oversized or non-UTF-8 lines are answered with JSON-RPC
//! errors and never relayed; `tools/list` results lose what the policy refuses. This file
//! adds only the I/O: reading lines with a bound, writing answers, timing out requests
//! and reloading the policy file when it changes (a bad edit is reported and the old
//! policy kept).
//!
//! Flags: `--policy FILE` (required), `--grant ID`, `--agent ID`, `--session ID` (default:
//! a new id per process), `--max-message BYTES` (default 4 MiB), `--request-timeout
//! SECONDS` (default 600), `--reload-interval-ms N` (default 1000).

use mcp_policy::mcp::{self, Line, LineReader, Output, Relay};
use mcp_policy::{Engine, Policy};
use std::io::{BufReader, Write};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const USAGE: &str = "usage: stdio_gateway --policy FILE [--grant ID] [--agent ID] \
[--session ID] [--max-message BYTES] [--request-timeout SECONDS] [--reload-interval-ms N] \
-- SERVER COMMAND...";

struct Options {
    policy: String,
    grant: Option<String>,
    agent: Option<String>,
    session: String,
    max_message: usize,
    request_timeout: Duration,
    reload_interval: Duration,
    server: Vec<String>,
}

struct Gateway {
    relay: Relay,
    policy_path: String,
    reload_interval: Duration,
    client: Mutex<std::io::Stdout>,
    server: Mutex<Option<ChildStdin>>,
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
    let Some(options) = parse_args(std::env::args().skip(1).collect())? else {
        println!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    let policy = load(&options.policy)?;
    let (program, args) = options
        .server
        .split_first()
        .ok_or(format!("no server command given after --; {USAGE}"))?;
    if options.grant.is_none() {
        eprintln!(
            "stdio_gateway: warning: no --grant given, so every call to a tool with a limit \
             that counts per grant (the default scope) will be denied as missing_identity"
        );
    }
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the MCP server {program:?}: {e}"))?;
    let server_in = child.stdin.take().ok_or("the server has no stdin")?;
    let server_out = child.stdout.take().ok_or("the server has no stdout")?;

    let mut relay = Relay::builder(Engine::new(policy))
        .session(options.session.clone())
        .max_message(options.max_message)
        .request_timeout(options.request_timeout);
    if let Some(grant) = &options.grant {
        relay = relay.grant(grant.clone());
    }
    if let Some(agent) = &options.agent {
        relay = relay.agent(agent.clone());
    }
    let gateway = Arc::new(Gateway {
        relay: relay.build(),
        policy_path: options.policy,
        reload_interval: options.reload_interval,
        client: Mutex::new(std::io::stdout()),
        server: Mutex::new(Some(server_in)),
    });
    for task in [
        Gateway::watch_policy,
        Gateway::expire_requests,
        Gateway::relay_client,
    ] {
        let gateway = Arc::clone(&gateway);
        std::thread::spawn(move || task(&gateway));
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
    /// Client → relay, line by line, until the client closes its side.
    fn relay_client(&self) {
        let stdin = std::io::stdin();
        let mut lines = LineReader::new(stdin.lock(), self.relay.max_message());
        loop {
            let output = match lines.next_line() {
                Ok(Some(Line::Message(bytes))) => self.relay.from_client(&bytes),
                Ok(Some(Line::TooLong { size })) => self.relay.client_message_too_large(size),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("stdio_gateway: reading from the client: {e}");
                    break;
                }
            };
            self.write(output);
        }
        // The client is gone: closing the server's stdin asks it to finish.
        if let Ok(mut server) = self.server.lock() {
            server.take();
        }
    }

    /// Server → relay, line by line, until the server closes its side.
    fn relay_server(&self, server: impl std::io::Read) {
        let mut lines = LineReader::new(BufReader::new(server), self.relay.max_message());
        loop {
            let output = match lines.next_line() {
                Ok(Some(Line::Message(bytes))) => self.relay.from_server(&bytes),
                Ok(Some(Line::TooLong { size })) => self.relay.server_message_too_large(size),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("stdio_gateway: reading from the server: {e}");
                    break;
                }
            };
            self.write(output);
        }
        self.write(self.relay.server_closed());
    }

    /// Answers requests the server left waiting too long.
    fn expire_requests(&self) {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            self.write(self.relay.expire());
        }
    }

    /// Reloads the policy file whenever its modification time changes.
    fn watch_policy(&self) {
        let modified = |path: &str| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen: Option<SystemTime> = modified(&self.policy_path);
        loop {
            std::thread::sleep(self.reload_interval);
            let now = modified(&self.policy_path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.policy_path) {
                Ok(policy) => {
                    self.relay.engine().reload(policy);
                    eprintln!("stdio_gateway: reloaded {}", self.policy_path);
                }
                Err(e) => eprintln!("stdio_gateway: keeping the previous policy: {e}"),
            }
        }
    }

    fn write(&self, output: Output) {
        for note in &output.notes {
            eprintln!("stdio_gateway: {note}");
        }
        if !output.to_server.is_empty() {
            if let Ok(mut server) = self.server.lock() {
                let failed = server.as_mut().is_some_and(|stdin| {
                    output
                        .to_server
                        .iter()
                        .try_for_each(|line| writeln!(stdin, "{line}"))
                        .and_then(|()| stdin.flush())
                        .is_err()
                });
                // The server stopped reading; its exit ends the gateway.
                if failed {
                    server.take();
                }
            }
        }
        if !output.to_client.is_empty() {
            if let Ok(mut client) = self.client.lock() {
                let _ = output
                    .to_client
                    .iter()
                    .try_for_each(|line| writeln!(client, "{line}"))
                    .and_then(|()| client.flush());
            }
        }
    }
}

fn load(path: &str) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Policy::from_json(&text).map_err(|e| format!("{path}: {e}"))
}

/// The options, or `None` when help was asked for.
fn parse_args(args: Vec<String>) -> Result<Option<Options>, String> {
    let mut policy = None;
    let mut grant = None;
    let mut agent = None;
    let mut session = None;
    let mut max_message = mcp::DEFAULT_MAX_MESSAGE;
    let mut request_timeout_s = 600u64;
    let mut reload_ms = 1000u64;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--policy" => policy = Some(value()?),
            "--grant" => grant = Some(value()?),
            "--agent" => agent = Some(value()?),
            "--session" => session = Some(value()?),
            "--max-message" => max_message = number(&flag, &value()?)?,
            "--request-timeout" => request_timeout_s = number(&flag, &value()?)?,
            "--reload-interval-ms" => reload_ms = number(&flag, &value()?)?,
            "--" => break,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    let session = session.unwrap_or_else(|| {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("gw-{}-{}", std::process::id(), started.as_millis())
    });
    Ok(Some(Options {
        policy: policy.ok_or(format!("--policy is required; {USAGE}"))?,
        grant,
        agent,
        session,
        max_message,
        request_timeout: Duration::from_secs(request_timeout_s.max(1)),
        reload_interval: Duration::from_millis(reload_ms.max(10)),
        server: args.collect(),
    }))
}

fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| format!("{flag}: {e}: expected a whole number, found {text:?}"))
}
