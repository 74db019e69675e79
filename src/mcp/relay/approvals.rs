//! The approval protocol: asking a person through the client, sealed states, single use,
//! and continuations of calls the server asked more input for.

use super::call::Call;
use super::console::{console_params, input_required};
use super::jsonrpc::*;
use super::table::*;
use super::*;
use crate::clock::Clock;
use crate::decision::{Decision, DenyCode};
use crate::mcp::held::{HeldBudget, DEFAULT_MAX_HELD, DEFAULT_MAX_HELD_BYTES};
use crate::mcp::{
    approval_request, ApprovalAnswer, ApprovalBinding, ApprovalBoard, ApprovalError, ApprovalKey,
    ApprovalLedger, Revision, SealedApproval, APPROVAL_INPUT, STATE_PREFIX,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How a [`Relay`] asks a person to approve calls the policy holds for approval: through
/// the MCP client, with an elicitation (see [`RelayBuilder::approvals`]).
#[derive(Debug, Clone)]
pub struct Approvals {
    key: ApprovalKey,
    ttl: Duration,
    timeout: Duration,
    /// Where used approvals are recorded when the engine's store is not shared.
    ledger: Option<Arc<ApprovalLedger>>,
    /// Calls held for an answer, across every relay given a clone of these approvals.
    held: Arc<HeldBudget>,
    /// Where calls for a console approver are posted.
    pub(super) console: Option<Console>,
}

/// The approval console relays post calls to: its board, and the address of its pages.
#[derive(Clone)]
pub(super) struct Console {
    pub(super) board: Arc<dyn ApprovalBoard>,
    base: String,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("board", &self.board)
            .field("base", &self.base)
            .finish()
    }
}

impl Console {
    /// The console's page of the approval `id`.
    pub(super) fn page(&self, id: &str) -> String {
        format!("{}/approvals/{id}", self.base)
    }
}

impl Approvals {
    /// Approvals sealed with `key`; they expire after 600 s, and a person has 300 s to
    /// answer a request on revisions before 2026-07-28.
    pub fn new(key: ApprovalKey) -> Approvals {
        Approvals {
            key,
            ttl: Duration::from_secs(600),
            timeout: Duration::from_secs(300),
            ledger: None,
            held: Arc::new(HeldBudget::new(DEFAULT_MAX_HELD, DEFAULT_MAX_HELD_BYTES)),
            console: None,
        }
    }

    /// Sends calls whose rule names `approvers: "console"` (or `"either"`) to an approval
    /// console: posted on `board`, where a console (the `mcp-policy` gateway's, or your
    /// own) shows and decides them, at pages under `base_url` (`{base_url}/approvals/{id}`).
    ///
    /// The client is pointed at the page with a URL-mode elicitation when it declared
    /// one (held until the decision on revisions before 2026-07-28; answered
    /// `input_required` until then on 2026-07-28); a client that can do neither is
    /// refused `approval_pending` with the page's address, and the same call retried once
    /// approved runs once. An approval not decided within the [`timeout`](Self::timeout)
    /// is declined. Without a console, such calls are refused `approval_required`: a
    /// console rule is never approved by the client's user.
    pub fn console(mut self, board: Arc<dyn ApprovalBoard>, base_url: &str) -> Approvals {
        self.console = Some(Console {
            board,
            base: base_url.trim_end_matches('/').to_owned(),
        });
        self
    }

    /// Records used approvals in `ledger` (a file read back at start) instead of the
    /// engine's counter store. Without a shared store (Redis), this is what keeps an
    /// approval single-use across restarts; a gateway whose counts are in memory and
    /// whose key is kept in a file should have one.
    pub fn ledger(mut self, ledger: ApprovalLedger) -> Approvals {
        self.ledger = Some(Arc::new(ledger));
        self
    }

    /// Bounds the calls held for a person's answer (revisions before 2026-07-28), across
    /// every relay sharing these approvals: at most `calls` at once (default 256), whose
    /// arguments take at most `bytes` (default 16 MiB). A call over either bound is
    /// refused `approval_required`, saying why.
    pub fn max_held(mut self, calls: usize, bytes: usize) -> Approvals {
        self.held = Arc::new(HeldBudget::new(calls, bytes));
        self
    }

