//! `hookflow relay dead-letters …`: dead letters listed, retried and purged on the store.

use anyhow::Context as _;
use clap::Subcommand;
use std::process::ExitCode;

use super::common::{relay_config, runtime, StoreArgs, StoreLocation};
use crate::cmd::{environment, print_out};

#[derive(Subcommand)]
pub(crate) enum DeadLetterAction {
    /// List dead letters, one per failed destination: delivery id, event id, destination,
    /// event type, attempts, age, last error.
    List {
        #[command(flatten)]
        store: StoreLocation,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Most letters to list.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Queue dead letters for delivery again, each from its first attempt.
    Replay {
        #[command(flatten)]
        store: StoreLocation,
        /// Delivery ids (that destination alone) or event ids (every dead destination of the
        /// event), as `list` shows them.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters: those older than --older-than, or --all of them.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["older_than", "all"])))]
    Purge {
        #[command(flatten)]
        store: StoreLocation,
        /// Only those received longer ago than this (e.g. 7d, 12h).
        #[arg(long)]
        older_than: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
}

pub(crate) fn dead_letters(action: DeadLetterAction) -> anyhow::Result<ExitCode> {
    use hookflow_relay::operator;
    use hookflow_relay::store::Store as _;
    let store_args = match &action {
        DeadLetterAction::List { store, .. }
        | DeadLetterAction::Replay { store, .. }
        | DeadLetterAction::Purge { store, .. } => StoreArgs::from(store.clone()),
    };
    let config = relay_config(&store_args, None, None, Vec::new())?;
    let env = environment()?;
    let now = env.now_ms();
    runtime()?.block_on(async move {
        let store = operator::open_store(&config, env.clock()).await?;
        match action {
            DeadLetterAction::List { json, limit, .. } => {
                let letters = store.dead_letters(limit).await?;
                if json {
                    print_out(&format!("{}\n", operator::dead_letters_json(&letters, now)))?;
                } else {
                    print_out(&operator::dead_letters_table(&letters, now))?;
                }
            }
            DeadLetterAction::Replay { ids, all, .. } => {
                let asked = ids.len();
                let n = store
                    .replay_dead(if all { Vec::new() } else { ids })
                    .await?;
                eprintln!("hookflow: {n} dead letter(s) queued for delivery again");
                if !all && (n as usize) < asked {
                    eprintln!(
                        "hookflow: {} id(s) were not dead letters",
                        asked - n as usize
                    );
                    return Ok(ExitCode::from(1));
                }
            }
            DeadLetterAction::Purge { older_than, .. } => {
                let older_than = match older_than {
                    None => std::time::Duration::ZERO,
                    Some(text) => {
                        let ms = hookflow_protocol::options::parse_duration_ms(
                            &serde_json::Value::String(text.clone()),
                        )
                        .with_context(|| {
                            format!("--older-than {text:?} is not a duration such as 7d, 12h, 30m")
                        })?;
                        std::time::Duration::from_millis(ms.max(1) as u64)
                    }
                };
                let n = store.purge_dead(older_than).await?;
                eprintln!("hookflow: {n} dead letter(s) deleted");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
