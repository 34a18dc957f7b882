//! Start-up and shutdown: the checks before anything is opened, the listeners bound, the store
//! opened once, and the tasks (server, delivery, retention, body pruning, admin API) started
//! and stopped in order.

use crate::{admin_api, bodies, delivery, http, limits, live, outbound, retention};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{self, RelayConfig, StoreLocation};
use crate::store::{self, Opening, StoreError, StoreHandle};
use hookflow_protocol::Environment;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The GitHub client could not be built.
    #[error(transparent)]
    Client(#[from] outbound::github::ClientError),
    /// The GitHub App's private key cannot be used.
    #[error(transparent)]
    AppKey(#[from] outbound::github_app::KeyError),
    /// The HTTP client for destinations could not be built.
    #[error("cannot build the HTTP client for destinations: {0}")]
    Forwarder(String),
    /// Variables the configuration names are unset: every event would be dead-lettered, or
    /// every request refused, so the relay does not start.
    #[error("{}; set them in the relay's environment (hookflow relay --check-config lists what the configuration needs)", .0.join("; "))]
    Unset(Vec<String>),
    /// Destination secrets that cannot sign: every delivery to them would fail.
    #[error("{}", .0.join("; "))]
    Secrets(Vec<String>),
}

/// A running relay.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The admin API's address, when `admin:` is configured.
    pub admin_addr: Option<SocketAddr>,
    /// The store, for inspection.
    pub store: StoreHandle,
    /// The metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The running configuration.
    pub live: Arc<live::Live>,
    shutdown: watch::Sender<bool>,
    shutting_down: Arc<AtomicBool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    pruner: Option<JoinHandle<()>>,
    pruning: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
    /// The data directory's lock (SQLite): one relay per store file.
    _lock: Option<std::fs::File>,
}

/// The store cap when the configuration sets none: what the store holds now plus half the free
/// space of its file system, so strangers cannot fill the disk (and the relay keeps room to
/// deliver what it holds). `None` where free space cannot be read.
pub fn default_store_cap(dir: &std::path::Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(dir).ok()?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        let db = store::sqlite::DB_FILE;
        let held: u64 = [db.to_string(), format!("{db}-wal")]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
            .map(|m| m.len())
            .sum();
        let cap = held.saturating_add(free / 2);
        tracing::info!(
            cap_bytes = cap,
            free_bytes = free,
            "store cap: its size plus half the free space (set limits.max_store_bytes to choose)"
        );
        Some(cap)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        tracing::warn!("cannot read the free space here; the store has no cap unless limits.max_store_bytes sets one");
        None
    }
}

