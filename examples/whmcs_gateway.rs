//! A scripted agent session against the bundled WHMCS policy, or your own calls.
//!
//! ```sh
//! cargo run --example whmcs_gateway
//! cargo run --example whmcs_gateway -- --policy my_policy.json --calls calls.jsonl
//! ```
//!
//! A calls file has one JSON object per line:
//! `{"tool": "whmcs_update_ticket", "grant": "g1", "session": "s1", "agent": "a1",
//!   "args": {"ticket_id": 7}, "at_ms": 1500, "approved": false}`; only `tool` is required.
//! `at_ms` is the time of the call in milliseconds from the start of the session.

use mcp_policy::{CallRecord, Decision, Engine, ManualClock, Policy, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

const BUNDLED_POLICY: &str = include_str!("policies/whmcs.json");

/// One call, as a line of a calls file: a call record and when it is made.
#[derive(Debug, Deserialize)]
struct Call {
    #[serde(flatten)]
    record: CallRecord,
    #[serde(default)]
    at_ms: u64,
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut policy_file = None;
    let mut calls_file = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--policy" => policy_file = Some(args.next().ok_or("--policy needs a file")?),
            "--calls" => calls_file = Some(args.next().ok_or("--calls needs a file")?),
            "-h" | "--help" => {
                println!("usage: whmcs_gateway [--policy FILE.json] [--calls FILE.jsonl]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    let (policy_name, policy_text) = match &policy_file {
        Some(path) => (path.clone(), read(path)?),
        None => (
            "examples/policies/whmcs.json (bundled)".to_owned(),
            BUNDLED_POLICY.to_owned(),
        ),
    };
    let policy = Policy::from_json(&policy_text).map_err(|e| format!("{policy_name}: {e}"))?;
    let calls = match &calls_file {
        Some(path) => parse_calls(path, &read(path)?)?,
        None => scripted_session(),
    };

    println!("policy: {policy_name}");
    let clock = ManualClock::starting_at(Timestamp::from_millis(1_780_000_000_000));
    let start = Timestamp::from_millis(1_780_000_000_000);
    let engine = Engine::builder(policy).clock(clock.clone()).build();
    let mut tally: BTreeMap<&'static str, usize> = BTreeMap::new();
    println!(
        "{:>9}  {:<24} {:<10} {:<20} detail",
        "time", "tool", "identity", "decision"
    );
    for call in &calls {
        clock.set(start.saturating_add(Duration::from_millis(call.at_ms)));
        let record = &call.record;
        let decision = engine.evaluate(&record.call());
        *tally.entry(decision.code()).or_default() += 1;
        let detail = match &decision {
            Decision::Deny { reason, .. } | Decision::RequireApproval { reason, .. } => {
                reason.to_string()
            }
            Decision::Limit {
                retry_after, limit, ..
            } => {
                format!(
                    "retry in {} (counter \"{}\")",
                    human(*retry_after),
                    limit.counter().name()
                )
            }
            _ => String::new(),
        };
        let code = if record.approved && decision.is_allowed() {
            "allowed (approved)"
        } else {
            decision.code()
        };
        println!(
            "{:>7.1} s  {:<24} {:<10} {:<20} {detail}",
            call.at_ms as f64 / 1000.0,
            record.tool,
            record.grant.as_deref().unwrap_or("-"),
            code,
        );
    }
    println!();
    println!("summary: {} calls", calls.len());
    for (code, count) in tally {
        println!("  {code:<20} {count}");
    }
    Ok(())
}

/// `48.2 s`, `12 min 5 s`, `24 h 32 min`.
fn human(wait: Duration) -> String {
    let secs = wait.as_secs();
    match secs {
        0..=59 => format!("{:.1} s", wait.as_secs_f64()),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

fn parse_calls(path: &str, text: &str) -> Result<Vec<Call>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let at = |e: String| format!("{path}:{}: {e}", i + 1);
            let line: serde_json::Map<String, Value> =
                serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
            // A misspelt field is named, never ignored.
            let known = |field: &String| CallRecord::FIELDS.contains(&&**field) || field == "at_ms";
            if let Some(field) = line.keys().find(|field| !known(field)) {
                return Err(at(format!("unknown field `{field}`")));
            }
            serde_json::from_value(Value::Object(line)).map_err(|e| at(e.to_string()))
        })
        .collect()
}

/// An agent working the support queue, faster than the policy allows.
fn scripted_session() -> Vec<Call> {
    let call = |at_ms: u64, tool: &str, args: Value| Call {
        record: CallRecord {
            grant: Some("g-support".to_owned()),
            session: Some("s-1".to_owned()),
            agent: Some("triage-bot".to_owned()),
            args: Some(args),
            ..CallRecord::new(tool)
        },
        at_ms,
    };
    let mut calls = vec![
        call(0, "whmcs_list_tickets", json!({"status": "Open"})),
        call(400, "whmcs_get_ticket", json!({"ticket_id": 1042})),
        call(
            900,
            "whmcs_update_ticket",
            json!({"ticket_id": 1042, "priority": "Emergency"}),
        ),
        call(
            1_300,
            "whmcs_update_ticket",
            json!({"ticket_id": 1042, "status": "Closed"}),
        ),
    ];
    let mut approved = call(
        5_000,
        "whmcs_update_ticket",
        json!({"ticket_id": 1042, "status": "Closed"}),
    );
    approved.record.approved = true;
    calls.push(approved);
    // A tight loop: 31 more updates, one every 500 ms; 30 a minute fit.
    for i in 0..31u64 {
        calls.push(call(
            6_000 + i * 500,
            "whmcs_update_ticket",
            json!({"ticket_id": 2000 + i, "status": "Answered"}),
        ));
    }
    calls.extend([
        call(
            60_000,
            "whmcs_update_ticket",
            json!({"ticket_id": 2031, "status": "Answered"}),
        ),
        call(
            66_000,
            "whmcs_update_ticket",
            json!({"ticket_id": 2031, "status": "Answered"}),
        ),
        call(
            69_000,
            "whmcs_update_ticket",
            json!({"ticket_id": 2031, "status": "Answered"}),
        ),
        call(70_000, "whmcs_delete_client", json!({"client_id": 77})),
        call(71_000, "whmcs_close_client", json!({"client_id": 77})),
        call(
            72_000,
            "whmcs_send_email",
            json!({"client_id": 77, "template": "apology"}),
        ),
        call(
            80_000,
            "whmcs_add_credit",
            json!({"client_id": 77, "amount": 150}),
        ),
        call(
            81_000,
            "whmcs_add_credit",
            json!({"client_id": 77, "amount": 80}),
        ),
        call(
            82_000,
            "whmcs_add_credit",
            json!({"client_id": 78, "amount": 100}),
        ),
        call(
            83_000,
            "whmcs_add_credit",
            json!({"client_id": 79, "amount": 100}),
        ),
        call(
            84_000,
            "whmcs_add_credit",
            json!({"client_id": 80, "amount": 100}),
        ),
        call(
            85_000,
            "whmcs_add_credit",
            json!({"client_id": 81, "amount": 100}),
        ),
        call(
            86_000,
            "whmcs_add_credit",
            json!({"client_id": 82, "amount": 100}),
        ),
    ]);
    // Stuck in a loop on one ticket: at most 3 updates of a ticket an hour.
    for at_ms in [87_000, 87_500, 88_000] {
        calls.push(call(
            at_ms,
            "whmcs_update_ticket",
            json!({"ticket_id": 1042, "status": "Answered"}),
        ));
    }
    let mut anonymous = call(90_000, "whmcs_get_ticket", json!({"ticket_id": 1}));
    anonymous.record.grant = None;
    calls.push(anonymous);
    calls
}
