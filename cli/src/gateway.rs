//! `mcp-policy gateway`: the stdio gateway. The MCP client talks to this process on stdin
//! and stdout; it runs the server command and relays newline-delimited JSON-RPC both ways
//! through [`Relay`], which does the enforcing. This file adds only the I/O: reading lines
//! with a bound, writing answers, timing out requests, and reloading the policy file when
//! it changes (a bad edit is reported and the old policy kept).

use crate::files::{load_policy, read_text};
use crate::{Failure, FilePath, Identity};
use clap::Args;
use mcp_policy::mcp::{self, ApprovalKey, Approvals, Line, LineReader, Output, Relay};
use mcp_policy::{Engine, RedisStore};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// `gateway` flags.
#[derive(Args)]
pub struct GatewayArgs {
    /// The policy file; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    policy: FilePath,
    #[command(flatten)]
    identity: Identity,
    /// The largest message accepted from either side, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = mcp::DEFAULT_MAX_MESSAGE)]
    max_message: usize,
    /// How long a request may wait for the server before it is answered with an error.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    request_timeout: u64,
    /// The key that seals approvals: a file holding at least 64 hexadecimal digits.
    /// Without it a key is generated at start: approvals then do not survive a restart,
    /// and replicas cannot accept each other's.
    #[arg(long, value_name = "FILE")]
    approval_key: Option<FilePath>,
    /// Where used approvals are recorded when counts are kept in memory (without
    /// --redis), so each works once across restarts; read back at start. Default: the
    /// --approval-key file's path with ".used" added.
    #[arg(
        long,
        value_name = "FILE",
        requires = "approval_key",
        conflicts_with = "redis"
    )]
    approval_ledger: Option<FilePath>,
    /// How long a person has to answer an approval request (revisions before 2026-07-28);
    /// no answer counts as a decline.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    approval_timeout: u64,
    /// How long a sealed approval (2026-07-28) stays usable.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    approval_ttl: u64,
    /// Append an audit record (one JSON line) for every decision and for the outcome of
    /// every allowed call to FILE. A record that cannot be written (a full disk) is
    /// reported on stderr; calls go on.
    #[arg(long, value_name = "FILE")]
    audit: Option<FilePath>,
    /// A candidate policy decided beside the enforced one, with counters of its own: audit
    /// records note where it would decide otherwise; what is enforced never changes.
    /// Reloaded on change.
    #[arg(long, value_name = "FILE")]
    shadow: Option<FilePath>,
    /// Keep counts (and used approvals) in Redis, shared with every gateway that uses the
    /// same server and prefix, instead of in memory.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The key prefix in Redis.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "mcp-policy:",
        requires = "redis"
    )]
    redis_prefix: String,
    /// How often to look at the policy file for changes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    reload_interval_ms: u64,
    /// Serve MCP Streamable HTTP on this address (such as 127.0.0.1:8080) instead of
    /// running a stdio server; needs --upstream and --tokens.
    #[arg(long, value_name = "ADDR", requires_all = ["upstream", "tokens"], conflicts_with = "server")]
    listen: Option<std::net::SocketAddr>,
    /// The Streamable HTTP MCP server to forward to (with --listen).
    #[arg(long, value_name = "URL", requires = "listen")]
    upstream: Option<http::Uri>,
    /// The bearer tokens (with --listen): {"tokens": [{"sha256": HEX, "grant": ID,
    /// "agent"?: ID}]}, HEX the SHA-256 of the token; reloaded on change.
    #[arg(long, value_name = "FILE", requires = "listen")]
    tokens: Option<FilePath>,
    /// Serve Prometheus metrics (`mcp_policy_decisions_total{decision, code, rule}`) on
    /// this address, path `/metrics` (with --listen).
    #[arg(long, value_name = "ADDR", requires = "listen")]
    metrics: Option<std::net::SocketAddr>,
    /// The most client connections served at once (with --listen); more wait until one
    /// ends.
    #[arg(long, value_name = "N", default_value_t = 1024, requires = "listen")]
    max_connections: usize,
    /// The path served (with --listen).
    #[arg(long, value_name = "PATH", default_value = "/mcp")]
    path: String,
    /// A header sent to the upstream, "NAME: VALUE" (repeatable): its own credentials.
    #[arg(long, value_name = "NAME: VALUE", requires = "listen")]
    upstream_header: Vec<String>,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(
        last = true,
        required_unless_present = "listen",
        value_name = "COMMAND"
    )]
    server: Vec<String>,
}

