//! The sending side (the `relay` feature): `hookflow relay` and its operator commands, and
//! `hookflow dispatch`. What they share: the store's location, the configuration, the runtime.

pub(crate) mod check;
mod common;
pub(crate) mod dead_letters;
pub(crate) mod dispatch;
pub(crate) mod events;
pub(crate) mod serve;

use common::setting_sources;
use dispatch::DispatchArgs;
use serve::RelayArgs;
use std::process::ExitCode;

/// The sending side's commands, flattened into the top-level command list.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Run the relay: accept webhooks, store them durably, deliver them as repository_dispatch.
    Relay(RelayArgs),
    /// Send one repository_dispatch event by hand.
    Dispatch(DispatchArgs),
}

/// Runs one of the sending side's commands; `matches` are the whole command line's (for where
/// each relay setting came from).
pub(crate) fn run(command: Command, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    match command {
        Command::Relay(args) => {
            serve::relay(args, setting_sources(matches.subcommand_matches("relay")))
        }
        Command::Dispatch(args) => dispatch::dispatch(args),
    }
}
