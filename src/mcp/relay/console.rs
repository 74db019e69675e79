//! Approvals by someone other than the client's user: calls posted on an approval board
//! for a console approver, and how the client is told (a URL elicitation held or answered
//! `input_required`, or the `approval_pending` refusal), then settled once decided.

use super::approvals::*;
use super::call::Call;
use super::table::*;
use super::*;
use crate::decision::Decision;
use crate::mcp::{
    console_request, ApprovalAnswer, BoardEntry, ClientElicitation, PendingApproval,
    SealedApproval, Verdict, APPROVAL_INPUT,
};
use crate::policy::Approvers;
use serde_json::{json, Value};

/// A call the policy holds for approval, and what its client can be asked.
pub(super) struct Asked<'r> {
    pub(super) call: Call<'r>,
    pub(super) decision: Decision,
    pub(super) request: &'r Value,
    pub(super) id: &'r Value,
    pub(super) revision: Revision,
    pub(super) elicits: ClientElicitation,
}

/// Where a console approval of a call stands when the call comes in.
enum Standing {
    Waiting(PendingApproval),
    Approved(BoardEntry),
    Declined(BoardEntry),
}

impl Relay {
    /// Asks whoever the rule names to approve a call the policy holds: the client's user
    /// (a form), a console approver (the call posted on the board), or both under
    /// `approvers: "either"`. `Some` when the call may go to the server now.
    pub(super) fn ask_for_approval(
        &self,
        approvals: &Approvals,
        asked: Asked<'_>,
        out: &mut Output,
    ) -> Option<Kind> {
        let Asked {
            call,
            decision,
            request,
            id,
            revision,
            elicits,
        } = asked;
        let reason = decision.why().unwrap_or_default();
        let approvers = self.engine.approvers(&call);
        let form_now = elicits.form && revision.requires_result_type();
        let form_held = elicits.form && !revision.requires_result_type();
        if approvers == Approvers::Client {
            if form_now {
                self.record(id, &call, &decision, out);
                self.ask_in_result(approvals, &call, &reason, None, id, out);
            } else if form_held {
                self.ask_by_request(
                    approvals, &call, &decision, &reason, request, id, revision, None, out,
                );
            } else {
                self.refuse(id, &call, &decision, revision, out);
            }
            return None;
        }
        let Some(console) = &approvals.console else {
            let note = "This call needs a person on the approval console, and this gateway \
                        runs none: it cannot be approved.";
            self.refuse_with_note(id, &call, &decision, revision, Some(note), out);
            return None;
        };
        let pending = match self.standing(approvals, console, &call, &reason) {
            Ok(Standing::Waiting(pending)) => pending,
            Ok(Standing::Approved(entry)) => {
                return self.run_approved(approvals, call, &entry, id, revision, out)
            }
            Ok(Standing::Declined(entry)) => {
                self.refuse_declined(id, &call, &entry, revision, out);
                return None;
            }
            Err(e) => {
                let code = DenyCode::StoreFailed;
                self.refuse_outside_policy(id, &call, code, e.to_string(), revision, out);
                return None;
            }
        };
        let either_form = approvers == Approvers::Either && elicits.form;
        if either_form && form_now || !either_form && elicits.url && revision.requires_result_type()
        {
            self.record(id, &call, &decision, out);
            let asking = Some((pending.id.as_str(), either_form));
            self.ask_in_result(approvals, &call, &reason, asking, id, out);
        } else if either_form || elicits.url {
            let console = Some((pending.id.as_str(), either_form));
            self.ask_by_request(
                approvals, &call, &decision, &reason, request, id, revision, console, out,
            );
        } else {
            let why = format!(
                "a person must approve this call on the approval console: {} (within {} s)",
                console.page(&pending.id),
                approvals.answer_timeout().as_secs()
            );
            let code = DenyCode::ApprovalPending;
            self.refuse_outside_policy(id, &call, code, why, revision, out);
        }
        None
    }

