//! The stdio gateway: the MCP client talks to this process on stdin and stdout; it runs
//! the server command and relays newline-delimited JSON-RPC both ways through [`Relay`],
//! which does the enforcing. This file adds only the I/O: reading lines with a bound,
//! writing answers, timing out requests, and reloading the policy file when it changes.

use super::reload::{file_sha256, reload, watch, RECLAIM_EVERY};
use super::{AuditLog, GatewayArgs};
use crate::Failure;
use mcp_policy::mcp::{Approvals, Line, LineReader, Output, Relay};
use mcp_policy::Engine;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Runs the stdio gateway in front of the server command of `args`.
pub(super) fn run(
    args: GatewayArgs,
    engine: Engine,
    approvals: Approvals,
    audit: Option<AuditLog>,
) -> Result<ExitCode, Failure> {
    if args.identity.grant.is_none() {
        eprintln!(
            "mcp-policy gateway: warning: no --grant given, so every call to a tool with a \
             limit that counts per grant (the default scope) will be denied as missing_identity"
        );
    }
    let (program, server_args) = args
        .server
        .split_first()
        .ok_or_else(|| Failure::Usage("no server command given after --".into()))?;
    let mut child = Command::new(program)
        .args(server_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::Usage(format!("cannot start the MCP server {program:?}: {e}")))?;
    let server_in = child
        .stdin
        .take()
        .ok_or_else(|| Failure::Usage("the server has no stdin".into()))?;
    let server_out = child
        .stdout
        .take()
        .ok_or_else(|| Failure::Usage("the server has no stdout".into()))?;

    let session = args.identity.session.clone().unwrap_or_else(|| {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("gw-{}-{}", std::process::id(), started.as_millis())
    });
    let mut relay = Relay::builder(engine)
        .approvals(approvals)
        .audit(audit.is_some())
        .session(session)
        .max_message(args.max_message)
        .request_timeout(Duration::from_secs(args.request_timeout.max(1)));
    if let Some(grant) = &args.identity.grant {
        relay = relay.grant(grant.clone());
    }
    if let Some(agent) = &args.identity.agent {
        relay = relay.agent(agent.clone());
    }
    if let Some(scopes) = &args.identity.scopes {
        relay = relay.scopes(scopes.iter().cloned());
    }
    let relay = relay.build();
    if let Some(hex) = file_sha256(&args.policy) {
        relay.set_policy_sha256(hex);
    }
    let gateway = Arc::new(Gateway {
        relay,
        audit,
        policy_path: args.policy,
        reload_interval: Duration::from_millis(args.reload_interval_ms.max(10)),
        client: Mutex::new(std::io::stdout()),
        server: Mutex::new(Some(server_in)),
    });
    {
        let gateway = Arc::clone(&gateway);
        let policy = gateway.policy_path.clone();
        let shadow = args.shadow.clone();
        let files = std::iter::once(policy.clone())
            .chain(shadow.clone())
            .collect();
        watch(files, gateway.reload_interval, move |changed| {
            reload(
                gateway.relay.engine(),
                changed,
                &policy,
                shadow.as_deref(),
                |hex| gateway.relay.set_policy_sha256(hex),
            )
        });
    }
    for task in [Gateway::expire_requests, Gateway::relay_client] {
        let gateway = Arc::clone(&gateway);
        std::thread::spawn(move || task(&gateway));
    }
    gateway.relay_server(server_out);
    let status = child
        .wait()
        .map_err(|e| Failure::Usage(format!("waiting for the server: {e}")))?;
    eprintln!("mcp-policy gateway: the MCP server exited ({status}); stopping");
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

struct Gateway {
    relay: Relay,
    audit: Option<AuditLog>,
    policy_path: PathBuf,
    reload_interval: Duration,
    client: Mutex<std::io::Stdout>,
    server: Mutex<Option<ChildStdin>>,
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
                    eprintln!("mcp-policy gateway: reading from the client: {e}");
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
                    eprintln!("mcp-policy gateway: reading from the server: {e}");
                    break;
                }
            };
            self.write(output);
        }
        self.write(self.relay.server_closed());
    }

    /// Answers requests the server left waiting too long; now and then lets the store
    /// forget counts whose window has passed.
    fn expire_requests(&self) {
        let tick = Duration::from_millis(500);
        let mut since_reclaim = Duration::ZERO;
        loop {
            std::thread::sleep(tick);
            self.write(self.relay.expire());
            self.write(self.relay.poll_approvals());
            since_reclaim += tick;
            if since_reclaim >= RECLAIM_EVERY {
                self.relay.engine().reclaim_expired();
                since_reclaim = Duration::ZERO;
            }
        }
    }

    fn write(&self, output: Output) {
        for note in &output.notes {
            eprintln!("mcp-policy gateway: {note}");
        }
        if let Some(log) = &self.audit {
            log.write(&output.audit);
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
