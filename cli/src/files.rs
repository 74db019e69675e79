//! Reading the files commands name, with errors that say which file and where.

use crate::Failure;
use mcp_policy::{Policy, PolicyError};
use serde_json::Value;
use std::path::Path;

/// A file's text; an unreadable file is a usage error.
pub fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))
}

/// A policy file, loaded and validated.
pub fn load_policy(path: &Path) -> Result<Policy, Failure> {
    let text = read_text(path)?;
    Policy::from_json(&text).map_err(|e| Failure::Checked(policy_errors(path, &e).join("\n")))
}

/// One line per problem: `FILE:LINE:COLUMN: message` or `FILE: PATH: message`.
pub fn policy_errors(path: &Path, error: &PolicyError) -> Vec<String> {
    let mut lines: Vec<String> = error
        .errors()
        .map(|e| match (e.line_column(), e.path()) {
            (Some((line, column)), _) => {
                format!("{}:{line}:{column}: {}", path.display(), e.message())
            }
            (None, Some("")) | (None, None) => format!("{}: {}", path.display(), e.message()),
            (None, Some(at)) => format!("{}: {at}: {}", path.display(), e.message()),
        })
        .collect();
    if error.dropped() > 0 {
        lines.push(format!(
            "{}: … and {} more problems",
            path.display(),
            error.dropped()
        ));
    }
    lines
}

/// A JSON file; unreadable or malformed JSON is a usage error naming line and column.
pub fn read_json(path: &Path) -> Result<Value, Failure> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::Usage(format!(
            "{}:{}:{}: not valid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        ))
    })
}

/// The tools of a `tools/list` result, given as the result object, the whole JSON-RPC
/// response, or a bare array of tools.
pub fn listed_tools(path: &Path) -> Result<Vec<Value>, Failure> {
    let value = read_json(path)?;
    let tools = value
        .get("result")
        .unwrap_or(&value)
        .get("tools")
        .or(value.as_array().map(|_| &value))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{}: expected a tools/list result such as {{\"tools\": [{{\"name\": \"…\"}}]}}",
                path.display()
            ))
        })?;
    for (i, tool) in tools.iter().enumerate() {
        if !tool.get("name").is_some_and(Value::is_string) {
            return Err(Failure::Usage(format!(
                "{}: tools[{i}] has no \"name\" string",
                path.display()
            )));
        }
    }
    Ok(tools.clone())
}

/// A tool's name (checked by [`listed_tools`]).
pub fn tool_name(tool: &Value) -> &str {
    tool.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Reads a record of a file from its JSON object: first refuses a field that none of
/// `known` names (worded as serde words it: a misspelt field is named, not reported as
/// the required field it was meant to be), then reads the fields into `T`.
pub fn read_record<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, Value>,
    known: &[&[&str]],
) -> Result<T, String> {
    if let Some(field) = object
        .keys()
        .find(|field| !known.iter().any(|names| names.contains(&field.as_str())))
    {
        let expected: Vec<String> = known
            .iter()
            .flat_map(|names| names.iter())
            .map(|name| format!("`{name}`"))
            .collect();
        return Err(format!(
            "unknown field `{field}`, expected one of {}",
            expected.join(", ")
        ));
    }
    serde_json::from_value(Value::Object(object)).map_err(|e| e.to_string())
}
