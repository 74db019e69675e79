//! `mcp-policy explain`: how a policy decides one call, step by step.

use crate::files::load_policy;
use crate::{Failure, FilePath, Format, Identity};
use clap::Args;
use mcp_policy::{CallRecord, Engine, ManualClock};
use serde_json::Value;
use std::process::ExitCode;

/// `explain` flags.
#[derive(Args)]
pub struct ExplainArgs {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    policy: FilePath,
    /// The tool called.
    #[arg(long, value_name = "NAME")]
    tool: String,
    /// The call's arguments, a JSON object.
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    #[command(flatten)]
    identity: Identity,
    /// Treat the call as approved by a person.
    #[arg(long)]
    approved: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(args: &ExplainArgs) -> Result<ExitCode, Failure> {
    let policy = load_policy(&args.policy)?;
    let arguments: Option<Value> = match &args.args {
        None => None,
        Some(text) => match serde_json::from_str(text) {
            Ok(value @ Value::Object(_)) => Some(value),
            Ok(_) => return Err(Failure::Usage("--args must be a JSON object".into())),
            Err(e) => return Err(Failure::Usage(format!("--args is not valid JSON: {e}"))),
        },
    };
    // A fresh store: limits show the call as the first of its window.
    let engine = Engine::builder(policy).clock(ManualClock::new()).build();
    let record = CallRecord {
        tool: args.tool.clone(),
        args: arguments,
        grant: args.identity.grant.clone(),
        agent: args.identity.agent.clone(),
        session: args.identity.session.clone(),
        scopes: args.identity.scopes.clone(),
        approved: args.approved,
    };
    let explanation = engine.explain(&record.call());
    match args.format {
        Format::Text => outln!("{explanation}"),
        Format::Json => outln!(
            "{}",
            serde_json::to_string(&explanation).unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}