    /// The console approval of `call` as it stands: the one found for the same call if
    /// it is still open or was approved; a new one posted otherwise (a declined one is
    /// reported once, then forgotten, so the next try asks again).
    fn standing(
        &self,
        approvals: &Approvals,
        console: &Console,
        call: &Call<'_>,
        reason: &str,
    ) -> Result<Standing, crate::store::StoreError> {
        let now = self.now_ms();
        let rule = self.engine.governing_rule(call.name());
        let digest = PendingApproval::call_digest(
            call.name(),
            call.args_sha256(),
            call.grant_id(),
            call.agent_id(),
            rule.as_deref(),
        );
        if let Some(entry) = console.board.find_call(&digest)? {
            let entry = self.timed_out(console, entry, now)?;
            match &entry.verdict {
                None => return Ok(Standing::Waiting(entry.approval)),
                Some(verdict) if verdict.approved && now < entry.approval.use_by_ms => {
                    return Ok(Standing::Approved(entry))
                }
                Some(verdict) if !verdict.approved => {
                    console.board.forget_call(&digest)?;
                    return Ok(Standing::Declined(entry));
                }
                Some(_) => console.board.forget_call(&digest)?,
            }
        }
        let timeout = u64::try_from(approvals.answer_timeout().as_millis()).unwrap_or(u64::MAX);
        let ttl = u64::try_from(approvals.ttl_ms()).unwrap_or(u64::MAX);
        let ids = [call.grant_id(), call.agent_id(), call.session_id()];
        let pending = PendingApproval::new(
            call.name(),
            reason,
            call.args(),
            call.args_sha256(),
            ids,
            rule.as_deref(),
            now,
            timeout,
            ttl,
        )?;
        console.board.post(&pending)?;
        Ok(Standing::Waiting(pending))
    }

    /// `entry`, declined for want of a decision if its time ran out undecided.
    fn timed_out(
        &self,
        console: &Console,
        entry: BoardEntry,
        now: u64,
    ) -> Result<BoardEntry, crate::store::StoreError> {
        if entry.verdict.is_some() || now < entry.approval.expires_ms {
            return Ok(entry);
        }
        let verdict = Verdict::without_approver(false, "no decision in time", now);
        Ok(console
            .board
            .decide(&entry.approval.id, verdict)?
            .unwrap_or(entry))
    }

    /// Runs a call a console approver approved: the approval used once, the call
    /// evaluated again as approved (limits still apply), its approver in the audit log.
    fn run_approved(
        &self,
        approvals: &Approvals,
        call: Call<'_>,
        entry: &BoardEntry,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        let approval = &entry.approval;
        if let Some(console) = &approvals.console {
            // Used up either way: the next identical call asks again.
            let _ = console.board.forget_call(&approval.call);
        }
        if let Some((code, reason)) = self.use_approval(approvals, &approval.id, approval.use_by_ms)
        {
            self.refuse_outside_policy(id, &call, code, reason, revision, out);
            return None;
        }
        let approver = entry.verdict.as_ref().and_then(|v| v.approver.clone());
        let call = call.approved_by(approver);
        let decision = self.engine.evaluate(&call.approval(&approval.id));
        out.notes.push(decision.to_string());
        if decision.is_allowed() {
            return Some(self.call_kind(decision, &call, id, revision, out));
        }
        self.refuse(id, &call, &decision, revision, out);
        None
    }

    /// Refuses a call whose console approval was declined, saying by whom.
    fn refuse_declined(
        &self,
        id: &Value,
        call: &Call<'_>,
        entry: &BoardEntry,
        revision: Revision,
        out: &mut Output,
    ) {
        let verdict = entry.verdict.as_ref();
        let who = verdict.and_then(|v| v.approver.as_deref()).map_or_else(
            || "the approval".to_owned(),
            |name| format!("approver {name:?}"),
        );
        let note = verdict
            .and_then(|v| v.note.as_deref())
            .map(|note| format!(": {note}"))
            .unwrap_or_default();
        let why = format!("{who} declined this call{note}");
        let call = Call::new(**call).approved_by(verdict.and_then(|v| v.approver.clone()));
        self.refuse_outside_policy(id, &call, DenyCode::ApprovalDeclined, why, revision, out);
    }

