//! `mcp-policy explain`: how a policy decides one call, step by step.

use crate::files::load_policy;
use crate::{Failure, FilePath, Format, Identity};
use clap::Args;
use mcp_policy::{CallKind, CallRecord, Engine, ManualClock};
use serde_json::Value;
use std::process::ExitCode;

/// `explain` flags.
#[derive(Args)]
pub struct ExplainArgs {
    /// The policy file.
    #[arg(long, value_name = "FILE")]
    policy: FilePath,
    /// The tool called.
    #[arg(long, value_name = "NAME", required_unless_present_any = ["resource", "prompt", "server_request"])]
    tool: Option<String>,
    /// A resource read instead: its URI.
    #[arg(long, value_name = "URI", conflicts_with_all = ["tool", "prompt", "server_request"])]
    resource: Option<String>,
    /// A prompt instead: its name (--args holds its arguments).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tool", "server_request"])]
    prompt: Option<String>,
    /// A request the server sends the client instead: its method (--args holds its params).
    #[arg(long, value_name = "METHOD", conflicts_with = "tool")]
    server_request: Option<String>,
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
    let (kind, name) = match (
        &args.tool,
        &args.resource,
        &args.prompt,
        &args.server_request,
    ) {
        (_, Some(uri), _, _) => (CallKind::Resource, uri),
        (_, _, Some(prompt), _) => (CallKind::Prompt, prompt),
        (_, _, _, Some(method)) => (CallKind::ServerRequest, method),
        (Some(tool), _, _, _) => (CallKind::Tool, tool),
        _ => {
            return Err(Failure::Usage(
                "name a --tool, --resource, --prompt or --server-request".into(),
            ))
        }
    };
    let record = CallRecord {
        kind,
        tool: name.clone(),
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
