//! The HTTP gateway's added latency: 100 concurrent clients call a fast upstream MCP
//! server on loopback directly, then through `mcp-policy gateway --listen`, and the
//! percentiles of both are printed (BENCHMARKS.md records them).
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
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
        let mut gateway = Command::new(binary)
            .args(["gateway", "--policy"])
            .arg(dir.join("policy.json"))
            .args(["--listen", "127.0.0.1:0", "--upstream"])
            .arg(format!("http://{upstream_addr}/mcp"))
            .arg("--tokens")
            .arg(dir.join("tokens.json"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("mcp-policy gateway: listening on ") {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});

        // Warm up both paths, then measure.
        run_clients(format!("http://{upstream_addr}/mcp"), None).await;
        run_clients(url.clone(), Some("bench-token")).await;
        let direct = run_clients(format!("http://{upstream_addr}/mcp"), None).await;
        let through = run_clients(url, Some("bench-token")).await;
        let _ = gateway.kill();
        let _ = gateway.wait();
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "{} concurrent clients x {CALLS} calls, loopback, {} cores",
            clients(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for (name, times) in [("direct to the upstream", &direct), ("through the gateway", &through)] {
            println!(
                "{name:<24} p50 {:>9.1?}  p99 {:>9.1?}",
                percentile(times, 0.50),
                percentile(times, 0.99)
            );
        }
        println!(
            "added by the gateway     p50 {:>9.1?}  p99 {:>9.1?}",
            percentile(&through, 0.50).saturating_sub(percentile(&direct, 0.50)),
            percentile(&through, 0.99).saturating_sub(percentile(&direct, 0.99))
        );
    });
}
