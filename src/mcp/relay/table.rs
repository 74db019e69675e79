//! The relay's table: the ids it mints for the server, the requests waiting for an
//! answer, the server's requests waiting for the client, and calls held for a person.

use super::jsonrpc::*;
use super::*;
use crate::audit::OutcomeRecord;
use crate::clock::{Clock, Timestamp};
use crate::decision::Decision;
use crate::mcp::held::HeldTicket;
use crate::mcp::{ApprovalBinding, Revision};
use crate::policy::Outcome;
use serde_json::Value;
use std::collections::HashMap;

#[derive(Default)]
pub(super) struct State {
    pub(super) next_id: u64,
    /// Requests sent to the server, by the id the relay minted.
    pub(super) pending: HashMap<u64, Pending>,
    /// Requests the server sent to the client, by their id as JSON text.
    pub(super) server_requests: HashMap<String, Timestamp>,
    /// The revision the server chose in `initialize`, for requests that name none.
    pub(super) negotiated: Option<Revision>,
    pub(super) server_gone: bool,
    /// The elicitation modes the client declared in `initialize`.
    pub(super) client_elicits: crate::mcp::ClientElicitation,
    /// Calls waiting for a person's answer (older revisions), by the id of the
    /// `elicitation/create` request as JSON text.
    pub(super) asking: HashMap<String, Asking>,
}

/// A call held while its approval request waits for the client's answer.
pub(super) struct Asking {
    /// The `tools/call` request, as the client sent it (rebuilt).
    pub(super) request: Value,
    pub(super) client_id: Value,
    pub(super) revision: Revision,
    pub(super) deadline: Timestamp,
    /// The approval console's approval it waits on, if a console approver may decide.
    pub(super) console: Option<String>,
    /// Whether the client's answer decides (a form), rather than only withdrawing a call
    /// the console decides (a URL the client's user may visit, or decline).
    pub(super) client_decides: bool,
    /// Its share of the held calls' budget, given back when it is dropped.
    pub(super) _ticket: HeldTicket,
}

pub(super) struct Pending {
    pub(super) client_id: Value,
    pub(super) kind: Kind,
    pub(super) revision: Revision,
    pub(super) deadline: Timestamp,
}

pub(super) enum Kind {
    /// An allowed call, and what it binds when approvals are on (to seal a continuation
    /// if the server asks for more input). Boxed: most requests are not calls.
    Call {
        decision: Box<Decision>,
        binding: Option<Box<ApprovalBinding>>,
        /// The id of the decision's audit record.
        audit: Option<String>,
    },
    /// The retry of a call the server asked more input for: charged already.
    Continuation(Box<ApprovalBinding>),
    ToolsList,
    /// `resources/list`, `resources/templates/list`, `prompts/list`.
    Listing(crate::mcp::lists::Listing),
    Initialize,
    Other,
}

impl Relay {
    /// Sends a request to the server under a fresh id, or answers it with an error when
    /// too many are waiting or the server is gone.
    pub(super) fn forward(
        &self,
        mut request: Value,
        client_id: Value,
        kind: Kind,
        revision: Revision,
        out: &mut Output,
    ) {
        let mut state = self.state.lock();
        let refused = if state.server_gone {
            Some("the MCP server has exited".to_string())
        } else if state.pending.len() >= self.max_pending {
            Some(format!(
                "{} requests are already waiting for the MCP server; wait for their answers",
                state.pending.len()
            ))
        } else {
            None
        };
        if let Some(why) = refused {
            drop(state);
            let pending = Pending {
                client_id,
                kind,
                revision,
                deadline: Timestamp::EPOCH,
            };
            // It never reached the server.
            self.settle(&pending, Outcome::NotRun, out);
            return client_error(out, &pending.client_id, GATEWAY_ERROR, &why);
        }
        let id = state.next_id;
        state.next_id += 1;
        if let Some(map) = request.as_object_mut() {
            map.insert("id".into(), id.into());
        }
        let deadline = self.clock.now().saturating_add(self.request_timeout);
        state.pending.insert(
            id,
            Pending {
                client_id,
                kind,
                revision,
                deadline,
            },
        );
        out.to_server.push(crate::json::text(&request));
    }

    /// Reports a call's outcome to the engine; notes a refund or its failure.
    pub(super) fn settle(&self, pending: &Pending, outcome: Outcome, out: &mut Output) {
        let Kind::Call {
            decision, audit, ..
        } = &pending.kind
        else {
            return;
        };
        let refunded = self.engine.report_outcome(decision, outcome);
        if let Some(audit) = audit {
            let record = OutcomeRecord::new(
                audit,
                &pending.client_id,
                outcome,
                matches!(refunded, Ok(true)),
            );
            out.audit
                .push(serde_json::to_string(&record).unwrap_or_default());
        }
        match refunded {
            Ok(true) => out.notes.push(format!(
                "{}: outcome {}; its units were given back",
                decision.tool(),
                outcome.as_str()
            )),
            Ok(false) => {}
            Err(e) => out.notes.push(format!(
                "{}: outcome {}; giving back its units failed: {e}",
                decision.tool(),
                outcome.as_str()
            )),
        }
    }
}
