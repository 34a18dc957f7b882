//! The relay (`hookflow relay`): an HTTP server that accepts webhooks, stores them durably,
//! answers at once, and delivers them to GitHub's dispatches API with retries.
//!
//! | module | concept |
//! |---|---|
//! | [`config`] | the YAML configuration and its defaults |
//! | [`server`] | HTTP routes, authentication, answers |
//! | [`payload`] | the `client_payload` built from a request, within GitHub's limits |
//! | [`store`] | the durable queue (SQLite), behind a small trait |
//! | [`worker`] | delivery to GitHub: concurrency, retries, dead letters |

pub mod config;
pub mod payload;
pub mod server;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use config::RelayConfig;
use store::{sqlite::SqliteStore, StoreError, StoreHandle};

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
    #[error("{0}")]
    Client(String),
}

/// A running relay.
pub struct Running {
    /// The address it listens on (useful with port 0).
    pub addr: SocketAddr,
    /// The store, for inspection.
    pub store: StoreHandle,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
}

/// Opens the store, binds the address, and starts serving and delivering.
pub async fn start(config: RelayConfig) -> Result<Running, RelayError> {
    let store = StoreHandle::start(Box::new(SqliteStore::open_with_limit(
        &config.data,
        config.max_store_bytes,
    )?))?;
    let client = crate::github::Client::new(&config.api_url, config.delivery.timeout)
        .map_err(RelayError::Client)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|cause| RelayError::Listen {
            addr: config.listen,
            cause,
        })?;
    let addr = listener.local_addr().map_err(|cause| RelayError::Listen {
        addr: config.listen,
        cause,
    })?;
    let wake = Arc::new(Notify::new());
    let (shutdown, stop) = watch::channel(false);

    let worker = tokio::spawn(worker::run(
        store.clone(),
        client,
        config.delivery.clone(),
        wake.clone(),
        stop.clone(),
    ));
    let state = server::AppState {
        store: store.clone(),
        config: Arc::new(config),
        wake,
    };
    let app = server::router(state);
    let mut stop_serving = stop;
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = stop_serving.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
        {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    tracing::info!(%addr, "relay listening");
    Ok(Running {
        addr,
        store,
        shutdown,
        server,
        worker,
    })
}

impl Running {
    /// Stops accepting requests, finishes the ones in flight, lets deliveries in flight record
    /// their results, then returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.worker.await;
    }
}
