//! `mcp-policy pin`: the `pins` object for the tools of a `tools/list` result.
//!
//! A tool's digest is SHA-256 over the canonical JSON of its whole `tools/list` entry
//! except `_meta`, as given (a field sent as `null` stays `null`, an absent one stays
//! absent); numbers are written exactly, never through a double.

use crate::files::{listed_tools, tool_name};
use crate::{Failure, FilePath};
use clap::Args;
use mcp_policy::mcp::tool_digest;
use serde_json::{Map, Value};
use std::process::ExitCode;

/// `pin` flags.
#[derive(Args)]
pub struct PinArgs {
    /// A tools/list result (JSON).
    #[arg(long, value_name = "TOOLS.json")]
    tools: FilePath,
}

pub fn run(args: &PinArgs) -> Result<ExitCode, Failure> {
    let tools = listed_tools(&args.tools)?;
    let mut pins = Map::new();
    for tool in &tools {
        if pins
            .insert(tool_name(tool).to_owned(), tool_digest(tool).into())
            .is_some()
        {
            return Err(Failure::Usage(format!(
                "{}: tool \"{}\" is listed twice",
                args.tools.display(),
                tool_name(tool)
            )));
        }
    }
    let pretty = serde_json::to_string_pretty(&Value::Object(pins)).unwrap_or_default();
    outln!("{pretty}");
    Ok(ExitCode::SUCCESS)
}
