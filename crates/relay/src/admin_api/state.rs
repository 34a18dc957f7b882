use crate::live::Live;
use crate::metrics::Metrics;
use crate::store::StoreHandle;
use hookflow_protocol::credentials;
use hookflow_protocol::Environment;
use std::sync::Arc;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::console=…`), kept as it was before
/// the module moved.
pub(super) const LOG_TARGET: &str = "hookflow_relay::console";

/// What the admin handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    /// The event store.
    pub store: StoreHandle,
    /// The relay's metrics (delivery rate).
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub env: Environment,
    /// The admin tokens.
    pub(super) tokens: Arc<Vec<String>>,
    /// The key of the page's session cookies, made at start-up.
    pub(super) session_key: Arc<Vec<u8>>,
    /// Whether the admin address is this machine only (cookies without `Secure` then).
    pub(super) loopback: bool,
    /// The running configuration, for reloads.
    pub(super) live: Arc<Live>,
}

impl ConsoleState {
    /// The state of a console accepting `tokens`.
    pub fn new(
        store: StoreHandle,
        metrics: Arc<Metrics>,
        env: Environment,
        tokens: Vec<String>,
        loopback: bool,
        live: Arc<Live>,
    ) -> ConsoleState {
        let mut key = vec![0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No randomness: sessions cannot be trusted, so none is ever valid.
            tracing::error!(target: LOG_TARGET, "no system randomness: the admin page cannot sign anyone in");
            key.clear();
        }
        ConsoleState {
            store,
            metrics,
            env,
            tokens: Arc::new(tokens),
            session_key: Arc::new(key),
            loopback,
            live,
        }
    }

    /// Whether `token` is one of the admin tokens: each compared in full, in constant time.
    pub(super) fn admits(&self, token: &str) -> bool {
        credentials::one_of(self.tokens.iter().map(|t| t.as_bytes()), token.as_bytes())
    }
}
