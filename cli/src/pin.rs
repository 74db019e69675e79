//! `mcp-policy pin`: the `pins` object for the tools of a `tools/list` result.
//!
//! A tool's digest is SHA-256 over the RFC 8785 canonical JSON of its `tools/list` entry
//! with only `name`, `description`, `inputSchema`, `outputSchema` and `annotations`
//! kept, as given (a field sent as `null` stays `null`, an absent one stays absent).

use crate::files::{listed_tools, tool_name};
use crate::{Failure, FilePath};
use clap::Args;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::process::ExitCode;

/// The fields of a tool definition that a pin covers.
const PINNED_FIELDS: [&str; 5] = [
    "name",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

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
        let digest = digest(tool).map_err(Failure::Usage)?;
        if pins
            .insert(tool_name(tool).to_owned(), digest.into())
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

/// `sha256:<64 hex>` of a tool definition.
pub fn digest(tool: &Value) -> Result<String, String> {
    let kept: Map<String, Value> = PINNED_FIELDS
        .iter()
        .filter_map(|field| Some(((*field).to_owned(), tool.get(*field)?.clone())))
        .collect();
    let canonical = serde_json_canonicalizer::to_vec(&Value::Object(kept))
        .map_err(|e| format!("cannot canonicalize {}: {e}", tool_name(tool)))?;
    let hash = Sha256::digest(&canonical);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}
