//! Token-bucket rate limits by key, with memory that does not grow with the number of keys a
//! stranger can make up: deliveries per repository and credential ([`crate::delivery`]), and
//! unauthenticated requests per client address ([`crate::http`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events per minute per key (a repository and credential, a client address), as token
/// buckets (burst: one minute's worth).
///
/// An event refused a token is deferred to its own slot: slots are handed out one refill
/// interval apart, so a backlog of N events waits N intervals once instead of every event
/// coming back at the same moment and being deferred again.
///
/// A bucket that has refilled and has no slot ahead is the same as no bucket, so such buckets are
/// dropped whenever the map has doubled since the last sweep: made-up repository names cannot
/// grow the relay's memory without end.
pub struct RateLimiter {
    per_minute: AtomicU32,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    by_repo: HashMap<String, Bucket>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// The last slot handed to a deferred event.
    last_slot: Instant,
}

impl RateLimiter {
    /// `per_minute` 0 means no limit.
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: AtomicU32::new(per_minute),
            buckets: Mutex::new(Buckets {
                by_repo: HashMap::new(),
                sweep_at: 1024,
            }),
        }
    }

    /// Takes a token for `key`, or books this event the next free slot and gives the wait
    /// until it (deliveries: the event comes back then).
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now(), true)
    }

    /// Takes a token for `key`, or gives the wait until the next one without booking it
    /// (requests at the door: refused now, free to try again later).
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now(), false)
    }

    /// The rate: events per minute per key, 0 for no limit.
    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    /// Changes the rate (a configuration reload); buckets keep what they hold.
    pub fn set_per_minute(&self, per_minute: u32) {
        self.per_minute.store(per_minute, Ordering::Relaxed);
    }

    /// Repositories with a bucket.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.by_repo.len())
    }

    /// [`RateLimiter::take`] (`book`) or [`RateLimiter::try_take`] at a given time.
    pub fn take_at(&self, repo: &str, now: Instant, book: bool) -> Result<(), Duration> {
        let per_minute = self.per_minute();
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let interval = Duration::from_secs_f64(60.0 / capacity);
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *guard;
        if buckets.by_repo.len() >= buckets.sweep_at {
            // Full again and nothing booked ahead: forgetting it changes nothing.
            let refill = interval.mul_f64(capacity);
            buckets
                .by_repo
                .retain(|_, b| now.duration_since(b.last) < refill || b.last_slot > now);
            buckets.sweep_at = (buckets.by_repo.len() * 2).max(1024);
        }
        let b = buckets.by_repo.entry(repo.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
            last_slot: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() / interval.as_secs_f64())
            .min(capacity);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let next_token = now + interval.mul_f64(1.0 - b.tokens);
        if !book {
            return Err(next_token - now);
        }
        let slot = next_token.max(b.last_slot + interval);
        b.last_slot = slot;
        Err(slot - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_gets_one_slot_each() {
        let limiter = RateLimiter::new(60);
        for _ in 0..60 {
            assert_eq!(limiter.take("o/r"), Ok(()), "a minute's worth at once");
        }
        let waits: Vec<Duration> = (0..5).map(|_| limiter.take("o/r").unwrap_err()).collect();
        for (i, w) in waits.iter().enumerate() {
            let expected = (i + 1) as f64;
            assert!((w.as_secs_f64() - expected).abs() < 0.05, "slot {i}: {w:?}");
        }
        assert_eq!(
            limiter.take("other/repo"),
            Ok(()),
            "each repository has its own bucket"
        );
        assert_eq!(RateLimiter::new(0).take("o/r"), Ok(()));
    }

    #[test]
    fn trying_at_the_door_books_nothing() {
        let limiter = RateLimiter::new(60);
        let now = Instant::now();
        for _ in 0..60 {
            assert_eq!(limiter.take_at("10.0.0.1", now, false), Ok(()));
        }
        for _ in 0..100 {
            let wait = limiter.take_at("10.0.0.1", now, false).unwrap_err();
            assert!(
                wait <= Duration::from_secs(1),
                "refusals push nothing back: {wait:?}"
            );
        }
        assert_eq!(
            limiter.take_at("10.0.0.1", now + Duration::from_secs(1), false),
            Ok(())
        );
    }

    #[test]
    fn idle_buckets_are_forgotten() {
        let limiter = RateLimiter::new(60);
        let start = Instant::now();
        for i in 0..10_000 {
            let _ = limiter.take_at(&format!("junk/{i}"), start, true);
        }
        assert!(limiter.tracked() <= 10_000);
        // One busy repository with a slot booked ahead.
        for _ in 0..61 {
            let _ = limiter.take_at("real/repo", start, true);
        }
        let later = start + Duration::from_secs(61);
        for i in 0..20_000 {
            let _ = limiter.take_at(&format!("more/{i}"), later, true);
        }
        // Without sweeping 30,001 buckets; the 10,000 refilled ones are gone.
        assert!(
            limiter.tracked() <= 20_001,
            "refilled buckets are swept: {} left",
            limiter.tracked()
        );
        assert!(
            limiter.take_at("real/repo", later, true).is_ok(),
            "a repository's own state is kept right"
        );
    }
}