    /// How long a sealed approval stays usable (default 600 s).
    pub fn ttl(mut self, ttl: Duration) -> Approvals {
        self.ttl = ttl;
        self
    }

    /// How long a call waits for a person's answer on revisions before 2026-07-28, and
    /// how long a console approval waits for a decision on every revision; no answer
    /// counts as a decline (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Approvals {
        self.timeout = timeout;
        self
    }

    /// How long a call waits for a person's answer on revisions before 2026-07-28.
    pub fn answer_timeout(&self) -> Duration {
        self.timeout
    }

    /// How long a sealed approval stays usable, in milliseconds.
    pub(super) fn ttl_ms(&self) -> u128 {
        self.ttl.as_millis()
    }
}

impl Relay {
    /// Removes this relay's sealed state from a retried call; `None` when the call has
    /// none (no state, or the upstream server's, which is relayed untouched).
    pub(super) fn take_state(&self, request: &mut Value) -> Option<String> {
        self.approvals.as_ref()?;
        let params = request.get_mut("params")?.as_object_mut()?;
        let ours = params
            .get("requestState")
            .and_then(Value::as_str)
            .is_some_and(|state| state.starts_with(STATE_PREFIX));
        if !ours {
            return None;
        }
        params.remove("requestState")?.as_str().map(str::to_owned)
    }

    pub(super) fn open_state(&self, state: &str) -> Result<SealedApproval, ApprovalError> {
        match &self.approvals {
            Some(approvals) => approvals.key.open(state, self.now_ms()),
            None => Err(ApprovalError::Forged),
        }
    }

    /// The retry of a call the server asked more input for: checked against its seal and
    /// used once, then forwarded with the server's state and without being charged again.
    pub(super) fn continuation(
        &self,
        request: &mut Value,
        sealed: SealedApproval,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        if let (Some(inner), Some(params)) = (
            sealed.inner.clone(),
            request.get_mut("params").and_then(Value::as_object_mut),
        ) {
            params.insert("requestState".into(), inner.into());
        }
        let call = self.checked_call(request, id, out)?;
        let binding = self.binding(&call);
        let problem = match (sealed.check(&binding), &self.approvals) {
            (Err(e), _) => Some((DenyCode::ApprovalInvalid, e.to_string())),
            (Ok(()), Some(approvals)) => {
                self.use_approval(approvals, &sealed.nonce, sealed.expires_ms)
            }
            (Ok(()), None) => Some((DenyCode::ApprovalInvalid, ApprovalError::Forged.to_string())),
        };
        if let Some((code, reason)) = problem {
            self.refuse_outside_policy(id, &call, code, reason, revision, out);
            return None;
        }
        out.notes.push(format!(
            "{}: the continuation of an allowed call, forwarded uncharged",
            call.name()
        ));
        Some(Kind::Continuation(Box::new(binding)))
    }

    /// Records the approval `nonce` (usable until `expires_ms`) as used, once for good: in
    /// the ledger when there is one, else in the engine's counter store. `None` the first
    /// time; else why the call is refused.
    pub(super) fn use_approval(
        &self,
        approvals: &Approvals,
        nonce: &str,
        expires_ms: u64,
    ) -> Option<(DenyCode, String)> {
        let used = match &approvals.ledger {
            Some(ledger) => ledger
                .use_once(nonce, expires_ms, self.now_ms())
                .map_err(|e| {
                    format!(
                        "cannot record the approval's use in {}: {e}",
                        ledger.path().display()
                    )
                }),
            None => self
                .engine
                .use_once(nonce, approvals.ttl.saturating_add(approvals.timeout))
                .map_err(|e| e.to_string()),
        };
        match used {
            Ok(true) => None,
            Ok(false) => Some((DenyCode::ApprovalInvalid, ApprovalError::Reused.to_string())),
            Err(e) => Some((DenyCode::StoreFailed, e)),
        }
    }

