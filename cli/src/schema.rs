//! `mcp-policy schema`: the JSON Schema of the policy file.

use crate::Failure;
use std::process::ExitCode;

/// The JSON Schema (draft 2020-12) of the policy file: every field, unknown fields
/// refused, for editors and CI.
pub const POLICY_SCHEMA: &str = include_str!("../policy.schema.json");

pub fn run() -> Result<ExitCode, Failure> {
    crate::write_stdout(format_args!("{POLICY_SCHEMA}"));
    Ok(ExitCode::SUCCESS)
}
