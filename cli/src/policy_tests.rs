//! `mcp-policy test`: policy test files, run on a manual clock and a fresh store per test.
//!
//! A test file: `{"policy": PATH or object, "tests": [{"name": TEXT, "steps": [STEP…]}]}`
//! where a step is `{"tool": NAME, "args"?, "grant"?, "agent"?, "session"?,
//! "approved"?, "advance"?: seconds before this step, "outcome"?: "not_run" | "failed"
//! after it, "expect": "allow" | "deny" | "limit" | "require_approval", "code"?: CODE}`.
//! A relative policy path is relative to the test file.

use crate::files::{policy_errors, read_record, read_text};
use crate::{Failure, FilePath};
use clap::Args;
use mcp_policy::{CallRecord, Engine, ManualClock, Outcome, Policy};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// `test` flags.
#[derive(Args)]
pub struct TestArgs {
    /// Policy test files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<FilePath>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policy: PolicySource,
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PolicySource {
    Path(String),
    Inline(Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    steps: Vec<Step>,
}

/// A step: a call, and what to do and expect around it.
#[derive(Deserialize)]
#[serde(try_from = "serde_json::Map<String, Value>")]
struct Step {
    call: CallRecord,
    advance: Option<f64>,
    outcome: Option<StepOutcome>,
    expect: Expect,
    code: Option<String>,
}

#[derive(Deserialize)]
struct StepFields {
    #[serde(flatten)]
    call: CallRecord,
    advance: Option<f64>,
    outcome: Option<StepOutcome>,
    expect: Expect,
    code: Option<String>,
}

impl TryFrom<serde_json::Map<String, Value>> for Step {
    type Error = String;

    fn try_from(object: serde_json::Map<String, Value>) -> Result<Step, String> {
        let known = [
            CallRecord::FIELDS,
            &["advance", "outcome", "expect", "code"],
        ];
        let fields: StepFields = read_record(object, &known)?;
        Ok(Step {
            call: fields.call,
            advance: fields.advance,
            outcome: fields.outcome,
            expect: fields.expect,
            code: fields.code,
        })
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Expect {
    Allow,
    Deny,
    Limit,
    RequireApproval,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StepOutcome {
    NotRun,
    Failed,
}

impl Expect {
    fn name(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Limit => "limit",
            Expect::RequireApproval => "require_approval",
        }
    }
}

pub fn run(args: &TestArgs) -> Result<ExitCode, Failure> {
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &args.files {
        let (policy, tests) = match load(file) {
            Ok(loaded) => loaded,
            Err(message) => {
                outln!("FAIL  {}: {message}", file.display());
                failed += 1;
                continue;
            }
        };
        for test in &tests {
            match run_test(&policy, test) {
                Ok(()) => {
                    outln!("ok    {}: {}", file.display(), test.name);
                    passed += 1;
                }
                Err(why) => {
                    outln!("FAIL  {}: {}: {why}", file.display(), test.name);
                    failed += 1;
                }
            }
        }
    }
    outln!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The test file's policy and tests, or why they cannot be read.
fn load(file: &Path) -> Result<(Policy, Vec<TestCase>), String> {
    let text = read_text(file).map_err(|e| match e {
        Failure::Usage(m) | Failure::Checked(m) => m,
    })?;
    let parsed: TestFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "line {}, column {}: not a policy test file: {e}",
            e.line(),
            e.column()
        )
    })?;
    let policy = match &parsed.policy {
        PolicySource::Inline(value) => Policy::from_value(value)
            .map_err(|e| format!("the inline policy: {}", policy_errors(file, &e).join("; ")))?,
        PolicySource::Path(path) => {
            let path = file.parent().unwrap_or(Path::new(".")).join(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the policy {}: {e}", path.display()))?;
            Policy::from_json(&text).map_err(|e| policy_errors(&path, &e).join("; "))?
        }
    };
    Ok((policy, parsed.tests))
}

fn run_test(policy: &Policy, test: &TestCase) -> Result<(), String> {
    let clock = ManualClock::new();
    let engine = Engine::builder(policy.clone()).clock(clock.clone()).build();
    for (i, step) in test.steps.iter().enumerate() {
        let at = format!("step {} ({})", i + 1, step.call.tool);
        if let Some(seconds) = step.advance {
            let by = Duration::try_from_secs_f64(seconds)
                .map_err(|_| format!("{at}: advance must be a non-negative number of seconds"))?;
            clock.advance(by);
        }
        let decision = engine.evaluate(&step.call.call());
        if decision.kind() != step.expect.name() {
            return Err(format!(
                "{at}: expected {}, got {} ({decision})",
                step.expect.name(),
                decision.kind()
            ));
        }
        if let Some(code) = &step.code {
            if decision.code() != code {
                return Err(format!(
                    "{at}: expected code {code}, got {} ({decision})",
                    decision.code()
                ));
            }
        }
        if let Some(outcome) = step.outcome {
            let outcome = match outcome {
                StepOutcome::NotRun => Outcome::NotRun,
                StepOutcome::Failed => Outcome::Failed,
            };
            engine
                .report_outcome(&decision, outcome)
                .map_err(|e| format!("{at}: reporting the outcome failed: {e}"))?;
        }
    }
    Ok(())
}
