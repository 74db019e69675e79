//! `mcp-policy`: check, explain, test, schema, replay and pin MCP tool-call policies, and
//! run the stdio gateway that enforces them.
//!
//! Exit status: 0 on success, 1 when what was checked fails (a policy error, a failing
//! test, differing decisions), 2 on usage errors. Errors go to stderr.

/// Prints a line on stdout like `println!`, but a reader that went away (`| head`) ends
/// the command quietly, with the shell's status for SIGPIPE, instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes to stdout; see [`outln!`].
fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(141);
    }
}

mod check;
mod explain;
mod files;
mod gateway;
mod pin;
mod policy_tests;
mod replay;
mod schema;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Check, explain, test and run MCP tool-call policies.
#[derive(Parser)]
#[command(name = "mcp-policy", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate policy files: every error of every file, and with --tools, warnings.
    ///
    /// Exit status 0 when every file loads (warnings included), 1 otherwise.
    Check(check::CheckArgs),
    /// Show how a policy decides one call, step by step.
    Explain(explain::ExplainArgs),
    /// Run policy test files: one line per test, then "N passed, M failed".
    Test(policy_tests::TestArgs),
    /// Print the JSON Schema (2020-12) of the policy file.
    Schema,
    /// Decide logged calls again; with --against, print the calls whose decisions differ.
    Replay(replay::ReplayArgs),
    /// Print the "pins" object for the tools of a tools/list result.
    Pin(pin::PinArgs),
    /// Run the stdio gateway: enforce a policy between an MCP client (this process's
    /// stdin and stdout) and the MCP server COMMAND.
    Gateway(Box<gateway::GatewayArgs>),
}

/// `--format`.
#[derive(Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
enum Format {
    /// For people.
    #[default]
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The identity flags shared by commands that decide calls.
#[derive(Args, Clone, Default)]
struct Identity {
    /// The grant id (the credential the agent calls with).
    #[arg(long, value_name = "ID")]
    grant: Option<String>,
    /// The agent id.
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// The session id.
    #[arg(long, value_name = "ID")]
    session: Option<String>,
    /// The OAuth scopes the caller holds, comma-separated; rules with `scopes` refuse a
    /// call without them (`insufficient_scope`).
    #[arg(long, value_name = "S1,S2", value_delimiter = ',')]
    scopes: Option<Vec<String>>,
}

/// A path given on the command line.
type FilePath = PathBuf;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Test(args) => policy_tests::run(&args),
        Command::Schema => schema::run(),
        Command::Replay(args) => replay::run(&args),
        Command::Pin(args) => pin::run(&args),
        Command::Gateway(args) => gateway::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("mcp-policy: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Checked(message)) => {
            eprintln!("mcp-policy: {message}");
            ExitCode::from(1)
        }
    }
}

/// Why a command stopped.
enum Failure {
    /// The command line or an input it names is unusable: exit 2.
    Usage(String),
    /// What was checked failed: exit 1.
    Checked(String),
}
