//! The running configuration and its reload (`SIGHUP`, `POST /api/reload`).
//!
//! Request handlers take the [`Current`] configuration once per request, delivery workers once
//! per delivery (a batching lane once per run of batches): a reload swaps it whole, so a request
//! or a delivery under way finishes on the configuration it began with and the next one sees
//! the new one. No connection is dropped and no event is touched.
//!
//! What a reload changes at once: endpoints (added, removed, their keys, signatures and
//! destinations), the compatible route and its repositories, the per-request limits (body and
//! header sizes, body timeout, requests in flight, per address, compatible-route rate), the
//! per-connection ones for new connections (header timeout, idle timeout), the delivery
//! settings (concurrency, attempts, backoff, rate limit) and the event log's retention.
//! What only a restart changes is reported and kept as it runs: the addresses (`listen`,
//! `admin`), the store (`data`, `store`, `limits.max_store_bytes`), the GitHub client
//! (`api_url`, `github_app`, `delivery.timeout`, `delivery.lease`), `public_url`, `body_ref`,
//! `shutdown_timeout` and `limits.max_connections`.
//!
//! A file that fails the checks `--check-config` makes (YAML, values, variables it names that
//! are unset, secrets that cannot sign) is refused with that report, and the running
//! configuration stays.

use std::sync::{Arc, Mutex, RwLock};

