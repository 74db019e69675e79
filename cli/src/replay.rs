//! `mcp-policy replay`: decide logged calls again, or compare two policies on them.
//!
//! The log is JSON lines, one call each: `{"tool", "args"?, "grant"?, "agent"?,
//! "session"?, "approved"?, "at_ms"?}` (`at_ms`: milliseconds since the log's start,
//! so limits see the calls' real spacing).

use crate::files::{load_policy, read_text};
use crate::{Failure, FilePath, Format};
use clap::Args;
use mcp_policy::{Decision, Engine, ManualClock, Policy, ToolCall};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    tool: String,
    args: Option<Value>,
    grant: Option<String>,
    agent: Option<String>,
    session: Option<String>,
    #[serde(default)]
    approved: bool,
    #[serde(default)]
    at_ms: u64,
}

/// One policy deciding the log in order, on its own clock and store.
struct Replayer {
    engine: Engine,
    clock: ManualClock,
    now_ms: u64,
}

impl Replayer {
    fn new(policy: Policy) -> Replayer {
        let clock = ManualClock::new();
        Replayer {
            engine: Engine::builder(policy).clock(clock.clone()).build(),
            clock,
            now_ms: 0,
        }
    }

    fn decide(&mut self, record: &Record) -> Decision {
        if record.at_ms > self.now_ms {
            self.clock
                .advance(Duration::from_millis(record.at_ms - self.now_ms));
            self.now_ms = record.at_ms;
        }
        let call = ToolCall::new(&record.tool)
            .approved(record.approved)
            .arguments_opt(record.args.as_ref())
            .ids(
                record.grant.as_deref(),
                record.agent.as_deref(),
                record.session.as_deref(),
            );
        self.engine.evaluate(&call)
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
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line)
            .map_err(|e| Failure::Usage(format!("{}:{}: {e}", args.log.display(), i + 1)))?;
        let decision = first.decide(&record);
        let line_no = i + 1;
        match &mut second {
            None => match args.format {
                Format::Text => outln!("{line_no}: {decision}"),
                Format::Json => outln!(
                    "{}",
                    json!({"line": line_no, "tool": record.tool, "decision": decision})
                ),
            },
            Some(other) => {
                let against = other.decide(&record);
                if against.code() != decision.code() || against.rule() != decision.rule() {
                    differ += 1;
                    match args.format {
                        Format::Text => {
                            outln!("{line_no}: {}: {decision}  =>  {against}", record.tool)
                        }
                        Format::Json => outln!(
                            "{}",
                            json!({"line": line_no, "tool": record.tool,
                                   "policy": decision, "against": against})
                        ),
                    }
                }
            }
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
