//! `mcp-policy replay`: decide logged calls again, or compare two policies on them.
//!
//! The log is JSON lines: calls `{"tool", "args"?, "grant"?, "agent"?, "session"?,
//! "approved"?, "at_ms"?}` (`at_ms`: milliseconds since the log's start, so limits see
//! the calls' real spacing), or a gateway's audit log (`--audit`): decision records are
//! decided again at their times, outcome records that gave units back give them back
//! again, and each decision is compared with the logged one. A record kept without its
//! arguments is decided without them.

use crate::files::{load_policy, read_record, read_text};
use crate::{Failure, FilePath, Format};
use clap::Args;
use mcp_policy::{CallKind, CallRecord, Decision, Engine, ManualClock, Policy};
use serde::Deserialize;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

/// `replay` flags.
#[derive(Args)]
pub struct ReplayArgs {
    /// The policy to decide with.
    #[arg(long, value_name = "FILE")]
    policy: FilePath,
    /// A second policy: print only the calls it decides differently (exit 1 if any).
    #[arg(long, value_name = "FILE2")]
    against: Option<FilePath>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The log: one JSON call per line.
    #[arg(value_name = "LOG.jsonl")]
    log: FilePath,
}

/// A call of the log, and when it was made.
#[derive(Deserialize)]
struct Record {
    #[serde(flatten)]
    call: CallRecord,
    #[serde(default)]
    at_ms: u64,
}

/// One policy deciding the log in order, on its own clock and store.
struct Replayer {
    engine: Engine,
    clock: ManualClock,
    now_ms: u64,
    /// Decisions of audit records, by record id, until their outcome.
    decided: std::collections::HashMap<String, Decision>,
}

impl Replayer {
    fn new(policy: Policy) -> Replayer {
        let clock = ManualClock::new();
        Replayer {
            engine: Engine::builder(policy).clock(clock.clone()).build(),
            clock,
            now_ms: 0,
            decided: std::collections::HashMap::new(),
        }
    }

    /// Gives back what the decision logged as `id` recorded, as its outcome did.
    fn refund(&mut self, id: &str) {
        if let Some(decision) = self.decided.remove(id) {
            let _ = self.engine.refund(&decision);
        }
    }

    fn decide(&mut self, record: &Record) -> Decision {
        if record.at_ms > self.now_ms {
            self.clock
                .advance(Duration::from_millis(record.at_ms - self.now_ms));
            self.now_ms = record.at_ms;
        }
        self.engine.evaluate(&record.call.call())
    }
}

pub fn run(args: &ReplayArgs) -> Result<ExitCode, Failure> {
    let mut first = Replayer::new(load_policy(&args.policy)?);
    let mut second = match &args.against {
        Some(path) => Some(Replayer::new(load_policy(path)?)),
        None => None,
    };
    let text = read_text(&args.log)?;
    let mut differ = 0usize;
    let (mut logged, mut reproduced) = (0usize, 0usize);
    let mut start_ms: Option<u64> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let bad = |e: String| Failure::Usage(format!("{}:{line_no}: {e}", args.log.display()));
        let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let parsed = parse_line(value, &mut start_ms).map_err(bad)?;
        let (record, audit) = match parsed {
            Parsed::Refunded { decision_id } => {
                first.refund(&decision_id);
                if let Some(other) = &mut second {
                    other.refund(&decision_id);
                }
                continue;
            }
            Parsed::Skip => continue,
            Parsed::Call(record) => (record, None),
            Parsed::Audit(record, audit) => (record, Some(audit)),
        };
        let decision = first.decide(&record);
        let against = second.as_mut().map(|other| other.decide(&record));
        let mut note = String::new();
        if let Some(audit) = &audit {
            logged += 1;
            if decision.code() == audit.code {
                reproduced += 1;
            } else {
                note = format!("  (logged: {})", audit.code);
            }
        }
        match &against {
            None => match args.format {
                Format::Text => outln!("{line_no}: {decision}{note}"),
                Format::Json => outln!(
                    "{}",
                    json!({"line": line_no, "tool": record.call.tool, "decision": decision,
                           "logged": audit.as_ref().map(|a| &a.code)})
                ),
            },
            Some(against) => {
                if against.code() != decision.code() || against.rule() != decision.rule() {
                    differ += 1;
                    match args.format {
                        Format::Text => {
                            outln!("{line_no}: {}: {decision}  =>  {against}", record.call.tool)
                        }
                        Format::Json => outln!(
                            "{}",
                            json!({"line": line_no, "tool": record.call.tool,
                                   "policy": decision, "against": against})
                        ),
                    }
                }
            }
        }
        // Kept until the record's outcome.
        if let Some(audit) = audit {
            first.decided.insert(audit.id.clone(), decision);
            if let (Some(other), Some(against)) = (&mut second, against) {
                other.decided.insert(audit.id, against);
            }
        }
    }
    if logged > 0 && second.is_none() {
        if args.format == Format::Text {
            outln!("{reproduced} of {logged} logged decisions reproduced");
        }
        if reproduced < logged {
            return Ok(ExitCode::from(1));
        }
    }
    if second.is_some() {
        if args.format == Format::Text {
            outln!("{differ} call(s) decided differently");
        }
        if differ > 0 {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A line of a log.
enum Parsed {
    Call(Record),
    Audit(Record, Logged),
    /// An outcome that gave the decision's units back.
    Refunded {
        decision_id: String,
    },
    /// An outcome that gave nothing back.
    Skip,
}

/// What an audit record says was decided.
struct Logged {
    id: String,
    code: String,
}

/// Reads a call, an audit decision record or an audit outcome record.
fn parse_line(value: Value, start_ms: &mut Option<u64>) -> Result<Parsed, String> {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(decision_id) = text("decision_id") {
        let refunded = value.get("refunded") == Some(&Value::Bool(true));
        return Ok(match refunded {
            true => Parsed::Refunded { decision_id },
            false => Parsed::Skip,
        });
    }
    if value.get("args_sha256").is_none() {
        let Value::Object(object) = value else {
            return Err("a line must be a JSON object".into());
        };
        return read_record(object, &[CallRecord::FIELDS, &["at_ms"]]).map(Parsed::Call);
    }
    // A person's decline or a bad approval is the gateway's decision, not the policy's:
    // nothing to decide again.
    if matches!(
        text("code").as_deref(),
        Some("approval_declined" | "approval_invalid" | "approval_pending" | "store_failed")
    ) {
        return Ok(Parsed::Skip);
    }
    let time = text("time").ok_or("an audit record without \"time\"")?;
    let ms = mcp_policy::audit::parse_rfc3339(&time)
        .ok_or_else(|| format!("\"time\": {time:?} is not an RFC 3339 time"))?;
    let start = *start_ms.get_or_insert(ms);
    let record = Record {
        call: CallRecord {
            kind: match text("kind").as_deref() {
                Some("resource") => CallKind::Resource,
                Some("prompt") => CallKind::Prompt,
                Some("server_request") => CallKind::ServerRequest,
                _ => CallKind::Tool,
            },
            tool: text("tool").ok_or("an audit record without \"tool\"")?,
            args: value.get("args").cloned(),
            grant: text("grant"),
            agent: text("agent"),
            session: text("session"),
            approved: value.get("approval").is_some_and(|a| !a.is_null()),
            scopes: value
                .get("scopes")
                .and_then(|s| serde_json::from_value(s.clone()).ok()),
        },
        at_ms: ms.saturating_sub(start),
    };
    let logged = Logged {
        id: text("id").unwrap_or_default(),
        code: text("code").unwrap_or_default(),
    };
    Ok(Parsed::Audit(record, logged))
}