    pub(super) fn binding(&self, call: &Call<'_>) -> ApprovalBinding {
        ApprovalBinding {
            tool: call.name().to_owned(),
            args: call.args_sha256().to_owned(),
            grant: self.grant.clone(),
            agent: self.agent.clone(),
            session: self.session.clone(),
            rule: self.engine.governing_rule(call.name()),
        }
    }

    /// MCP 2026-07-28: answers with an `InputRequiredResult` asking for approval, with a
    /// sealed state the client's retry must carry. With `console`, the state waits on
    /// that console approval, and the client is shown its page (unless `form`, under
    /// `approvers: "either"`, where the client's user may answer a form instead).
    pub(super) fn ask_in_result(
        &self,
        approvals: &Approvals,
        call: &Call<'_>,
        reason: &str,
        console: Option<(&str, bool)>,
        id: &Value,
        out: &mut Output,
    ) {
        let ttl = u64::try_from(approvals.ttl.as_millis()).unwrap_or(u64::MAX);
        let (binding, now) = (self.binding(call), self.now_ms());
        let sealed = match console {
            Some((approval, _)) => approvals.key.seal_console(&binding, now, ttl, approval),
            None => approvals.key.seal(&binding, now, ttl),
        };
        let params = match (console, &approvals.console) {
            (Some((approval, false)), Some(desk)) => {
                console_params(desk, call.name(), reason, approval)
            }
            _ => approval_request(call.name(), reason, call.args()),
        };
        match sealed {
            Ok(state) => {
                out.notes
                    .push(format!("{}: asked the client for approval", call.name()));
                let result = input_required(params, state);
                out.to_client
                    .push(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string());
            }
            Err(e) => client_error(out, id, GATEWAY_ERROR, &e.to_string()),
        }
    }

