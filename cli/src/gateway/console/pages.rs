//! The console's pages, server-rendered with `maud` (every value escaped), plain forms
//! that work without JavaScript.

use maud::{html, Markup, DOCTYPE};
use mcp_policy::mcp::{BoardEntry, PendingApproval};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:62rem;\
padding:0 1rem;color:#1d2330}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #dde;padding:.45rem;\
text-align:left;vertical-align:top}pre{background:#f4f5f8;padding:.5rem;max-height:16rem;\
overflow:auto;white-space:pre-wrap;word-break:break-all;margin:0}button{padding:.3rem .8rem;\
margin:.1rem}.approve{background:#1f7a3a;color:#fff;border:0}.decline{background:#a3262a;\
color:#fff;border:0}.muted{color:#667}.bar{display:flex;justify-content:space-between;\
align-items:center}.ok{color:#1f7a3a}.no{color:#a3262a}";

/// What a page needs to know of the signed-in approver.
pub struct Viewer<'a> {
    pub name: &'a str,
    pub csrf: &'a str,
}

fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mcp-policy approvals" }
                link rel="stylesheet" href="/style.css";
            }
            body {
                div.bar {
                    h1 { a href="/" { "mcp-policy approvals" } }
                    @if let Some(viewer) = viewer {
                        form method="post" action="/logout" {
                            span.muted { "Signed in as " strong { (viewer.name) } " " }
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                (body)
            }
        }
    }
    .into_string()
}

/// The stylesheet (served from the console itself: the pages' policy allows no other).
pub fn style() -> &'static str {
    STYLE
}

/// The sign-in page.
pub fn login(csrf: &str, problem: Option<&str>, oauth: bool) -> String {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(problem) = problem { p.no { (problem) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Approver token " input type="password" name="token" autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
            @if oauth {
                p { a id="oauth" href="/login/oauth" { "Sign in with your organisation's account" } }
            }
        },
    )
}

/// How long ago `ms` was, for people.
fn ago(now_ms: u64, ms: u64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn arguments(approval: &PendingApproval) -> String {
    serde_json::to_string_pretty(&approval.args).unwrap_or_default()
}

fn decide_buttons(
    approval: &PendingApproval,
    viewer: &Viewer<'_>,
    blocked: Option<&str>,
) -> Markup {
    html! {
        @if let Some(why) = blocked {
            span.muted { (why) }
        } @else {
            form method="post" action={ "/approvals/" (approval.id) "/approve" } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="text" name="note" placeholder="note (optional)" maxlength="500";
                button.approve type="submit" { "Approve" }
                button.decline type="submit" formaction={ "/approvals/" (approval.id) "/decline" } { "Decline" }
            }
        }
    }
}

/// The list: pending approvals with their buttons, then the last decisions.
pub fn list(
    viewer: &Viewer<'_>,
    pending: &[(PendingApproval, Option<String>)],
    decided: &[BoardEntry],
    now_ms: u64,
) -> String {
    layout(
        "Approvals",
        Some(viewer),
        html! {
            h2 { "Waiting for a decision (" (pending.len()) ")" }
            @if pending.is_empty() { p.muted { "Nothing waits for approval." } }
            @else {
                table {
                    tr { th { "Tool" } th { "Reason" } th { "Arguments" } th { "Grant / agent" } th { "Waiting" } th { "" } }
                    @for (approval, blocked) in pending {
                        tr.pending data-id=(approval.id) {
                            td { a href={ "/approvals/" (approval.id) } { code { (approval.tool) } } }
                            td { (approval.reason) }
                            td { pre { (arguments(approval)) } }
                            td { (approval.grant.as_deref().unwrap_or("—")) br; span.muted { (approval.agent.as_deref().unwrap_or("—")) } }
                            td { (ago(now_ms, approval.created_ms)) }
                            td { (decide_buttons(approval, viewer, blocked.as_deref())) }
                        }
                    }
                }
            }
            h2 { "Decided (last " (decided.len()) ")" }
            @if decided.is_empty() { p.muted { "No decisions yet." } }
            @else {
                table {
                    tr { th { "Tool" } th { "Grant" } th { "Decision" } th { "By" } th { "Note" } }
                    @for entry in decided {
                        @let verdict = entry.verdict.as_ref();
                        tr.decided {
                            td { code { (entry.approval.tool) } }
                            td { (entry.approval.grant.as_deref().unwrap_or("—")) }
                            @if verdict.is_some_and(|v| v.approved) { td.ok { "approved" } } @else { td.no { "declined" } }
                            td { (verdict.and_then(|v| v.approver.as_deref()).unwrap_or("—")) }
                            td { (verdict.and_then(|v| v.note.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}

/// One approval, pending or decided.
pub fn one(viewer: &Viewer<'_>, entry: &BoardEntry, blocked: Option<&str>, now_ms: u64) -> String {
    let approval = &entry.approval;
    layout(
        &approval.tool,
        Some(viewer),
        html! {
            h2 { "Call of " code { (approval.tool) } }
            table {
                tr { th { "Reason" } td { (approval.reason) } }
                tr { th { "Grant" } td { (approval.grant.as_deref().unwrap_or("—")) } }
                tr { th { "Agent" } td { (approval.agent.as_deref().unwrap_or("—")) } }
                tr { th { "Rule" } td { (approval.rule.as_deref().unwrap_or("—")) } }
                tr { th { "Arguments" } td { pre { (arguments(approval)) } } }
                tr { th { "Arguments' SHA-256" } td { code { (approval.args_sha256) } } }
                tr { th { "Asked" } td { (ago(now_ms, approval.created_ms)) " ago" } }
            }
            @match &entry.verdict {
                Some(verdict) => {
                    p {
                        @if verdict.approved { strong.ok { "Approved" } } @else { strong.no { "Declined" } }
                        " by " (verdict.approver.as_deref().unwrap_or("no approver"))
                        @if let Some(note) = &verdict.note { ": " (note) }
                    }
                }
                None if now_ms >= approval.expires_ms => { p.no { "Expired: no decision in time." } }
                None => { (decide_buttons(approval, viewer, blocked)) }
            }
        },
    )
}

/// A short page saying what happened (a refused action, a missing approval).
pub fn message(viewer: Option<&Viewer<'_>>, title: &str, text: &str) -> String {
    layout(
        title,
        viewer,
        html! { p { (text) } p { a href="/" { "Back to the list" } } },
    )
}
