//! What the sending side's commands share: where the store is, the relay's configuration
//! with the sources of its settings, the async runtime.

use anyhow::Context as _;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

/// Where the relay's store is: the configuration file, overridden by --data.
#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// YAML configuration file (optional: without one the relay runs the compatible route).
    #[arg(long, env = "HOOKFLOW_RELAY_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Data directory for the event store [default: hookflow-data].
    #[arg(long, env = "HOOKFLOW_DATA")]
    pub(super) data: Option<PathBuf>,
    /// A PostgreSQL database several relays share, instead of SQLite in --data
    /// (postgres://USER@HOST:PORT/DB?sslmode=verify-full).
    #[arg(long, env = "HOOKFLOW_STORE")]
    pub(super) store: Option<String>,
}

/// Which relay's store an operator's command works on: its configuration file or its data
/// directory.
#[derive(clap::Args, Clone)]
pub(crate) struct StoreLocation {
    /// The relay's YAML configuration file (its `data:` names the store).
    #[arg(long, env = "HOOKFLOW_RELAY_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// The relay's data directory, holding events.db (overrides the file's `data:`)
    /// [default: hookflow-data].
    #[arg(long, env = "HOOKFLOW_DATA")]
    pub(super) data: Option<PathBuf>,
    /// The relay's PostgreSQL database (overrides the file's `store:`).
    #[arg(long, env = "HOOKFLOW_STORE")]
    pub(super) store: Option<String>,
}

impl From<StoreLocation> for StoreArgs {
    fn from(l: StoreLocation) -> StoreArgs {
        StoreArgs {
            config: l.config,
            data: l.data,
            store: l.store,
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Where `--listen`, `--data` and `--api-url` came from: the command line or the environment
/// (for `--check-config`'s account of the effective values).
pub(crate) fn setting_sources(matches: Option<&clap::ArgMatches>) -> Vec<(String, String)> {
    let Some(m) = matches else {
        return Vec::new();
    };
    [
        ("listen", "--listen", "HOOKFLOW_LISTEN"),
        ("data", "--data", "HOOKFLOW_DATA"),
        ("store", "--store", "HOOKFLOW_STORE"),
        ("api_url", "--api-url", "GITHUB_API_URL"),
    ]
    .into_iter()
    .filter_map(|(id, flag, env)| {
        let source = match m.value_source(id)? {
            clap::parser::ValueSource::CommandLine => format!("flag {flag}"),
            clap::parser::ValueSource::EnvVariable => format!("environment {env}"),
            _ => return None,
        };
        Some((id.to_string(), source))
    })
    .collect()
}

pub(crate) fn relay_config(
    store: &StoreArgs,
    listen: Option<String>,
    api_url: Option<String>,
    sources: Vec<(String, String)>,
) -> anyhow::Result<hookflow_relay::RelayConfig> {
    use hookflow_relay::config::{Overrides, RelayConfig};
    let overrides = Overrides {
        listen,
        data: store.data.clone(),
        store: store.store.clone(),
        api_url,
        sources,
    };
    Ok(match &store.config {
        Some(file) => RelayConfig::load(file, &overrides)?,
        None => RelayConfig::from_flags(&overrides)?,
    })
}
