//! `mcp_policy::http::PolicyLayer` in front of an axum MCP app: a few lines.
//!
//! ```sh
//! cargo run -p mcp-policy-cli --example axum_layer
//! ```
//!
//! It serves a tiny MCP app on 127.0.0.1 (a free port) behind the layer, sends it three
//! requests as a client would, prints the answers, and exits.

use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_policy::http::{Identity, PolicyLayer};
use mcp_policy::{Engine, Policy};
use serde_json::{json, Value};

/// The MCP app: lists two tools, and runs whichever it is asked to.
async fn mcp_app(Json(request): Json<Value>) -> Json<Value> {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let tool = request
        .pointer("/params/name")
        .cloned()
        .unwrap_or(Value::Null);
    Json(match request.get("method").and_then(Value::as_str) {
        Some("tools/list") => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
            {"name": "whmcs_get_ticket", "inputSchema": {"type": "object"}},
            {"name": "whmcs_close_client", "inputSchema": {"type": "object"}}]}}),
        _ => json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text",
            "text": format!("ran {tool}")}]}}),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let policy: Policy = r#"{"version": "1", "tools": {
        "whmcs_get_*": {"rate_limit": "100/minute"},
        "whmcs_close_client": {"action": "deny", "reason": "never automated"}}}"#
        .parse()?;

    // The whole integration: who calls (here from a header an auth layer would set), and
    // the layer around the app.
    let layer = PolicyLayer::new(Engine::new(policy), |parts: &http::request::Parts| {
        Identity {
            grant: parts
                .headers
                .get("x-grant")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            session: Some("demo".into()),
            ..Identity::default()
        }
    });
    let app = Router::new().route("/mcp", post(mcp_app)).layer(layer);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for body in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "whmcs_get_ticket"}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whmcs_close_client"}}),
    ] {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("x-grant", "g1")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = client.request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        println!(
            ">> {body}\n<< {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(())
}
