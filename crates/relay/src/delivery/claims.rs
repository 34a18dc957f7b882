//! Claimed deliveries: those in flight (what a shutdown puts back) and their results, recorded
//! in the store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::{Metrics, StoreOp};
use crate::store::{ClaimRef, Claimed, Recorded, Store, StoreHandle};

/// Records results; returns their claims, no longer in flight at this relay.
pub(crate) async fn record(
    store: &StoreHandle,
    metrics: &Metrics,
    results: Vec<(ClaimRef, Recorded)>,
) -> Vec<ClaimRef> {
    if results.is_empty() {
        return Vec::new();
    }
    let claims: Vec<ClaimRef> = results.iter().map(|(c, _)| c.clone()).collect();
    let started = Instant::now();
    let recorded = store.record(results).await;
    metrics.store_took(StoreOp::Record, started.elapsed());
    match recorded {
        Ok(n) if n == claims.len() => {}
        Ok(n) => tracing::warn!(
            deliveries = claims.len() - n,
            "a delivery's lease ran out before its result was recorded; another claim owns it now"
        ),
        // The deliveries stay in flight and are claimed again when their lease runs out.
        Err(e) => {
            tracing::error!(deliveries = claims.len(), error = %e, "cannot record delivery results")
        }
    }
    claims
}

/// Notes claimed deliveries in flight (a shutdown puts them back).
pub(crate) fn track(in_flight: &InFlight, claimed: &[Claimed]) {
    let mut set = lock(in_flight);
    for c in claimed {
        set.insert(c.id.clone(), ClaimRef::from(c));
    }
}

/// The claims in flight, by delivery id.
pub(crate) type InFlight = Mutex<HashMap<String, ClaimRef>>;

/// The claims in flight; a panic elsewhere does not make it unusable.
pub(super) fn lock(
    set: &Mutex<HashMap<String, ClaimRef>>,
) -> std::sync::MutexGuard<'_, HashMap<String, ClaimRef>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}
