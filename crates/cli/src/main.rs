//! The `hookflow` command line: parses arguments, hands each command to its module under
//! [`cmd`], maps results to exit codes.
//!
//! Exit codes: 0 success (or no match), 1 no match with `--fail-on-no-match`, a failed golden
//! comparison or validation problems, 2 invalid input.
//!
//! The sending side (`relay`, `dispatch`) is the `relay` feature: `cmd::relay` and the one
//! variant below that flattens its commands in, nothing else.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::event::EventArgs;
use cmd::replay::ReplayArgs;
use cmd::run::RunArgs;
use cmd::sign::SignArgs;
use cmd::validate::ValidateArgs;

#[derive(Parser)]
#[command(
    name = "hookflow",
    version,
    about = "Run GitHub Actions workflows from any HTTP webhook"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Match the dispatched webhook of this workflow run and write step outputs (the action).
    Run(RunArgs),
    /// Run fixture events through the same pipeline and print the JSON result.
    Replay(ReplayArgs),
    /// Check every workflow file and report each problem with file:line.
    Validate(ValidateArgs),
    /// Print the signature header(s) a sender adds to a body (for tests and senders' scripts).
    Sign(SignArgs),
    /// Build an event file from a request described as for curl, to try triggers without a relay.
    Event(EventArgs),
    /// `relay` and `dispatch`.
    #[cfg(feature = "relay")]
    #[command(flatten)]
    Sending(cmd::relay::Command),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let outcome = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Replay(args) => cmd::replay::replay_cmd(args),
        Command::Validate(args) => cmd::validate::validate(args),
        Command::Sign(args) => cmd::sign::sign(args),
        Command::Event(args) => cmd::event::event(args),
        #[cfg(feature = "relay")]
        Command::Sending(command) => cmd::relay::run(command, &matches),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookflow: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