/// Opens the store, binds the address, and starts serving and delivering. `env` gives the
/// clock and every secret the configuration names (tokens, API keys, signature secrets);
/// [`Environment::from_process`] for the real ones.
pub async fn start(config: RelayConfig, env: Environment) -> Result<Running, RelayError> {
    let unset = config.unset_variables(&env);
    if !unset.is_empty() {
        return Err(RelayError::Unset(unset));
    }
    let unusable = config.unusable_secrets(&env);
    if !unusable.is_empty() {
        return Err(RelayError::Secrets(unusable));
    }
    // Bind first: a port clash must not leave a data directory and a database behind.
    let admin_listener = match &config.admin {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|cause| RelayError::Listen {
                    addr: a.listen,
                    cause,
                })?,
        ),
        None => None,
    };
    let mut client = outbound::github::Client::new(&config.api_url, config.delivery.timeout)?;
    if let Some(app) = &config.github_app {
        let key = app.load(&env)?;
        tracing::info!(
            app_id = key.app_id(),
            "dispatching as a GitHub App where endpoints say so"
        );
        client = client.with_app(key, env.clock());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|cause| RelayError::Listen {
            addr: config.listen,
            cause,
        })?;
    let wake = Arc::new(Notify::new());
    let mut config = config;
    let configured_store_cap = config.limits.max_store_bytes;
    let postgres = match &config.store {
        StoreLocation::Sqlite => {
            // Made first, so its free space can be read.
            store::sqlite::prepare_data_dir(&config.data)?;
            if config.limits.max_store_bytes.is_none() {
                config.limits.max_store_bytes = default_store_cap(&config.data);
            }
            None
        }
        StoreLocation::Postgres(location) => {
            if config.limits.max_store_bytes.is_some() {
                tracing::warn!("limits.max_store_bytes applies to the SQLite store only; size a PostgreSQL database with its own tools");
            }
            Some(&**location)
        }
    };
    let how = Opening::Own {
        migrate: config.migrate,
        cap: config.limits.max_store_bytes,
        now_ms: env.now_ms(),
    };
    let store::Opened {
        store,
        lock,
        recovered,
    } = StoreHandle::open(postgres, &config.data, how, env.clock()).await?;
    if recovered > 0 {
        tracing::info!(
            events = recovered,
            "deliveries left in flight by the last run are due again"
        );
    }
    if let (StoreHandle::Postgres(pg), Some(location)) = (&store, postgres) {
        pg.notify_new_events(wake.clone());
        tracing::info!(store = %location, relay_id = pg.relay_id(), "store: PostgreSQL");
    }
    let addr = listener.local_addr().map_err(|cause| RelayError::Listen {
        addr: config.listen,
        cause,
    })?;
    let metrics = Arc::new(crate::metrics::Metrics::for_destinations(
        config
            .endpoints
            .iter()
            .flat_map(|ep| ep.destinations.iter().map(|d| (ep.slug.clone(), d.key()))),
    ));
    let bodies = bodies::Bodies::of(&config, &env, store.clone(), metrics.clone()).map(Arc::new);
    if let (Some(b), Some(url)) = (&config.body_ref, &config.public_url) {
        tracing::info!(public_url = %url, retention_s = b.retention.as_secs(),
            "bodies too large for a dispatch go by reference, served at {url}/bodies/<id>");
    }
    let forwarder = outbound::forward::Forwarder::new(config.delivery.timeout)
        .map_err(|e| RelayError::Forwarder(e.to_string()))?;
    let shutting_down = Arc::new(AtomicBool::new(false));
    let (shutdown, stop) = watch::channel(false);

    let refused = Arc::new(limits::refused_tokens::RefusedTokens::default());
    let bounds = live::Bounds::of(
        &config,
        limits::dispatch_rate::Limiter::for_store(&store, config.delivery.rate_limit_per_minute),
    );
    let (handoff_room, lease) = (config.delivery.concurrency * 4, config.delivery.lease());
    let drain = config.shutdown_timeout;
    let admin_config = config.admin.clone();
    let live = Arc::new(live::Live::new(
        config,
        configured_store_cap,
        bounds,
        env.clone(),
        metrics.clone(),
    ));
    let worker = tokio::spawn(delivery::run(
        delivery::Worker {
            store: store.clone(),
            client,
            forwarder,
            live: live.clone(),
            wake: wake.clone(),
            metrics: metrics.clone(),
            env: env.clone(),
            refused: refused.clone(),
            bodies: bodies.clone(),
            drain,
            handoff: match &store {
                StoreHandle::Postgres(pg) => Some(pg.hand_off_new_events(handoff_room, lease, {
                    let live = live.clone();
                    Arc::new(move |source: &str, d: &store::Destination| {
                        live.current()
                            .destinations
                            .get(source, &d.key())
                            .is_some_and(|c| c.batching.is_some())
                    })
                })),
                StoreHandle::Sqlite(_) => None,
            },
        },
        stop.clone(),
    ));
    let state = http::AppState {
        store: store.clone(),
        refused,
        live: live.clone(),
        wake,
        metrics: metrics.clone(),
        shutting_down: shutting_down.clone(),
        env,
        queue_figures: Arc::default(),
        bodies,
    };
    let pruner = state
        .bodies
        .is_some()
        .then(|| tokio::spawn(bodies::prune(store.clone(), stop.clone())));
    let pruning = tokio::spawn(retention::run(
        store.clone(),
        {
            let live = live.clone();
            move || {
                let now = live.current();
                (now.config.retention, now.config.body_retention)
            }
        },
        stop.clone(),
    ));
    let admin = match (admin_listener, &admin_config) {
        (Some(listener), Some(a)) => {
            let tokens = config::admin_tokens(&state.env.var(&a.tokens_env).unwrap_or_default());
            let console = admin_api::ConsoleState::new(
                store.clone(),
                metrics.clone(),
                state.env.clone(),
                tokens,
                a.listen.ip().is_loopback(),
                live.clone(),
            );
            let addr = listener.local_addr().ok();
            if let Some(addr) = addr {
                tracing::info!(%addr, "admin API listening");
            }
            let task = tokio::spawn(http::serve(
                listener,
                admin_api::router(console),
                config::Limits::default,
                drain,
                stop.clone(),
            ));
            Some((addr, task))
        }
        _ => None,
    };
    let app = http::router(state);
    let server = tokio::spawn(http::serve(
        listener,
        app,
        {
            let live = live.clone();
            move || live.current().config.limits.clone()
        },
        drain,
        stop,
    ));
    tracing::info!(%addr, "relay listening");
    Ok(Running {
        addr,
        store,
        metrics,
        live,
        shutdown,
        shutting_down,
        server,
        worker,
        pruner,
        pruning,
        admin_addr: admin.as_ref().and_then(|(a, _)| *a),
        admin: admin.map(|(_, t)| t),
        _lock: lock,
    })
}

impl Running {
    /// Reads the configuration file again and applies it (what `SIGHUP` does), or refuses it
    /// and keeps the running one. Reads a file: call it off the async workers
    /// (`spawn_blocking`).
    pub fn reload(&self) -> Result<live::Reloaded, live::ReloadError> {
        self.live.reload()
    }

    /// Stops accepting connections, finishes the requests in flight (up to
    /// `shutdown_timeout`), lets deliveries in flight record their results, then returns.
    pub async fn stop(self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.worker.await;
        if let Some(p) = self.pruner {
            let _ = p.await;
        }
        let _ = self.pruning.await;
        if let Some(a) = self.admin {
            let _ = a.await;
        }
        tracing::info!("relay stopped");
    }
}
