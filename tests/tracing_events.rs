//! Decisions a relay makes are `tracing` events (feature `tracing`), in a span carrying
//! the request's W3C trace context, without arguments. In its own test binary: tracing
//! caches callsite interest process-wide, and other tests' threads would race with it.

#![cfg(feature = "tracing")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use mcp_policy::mcp::Relay;
use mcp_policy::Engine;
use serde_json::json;
use std::sync::Arc;

use std::collections::BTreeMap;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Field values by name.
#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().into(),
            format!("{value:?}").trim_matches('"').into(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// Events seen: their level and fields.
type Seen = Arc<parking_lot::Mutex<Vec<(tracing::Level, BTreeMap<String, String>)>>>;

/// Keeps every event with the fields of the span it happened in.
#[derive(Default)]
struct Capture {
    spans: parking_lot::Mutex<Vec<BTreeMap<String, String>>>,
    current: parking_lot::Mutex<Vec<u64>>,
    events: Seen,
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields::default();
        span.record(&mut fields);
        let mut spans = self.spans.lock();
        spans.push(fields.0);
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(span) = self.current.lock().last() {
            let spans = self.spans.lock();
            for (k, v) in spans.get(*span as usize - 1).into_iter().flatten() {
                fields.0.insert(format!("span.{k}"), v.clone());
            }
        }
        self.events
            .lock()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, span: &Id) {
        self.current.lock().push(span.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.current.lock().pop();
    }
}

#[test]
fn decisions_are_events_in_a_span_with_the_trace_context_and_no_arguments() {
    let policy = r#"{"version": "1", "tools": {"ok": {}, "no": {"action": "deny"}}}"#;
    let relay = Relay::builder(Engine::new(policy.parse().unwrap()))
        .grant("g1")
        .build();
    let capture = Capture::default();
    let events = Arc::clone(&capture.events);
    tracing::subscriber::with_default(capture, || {
        for (id, tool) in [(1, "ok"), (2, "no")] {
            let request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": {"secret": "hunter2"}, "_meta": {
                    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "tracestate": "vendor=1"}}});
            relay.from_client(request.to_string().as_bytes());
        }
    });
    let events = events.lock();
    let decisions: Vec<_> = events
        .iter()
        .filter(|(_, f)| f.contains_key("decision"))
        .collect();
    assert_eq!(decisions.len(), 2);
    let (level, allow) = decisions[0];
    assert_eq!(*level, tracing::Level::DEBUG);
    assert_eq!(allow["code"], "allowed");
    assert_eq!(allow["grant"], "g1");
    assert_eq!(
        allow["span.traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(allow["span.tracestate"], "vendor=1");
    let (level, deny) = decisions[1];
    assert_eq!(*level, tracing::Level::INFO);
    assert_eq!(deny["code"], "rule_denied");
    assert!(
        events
            .iter()
            .all(|(_, f)| f.values().all(|v| !v.contains("hunter2"))),
        "no arguments in events"
    );
}
