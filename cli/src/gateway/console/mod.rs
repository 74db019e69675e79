//! `--console ADDR`: the approval console, where people named in the approvers file
//! decide the calls that rules with `approvers: "console"` (or `"either"`) hold.

mod approvers;
mod file_watch;
mod oauth;
mod pages;
mod server;
mod webhook;

use crate::{Failure, FilePath};
use clap::Args;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_policy::http::oauth::Verifier;
use mcp_policy::mcp::ApprovalBoard;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ConsoleArgs {
    /// Serve the approval console on this address (such as 127.0.0.1:8090): HTML pages
    /// where approvers decide held calls; needs --approvers.
    #[arg(long, value_name = "ADDR", requires = "approvers")]
    console: Option<SocketAddr>,
    /// Who may sign in to the console: {"approvers": [{"sha256"?: HEX, "name": NAME,
    /// "grants"?: [ID...]}]}, HEX the SHA-256 of the approver's token (without it, the
    /// approver signs in through --console-oauth-client as NAME); an approver never
    /// decides a call of their own grant, and only those of the grants listed, if any.
    /// Reloaded on change.
    #[arg(long, value_name = "FILE", requires = "console")]
    approvers: Option<FilePath>,
    /// The console's address as clients reach it, for the links given to them and to
    /// the webhook (default: http://ADDR).
    #[arg(long, value_name = "URL", requires = "console")]
    console_url: Option<String>,
    /// POST each new pending approval to this URL: {"text", "id", "tool", "reason",
    /// "grant", "url"} (a Slack or Mattermost incoming-webhook message). Failures are
    /// logged and never hold a call.
    #[arg(long, value_name = "URL", requires = "console")]
    approval_webhook: Option<::http::Uri>,
    /// Let approvers sign in through the --oauth-issuer authorization server too, as this
    /// public client (authorization code with PKCE; its redirect URI is
    /// CONSOLE-URL/login/callback). The approver is the identity the access token's
    /// --grant-claim names, and must be listed by `name` in the approvers file.
    #[arg(long, value_name = "CLIENT_ID", requires_all = ["console", "oauth_issuer"])]
    console_oauth_client: Option<String>,
}

/// The console, started: the board relays post to, and the pages' base address.
pub struct Started {
    pub board: Arc<dyn ApprovalBoard>,
    pub base_url: String,
}

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the console on a thread of its own when `--console` is given.
pub fn start(
    args: &ConsoleArgs,
    board: Arc<dyn ApprovalBoard>,
    tokens: Option<FilePath>,
    verifier: Option<Arc<Verifier>>,
) -> Result<Option<Started>, Failure> {
    let (Some(addr), Some(approvers)) = (args.console, &args.approvers) else {
        return Ok(None);
    };
    let approvers = approvers::ApproversFileWatch::open(approvers)?;
    let tokens = match &tokens {
        Some(path) => Some(file_watch::FileWatch::open(
            path,
            "tokens",
            crate::gateway::auth::load_tokens,
        )?),
        None => None,
    };
    let base_url = args
        .console_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Failure::Usage(format!("--console {addr}: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mcp-policy-console")
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("--console: cannot start: {e}")))?;
    let board: Arc<dyn ApprovalBoard> = match &args.approval_webhook {
        Some(webhook) => Arc::new(webhook::Announcing::new(
            board,
            &base_url,
            webhook.clone(),
            runtime.handle(),
        )),
        None => board,
    };
    let oauth = args
        .console_oauth_client
        .as_deref()
        .zip(verifier)
        .map(|(client, verifier)| oauth::ConsoleOAuth::new(client, &base_url, verifier));
    let console = Arc::new(server::Console::new(
        Arc::clone(&board),
        approvers,
        tokens,
        addr.ip().is_loopback(),
        oauth,
    ));
    std::thread::spawn(move || runtime.block_on(serve(listener, console)));
    eprintln!("mcp-policy gateway: approval console on {base_url}");
    Ok(Some(Started { board, base_url }))
}

async fn serve(listener: std::net::TcpListener, console: Arc<server::Console>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        eprintln!("mcp-policy gateway: the approval console cannot listen");
        return;
    };
    // At most this many console connections at once: the console is for people.
    let slots = Arc::new(tokio::sync::Semaphore::new(256));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("mcp-policy gateway: console: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let console = Arc::clone(&console);
        let service = hyper::service::service_fn(move |request| {
            let console = Arc::clone(&console);
            async move { Ok::<_, std::convert::Infallible>(console.serve(request).await) }
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}
