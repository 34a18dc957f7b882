//! The dispatch rate limit per lane (repository and credential): the relay's own token buckets
//! on SQLite, the database's on PostgreSQL, so that N relays do not send N times as much.

use std::time::Duration;

use super::rate_limit::RateLimiter;
use crate::store::postgres::PgStore;
use crate::store::StoreHandle;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::delivery=…`), kept as it was before
/// the module moved.
const LOG_TARGET: &str = "hookflow_relay::delivery";

/// The dispatch rate limit per lane (repository and credential): the relay's own on SQLite
/// (one relay per store), the database's on PostgreSQL, so that the limit holds for the whole
/// cluster and N relays do not send N times as much.
/// The rate (`delivery.rate_limit_per_minute`) changes on a configuration reload.
pub struct Limiter {
    local: RateLimiter,
    cluster: Option<PgStore>,
}

impl Limiter {
    /// The limiter of a store's relays, `per_minute` dispatches per lane (0: none).
    pub fn for_store(store: &StoreHandle, per_minute: u32) -> Limiter {
        Limiter {
            local: RateLimiter::new(per_minute),
            cluster: match store {
                StoreHandle::Postgres(pg) => Some(pg.clone()),
                StoreHandle::Sqlite(_) => None,
            },
        }
    }

    /// Changes the rate (a configuration reload).
    pub fn set_per_minute(&self, per_minute: u32) {
        self.local.set_per_minute(per_minute);
    }

    /// A token now, or the wait: until the slot booked for this delivery (`book`), or until
    /// the next token (a batching lane: its next batch takes every delivery waiting).
    pub(crate) async fn take(&self, lane: &str, book: bool) -> Result<(), Duration> {
        let per_minute = self.local.per_minute();
        match &self.cluster {
            _ if per_minute == 0 => Ok(()),
            None if book => self.local.take(lane),
            None => self.local.try_take(lane),
            Some(pg) => match pg.take_slot(lane, per_minute, book).await {
                Ok(taken) => taken,
                Err(e) => {
                    // The result cannot be recorded either while the database is away: try
                    // again shortly.
                    tracing::warn!(target: LOG_TARGET, error = %e, "cannot take a dispatch slot; deferring the delivery");
                    Err(Duration::from_secs(1))
                }
            },
        }
    }
}
