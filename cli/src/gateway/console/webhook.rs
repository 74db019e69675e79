//! `--approval-webhook`: each new pending approval is POSTed as JSON whose `text` makes it
//! a Slack or Mattermost incoming-webhook message. Sent from a queue of its own, so a
//! slow or failing webhook never holds a call; failures are logged.

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mcp_policy::mcp::{ApprovalBoard, BoardEntry, PendingApproval, Verdict};
use mcp_policy::store::StoreError;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many notices may wait to be sent; more are dropped (and logged).
const QUEUE: usize = 1024;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The body POSTed for a new pending approval.
pub fn notice(approval: &PendingApproval, url: &str) -> Value {
    let grant = approval.grant.as_deref().unwrap_or("(no grant)");
    json!({
        "text": format!(
            "Approval needed: `{}` called by {grant}: {}. Decide at {url}",
            approval.tool, approval.reason
        ),
        "id": approval.id,
        "tool": approval.tool,
        "reason": approval.reason,
        "grant": approval.grant,
        "url": url,
    })
}

/// A board that also announces each new pending approval to a webhook.
#[derive(Debug)]
pub struct Announcing {
    inner: Arc<dyn ApprovalBoard>,
    base: String,
    queue: mpsc::Sender<Value>,
}

impl Announcing {
    /// Wraps `inner`; notices go to `webhook` from a task on `runtime`.
    pub fn new(
        inner: Arc<dyn ApprovalBoard>,
        base: &str,
        webhook: Uri,
        runtime: &tokio::runtime::Handle,
    ) -> Announcing {
        let (queue, mut notices) = mpsc::channel::<Value>(QUEUE);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
        runtime.spawn(async move {
            while let Some(body) = notices.recv().await {
                let request = Request::post(webhook.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.to_string())));
                let Ok(request) = request else { continue };
                match tokio::time::timeout(SEND_TIMEOUT, client.request(request)).await {
                    Ok(Ok(response)) if response.status().is_success() => {}
                    Ok(Ok(response)) => eprintln!(
                        "mcp-policy gateway: the approval webhook answered HTTP {}",
                        response.status()
                    ),
                    Ok(Err(e)) => eprintln!("mcp-policy gateway: the approval webhook failed: {e}"),
                    Err(_) => eprintln!(
                        "mcp-policy gateway: the approval webhook did not answer within {} s",
                        SEND_TIMEOUT.as_secs()
                    ),
                }
            }
        });
        Announcing {
            inner,
            base: base.trim_end_matches('/').to_owned(),
            queue,
        }
    }
}

impl ApprovalBoard for Announcing {
    fn post(&self, approval: &PendingApproval) -> Result<(), StoreError> {
        self.inner.post(approval)?;
        let url = format!("{}/approvals/{}", self.base, approval.id);
        if self.queue.try_send(notice(approval, &url)).is_err() {
            eprintln!("mcp-policy gateway: too many approval webhook notices waiting; one dropped");
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<BoardEntry>, StoreError> {
        self.inner.get(id)
    }

    fn find_call(&self, call: &str) -> Result<Option<BoardEntry>, StoreError> {
        self.inner.find_call(call)
    }

    fn forget_call(&self, call: &str) -> Result<(), StoreError> {
        self.inner.forget_call(call)
    }

    fn decide(&self, id: &str, verdict: Verdict) -> Result<Option<BoardEntry>, StoreError> {
        self.inner.decide(id, verdict)
    }

    fn pending(&self, now_ms: u64) -> Result<Vec<PendingApproval>, StoreError> {
        self.inner.pending(now_ms)
    }

    fn decided(&self) -> Result<Vec<BoardEntry>, StoreError> {
        self.inner.decided()
    }
}
