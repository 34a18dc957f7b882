//! What a process takes from its surroundings: the time and named secrets. Passed in, never read
//! from globals on a request or delivery path, so tests give a fixed or advancing clock and their
//! own variables without touching the process environment.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crate::options::parse_time;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to (tests, replays of old signed events).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `ms` milliseconds since the epoch.
    pub fn at_ms(ms: i64) -> Self {
        ManualClock(AtomicI64::new(ms))
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Reads a named variable.
type VarLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// `HOOKFLOW_NOW` holds no time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentError {
    /// `HOOKFLOW_NOW` is set to something that is not a time.
    #[error("HOOKFLOW_NOW is {0:?}; expected Unix seconds or an RFC 3339 time such as 2026-01-31T12:00:00Z")]
    Now(String),
}

/// The time and the secrets, as one value to pass around.
#[derive(Clone)]
pub struct Environment {
    clock: Arc<dyn Clock>,
    lookup: VarLookup,
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print variables: they are secrets.
        f.debug_struct("Environment")
            .field("now_ms", &self.now_ms())
            .finish_non_exhaustive()
    }
}

impl Environment {
    /// The real clock (or `HOOKFLOW_NOW`, Unix seconds or RFC 3339, for replaying old signed
    /// fixtures) and the process environment. Call it once, at the program's edge.
    pub fn from_process() -> Result<Self, EnvironmentError> {
        let clock: Arc<dyn Clock> = match std::env::var("HOOKFLOW_NOW") {
            Ok(text) => {
                let secs = parse_time(&text).ok_or(EnvironmentError::Now(text))?;
                Arc::new(ManualClock::at_ms(secs.saturating_mul(1000)))
            }
            Err(_) => Arc::new(SystemClock),
        };
        Ok(Environment {
            clock,
            lookup: Arc::new(|name| std::env::var(name).ok()),
        })
    }

    /// A fixed time (Unix seconds) and set of variables (tests, embedding).
    pub fn fixed(now: i64, vars: Vec<(String, String)>) -> Self {
        Self::with_clock(Arc::new(ManualClock::at_ms(now.saturating_mul(1000))), vars)
    }

    /// The system clock and a given set of variables (tests, embedding).
    pub fn with_vars(vars: Vec<(String, String)>) -> Self {
        Self::with_clock(Arc::new(SystemClock), vars)
    }

    /// A given clock and set of variables.
    pub fn with_clock(clock: Arc<dyn Clock>, vars: Vec<(String, String)>) -> Self {
        Environment {
            clock,
            lookup: Arc::new(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            }),
        }
    }

    /// Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The clock, for a component that keeps it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// A variable; an empty one counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_environments_answer_without_the_process() {
        let env = Environment::fixed(
            1_764_000_000,
            vec![("A".into(), "1".into()), ("EMPTY".into(), String::new())],
        );
        assert_eq!(env.now(), 1_764_000_000);
        assert_eq!(env.now_ms(), 1_764_000_000_000);
        assert_eq!(env.var("A").as_deref(), Some("1"));
        assert_eq!(env.var("EMPTY"), None, "empty counts as unset");
        assert_eq!(env.var("PATH"), None, "never the process environment");
        assert!(
            !format!("{env:?}").contains("EMPTY"),
            "variables are never printed"
        );
    }

    #[test]
    fn a_manual_clock_advances_only_when_told() {
        let clock = Arc::new(ManualClock::at_ms(5_000));
        let env = Environment::with_clock(clock.clone(), Vec::new());
        assert_eq!(env.now(), 5);
        clock.advance_ms(1_500);
        assert_eq!(env.now_ms(), 6_500);
        assert_eq!(env.now(), 6);
    }
}
