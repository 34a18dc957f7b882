//! What every handler shares: the store, the running configuration, the metrics, the clock.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::limits::refused_tokens::RefusedTokens;
use crate::live::Live;

use crate::metrics::Metrics;
use crate::store::StoreHandle;
use hookflow_protocol::Environment;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The event store.
    pub store: StoreHandle,
    /// The configuration in effect, swapped on reload, and the bounds it sets.
    pub live: Arc<Live>,
    /// Wakes the delivery workers when an event is stored.
    pub wake: Arc<Notify>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Set when a shutdown began (`/readyz` turns 503).
    pub shutting_down: Arc<AtomicBool>,
    /// Tokens GitHub refused lately: refused at the door.
    pub refused: Arc<RefusedTokens>,
    /// The clock and the secrets (API keys, signature secrets).
    pub env: Environment,
    /// Bodies by reference, when `body_ref` is configured.
    pub bodies: Option<Arc<crate::bodies::Bodies>>,
    /// The queue figures `/metrics` showed last, and when they were counted.
    pub queue_figures: Arc<std::sync::Mutex<Option<(std::time::Instant, crate::store::Counts)>>>,
}
