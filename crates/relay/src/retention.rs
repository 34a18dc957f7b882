//! The event log's retention: events whose deliveries are all delivered are deleted, with
//! their deliveries and attempts, once older than `retention.events`, a few hundred at a time
//! with a pause between batches, so acceptance never waits behind it. Dead letters stay until
//! replayed or purged. With `retention.bodies` shorter, the bodies of delivered events are
//! emptied earlier, the same way (the log keeps the rest). (A SQLite store at its size cap also lets its oldest delivered events go
//! early, in the store itself: see `SqliteStore::make_room`.)

use std::time::Duration;

use crate::store::{LogPart, Store, StoreHandle};

/// Events deleted per statement.
const BATCH: usize = 500;
/// The pause between two batches.
const PAUSE: Duration = Duration::from_millis(20);
/// How often the log is pruned.
const EVERY: Duration = Duration::from_secs(30);

/// Prunes the event log every half minute until `stop` turns true; `retention` gives
/// `retention.events` and `retention.bodies`, asked each time (a reload may change them).
pub async fn run(
    store: StoreHandle,
    retention: impl Fn() -> (Duration, Option<Duration>),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (events, bodies) = retention();
        let pruned = prune(&store, LogPart::Events, events, &stop).await;
        if pruned > 0 {
            tracing::info!(
                events = pruned,
                retention_s = events.as_secs(),
                "pruned delivered events past retention.events"
            );
        }
        if let Some(bodies) = bodies {
            let emptied = prune(&store, LogPart::Bodies, bodies, &stop).await;
            if emptied > 0 {
                tracing::info!(
                    events = emptied,
                    retention_s = bodies.as_secs(),
                    "dropped the bodies of delivered events past retention.bodies"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One pass over `part`: every event past `older_than`, batch after batch; returns how many.
pub async fn prune(
    store: &StoreHandle,
    part: LogPart,
    older_than: Duration,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut pruned = 0;
    loop {
        match store.prune_events(part, older_than, BATCH).await {
            Ok(n) => {
                pruned += n;
                if n < BATCH as u64 || *stop.borrow() {
                    return pruned;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune the event log; trying again later");
                return pruned;
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}
