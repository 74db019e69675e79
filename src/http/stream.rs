//! The inner service's responses on their way back: JSON read whole, an event stream
//! event by event, each message through the relay that forwarded the request.

use super::sse::{Event, Parser, TooLarge};
use super::{answer, audited, run_on, AuditSink, Blocking, BoxError, PolicyBody, PolicyLayer};
use crate::mcp::{self, Output, Relay};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Sends a message to the upstream on the client's behalf: the relay's answer to a
/// request of the server's that the policy refused (the client never sees it).
pub(crate) type Replier =
    Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A [`Replier`] that POSTs through a clone of `inner`, with the headers of the request
/// whose stream carried the server's request.
pub(crate) fn replier<S, ResBody>(inner: S, parts: &http::request::Parts) -> Replier
where
    S: tower_service::Service<http::Request<Full<Bytes>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let inner = std::sync::Mutex::new(inner);
    let uri = parts.uri.clone();
    let mut headers = parts.headers.clone();
    for name in [
        http::header::CONTENT_LENGTH,
        super::headers::MCP_METHOD,
        super::headers::MCP_NAME,
        super::headers::LAST_EVENT_ID,
    ] {
        headers.remove(name);
    }
    Arc::new(move |message: String| {
        let service = inner.lock().ok().map(|s| s.clone());
        let mut request = http::Request::new(Full::new(Bytes::from(message)));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = headers.clone();
        Box::pin(async move {
            if let Some(mut service) = service {
                if std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .is_ok()
                {
                    let _ = service.call(request).await;
                }
            }
        })
    })
}

/// The relay's answers to requests of the server's (a refusal, with the request's id):
/// what a [`Replier`] sends. Its complaints about the server's messages (`id` null) are
/// the operator's to read, not the upstream's.
fn answers_to_server(out: &Output) -> impl Iterator<Item = String> + '_ {
    out.to_server.iter().filter_map(|message| {
        let id = serde_json::from_str::<Value>(message)
            .ok()
            .and_then(|m| m.get("id").cloned())
            .unwrap_or(Value::Null);
        (!id.is_null()).then(|| message.clone())
    })
}

/// The inner service's response, rewritten by `relay`: whole for JSON, event by event
/// for an event stream. What the relay answers the server (`reply`) is sent as the
/// client would.
pub(crate) async fn relay_response<F, B>(
    layer: &PolicyLayer<F>,
    relay: Arc<Relay>,
    response: Response<B>,
    reply: Option<Replier>,
) -> Response<PolicyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = response.into_parts();
    let kind = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    parts.headers.remove(CONTENT_LENGTH);
    if kind.starts_with("text/event-stream") {
        let body = EventStream {
            inner: body,
            relay,
            parser: Some(Parser::new(layer.max_body)),
            events: VecDeque::new(),
            working: None,
            blocking: layer.blocking.clone(),
            audit: layer.audit.clone(),
            reply,
            replies: VecDeque::new(),
            replying: None,
        };
        return Response::from_parts(parts, body.boxed_unsync());
    }
    let read = Limited::new(body, layer.max_body).collect();
    let bytes = match layer.within(layer.request_timeout, read).await {
        Some(Ok(collected)) => collected.to_bytes(),
        _ => {
            return answer(
                StatusCode::BAD_GATEWAY,
                &mcp::error_response(
                    &Value::Null,
                    mcp::GATEWAY_ERROR,
                    "the MCP server's answer was too large, unreadable or too slow",
                ),
            )
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Response::from_parts(
            parts,
            Full::new(bytes).map_err(|e| match e {}).boxed_unsync(),
        );
    }
    let decider = Arc::clone(&relay);
    let out = layer
        .run(move || decider.from_server(&bytes))
        .await
        .unwrap_or_default();
    audited(layer.audit.as_ref(), &out);
    if let Some(reply) = &reply {
        for message in answers_to_server(&out) {
            reply(message).await;
        }
    }
    let text = out.to_client.into_iter().next().unwrap_or_default();
    Response::from_parts(
        parts,
        Full::new(Bytes::from(text))
            .map_err(|e| match e {})
            .boxed_unsync(),
    )
}

type Working = Pin<Box<dyn Future<Output = Option<Output>> + Send>>;

pin_project_lite::pin_project! {
    /// An event stream whose messages go through the relay as they arrive; every other
    /// line is written back as it came, with LF line endings.
    struct EventStream<B> {
        #[pin]
        inner: B,
        relay: Arc<Relay>,
        // `None` once the inner stream ended.
        parser: Option<Parser>,
        // Complete events not yet relayed.
        events: VecDeque<Event>,
        // The event whose message the relay is deciding on.
        working: Option<(Event, Working)>,
        blocking: Option<Blocking>,
        audit: Option<AuditSink>,
        reply: Option<Replier>,
        // The relay's answers to the server, not yet sent.
        replies: VecDeque<String>,
        // The answer being sent.
        replying: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    }
}

impl<B> Body for EventStream<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            // Answers to the server go first: it waits for them.
            if let Some(replying) = this.replying.as_mut() {
                ready!(replying.as_mut().poll(cx));
                *this.replying = None;
            }
            if let (Some(reply), Some(message)) = (this.reply.as_ref(), this.replies.pop_front()) {
                *this.replying = Some(reply(message));
                continue;
            }
            if let Some((event, working)) = this.working.as_mut() {
                let out = ready!(working.as_mut().poll(cx)).unwrap_or_default();
                audited(this.audit.as_ref(), &out);
                this.replies.extend(answers_to_server(&out));
                // A message the relay drops leaves the event's other lines (its id).
                let written = event.write(out.to_client.first().map(String::as_str));
                *this.working = None;
                if written.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(Bytes::from(written)))));
            }
            if let Some(mut event) = this.events.pop_front() {
                match event.data.take() {
                    Some(data) => {
                        let relay = Arc::clone(this.relay);
                        let working =
                            run_on(this.blocking.as_ref(), move || relay.from_server(&data));
                        *this.working = Some((event, working));
                        continue;
                    }
                    None => {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(event.write(None))))))
                    }
                }
            }
            let Some(parser) = this.parser.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let events = &mut *this.events;
                        if parser.feed(&data, &mut |e| events.push_back(e)) == Err(TooLarge) {
                            return Poll::Ready(Some(Err(
                                "an event of the MCP server's stream is too large".into(),
                            )));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame.map_data(|d| d)))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    // An event cut off by the end of the stream is not dispatched (SSE
                    // drops it); its other lines still pass.
                    let rest = this.parser.take().map(Parser::finish);
                    if let Some(rest) = rest.filter(|e| !e.other.is_empty()) {
                        this.events.push_back(rest);
                    }
                }
            }
        }
    }
}
