//! Calls held for a person's approval on revisions before 2026-07-28: the call's POST is
//! answered with an event stream that first carries the `elicitation/create` request,
//! then — once the person's answer came, by another POST of the same session and
//! identity — the call's outcome.

use super::service::Sent;
use super::{audited, stream, BoxError, Identity, PolicyBody, PolicyLayer};
use crate::mcp::{Output, Relay};
use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// Who may answer a held call: the session and identity that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) session: Option<String>,
    pub(crate) identity: Identity,
}

/// Held calls by the id of their approval request.
#[derive(Default)]
pub(crate) struct Waiting(Mutex<HashMap<String, (Owner, oneshot::Sender<Bytes>)>>);

impl Waiting {
    /// Hands `answer` to the held call `id` if `owner` made it; `false` (and nothing
    /// taken) otherwise.
    pub(crate) fn answer(&self, id: &str, owner: &Owner, answer: Bytes) -> bool {
        let Ok(mut waiting) = self.0.lock() else {
            return false;
        };
        if !waiting.get(id).is_some_and(|(made_by, _)| made_by == owner) {
            return false;
        }
        match waiting.remove(id) {
            Some((_, sender)) => sender.send(answer).is_ok(),
            None => false,
        }
    }

    fn hold(&self, id: String, owner: Owner, sender: oneshot::Sender<Bytes>) {
        if let Ok(mut waiting) = self.0.lock() {
            waiting.insert(id, (owner, sender));
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut waiting) = self.0.lock() {
            waiting.remove(id);
        }
    }
}

/// A call held for a person's approval.
pub(crate) struct HeldCall<S, F> {
    pub(crate) ask: String,
    pub(crate) owner: Owner,
    pub(crate) relay: Arc<Relay>,
    pub(crate) inner: S,
    pub(crate) parts: http::request::Parts,
    pub(crate) layer: PolicyLayer<F>,
}

impl<S, F, ResBody> HeldCall<S, F>
where
    S: tower_service::Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    F: Send + Sync + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    pub(crate) fn into_response(self) -> Response<PolicyBody> {
        let HeldCall {
            ask,
            owner,
            relay,
            mut inner,
            parts,
            layer,
        } = self;
        let ask_id = serde_json::from_str::<Value>(&ask)
            .ok()
            .and_then(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let (sender, receiver) = oneshot::channel();
        layer.shared.waiting.hold(ask_id.clone(), owner, sender);
        let guard = Forget {
            layer_waiting: Arc::clone(&layer.shared),
            id: ask_id.clone(),
        };
        let timeout = layer
            .timer
            .as_ref()
            .zip(layer.approvals.as_ref())
            .map(|(timer, approvals)| timer(approvals.answer_timeout()));
        let outcome = async move {
            let _guard = guard;
            let Some(out) = settle(&layer, &relay, &ask_id, receiver, timeout).await else {
                return Bytes::new();
            };
            audited(layer.audit.as_ref(), &out);
            let Some(forward) = out.to_server.into_iter().next() else {
                return events(out.to_client);
            };
            let response = match layer
                .send_upstream(&mut inner, &relay, parts, forward)
                .await
            {
                Sent::Answered(response) => response,
                Sent::Unreachable(_, out) | Sent::TimedOut(out) => return events(out.to_client),
            };
            let response = stream::relay_response(&layer, relay, response, None).await;
            let kind = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if kind.starts_with("text/event-stream") {
                body
            } else {
                events(vec![String::from_utf8_lossy(&body).into_owned()])
            }
        };
        let body = Held {
            first: Some(events(vec![ask])),
            rest: Some(Box::pin(outcome)),
        };
        let mut response = Response::new(body.boxed_unsync());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        response
    }
}

/// How often a held call asks the approval board whether a console approver decided.
const CONSOLE_POLL: Duration = Duration::from_millis(250);

/// What to answer a held call with: the relay's output once the client answered (unless
/// the answer only showed the user a console page), a console approver decided (polled
/// with the layer's timer), or the timeout passed (a decline). `None` when the layer is
/// shutting down.
async fn settle<F>(
    layer: &PolicyLayer<F>,
    relay: &Arc<Relay>,
    ask_id: &str,
    receiver: oneshot::Receiver<Bytes>,
    timeout: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> Option<Output> {
    enum Step {
        Answer(Option<Bytes>),
        Tick,
    }
    let mut receiver = Some(receiver);
    let mut deadline = timeout;
    loop {
        let tick = layer.timer.as_ref().map(|timer| timer(CONSOLE_POLL));
        let next = async {
            match (receiver.as_mut(), tick) {
                (Some(answer), Some(tick)) => match select(answer, tick).await {
                    Either::Left((answer, _)) => Step::Answer(answer.ok()),
                    Either::Right(((), _)) => Step::Tick,
                },
                (Some(answer), None) => Step::Answer(answer.await.ok()),
                (None, Some(tick)) => {
                    tick.await;
                    Step::Tick
                }
                (None, None) => std::future::pending().await,
            }
        };
        // The deadline first: a poll that is always ready must not starve it.
        let step = match deadline.as_mut() {
            Some(deadline) => match select(deadline.as_mut(), std::pin::pin!(next)).await {
                Either::Left(((), _)) => None,
                Either::Right((step, _)) => Some(step),
            },
            None => Some(next.await),
        };
        let decider = Arc::clone(relay);
        let out = match step {
            // No answer in time (or the answer's sender went away): a decline.
            None | Some(Step::Answer(None)) => {
                let cancel = Bytes::from(
                    json!({"jsonrpc": "2.0", "id": ask_id, "result": {"action": "cancel"}})
                        .to_string(),
                );
                return layer.run(move || decider.from_client(&cancel)).await;
            }
            Some(Step::Answer(Some(answer))) => {
                receiver = None;
                layer.run(move || decider.from_client(&answer)).await?
            }
            Some(Step::Tick) => {
                let id = Value::from(ask_id);
                layer.run(move || decider.poll_approval(&id)).await?
            }
        };
        if !(out.to_server.is_empty() && out.to_client.is_empty() && out.audit.is_empty()) {
            return Some(out);
        }
    }
}

/// Removes a held call's entry when its stream ends or the client goes away.
struct Forget {
    layer_waiting: Arc<super::Shared>,
    id: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.layer_waiting.waiting.forget(&self.id);
    }
}

/// `future`'s output, or `None` when `deadline` comes first (never, without one).
pub(crate) async fn first_of<T>(
    future: impl Future<Output = T>,
    deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
) -> Option<T> {
    let future = std::pin::pin!(future);
    match deadline {
        None => Some(future.await),
        Some(deadline) => match futures_util::future::select(future, deadline).await {
            Either::Left((value, _)) => Some(value),
            Either::Right(((), _)) => None,
        },
    }
}

/// Messages as event-stream events.
pub(crate) fn events(messages: Vec<String>) -> Bytes {
    let mut text = String::new();
    for message in messages {
        text.push_str("event: message\ndata: ");
        text.push_str(&message);
        text.push_str("\n\n");
    }
    Bytes::from(text)
}

/// The body of a held call: the approval request at once, the outcome when it is known.
struct Held {
    first: Option<Bytes>,
    rest: Option<Pin<Box<dyn Future<Output = Bytes> + Send>>>,
}

impl Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let bytes = ready!(rest.as_mut().poll(cx));
        self.rest = None;
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}