pub fn run(args: GatewayArgs) -> Result<ExitCode, Failure> {
    let policy = load_policy(&args.policy)?;
    let key = match &args.approval_key {
        Some(path) => ApprovalKey::from_hex(&read_text(path)?)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
        None => ApprovalKey::generate().map_err(|e| Failure::Usage(e.to_string()))?,
    };
    let engine = match &args.redis {
        Some(url) => {
            let store = RedisStore::open(url)
                .map_err(|e| Failure::Usage(format!("--redis {url}: {e}")))?
                .prefix(args.redis_prefix.clone());
            if let Err(e) = store.ping() {
                eprintln!("mcp-policy gateway: warning: Redis at {url} does not answer ({e}); calls with limits are denied until it does");
            }
            Engine::builder(policy).store(store).build()
        }
        None => Engine::new(policy),
    };
    if let Some(path) = &args.shadow {
        engine.set_shadow(Some(load_policy(path)?));
    }
    let mut approvals = Approvals::new(key)
        .timeout(Duration::from_secs(args.approval_timeout.max(1)))
        .ttl(Duration::from_secs(args.approval_ttl.max(1)));
    if let (Some(key_path), None) = (&args.approval_key, &args.redis) {
        // Without a shared store, single use across restarts comes from the ledger; it
        // is this process's alone.
        let path = args.approval_ledger.clone().unwrap_or_else(|| {
            let mut name = key_path.as_os_str().to_owned();
            name.push(".used");
            PathBuf::from(name)
        });
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let ledger = mcp::ApprovalLedger::open(&path, now_ms)
            .map_err(|e| Failure::Usage(format!("--approval-ledger {}: {e}", path.display())))?;
        approvals = approvals.ledger(ledger);
        eprintln!(
            "mcp-policy gateway: used approvals are recorded in {}; without --redis this \
             gateway alone keeps them, so replicas must not share the --approval-key {}",
            path.display(),
            key_path.display()
        );
    }
    let audit = match &args.audit {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Failure::Usage(format!("cannot open {}: {e}", path.display())))?,
        ),
        None => None,
    };
    if let (Some(listen), Some(upstream), Some(tokens)) =
        (args.listen, args.upstream.clone(), args.tokens.clone())
    {
        let mut upstream_headers = Vec::new();
        for header in &args.upstream_header {
            let parsed = header.split_once(':').and_then(|(name, value)| {
                Some((
                    http::HeaderName::try_from(name.trim()).ok()?,
                    http::HeaderValue::try_from(value.trim()).ok()?,
                ))
            });
            upstream_headers.push(parsed.ok_or_else(|| {
                Failure::Usage(format!(
                    "--upstream-header {header:?}: expected \"NAME: VALUE\""
                ))
            })?);
        }
        let options = crate::http_gateway::HttpOptions {
            listen,
            upstream,
            path: args.path.clone(),
            tokens,
            upstream_headers,
            policy: args.policy.clone(),
            reload_interval: Duration::from_millis(args.reload_interval_ms.max(10)),
            max_message: args.max_message,
            audit,
            shadow: args.shadow.clone(),
            metrics: args.metrics,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            max_connections: args.max_connections,
            remote_store: args.redis.is_some(),
        };
        crate::http_gateway::run(options, engine, approvals)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    let audit = audit.map(Mutex::new);
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

/// How often a gateway lets its counter store forget counts whose window has passed.
pub const RECLAIM_EVERY: Duration = Duration::from_secs(60);

struct Gateway {
    relay: Relay,
    audit: Option<Mutex<std::fs::File>>,
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
        if let (Some(file), false) = (&self.audit, output.audit.is_empty()) {
            if let Ok(mut file) = file.lock() {
                for record in &output.audit {
                    // One line per record, flushed, so a crash loses at most the line
                    // being written. A full disk is reported and the call goes on.
                    if let Err(e) = writeln!(file, "{record}").and_then(|()| file.flush()) {
                        eprintln!("mcp-policy gateway: cannot write the audit log: {e}");
                    }
                }
            }
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

/// Lowercase hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Calls `on_change` with each of `files` whose modification time changed, looking every
/// `every`, on a thread of its own.
pub fn watch(files: Vec<PathBuf>, every: Duration, on_change: impl Fn(&Path) + Send + 'static) {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen: Vec<Option<SystemTime>> = files.iter().map(|f| modified(f)).collect();
    std::thread::spawn(move || loop {
        std::thread::sleep(every);
        for (file, seen) in files.iter().zip(seen.iter_mut()) {
            let now = modified(file);
            if now != *seen {
                *seen = now;
                on_change(file);
            }
        }
    });
}

/// Reloads the enforced policy or the shadow policy from the file that changed; a bad edit
/// keeps the previous one and says why. `named` learns the enforced policy file's digest.
pub fn reload(
    engine: &Engine,
    changed: &Path,
    policy: &Path,
    shadow: Option<&Path>,
    named: impl Fn(String),
) {
    let which = if changed == policy {
        "policy"
    } else {
        "shadow policy"
    };
    match load_policy(changed) {
        Ok(loaded) if changed == policy => {
            engine.reload(loaded);
            if let Some(hex) = file_sha256(policy) {
                named(hex);
            }
            eprintln!("mcp-policy gateway: reloaded {}", changed.display());
        }
        Ok(loaded) if Some(changed) == shadow => {
            engine.set_shadow(Some(loaded));
            eprintln!(
                "mcp-policy gateway: reloaded the shadow policy {}",
                changed.display()
            );
        }
        Ok(_) => {}
        Err(Failure::Usage(e) | Failure::Checked(e)) => {
            eprintln!("mcp-policy gateway: keeping the previous {which}: {e}")
        }
    }
}