    /// Older revisions: sends the client an `elicitation/create` request and holds the
    /// call until the answer (or the approval timeout). With `console`, the call waits on
    /// that console approval too: the request points the client's user at its page
    /// (unless `form`, under `approvers: "either"`, where the client's answer decides).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ask_by_request(
        &self,
        approvals: &Approvals,
        call: &Call<'_>,
        decision: &Decision,
        reason: &str,
        request: &Value,
        id: &Value,
        revision: Revision,
        console: Option<(&str, bool)>,
        out: &mut Output,
    ) -> Option<Decision> {
        let bytes = call.args().map_or(0, |args| args.to_string().len());
        let ticket = match approvals.held.hold(bytes) {
            Ok(ticket) => ticket,
            Err(why) => {
                out.notes
                    .push(format!("{}: not held for approval: {why}", call.name()));
                self.refuse_with_note(id, call, decision, revision, Some(&why), out);
                return None;
            }
        };
        self.record(id, call, decision, out);
        let params = match (console, &approvals.console) {
            (Some((approval, false)), Some(desk)) => {
                console_params(desk, call.name(), reason, approval)
            }
            _ => approval_request(call.name(), reason, call.args()),
        };
        let deadline = self.clock.now().saturating_add(approvals.timeout);
        let mut state = self.state.lock();
        // Unique beyond this relay: an HTTP gateway matches answers to the relay of the
        // request that asked, among many.
        let mut nonce = [0u8; 8];
        let _ = getrandom::fill(&mut nonce);
        let ask_id = Value::from(format!(
            "mcp-policy-approval-{}-{}",
            state.next_id,
            hex::encode(nonce)
        ));
        state.next_id += 1;
        state.asking.insert(
            ask_id.to_string(),
            Asking {
                request: request.clone(),
                client_id: id.clone(),
                revision,
                deadline,
                console: console.map(|(approval, _)| approval.to_owned()),
                client_decides: console.map_or(true, |(_, form)| form),
                _ticket: ticket,
            },
        );
        drop(state);
        out.notes
            .push(format!("{}: asked the client for approval", call.name()));
        out.to_client.push(
            json!({"jsonrpc": "2.0", "id": ask_id, "method": "elicitation/create", "params": params})
                .to_string(),
        );
        None
    }

    /// A retry carrying this relay's sealed approval: forwarded only if the seal is
    /// intact, unexpired, unused and for this call, the person approved, and the policy
    /// still allows the call once approved.
    pub(super) fn approved_retry(
        &self,
        call: &Call<'_>,
        opened: Result<SealedApproval, ApprovalError>,
        answer: Option<&Value>,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Decision> {
        let Some(approvals) = &self.approvals else {
            return None;
        };
        let checked = opened.and_then(|sealed| sealed.check(&self.binding(call)).map(|()| sealed));
        let sealed = match checked {
            Ok(sealed) => sealed,
            Err(e) => {
                let code = DenyCode::ApprovalInvalid;
                self.refuse_outside_policy(id, call, code, e.to_string(), revision, out);
                return None;
            }
        };
        // The state is used up by any answer: a decline cannot be accepted later.
        let problem = self
            .use_approval(approvals, &sealed.nonce, sealed.expires_ms)
            .or_else(|| {
                let approved = answer.map_or(ApprovalAnswer::Declined, ApprovalAnswer::of);
                (approved != ApprovalAnswer::Approved).then(|| {
                    (
                        DenyCode::ApprovalDeclined,
                        "the person asked did not approve this call".to_owned(),
                    )
                })
            });
        if let Some((code, reason)) = problem {
            self.refuse_outside_policy(id, call, code, reason, revision, out);
            return None;
        }
        let decision = self.engine.evaluate(&call.approval(&sealed.nonce));
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(decision);
        }
        self.refuse(id, call, &decision, revision, out);
        None
    }

    /// The client answered an approval request of an older revision.
    pub(super) fn answered_approval(
        &self,
        asking: Asking,
        ask_id: &Value,
        result: Option<&Value>,
        out: &mut Output,
    ) {
        if asking.console.is_some() {
            return self.answered_console(asking, ask_id.to_string(), result, out);
        }
        let Asking {
            request,
            client_id,
            revision,
            ..
        } = asking;
        let approved = result.map_or(ApprovalAnswer::Declined, ApprovalAnswer::of);
        let approval_id = ask_id.as_str().unwrap_or_default().to_owned();
        let kind = {
            let Some(call) = self.checked_call(&request, &client_id, out) else {
                return;
            };
            let decision = if approved != ApprovalAnswer::Approved {
                Decision::refused(
                    &call,
                    DenyCode::ApprovalDeclined,
                    "the person asked did not approve this call".into(),
                )
            } else {
                self.engine.evaluate(&call.approval(&approval_id))
            };
            out.notes.push(decision.to_string());
            if !decision.is_allowed() {
                return self.refuse(&client_id, &call, &decision, revision, out);
            }
            self.call_kind(decision, &call, &client_id, revision, out)
        };
        self.forward(request, client_id, kind, revision, out);
    }

    /// Seals the server's `requestState` (if any) inside a continuation of the gateway's.
    pub(super) fn wrap_server_state(
        &self,
        binding: &ApprovalBinding,
        result: &mut Value,
        out: &mut Output,
    ) {
        let (Some(approvals), Some(map)) = (&self.approvals, result.as_object_mut()) else {
            return;
        };
        let inner = map
            .remove("requestState")
            .and_then(|state| state.as_str().map(str::to_owned));
        let ttl = u64::try_from(approvals.ttl.as_millis()).unwrap_or(u64::MAX);
        match approvals
            .key
            .seal_continuation(binding, self.now_ms(), ttl, inner)
        {
            Ok(state) => {
                map.insert("requestState".into(), state.into());
            }
            Err(e) => out.notes.push(format!("cannot seal a continuation: {e}")),
        }
    }
}

/// Removes the answer to this relay's approval request from a retried call's
/// `inputResponses` (and the member, once empty).
pub(super) fn take_approval_answer(request: &mut Value) -> Option<Value> {
    let params = request.get_mut("params")?.as_object_mut()?;
    let responses = params.get_mut("inputResponses")?.as_object_mut()?;
    let answer = responses.remove(APPROVAL_INPUT);
    if responses.is_empty() {
        params.remove("inputResponses");
    }
    answer
}