use crate::config::{ConfigError, ConfigSource, RelayConfig};
use crate::destinations::Destinations;
use crate::metrics::Metrics;
use hookflow_protocol::Environment;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::reload=…`), kept as it was before
/// the module moved.
const LOG_TARGET: &str = "hookflow_relay::reload";

use super::bounds::Bounds;

/// The configuration in effect, and what is derived from it.
#[derive(Debug)]
pub struct Current {
    /// The settings (restart-only ones as the relay started).
    pub config: RelayConfig,
    /// The endpoints' destinations, by key.
    pub destinations: Destinations,
}

impl Current {
    fn of(config: RelayConfig) -> Current {
        Current {
            destinations: Destinations::of(&config),
            config,
        }
    }
}

/// A reload that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The file read.
    pub file: String,
    /// What changed, one line each (`endpoint `orders`: added`); empty when nothing did.
    pub changed: Vec<String>,
    /// Settings that changed in the file and take effect at the next restart, one line each.
    pub kept: Vec<String>,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The relay was started without a file.
    #[error("the relay was started without --config: there is no file to read again (restart it to change flags)")]
    NoFile,
    /// The file cannot be read or parsed (the report `--check-config` gives).
    #[error("{0}; the running configuration stays")]
    Invalid(ConfigError),
    /// The file parsed but names what this relay cannot use.
    #[error("{file}: {}; the running configuration stays", .problems.join("; "))]
    Refused {
        /// The file.
        file: String,
        /// Each problem (an unset variable, a secret that cannot sign).
        problems: Vec<String>,
    },
}

/// The running configuration, swapped whole on reload.
pub struct Live {
    current: RwLock<Arc<Current>>,
    source: Option<ConfigSource>,
    /// `limits.max_store_bytes` as configured (the running one may be the default cap).
    store_cap: Option<u64>,
    /// What the configuration bounds.
    pub bounds: Bounds,
    env: Environment,
    metrics: Arc<Metrics>,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl Live {
    /// The running configuration of a relay: `configured_store_cap` is `limits.max_store_bytes`
    /// as the file gave it, before any default was filled in.
    pub fn new(
        config: RelayConfig,
        configured_store_cap: Option<u64>,
        bounds: Bounds,
        env: Environment,
        metrics: Arc<Metrics>,
    ) -> Live {
        Live {
            source: config.source.clone(),
            current: RwLock::new(Arc::new(Current::of(config))),
            store_cap: configured_store_cap,
            bounds,
            env,
            metrics,
            reloading: Mutex::new(()),
        }
    }

    /// The configuration in effect now.
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the file again and applies it, or refuses it (and counts either way).
    pub fn reload(&self) -> Result<Reloaded, ReloadError> {
        let result = match &self.source {
            None => Err(ReloadError::NoFile),
            Some(source) => source
                .read()
                .map_err(ReloadError::Invalid)
                .and_then(|c| self.apply(c)),
        };
        self.metrics.reloaded(result.is_ok());
        match &result {
            Ok(r) if r.changed.is_empty() => {
                tracing::info!(target: LOG_TARGET, file = %r.file, "configuration reloaded: nothing changed")
            }
            Ok(r) => {
                tracing::info!(target: LOG_TARGET, file = %r.file, changes = %r.changed.join("; "),
                "configuration reloaded")
            }
            Err(e) => {
                tracing::error!(target: LOG_TARGET, error = %e, "configuration reload refused")
            }
        }
        if let Ok(r) = &result {
            for k in &r.kept {
                tracing::warn!(target: LOG_TARGET, file = %r.file, "{k}");
            }
        }
        result
    }

    /// Applies a configuration read from the relay's file: checks it, keeps the settings only a
    /// restart changes, resizes the bounds, swaps it in.
    pub fn apply(&self, mut next: RelayConfig) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let file = next.source.as_ref().map_or_else(
            || "the configuration".to_string(),
            |s| s.file.display().to_string(),
        );
        let mut problems = next.unset_variables(&self.env);
        problems.extend(next.unusable_secrets(&self.env));
        if !problems.is_empty() {
            return Err(ReloadError::Refused { file, problems });
        }
        let now = self.current();
        let was = &now.config;
        let kept = keep_restart_only(was, self.store_cap, &mut next);
        let changed = changes(was, &next);
        self.metrics.add_destinations(
            next.endpoints
                .iter()
                .flat_map(|ep| ep.destinations.iter().map(|d| (ep.slug.clone(), d.key()))),
        );
        self.bounds.adjust(was, &next);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Current::of(next));
        Ok(Reloaded {
            file,
            changed,
            kept,
        })
    }
}

/// Puts the running value of every restart-only setting into `next`, and says which of them the
/// file changed.
fn keep_restart_only(
    was: &RelayConfig,
    store_cap: Option<u64>,
    next: &mut RelayConfig,
) -> Vec<String> {
    let mut kept = Vec::new();
    let mut note = |key: &str, before: String, after: String| {
        if before != after {
            kept.push(format!(
                "{key} changed ({before} → {after}); it takes effect at the next restart"
            ));
        }
    };
    let show = |v: &dyn std::fmt::Debug| format!("{v:?}");
    note("listen", was.listen.to_string(), next.listen.to_string());
    note(
        "data",
        was.data.display().to_string(),
        next.data.display().to_string(),
    );
    note("store", describe(was), describe(next));
    note("api_url", was.api_url.clone(), next.api_url.clone());
    note(
        "github_app",
        show(&was.github_app.as_ref().map(|a| a.app_id)),
        show(&next.github_app.as_ref().map(|a| a.app_id)),
    );
    note("public_url", show(&was.public_url), show(&next.public_url));
    note("body_ref", show(&was.body_ref), show(&next.body_ref));
    note(
        "admin.listen",
        show(&was.admin.as_ref().map(|a| a.listen)),
        show(&next.admin.as_ref().map(|a| a.listen)),
    );
    note(
        "admin.tokens_env",
        show(&was.admin.as_ref().map(|a| &a.tokens_env)),
        show(&next.admin.as_ref().map(|a| &a.tokens_env)),
    );
    note(
        "shutdown_timeout",
        show(&was.shutdown_timeout),
        show(&next.shutdown_timeout),
    );
    note(
        "limits.max_connections",
        was.limits.max_connections.to_string(),
        next.limits.max_connections.to_string(),
    );
    note(
        "limits.max_store_bytes",
        show(&store_cap),
        show(&next.limits.max_store_bytes),
    );
    note(
        "delivery.timeout",
        show(&was.delivery.timeout),
        show(&next.delivery.timeout),
    );
    note(
        "delivery.lease",
        show(&was.delivery.lease),
        show(&next.delivery.lease),
    );
    next.listen = was.listen;
    next.data = was.data.clone();
    next.store = was.store.clone();
    next.migrate = was.migrate;
    next.api_url = was.api_url.clone();
    next.github_app = was.github_app.clone();
    next.public_url = was.public_url.clone();
    next.body_ref = was.body_ref.clone();
    next.admin = was.admin.clone();
    next.shutdown_timeout = was.shutdown_timeout;
    next.limits.max_connections = was.limits.max_connections;
    next.limits.max_store_bytes = was.limits.max_store_bytes;
    next.delivery.timeout = was.delivery.timeout;
    next.delivery.lease = was.delivery.lease;
    next.settings = was.settings.clone();
    kept
}

fn describe(c: &RelayConfig) -> String {
    match &c.store {
        crate::config::StoreLocation::Sqlite => format!("sqlite ({})", c.data.display()),
        crate::config::StoreLocation::Postgres(l) => l.describe(),
    }
}

/// What differs between two configurations whose restart-only settings are the same, one line
/// each: endpoints by slug, then each setting by its key.
fn changes(was: &RelayConfig, next: &RelayConfig) -> Vec<String> {
    let mut changed = Vec::new();
    for ep in &was.endpoints {
        match next.endpoints.iter().find(|e| e.slug == ep.slug) {
            None => changed.push(format!("endpoint `{}`: removed", ep.slug)),
            Some(n) if format!("{n:?}") != format!("{ep:?}") => {
                changed.push(format!("endpoint `{}`: changed", ep.slug))
            }
            Some(_) => {}
        }
    }
    for ep in &next.endpoints {
        if !was.endpoints.iter().any(|e| e.slug == ep.slug) {
            changed.push(format!("endpoint `{}`: added", ep.slug));
        }
    }
    let mut setting = |key: &str, before: String, after: String| {
        if before != after {
            changed.push(format!("{key}: {before} → {after}"));
        }
    };
    let (a, b) = (&was.limits, &next.limits);
    setting(
        "compat_route",
        was.compat_route.to_string(),
        next.compat_route.to_string(),
    );
    setting(
        "compat_repos",
        format!("{:?}", was.compat_repos),
        format!("{:?}", next.compat_repos),
    );
    for (key, before, after) in [
        ("limits.max_body_bytes", a.max_body_bytes, b.max_body_bytes),
        ("limits.max_headers", a.max_headers, b.max_headers),
        (
            "limits.max_header_bytes",
            a.max_header_bytes,
            b.max_header_bytes,
        ),
        (
            "limits.max_concurrent_requests",
            a.max_concurrent_requests,
            b.max_concurrent_requests,
        ),
        (
            "limits.max_requests_per_client",
            a.max_requests_per_client,
            b.max_requests_per_client,
        ),
        (
            "limits.compat_requests_per_minute",
            a.compat_requests_per_minute as usize,
            b.compat_requests_per_minute as usize,
        ),
        (
            "delivery.concurrency",
            was.delivery.concurrency,
            next.delivery.concurrency,
        ),
        (
            "delivery.max_attempts",
            was.delivery.max_attempts as usize,
            next.delivery.max_attempts as usize,
        ),
        (
            "delivery.rate_limit_per_minute",
            was.delivery.rate_limit_per_minute as usize,
            next.delivery.rate_limit_per_minute as usize,
        ),
    ] {
        setting(key, before.to_string(), after.to_string());
    }
    for (key, before, after) in [
        ("limits.header_timeout", a.header_timeout, b.header_timeout),
        ("limits.body_timeout", a.body_timeout, b.body_timeout),
        ("limits.idle_timeout", a.idle_timeout, b.idle_timeout),
        (
            "delivery.initial_backoff",
            was.delivery.initial_backoff,
            next.delivery.initial_backoff,
        ),
        (
            "delivery.max_backoff",
            was.delivery.max_backoff,
            next.delivery.max_backoff,
        ),
        ("retention.events", was.retention, next.retention),
    ] {
        setting(key, format!("{before:?}"), format!("{after:?}"));
    }
    setting(
        "retention.bodies",
        format!("{:?}", was.body_retention),
        format!("{:?}", next.body_retention),
    );
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::Overrides;

    fn parse(text: &str) -> RelayConfig {
        RelayConfig::parse(text, "relay.yml", &Overrides::default()).expect("parses")
    }

    const BASE: &str = "endpoints:\n  - slug: a\n    repo: o/a\n    token_env: T\n  - slug: b\n    repo: o/b\n    token_env: T\n";

    #[test]
    fn changes_name_endpoints_and_settings() {
        let was = parse(BASE);
        let next = parse(
            "delivery:\n  concurrency: 3\nendpoints:\n  - slug: a\n    repo: o/other\n    token_env: T\n  - slug: c\n    repo: o/c\n    token_env: T\n",
        );
        assert_eq!(
            changes(&was, &next),
            [
                "endpoint `a`: changed",
                "endpoint `b`: removed",
                "endpoint `c`: added",
                &format!("delivery.concurrency: {} → 3", was.delivery.concurrency),
            ]
        );
        assert!(changes(&was, &parse(BASE)).is_empty());
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let was = parse(&format!(
            "listen: 127.0.0.1:9000\nshutdown_timeout: 5s\n{BASE}"
        ));
        let mut next = parse(&format!(
            "listen: 127.0.0.1:9001\nshutdown_timeout: 9s\nlimits:\n  max_body_bytes: 10\n{BASE}"
        ));
        let kept = keep_restart_only(&was, None, &mut next);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept[0].starts_with("listen changed (127.0.0.1:9000 → 127.0.0.1:9001)"));
        assert!(kept[1].starts_with("shutdown_timeout changed"));
        assert_eq!(next.listen, was.listen);
        assert_eq!(next.shutdown_timeout, was.shutdown_timeout);
        assert_eq!(next.limits.max_body_bytes, 10, "what reloads is taken");
    }
}
