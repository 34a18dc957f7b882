//! The event log's retention: events whose deliveries are all delivered are deleted, with
//! their deliveries and attempts, once older than `retention.events`, in batches sized to hold
//! the store a few milliseconds each, with a pause between them, so acceptance never waits
//! long behind it. Dead letters stay until
//! replayed or purged. With `retention.bodies` shorter, the bodies of delivered events are
//! emptied earlier, the same way (the log keeps the rest). (A SQLite store at its size cap also lets its oldest delivered events go
//! early, in the store itself: see `SqliteStore::make_room`.)

use std::time::Duration;

use crate::store::{LogPart, Store, StoreHandle};

/// Most events pruned in one batch.
const MAX_BATCH: usize = 500;
/// Fewest events pruned in one batch.
const MIN_BATCH: usize = 16;
/// How long one batch should hold the store: on SQLite, one writer, a request that arrives
/// meanwhile waits this long at most. The batch size follows what the last batch took.
const BATCH_TIME: Duration = Duration::from_millis(4);
/// The shortest pause between two batches; it is also at least four times what the batch took,
/// so pruning never takes more than a fifth of the store's time.
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
    let mut batch = MIN_BATCH * 4;
    loop {
        let started = std::time::Instant::now();
        let result = store.prune_events(part, older_than, batch).await;
        let took = started.elapsed();
        match result {
            Ok(n) => {
                pruned += n;
                if n < batch as u64 || *stop.borrow() {
                    return pruned;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune the event log; trying again later");
                return pruned;
            }
        }
        batch = next_batch(batch, took);
        tokio::time::sleep(PAUSE.max(took * 4)).await;
    }
}

/// The next batch's size: half when the last took longer than [`BATCH_TIME`], double when it
/// took under half of it.
fn next_batch(batch: usize, took: Duration) -> usize {
    if took > BATCH_TIME {
        (batch / 2).max(MIN_BATCH)
    } else if took < BATCH_TIME / 2 {
        (batch * 2).min(MAX_BATCH)
    } else {
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_the_time_they_take() {
        let ms = Duration::from_millis;
        assert_eq!(next_batch(64, ms(10)), 32);
        assert_eq!(next_batch(MIN_BATCH, ms(50)), MIN_BATCH);
        assert_eq!(next_batch(64, ms(1)), 128);
        assert_eq!(next_batch(400, ms(1)), MAX_BATCH);
        assert_eq!(next_batch(64, ms(3)), 64);
    }
}
