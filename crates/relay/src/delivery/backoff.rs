//! When a failed delivery is tried again: exponential backoff with jitter, so that retries of
//! many events spread out instead of arriving at GitHub together.
//!
//! Waits GitHub asks for (`Retry-After`) are [`crate::github`]'s; this is the relay's own pace.

use std::time::Duration;

/// How long to wait before retry number `attempt` (1-based): exponential from `initial`,
/// capped at `max`, plus a random jitter of up to half that, so retries spread out. Jitter only
/// adds: a retry never comes before the configured delay (`initial_backoff: 5s` waits 5 to
/// 7.5 s), and `max` bounds the delay before jitter.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = initial.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX),
    );
    let capped = exp.min(max);
    let spread = capped / 2;
    let mut b = [0u8; 8];
    let r = if getrandom::fill(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        // No randomness: the time's low bits still spread retries out.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64)
    };
    let jitter_ms = if spread.as_millis() == 0 {
        0
    } else {
        r % (spread.as_millis() as u64 + 1)
    };
    capped + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_never_undercuts_the_configured_delay() {
        let five = Duration::from_secs(5);
        let waits: Vec<Duration> = (0..200)
            .map(|_| backoff(1, five, Duration::from_secs(3600)))
            .collect();
        assert!(waits.iter().all(|w| *w >= five), "{:?}", waits.iter().min());
        assert!(waits.iter().any(|w| *w > five), "and it does spread");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(10);
        for attempt in 1..=20 {
            let d = backoff(attempt, i, m);
            let full = (i * 2u32.pow((attempt - 1).min(20))).min(m);
            assert!(
                d >= full && d <= full + full / 2,
                "attempt {attempt}: {d:?} not in [{full:?}, {:?}]",
                full + full / 2
            );
        }
    }
}
