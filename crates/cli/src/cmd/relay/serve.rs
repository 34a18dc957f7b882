//! `hookflow relay`: the relay itself, until a signal stops it; its subcommands are handed on.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{relay_config, runtime, LogFormat, StoreArgs, StoreLocation};
use super::dead_letters::{dead_letters, DeadLetterAction};
use super::events::{events, EventsAction};
use crate::cmd::environment;

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Signals: SIGHUP reads --config again (endpoints, keys, limits, delivery settings, retention; a broken file is refused and the running configuration stays); SIGTERM or SIGINT drains and stops, a second one exits at once."
)]
pub(crate) struct RelayArgs {
    #[command(subcommand)]
    action: Option<RelayAction>,
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "HOOKFLOW_LISTEN")]
    listen: Option<String>,
    /// GitHub API base (GitHub Enterprise Server: https://HOST/api/v3) [default: https://api.github.com].
    #[arg(long, env = "GITHUB_API_URL")]
    api_url: Option<String>,
    /// Log format.
    #[arg(long, env = "HOOKFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Check the configuration, report every problem with file:line, and exit.
    #[arg(long)]
    check_config: bool,
    /// Refuse to start on a store of an older schema instead of migrating it
    /// (`hookflow relay migrate` does it).
    #[arg(long)]
    no_migrate: bool,
}

#[derive(Subcommand)]
pub(crate) enum RelayAction {
    /// Inspect and fix events that could not be delivered (works while the relay runs).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterAction),
    /// The event log: list events, show one with its attempts, replay (against a running
    /// relay's admin API with --admin-url, or on its store).
    #[command(subcommand)]
    Events(Box<EventsAction>),
    /// Bring the store to this hookflow's schema (start-up does it too, unless --no-migrate).
    Migrate {
        #[command(flatten)]
        store: StoreLocation,
    },
    /// Move a stopped relay's SQLite store into PostgreSQL: pending deliveries, dead letters and
    /// the last day's de-duplication keys. The SQLite file is then renamed out of the way.
    #[command(name = "migrate-store")]
    MigrateStore {
        /// The SQLite relay's data directory (its relay must be stopped).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database: postgres://USER@HOST:PORT/DB.
        #[arg(long, value_name = "URL", env = "HOOKFLOW_STORE")]
        to: String,
    },
}

pub(crate) fn relay(args: RelayArgs, sources: Vec<(String, String)>) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(RelayAction::DeadLetters(action)) => return dead_letters(action),
        Some(RelayAction::Events(action)) => return events(*action),
        Some(RelayAction::Migrate { store }) => {
            let config = relay_config(&StoreArgs::from(store), None, None, Vec::new())?;
            let (place, before, after) =
                runtime()?.block_on(hookflow_relay::operator::migrate_store(&config))?;
            if before == after {
                eprintln!("hookflow: the store in {place} is at schema {after}; nothing to do");
            } else {
                eprintln!("hookflow: the store in {place} went from schema {before} to {after}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Some(RelayAction::MigrateStore { from, to }) => {
            let to = hookflow_relay::store::postgres::PgLocation::parse(&to)
                .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
            let now = environment()?.now_ms();
            let moved =
                runtime()?.block_on(hookflow_relay::operator::move_store(&from, &to, now))?;
            eprintln!(
                "hookflow: moved {} pending deliveries, {} dead letters and {} de-duplication keys from {} to {}{}",
                moved.pending,
                moved.dead,
                moved.keys,
                from.display(),
                to,
                if moved.already_there > 0 {
                    format!(" ({} events were there already and were left as they were)", moved.already_there)
                } else {
                    String::new()
                }
            );
            eprintln!(
                "hookflow: the SQLite store is now {}; delete it once the relays on PostgreSQL run well",
                moved.set_aside.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let mut config = relay_config(
        &args.store,
        args.listen.clone(),
        args.api_url.clone(),
        sources,
    )?;
    config.migrate = !args.no_migrate;
    let env = environment()?;
    if args.check_config {
        let name = args
            .store
            .config
            .as_ref()
            .map_or("the defaults".to_string(), |f| f.display().to_string());
        let report = hookflow_relay::operator::check_config(&config, &name, &env);
        println!("{}", report.summary);
        for line in &report.settings {
            println!("  {line}");
        }
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        return Ok(if report.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if args.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
    runtime()?.block_on(async move {
        let running = hookflow_relay::start(config, env).await?;
        // Registered before the relay says it listens: from then on SIGHUP reloads (its default
        // would end the process).
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hangups = signal(SignalKind::hangup())?;
            let live = running.live.clone();
            tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    let live = live.clone();
                    // Logged by the reload itself: what changed, or why it was refused.
                    let _ = tokio::task::spawn_blocking(move || live.reload()).await;
                }
            });
        }
        eprintln!("hookflow relay: listening on http://{}", running.addr);
        shutdown_signal().await;
        eprintln!("hookflow relay: stopping (a second signal forces exit)");
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("hookflow relay: forced exit");
            std::process::exit(130);
        });
        running.stop().await;
        eprintln!("hookflow relay: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
