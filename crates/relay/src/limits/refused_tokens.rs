//! Tokens GitHub refused (401), remembered by fingerprint for a while: a stranger's made-up
//! token costs one round trip to GitHub, then its requests are refused at the door (nothing
//! stored) and its queued events are dead-lettered without being sent again.
//!
//! Only tokens that came with requests (the compatible route) are remembered: an endpoint's
//! token is the operator's, and a 401 there is a setup problem to report, not an attack.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a refused token is remembered.
pub const REMEMBER_FOR: Duration = Duration::from_secs(3600);
/// Most tokens remembered; the oldest go first.
pub const MAX_REMEMBERED: usize = 100_000;

/// Fingerprints of refused tokens and when GitHub refused them (ms).
#[derive(Debug, Default)]
pub struct RefusedTokens {
    refused_at: Mutex<HashMap<String, i64>>,
}

impl RefusedTokens {
    /// Remembers that GitHub refused the token with this fingerprint at `now_ms`.
    pub fn remember(&self, fingerprint: String, now_ms: i64) {
        let mut map = self.refused_at.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_REMEMBERED {
            let horizon = now_ms - REMEMBER_FOR.as_millis() as i64;
            map.retain(|_, at| *at > horizon);
            if map.len() >= MAX_REMEMBERED {
                // Still full of fresh ones: forget the oldest half.
                let mut times: Vec<i64> = map.values().copied().collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                map.retain(|_, at| *at > cut);
            }
        }
        map.insert(fingerprint, now_ms);
    }

    /// Whether GitHub refused this token within [`REMEMBER_FOR`] of `now_ms`.
    pub fn refused(&self, fingerprint: &str, now_ms: i64) -> bool {
        let map = self.refused_at.lock().unwrap_or_else(|e| e.into_inner());
        map.get(fingerprint)
            .is_some_and(|at| now_ms - at < REMEMBER_FOR.as_millis() as i64)
    }

    /// Tokens remembered.
    pub fn len(&self) -> usize {
        self.refused_at.lock().map_or(0, |m| m.len())
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_an_hour_and_bounded() {
        let t = RefusedTokens::default();
        t.remember("abc".into(), 1_000);
        assert!(t.refused("abc", 1_000 + 3_599_000));
        assert!(
            !t.refused("abc", 1_000 + 3_600_000),
            "forgotten after an hour"
        );
        assert!(!t.refused("other", 1_000));
        for i in 0..(MAX_REMEMBERED + 10) {
            t.remember(format!("k{i}"), 10_000 + i as i64);
        }
        assert!(t.len() <= MAX_REMEMBERED, "{}", t.len());
        assert!(t.refused(
            &format!("k{}", MAX_REMEMBERED + 9),
            20_000 + MAX_REMEMBERED as i64
        ));
    }
}
