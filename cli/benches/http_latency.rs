//! The HTTP gateway's added latency: 100 concurrent clients call a fast upstream MCP
//! server on loopback directly, through a bare `hyper` reverse proxy (no policy: the
//! second hop alone, in a process of its own like the gateway), and through `mcp-policy
//! gateway --listen`; the percentiles of each and the gateway's added latency as a
//! multiple of the bare proxy's are printed (BENCHMARKS.md records them).
//!
//! ```sh
//! cargo bench -p mcp-policy-cli --bench http_latency
//! ```
//!
//! `MCP_POLICY_BIN` names the `mcp-policy` binary to run (default: this build's).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CALLS: usize = 200;

/// Concurrent clients: 100, or `LATENCY_CLIENTS`.
fn clients() -> usize {
    std::env::var("LATENCY_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

/// A fast MCP server: answers every call at once.
async fn upstream(
    request: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": {
        "content": [{"type": "text", "text": "ok"}], "isError": false}});
    Ok(http::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer.to_string())))
        .unwrap())
}

async fn run_clients(url: String, token: Option<&'static str>) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for c in 0..clients() {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
            connector.set_nodelay(true);
            let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
            let mut times = Vec::with_capacity(CALLS);
            for i in 0..CALLS {
                let body = json!({"jsonrpc": "2.0", "id": c * CALLS + i, "method": "tools/call",
                    "params": {"name": "whmcs_get_ticket", "arguments": {"ticket_id": i}}});
                let mut request =
                    http::Request::post(&url).header("content-type", "application/json");
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let request = request
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap();
                let started = Instant::now();
                let response = client.request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.into_body().collect().await.unwrap();
                times.push(started.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

/// The bare reverse proxy: what any second HTTP hop costs. It reads each request's body,
/// sends it on to `upstream` over pooled keep-alive connections, reads the answer and
/// returns it, as the gateway does, minus the policy.
fn bare_proxy(upstream: String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!(
            "bare proxy: listening on http://{}/mcp",
            listener.local_addr().unwrap()
        );
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let (client, upstream) = (client.clone(), upstream.clone());
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let mut forward = http::Request::post(upstream);
                            for name in [http::header::CONTENT_TYPE, http::header::ACCEPT] {
                                if let Some(value) = parts.headers.get(&name) {
                                    forward = forward.header(name, value);
                                }
                            }
                            let response = client
                                .request(forward.body(Full::new(body)).unwrap())
                                .await
                                .unwrap();
                            let (parts, body) = response.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                                parts,
                                Full::new(body),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// Starts `command`, which says `… listening on URL` on stderr; it and its URL.
fn listening(mut command: Command, said: &str) -> (std::process::Child, String) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.strip_prefix(said) {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    // Run as the bare proxy (a process of its own, as the gateway is).
    if let Ok(upstream) = std::env::var("HTTP_LATENCY_BARE_PROXY_TO") {
        return bare_proxy(upstream);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(upstream))
                        .await;
                });
            }
        });
        let dir = std::env::temp_dir().join(format!("mcp-policy-latency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("policy.json"),
            r#"{"version":"1","tools":{"whmcs_get_ticket":{"limits":[{"window":"hour","max":9007199254740992,"scope":"grant"}]}}}"#,
        )
        .unwrap();
        let digest = {
            use sha2::Digest;
            sha2::Sha256::digest(b"bench-token").iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        std::fs::write(dir.join("tokens.json"), json!({"tokens": [{"sha256": digest, "grant": "g"}]}).to_string()).unwrap();
        // MCP_POLICY_BIN runs another build of the command (a copy on another machine).
        let binary = std::env::var("MCP_POLICY_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mcp-policy").to_owned());
        let mut command = Command::new(binary);
        command
            .args(["gateway", "--policy"])
            .arg(dir.join("policy.json"))
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{upstream_addr}/mcp"))
            .arg("--tokens")
            .arg(dir.join("tokens.json"));
        let (mut gateway, url) = listening(command, "mcp-policy gateway: listening on ");
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env("HTTP_LATENCY_BARE_PROXY_TO", format!("http://{upstream_addr}/mcp"));
        let (mut proxy, proxy_url) = listening(command, "bare proxy: listening on ");

        // Warm up every path, then measure.
        let upstream_url = format!("http://{upstream_addr}/mcp");
        run_clients(upstream_url.clone(), None).await;
        run_clients(proxy_url.clone(), None).await;
        run_clients(url.clone(), Some("bench-token")).await;
        let direct = run_clients(upstream_url, None).await;
        let bare = run_clients(proxy_url, None).await;
        let through = run_clients(url, Some("bench-token")).await;
        for child in [&mut gateway, &mut proxy] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "{} concurrent clients x {CALLS} calls, loopback, {} cores",
            clients(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for (name, times) in [
            ("direct to the upstream", &direct),
            ("through a bare proxy", &bare),
            ("through the gateway", &through),
        ] {
            println!(
                "{name:<24} p50 {:>9.1?}  p99 {:>9.1?}",
                percentile(times, 0.50),
                percentile(times, 0.99)
            );
        }
        let added = |times: &[Duration], p| percentile(times, p).saturating_sub(percentile(&direct, p));
        for (name, times) in [("added by a bare proxy", &bare), ("added by the gateway", &through)] {
            println!("{name:<24} p50 {:>9.1?}  p99 {:>9.1?}", added(times, 0.50), added(times, 0.99));
        }
        let ratio = |p| added(&through, p).as_secs_f64() / added(&bare, p).as_secs_f64().max(1e-9);
        println!(
            "gateway / bare proxy     p50 {:>8.2}x  p99 {:>8.2}x  (target: at most 1.2x)",
            ratio(0.50),
            ratio(0.99)
        );
    });
}