    /// The retry of a call that waits on a console approval (MCP 2026-07-28): answered
    /// `input_required` again while undecided, run once approved, refused once declined.
    /// A client's decline of the URL elicitation declines the approval; under
    /// `approvers: "either"` a client's form answer decides it.
    pub(super) fn console_retry(
        &self,
        call: Call<'_>,
        sealed: &SealedApproval,
        answer: Option<&Value>,
        id: &Value,
        revision: Revision,
        out: &mut Output,
    ) -> Option<Kind> {
        let invalid = |relay: &Relay, call: &Call<'_>, why: String, out: &mut Output| {
            let code = DenyCode::ApprovalInvalid;
            relay.refuse_outside_policy(id, call, code, why, revision, out);
            None
        };
        let (Some(approvals), Some(approval)) = (&self.approvals, &sealed.console) else {
            return invalid(
                self,
                &call,
                "this gateway runs no approval console".into(),
                out,
            );
        };
        let Some(console) = &approvals.console else {
            return invalid(
                self,
                &call,
                "this gateway runs no approval console".into(),
                out,
            );
        };
        if let Err(e) = sealed.check(&self.binding(&call)) {
            return invalid(self, &call, e.to_string(), out);
        }
        let entry = console
            .board
            .get(approval)
            .and_then(|entry| match entry {
                Some(entry) => self.timed_out(console, entry, self.now_ms()).map(Some),
                None => Ok(None),
            })
            .and_then(|entry| match (entry, answer) {
                (Some(entry), Some(answer)) if entry.verdict.is_none() => {
                    self.client_answer(console, &call, entry, answer)
                }
                (entry, _) => Ok(entry),
            });
        let entry = match entry {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let why = "the console no longer has this approval; ask again".to_owned();
                return invalid(self, &call, why, out);
            }
            Err(e) => {
                let code = DenyCode::StoreFailed;
                self.refuse_outside_policy(id, &call, code, e.to_string(), revision, out);
                return None;
            }
        };
        match &entry.verdict {
            Some(verdict) if verdict.approved => {
                self.run_approved(approvals, call, &entry, id, revision, out)
            }
            Some(_) => {
                self.refuse_declined(id, &call, &entry, revision, out);
                None
            }
            None => {
                let reason = entry.approval.reason.clone();
                let either_form = answer.is_some_and(|a| a.get("content").is_some())
                    || self.engine.approvers(&call) == Approvers::Either && !is_url_answer(answer);
                let asking = Some((entry.approval.id.as_str(), either_form));
                self.ask_in_result(approvals, &call, &reason, asking, id, out);
                None
            }
        }
    }

    /// What the client's answer does to an undecided console approval: a decline or
    /// cancel declines it; under `approvers: "either"`, a form's answer decides it; a
    /// URL elicitation's accept (the user went to the page) changes nothing.
    fn client_answer(
        &self,
        console: &Console,
        call: &Call<'_>,
        entry: BoardEntry,
        answer: &Value,
    ) -> Result<Option<BoardEntry>, crate::store::StoreError> {
        let action = answer.get("action").and_then(Value::as_str);
        let now = self.now_ms();
        let verdict = if action != Some("accept") {
            Verdict::without_approver(false, "the client's user declined", now)
        } else if answer.get("content").is_some()
            && self.engine.approvers(call) == Approvers::Either
        {
            let approved = ApprovalAnswer::of(answer) == ApprovalAnswer::Approved;
            Verdict::without_approver(approved, "the client's user answered", now)
        } else {
            return Ok(Some(entry));
        };
        console.board.decide(&entry.approval.id, verdict)
    }

    /// Settles calls held for a console approval (revisions before 2026-07-28) that the
    /// console decided, or whose time ran out: each runs or is refused. A stdio gateway
    /// calls this now and then (the `mcp-policy` gateway: twice a second).
    pub fn poll_approvals(&self) -> Output {
        self.settle_console(None)
    }

    /// [`poll_approvals`](Self::poll_approvals) for one held call: the one asked with the
    /// `elicitation/create` request whose id is `ask_id` (an HTTP gateway answers each
    /// held call on its own stream).
    pub fn poll_approval(&self, ask_id: &Value) -> Output {
        self.settle_console(Some(&ask_id.to_string()))
    }

    fn settle_console(&self, only: Option<&str>) -> Output {
        let mut out = Output::default();
        let Some(console) = self.approvals.as_ref().and_then(|a| a.console.as_ref()) else {
            return out;
        };
        let waiting: Vec<(String, String)> = self
            .state
            .lock()
            .asking
            .iter()
            .filter(|(key, _)| only.map_or(true, |only| only == key.as_str()))
            .filter_map(|(key, asking)| Some((key.clone(), asking.console.clone()?)))
            .collect();
        let now = self.now_ms();
        for (key, approval) in waiting {
            let entry = match console.board.get(&approval) {
                Ok(Some(entry)) => self.timed_out(console, entry, now),
                Ok(None) => Ok(BoardEntry::gone(approval.clone())),
                Err(e) => Err(e),
            };
            match entry {
                Ok(entry) if entry.verdict.is_some() => {
                    let asking = self.state.lock().asking.remove(&key);
                    if let Some(asking) = asking {
                        self.settle_held(asking, &entry, &mut out);
                    }
                }
                Ok(_) => {}
                Err(e) => out
                    .notes
                    .push(format!("cannot read approval {approval}: {e}")),
            }
        }
        out
    }

    /// Runs or refuses a held call whose console approval was decided.
    pub(super) fn settle_held(&self, asking: Asking, entry: &BoardEntry, out: &mut Output) {
        let Asking {
            request,
            client_id,
            revision,
            ..
        } = asking;
        let kind = {
            let Some(call) = self.checked_call(&request, &client_id, out) else {
                return;
            };
            let approved = entry.verdict.as_ref().is_some_and(|v| v.approved);
            let Some(approvals) = self.approvals.as_ref().filter(|_| approved) else {
                return self.refuse_declined(&client_id, &call, entry, revision, out);
            };
            match self.run_approved(approvals, call, entry, &client_id, revision, out) {
                Some(kind) => kind,
                None => return,
            }
        };
        self.forward(request, client_id, kind, revision, out);
    }

    /// The client answered the `elicitation/create` of a call held for a console
    /// approval: a decline or cancel declines it; a form's answer decides it under
    /// `approvers: "either"`; a URL's accept leaves the call waiting for the console.
    pub(super) fn answered_console(
        &self,
        asking: Asking,
        ask_key: String,
        result: Option<&Value>,
        out: &mut Output,
    ) {
        let Some((console, approval)) = self
            .approvals
            .as_ref()
            .and_then(|a| a.console.as_ref())
            .zip(asking.console.clone())
        else {
            return;
        };
        let now = self.now_ms();
        let accepted =
            result.and_then(|r| r.get("action")).and_then(Value::as_str) == Some("accept");
        let verdict = if asking.client_decides {
            let approved = result.map_or(ApprovalAnswer::Declined, ApprovalAnswer::of);
            let approved = approved == ApprovalAnswer::Approved;
            Verdict::without_approver(approved, "the client's user answered", now)
        } else if accepted {
            out.notes.push(format!(
                "the client's user was shown the console page of approval {approval}"
            ));
            self.state.lock().asking.insert(ask_key, asking);
            return;
        } else {
            Verdict::without_approver(false, "the client's user declined", now)
        };
        let entry = match console.board.decide(&approval, verdict) {
            Ok(Some(entry)) => entry,
            Ok(None) => BoardEntry::gone(approval),
            Err(e) => {
                out.notes
                    .push(format!("cannot decide approval {approval}: {e}"));
                BoardEntry::gone(approval)
            }
        };
        self.settle_held(asking, &entry, out);
    }
}

/// Whether `answer` is a URL elicitation's (an action, no form content).
fn is_url_answer(answer: Option<&Value>) -> bool {
    answer.is_some_and(|a| a.get("content").is_none())
}

impl BoardEntry {
    /// A stand-in for an approval the board no longer has: declined.
    fn gone(id: String) -> BoardEntry {
        let approval = PendingApproval::placeholder(id);
        BoardEntry {
            approval,
            verdict: Some(Verdict::without_approver(
                false,
                "the approval console no longer has this approval",
                0,
            )),
        }
    }
}

/// The `input_required` result that asks for approval: a form (client approvers), or a
/// URL elicitation pointing at the console's page.
pub(super) fn input_required(request: Value, state: String) -> Value {
    json!({
        "resultType": "input_required",
        "inputRequests": {APPROVAL_INPUT: {"method": "elicitation/create", "params": request}},
        "requestState": state,
    })
}

/// The params of the elicitation that points at a console approval's page.
pub(super) fn console_params(console: &Console, tool: &str, reason: &str, id: &str) -> Value {
    console_request(tool, reason, id, &console.page(id))
}
