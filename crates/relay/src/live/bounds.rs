//! The bounds a configuration sets that outlive it: requests in flight, per address, the
//! compatible route's rate, delivery slots and dispatch rates. A reload resizes them in place
//! (semaphores grow at once and shrink as places come free; rate limiters keep their buckets).

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::RelayConfig;
use crate::limits::connection::ClientLimiter;
use crate::limits::dispatch_rate::Limiter;
use crate::limits::rate_limit::RateLimiter;

/// The bounds that outlive a configuration (requests and deliveries in flight hold their
/// places): resized on reload rather than replaced.
pub struct Bounds {
    /// Webhook requests in flight (`limits.max_concurrent_requests`).
    pub in_flight: Arc<Semaphore>,
    /// Requests in flight per address (`limits.max_requests_per_client`).
    pub per_client: ClientLimiter,
    /// Compatible-route requests per address (`limits.compat_requests_per_minute`).
    pub compat_rate: Arc<RateLimiter>,
    /// Deliveries in flight (`delivery.concurrency`).
    pub delivery_slots: Arc<Semaphore>,
    /// Dispatches per lane (`delivery.rate_limit_per_minute`).
    pub dispatch_rate: Arc<Limiter>,
}

impl Bounds {
    /// The bounds of a configuration, dispatches limited through `limiter`.
    pub fn of(config: &RelayConfig, dispatch_rate: Limiter) -> Bounds {
        let l = &config.limits;
        Bounds {
            in_flight: Arc::new(Semaphore::new(l.max_concurrent_requests)),
            per_client: ClientLimiter::new(l.max_requests_per_client),
            compat_rate: Arc::new(RateLimiter::new(l.compat_requests_per_minute)),
            delivery_slots: Arc::new(Semaphore::new(config.delivery.concurrency)),
            dispatch_rate: Arc::new(dispatch_rate),
        }
    }

    /// Resizes the bounds from what `from` set to what `to` sets.
    pub(super) fn adjust(&self, from: &RelayConfig, to: &RelayConfig) {
        let (a, b) = (&from.limits, &to.limits);
        resize(
            &self.in_flight,
            a.max_concurrent_requests,
            b.max_concurrent_requests,
        );
        self.per_client.set_per_client(b.max_requests_per_client);
        self.compat_rate
            .set_per_minute(b.compat_requests_per_minute);
        resize(
            &self.delivery_slots,
            from.delivery.concurrency,
            to.delivery.concurrency,
        );
        self.dispatch_rate
            .set_per_minute(to.delivery.rate_limit_per_minute);
    }
}

/// Grows a semaphore at once, or shrinks it as places come free (the places in use are kept
/// by whoever holds them; a shrink takes them as they are given back).
pub(super) fn resize(semaphore: &Arc<Semaphore>, from: usize, to: usize) {
    if to > from {
        semaphore.add_permits(to - from);
    } else if to < from {
        let fewer = from - to;
        let gone = semaphore.forget_permits(fewer);
        if gone < fewer {
            let semaphore = semaphore.clone();
            let rest = u32::try_from(fewer - gone).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                if let Ok(p) = semaphore.acquire_many_owned(rest).await {
                    p.forget();
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn semaphores_grow_at_once_and_shrink_as_places_come_free() {
        let s = Arc::new(Semaphore::new(4));
        resize(&s, 4, 6);
        assert_eq!(s.available_permits(), 6);
        let held = s.clone().acquire_many_owned(5).await.expect("open");
        resize(&s, 6, 2);
        assert_eq!(s.available_permits(), 0, "the free place went at once");
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(s.available_permits(), 2, "the rest as they came free");
    }
}
