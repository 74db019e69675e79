//! `mcp-policy check`: every error of every policy file, and warnings against the tools a
//! server lists.

use crate::files::{listed_tools, policy_errors, read_text, tool_name};
use crate::{Failure, FilePath, Format};
use clap::Args;
use mcp_policy::mcp::tool_digest;
use mcp_policy::{closest_name, Action, Policy, PolicyError};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

/// `check` flags.
#[derive(Args)]
pub struct CheckArgs {
    /// Policy files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<FilePath>,
    /// A tools/list result (JSON) to check rule keys against: warns about keys that match
    /// no tool, tools left to the default, and rules `hide` makes unreachable.
    #[arg(long, value_name = "TOOLS.json")]
    tools: Option<FilePath>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

struct Report {
    file: String,
    error: Option<PolicyError>,
    warnings: Vec<Value>,
}

pub fn run(args: &CheckArgs) -> Result<ExitCode, Failure> {
    let tools = match &args.tools {
        Some(path) => Some(listed_tools(path)?),
        None => None,
    };
    let mut reports = Vec::new();
    for file in &args.files {
        let text = read_text(file)?;
        let report = match Policy::from_json(&text) {
            Ok(policy) => Report {
                file: file.display().to_string(),
                error: None,
                warnings: warnings(&policy, tools.as_deref()),
            },
            Err(error) => Report {
                file: file.display().to_string(),
                error: Some(error),
                warnings: Vec::new(),
            },
        };
        reports.push(report);
    }
    let failed = reports.iter().any(|r| r.error.is_some());
    match args.format {
        Format::Json => {
            let files: Vec<Value> = reports
                .iter()
                .map(|r| {
                    json!({"file": r.file, "ok": r.error.is_none(),
                           "errors": r.error.as_ref().map(json_errors).unwrap_or_default(),
                           "warnings": r.warnings})
                })
                .collect();
            outln!("{}", json!({"ok": !failed, "files": files}));
        }
        Format::Text => {
            for report in &reports {
                if let Some(error) = &report.error {
                    for line in policy_errors(Path::new(&report.file), error) {
                        eprintln!("{line}");
                    }
                }
                for warning in &report.warnings {
                    let message = warning
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    outln!("{}: warning: {message}", report.file);
                }
                if report.error.is_none() {
                    outln!(
                        "{}: ok ({} warning{})",
                        report.file,
                        report.warnings.len(),
                        if report.warnings.len() == 1 { "" } else { "s" }
                    );
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The errors of one file as JSON objects: `path`, `line`, `column`, `message`.
fn json_errors(error: &PolicyError) -> Vec<Value> {
    error
        .errors()
        .map(|e| {
            let (line, column) = e.line_column().unzip();
            json!({"path": e.path(), "line": line, "column": column, "message": e.message()})
        })
        .collect()
}

/// Warnings that keep a policy valid but probably wrong.
fn warnings(policy: &Policy, tools: Option<&[Value]>) -> Vec<Value> {
    let mut warnings = Vec::new();
    // A counter one call charges twice: a rule's limit and an all_tools limit naming it.
    let json = policy.to_json_value();
    let all_tools: BTreeSet<&str> = json
        .get("all_tools")
        .map(counters)
        .into_iter()
        .flatten()
        .collect();
    if let Some(rules) = json.get("tools").and_then(Value::as_object) {
        for (key, rule) in rules {
            for counter in counters(rule).filter(|c| all_tools.contains(c)) {
                warnings.push(json!({"kind": "counter_charged_twice", "rule": key,
                    "message": format!("rule \"{key}\" and all_tools both have a limit on counter \"{counter}\": one call to it is charged on that count twice (the costs add up)")}));
            }
        }
    }
    for key in policy.rule_keys() {
        if policy.is_hidden(key) {
            warnings.push(json!({"kind": "hidden_rule", "rule": key,
                "message": format!("rule \"{key}\" can never apply: \"hide\" matches it, and hidden tools are denied")}));
        }
    }
    let Some(tools) = tools else {
        return warnings;
    };
    let names: Vec<&str> = tools.iter().map(tool_name).collect();
    let used: BTreeSet<&str> = tools
        .iter()
        .filter_map(|tool| policy.rule_for_listed(tool))
        .collect();
    for key in policy.rule_keys().filter(|key| !used.contains(key)) {
        if policy.is_hidden(key) {
            continue;
        }
        let hint = closest_name(key, names.iter().copied())
            .map(|name| format!(" (did you mean \"{name}\"?)"))
            .unwrap_or_default();
        warnings.push(json!({"kind": "unmatched_rule", "rule": key,
            "message": format!("rule \"{key}\" decides none of the listed tools{hint}")}));
    }
    for tool in tools {
        let name = tool_name(tool);
        if let Some(pin) = policy.pin(name) {
            let listed = tool_digest(tool);
            if listed != pin {
                warnings.push(json!({"kind": "pin_drift", "tool": name,
                    "message": format!("tool \"{name}\" is listed with digest {listed}, not its pin {pin}: its definition changed since it was pinned; review it, then update the pin (mcp-policy pin --tools)")}));
            }
        }
    }
    if let Some(pins) = json.get("pins").and_then(Value::as_object) {
        for name in pins.keys().filter(|name| !names.contains(&name.as_str())) {
            warnings.push(json!({"kind": "pin_unlisted", "tool": name,
                "message": format!("tool \"{name}\" is pinned but not listed: its calls are refused until the server lists it with the pinned definition")}));
        }
    }
    for (name, tool) in names.iter().copied().zip(tools) {
        if policy.rule_for_listed(tool).is_none() && !policy.is_hidden(name) {
            let default = policy.default_action();
            let effect = match default {
                Action::Deny => "denied",
                Action::Allow => "allowed",
                Action::RequireApproval => "held for approval",
            };
            warnings.push(json!({"kind": "default_applies", "tool": name,
                "message": format!("tool \"{name}\" has no rule: the default \"{default}\" applies, so it is {effect}")}));
        }
    }
    warnings
}

/// The counter names of a rule's (or all_tools') limits in policy JSON.
fn counters(rule: &Value) -> impl Iterator<Item = &str> {
    rule.get("limits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|limit| limit.get("counter").and_then(Value::as_str))
}
