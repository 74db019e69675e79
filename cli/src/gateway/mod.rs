//! `mcp-policy gateway`: the policy enforced between an MCP client and server, over stdio
//! (`stdio`) or Streamable HTTP (`http`); `reload` holds what both do beside relaying.

mod audit_log;
mod auth;
mod console;
mod http;
mod issuer;
mod reload;
mod stdio;

use audit_log::AuditLog;

use crate::files::{load_policy, read_text};
use crate::{Failure, FilePath, Identity};
use clap::Args;
use mcp_policy::mcp::{self, ApprovalBoard, ApprovalKey, Approvals};
use mcp_policy::{Engine, RedisStore};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    /// --redis or --redis-cluster), so each works once across restarts; read back at
    /// start. Default: the --approval-key file's path with ".used" added.
    #[arg(
        long,
        value_name = "FILE",
        requires = "approval_key",
        conflicts_with_all = ["redis", "redis_cluster"]
    )]
    approval_ledger: Option<FilePath>,
    /// How long a person has to answer an approval request (revisions before 2026-07-28),
    /// and how long a console approval waits for a decision; no answer counts as a decline.
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
    /// Keep counts (and used and pending approvals) in a Redis Cluster (or Valkey cluster)
    /// instead: the URLs of some of its nodes, comma-separated; the rest are found through
    /// them.
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        conflicts_with = "redis"
    )]
    redis_cluster: Vec<String>,
    /// Admit a call only once this many replicas confirmed its counts (Redis WAIT), so
    /// counts survive a failover (with --redis or --redis-cluster).
    #[arg(long, value_name = "N", default_value_t = 0)]
    redis_wait_replicas: u32,
    /// The key prefix in Redis.
    #[arg(long, value_name = "PREFIX", default_value = "mcp-policy:")]
    redis_prefix: String,
    /// How often to look at the policy file for changes, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    reload_interval_ms: u64,
    /// Serve MCP Streamable HTTP on this address (such as 127.0.0.1:8080) instead of
    /// running a stdio server; needs --upstream, and --tokens or --oauth-issuer.
    #[arg(
        long,
        value_name = "ADDR",
        requires = "upstream",
        conflicts_with = "server"
    )]
    listen: Option<std::net::SocketAddr>,
    /// The Streamable HTTP MCP server to forward to (with --listen).
    #[arg(long, value_name = "URL", requires = "listen")]
    upstream: Option<::http::Uri>,
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
    #[command(flatten)]
    oauth: issuer::OAuthArgs,
    #[command(flatten)]
    console: console::ConsoleArgs,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(
        last = true,
        required_unless_present = "listen",
        value_name = "COMMAND"
    )]
    server: Vec<String>,
}

/// The Redis store `--redis` or `--redis-cluster` names, if any. `--redis` pointed at a
/// cluster node stops the gateway: calls would fail on every count another node holds.
fn shared_store(args: &GatewayArgs) -> Result<Option<RedisStore>, Failure> {
    let (store, what) = match (&args.redis, args.redis_cluster.as_slice()) {
        (Some(url), _) => {
            let store =
                RedisStore::open(url).map_err(|e| Failure::Usage(format!("--redis {url}: {e}")))?;
            (store, format!("Redis at {url}"))
        }
        (None, []) => return Ok(None),
        (None, urls) => {
            let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
            let store = RedisStore::cluster(&seeds)
                .map_err(|e| Failure::Usage(format!("--redis-cluster: {e}")))?;
            (store, format!("the Redis Cluster at {}", urls.join(", ")))
        }
    };
    let store = store
        .prefix(args.redis_prefix.clone())
        .wait_replicas(args.redis_wait_replicas);
    if let (Some(url), Ok(true)) = (&args.redis, store.server_is_cluster_node()) {
        return Err(Failure::Usage(format!(
            "--redis {url} is a node of a Redis Cluster: counts would be sent to a node \
             that does not hold them; name the cluster's nodes with --redis-cluster \
             URL,URL,... instead"
        )));
    }
    if let Err(e) = store.ping() {
        eprintln!("mcp-policy gateway: warning: {what} does not answer ({e}); calls with limits are denied until it does");
    }
    Ok(Some(store))
}

pub fn run(args: GatewayArgs) -> Result<ExitCode, Failure> {
    let policy = load_policy(&args.policy)?;
    let key = match &args.approval_key {
        Some(path) => ApprovalKey::from_hex(&read_text(path)?)
            .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
        None => ApprovalKey::generate().map_err(|e| Failure::Usage(e.to_string()))?,
    };
    // Pending console approvals live beside the counts: in Redis, any replica's console
    // shows and decides them.
    let (engine, board): (Engine, Arc<dyn ApprovalBoard>) = match shared_store(&args)? {
        Some(store) => {
            let board = Arc::new(store.approval_board());
            (Engine::builder(policy).store(store).build(), board)
        }
        None => (Engine::new(policy), Arc::new(mcp::MemoryBoard::new())),
    };
    if let Some(path) = &args.shadow {
        engine.set_shadow(Some(load_policy(path)?));
    }
    let mut approvals = Approvals::new(key)
        .timeout(Duration::from_secs(args.approval_timeout.max(1)))
        .ttl(Duration::from_secs(args.approval_ttl.max(1)));
    let shared = args.redis.is_some() || !args.redis_cluster.is_empty();
    if let (Some(key_path), false) = (&args.approval_key, shared) {
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
    // One verifier for callers and for approvers signing in to the console.
    let oauth = issuer::verifier(&args.oauth)?;
    let console = console::start(&args.console, board, args.tokens.clone(), oauth.clone())?;
    if let Some(started) = console {
        approvals = approvals.console(started.board, &started.base_url);
    }
    let audit = match &args.audit {
        Some(path) => Some(AuditLog::open(path)?),
        None => None,
    };
    if let (Some(listen), Some(upstream)) = (args.listen, args.upstream.clone()) {
        if args.tokens.is_none() && oauth.is_none() {
            return Err(Failure::Usage(
                "--listen needs --tokens FILE or --oauth-issuer ISSUER (or both): who may call"
                    .into(),
            ));
        }
        let mut upstream_headers = Vec::new();
        for header in &args.upstream_header {
            let parsed = header.split_once(':').and_then(|(name, value)| {
                Some((
                    ::http::HeaderName::try_from(name.trim()).ok()?,
                    ::http::HeaderValue::try_from(value.trim()).ok()?,
                ))
            });
            upstream_headers.push(parsed.ok_or_else(|| {
                Failure::Usage(format!(
                    "--upstream-header {header:?}: expected \"NAME: VALUE\""
                ))
            })?);
        }
        let options = http::HttpOptions {
            listen,
            upstream,
            path: args.path.clone(),
            tokens: args.tokens.clone(),
            oauth,
            upstream_headers,
            policy: args.policy.clone(),
            reload_interval: Duration::from_millis(args.reload_interval_ms.max(10)),
            max_message: args.max_message,
            audit,
            shadow: args.shadow.clone(),
            metrics: args.metrics,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            max_connections: args.max_connections,
            remote_store: shared,
        };
        http::run(options, engine, approvals)?;
        return Ok(ExitCode::SUCCESS);
    }
    stdio::run(args, engine, approvals, audit)
}
