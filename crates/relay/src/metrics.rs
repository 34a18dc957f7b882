//! The relay's counters and histograms, rendered as Prometheus text at `GET /metrics`.
//!
//! Plain atomics: recording is a few relaxed increments on the request path, and rendering reads
//! them without locks. Queue gauges come from the store when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{Counts, PoolStatus};

/// Why a request was refused (label values of `hookflow_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Bad signature, API key or missing GitHub token.
    Auth,
    /// Body or headers too large.
    Size,
    /// Method not allowed.
    Method,
    /// No such route or endpoint.
    NotFound,
    /// A field the endpoint needs is missing.
    BadRequest,
    /// The store could not take the event.
    Store,
    /// Too many requests at once.
    Overload,
    /// The client was too slow sending its body.
    Timeout,
}

const REJECTED: [(Rejected, &str); 8] = [
    (Rejected::Auth, "auth"),
    (Rejected::Size, "size"),
    (Rejected::Method, "method"),
    (Rejected::NotFound, "not_found"),
    (Rejected::BadRequest, "bad_request"),
    (Rejected::Store, "store"),
    (Rejected::Overload, "overload"),
    (Rejected::Timeout, "timeout"),
];

/// Why a body request was refused (label values of `hookflow_body_requests_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefused {
    /// A URL without a valid signature (or for another body).
    Signature,
    /// A genuine URL past its expiry.
    Expired,
    /// A genuine URL whose body is gone (pruned).
    Gone,
    /// Too many bodies being served at once.
    Busy,
}

const BODY_REFUSED: [(BodyRefused, &str); 4] = [
    (BodyRefused::Signature, "signature"),
    (BodyRefused::Expired, "expired"),
    (BodyRefused::Gone, "pruned"),
    (BodyRefused::Busy, "busy"),
];

/// Why an event became a dead letter (label values of `hookflow_dead_lettered_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// GitHub refused it (401, 403, 404, 422, …).
    Refused,
    /// Retries ran out.
    Exhausted,
    /// The relay's own setup (token variable unset).
    Setup,
}

const DEAD: [(DeadReason, &str); 3] = [
    (DeadReason::Refused, "github_refused"),
    (DeadReason::Exhausted, "retries_exhausted"),
    (DeadReason::Setup, "setup"),
];

struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if secs <= *bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.samples(out, name, "");
    }

    /// The sample lines, with `labels` (`op="insert",`) before `le`.
    fn samples(&self, out: &mut String, name: &str, labels: &str) {
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {count}");
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() {
            String::new()
        } else {
            format!("{{{plain}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A store operation, timed as the relay waits for it (label of `hookflow_store_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// Storing an event, until its commit (batching included).
    Insert,
    /// Claiming due deliveries.
    Claim,
    /// Recording delivery results.
    Record,
}

const STORE_OPS: [(StoreOp, &str); 3] = [
    (StoreOp::Insert, "insert"),
    (StoreOp::Claim, "claim"),
    (StoreOp::Record, "record"),
];

const STORE_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// What became of one delivery attempt to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationResult {
    /// The destination accepted it.
    Delivered,
    /// It will be tried again.
    Retried,
    /// It became a dead letter.
    Dead,
}

const DESTINATION_RESULTS: [(DestinationResult, &str); 3] = [
    (DestinationResult::Delivered, "delivered"),
    (DestinationResult::Retried, "retried"),
    (DestinationResult::Dead, "dead"),
];

/// The figures of one configured destination (or of the compatible route, all as one: its
/// repositories are the senders' choice, and a label each would let them grow `/metrics`).
struct DestinationStats {
    labels: String,
    results: [AtomicU64; 3],
    latency: Histogram,
}

const DELIVERY_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus label value: backslash, quote and line break escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// All of the relay's metrics.
pub struct Metrics {
    received: AtomicU64,
    ignored: AtomicU64,
    /// By endpoint, then destination key (looked up without allocating).
    destinations: std::sync::RwLock<
        std::collections::HashMap<String, std::collections::HashMap<String, DestinationStats>>,
    >,
    /// Configuration reloads: applied, refused.
    reloads: [AtomicU64; 2],
    /// Deliveries and failures per minute, the last hour (the admin page's chart).
    recent: Recent,
    stored: AtomicU64,
    duplicates: AtomicU64,
    delivered: AtomicU64,
    retried: AtomicU64,
    app_auth_failures: AtomicU64,
    bodies_kept: AtomicU64,
    bodies_served: AtomicU64,
    body_bytes_served: AtomicU64,
    body_refused: [AtomicU64; 4],
    rejected: [AtomicU64; 8],
    dead: [AtomicU64; 3],
    request: Histogram,
    delivery: Histogram,
    store: [Histogram; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            received: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            destinations: Default::default(),
            reloads: Default::default(),
            recent: Recent::default(),
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            app_auth_failures: AtomicU64::new(0),
            bodies_kept: AtomicU64::new(0),
            bodies_served: AtomicU64::new(0),
            body_bytes_served: AtomicU64::new(0),
            body_refused: Default::default(),
            rejected: Default::default(),
            dead: Default::default(),
            request: Histogram::new(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            delivery: Histogram::new(DELIVERY_BOUNDS),
            store: STORE_OPS.map(|_| Histogram::new(STORE_BOUNDS)),
        }
    }
}

impl Metrics {
    /// Metrics with a figure set for each `(endpoint, destination key)` (and one for the
    /// compatible route, `compat`).
    pub fn for_destinations(list: impl IntoIterator<Item = (String, String)>) -> Metrics {
        let m = Metrics::default();
        m.add_destinations(
            list.into_iter()
                .chain([("compat".to_string(), "compat".to_string())]),
        );
        m
    }

    /// A figure set for each `(endpoint, destination key)` not counted yet (a reload added
    /// them); those already counted keep their figures, and so do those a reload removed.
    pub fn add_destinations(&self, list: impl IntoIterator<Item = (String, String)>) {
        let mut map = self.destinations.write().unwrap_or_else(|e| e.into_inner());
        for (endpoint, key) in list {
            let labels = format!(
                "endpoint=\"{}\",destination=\"{}\",",
                label_value(&endpoint),
                label_value(&key)
            );
            map.entry(endpoint)
                .or_default()
                .entry(key)
                .or_insert_with(|| DestinationStats {
                    labels,
                    results: Default::default(),
                    latency: Histogram::new(DELIVERY_BOUNDS),
                });
        }
    }

    /// A configuration reload was applied (`true`) or refused.
    pub fn reloaded(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt to `key` of `endpoint` came to `result`, its request taking `took` (when
    /// one was sent). Destinations not configured at start are not counted on their own.
    pub fn destination(
        &self,
        endpoint: &str,
        key: &str,
        result: DestinationResult,
        took: Option<Duration>,
    ) {
        let key = if endpoint == "compat" { "compat" } else { key };
        let map = self.destinations.read().unwrap_or_else(|e| e.into_inner());
        let Some(stats) = map.get(endpoint).and_then(|m| m.get(key)) else {
            return;
        };
        if let Some(i) = DESTINATION_RESULTS.iter().position(|(r, _)| *r == result) {
            stats.results[i].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(d) = took {
            stats.latency.observe(d);
        }
    }

    /// A request no destination of its endpoint takes (by event type): acknowledged, not stored.
    pub fn ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }
    /// A webhook request arrived.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }
    /// An event was committed.
    pub fn stored(&self) {
        self.stored.fetch_add(1, Ordering::Relaxed);
    }
    /// A sender repeated a delivery already stored.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    /// How many deliveries GitHub accepted from this relay.
    pub fn delivered_count(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// GitHub accepted an event.
    pub fn delivered(&self, took: Duration) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.delivery.observe(took);
        self.recent.add(false);
    }
    /// A delivery will be retried.
    pub fn retried(&self, took: Duration) {
        self.retried.fetch_add(1, Ordering::Relaxed);
        self.delivery.observe(took);
        self.recent.add(true);
    }
    /// Deliveries and failed attempts (retried or dead-lettered) in each minute of the last
    /// hour, oldest first; the last is the minute under way.
    pub fn last_hour(&self) -> Vec<(u64, u64)> {
        self.recent.last_hour()
    }
    /// GitHub refused the relay's GitHub App credentials.
    pub fn app_auth_failed(&self) {
        self.app_auth_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// A body was kept to be dispatched by reference.
    pub fn body_kept(&self) {
        self.bodies_kept.fetch_add(1, Ordering::Relaxed);
    }
    /// A body of `bytes` was served by reference.
    pub fn body_served(&self, bytes: usize) {
        self.bodies_served.fetch_add(1, Ordering::Relaxed);
        self.body_bytes_served
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
    /// A body request was refused.
    pub fn body_refused(&self, reason: BodyRefused) {
        if let Some(i) = BODY_REFUSED.iter().position(|(r, _)| *r == reason) {
            self.body_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    /// An event became a dead letter.
    pub fn dead(&self, reason: DeadReason) {
        if let Some(i) = DEAD.iter().position(|(r, _)| *r == reason) {
            self.dead[i].fetch_add(1, Ordering::Relaxed);
        }
        self.recent.add(true);
    }
    /// A request was refused.
    pub fn rejected(&self, reason: Rejected) {
        if let Some(i) = REJECTED.iter().position(|(r, _)| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    /// How long a webhook request took to answer.
    pub fn request_took(&self, d: Duration) {
        self.request.observe(d);
    }
    /// How long a store operation took.
    pub fn store_took(&self, op: StoreOp, d: Duration) {
        if let Some(i) = STORE_OPS.iter().position(|(o, _)| *o == op) {
            self.store[i].observe(d);
        }
    }

    /// Prometheus text; `counts` are the store's, when it answered; `pool`, its connection
    /// pool's (PostgreSQL).
    pub fn render(&self, counts: Option<&Counts>, pool: Option<PoolStatus>, now_ms: i64) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "hookflow_received_total",
            "Webhook requests received.",
            &self.received,
        );
        counter(
            &mut out,
            "hookflow_stored_total",
            "Events committed to the store and acknowledged.",
            &self.stored,
        );
        counter(
            &mut out,
            "hookflow_ignored_total",
            "Requests acknowledged and not stored: no destination of the endpoint takes their event type.",
            &self.ignored,
        );
        counter(
            &mut out,
            "hookflow_duplicates_total",
            "Repeated deliveries (same sender delivery id) answered without storing again.",
            &self.duplicates,
        );
        counter(
            &mut out,
            "hookflow_delivered_total",
            "Deliveries their destination accepted (GitHub or an HTTP endpoint), all destinations together.",
            &self.delivered,
        );
        counter(
            &mut out,
            "hookflow_retried_total",
            "Delivery attempts that will be retried.",
            &self.retried,
        );
        counter(
            &mut out,
            "hookflow_github_app_auth_failures_total",
            "Times GitHub refused the relay's GitHub App credentials (app id or key).",
            &self.app_auth_failures,
        );
        counter(
            &mut out,
            "hookflow_bodies_kept_total",
            "Bodies too large for a dispatch, kept to be dispatched by reference (body_ref).",
            &self.bodies_kept,
        );
        counter(
            &mut out,
            "hookflow_bodies_served_total",
            "Bodies served by reference (GET /bodies/<id>).",
            &self.bodies_served,
        );
        counter(
            &mut out,
            "hookflow_body_bytes_served_total",
            "Bytes of the bodies served by reference (before any transfer compression).",
            &self.body_bytes_served,
        );
        let _ = writeln!(out, "# HELP hookflow_body_requests_refused_total Body requests refused, by reason.\n# TYPE hookflow_body_requests_refused_total counter");
        for (i, (_, label)) in BODY_REFUSED.iter().enumerate() {
            let _ = writeln!(
                out,
                "hookflow_body_requests_refused_total{{reason=\"{label}\"}} {}",
                self.body_refused[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP hookflow_dead_lettered_total Events that became dead letters.\n# TYPE hookflow_dead_lettered_total counter");
        for (i, (_, label)) in DEAD.iter().enumerate() {
            let _ = writeln!(
                out,
                "hookflow_dead_lettered_total{{reason=\"{label}\"}} {}",
                self.dead[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP hookflow_rejected_total Requests refused before storing.\n# TYPE hookflow_rejected_total counter");
        for (i, (_, label)) in REJECTED.iter().enumerate() {
            let _ = writeln!(
                out,
                "hookflow_rejected_total{{reason=\"{label}\"}} {}",
                self.rejected[i].load(Ordering::Relaxed)
            );
        }
        if let Some(c) = counts {
            let _ = writeln!(out, "# HELP hookflow_queue_depth Events in the store by state.\n# TYPE hookflow_queue_depth gauge");
            for (state, n) in [
                ("pending", c.pending),
                ("inflight", c.inflight),
                ("dead", c.dead),
            ] {
                let _ = writeln!(out, "hookflow_queue_depth{{state=\"{state}\"}} {n}");
            }
            let age = c
                .oldest_pending
                .map_or(0.0, |t| ((now_ms - t).max(0)) as f64 / 1000.0);
            let _ = writeln!(out, "# HELP hookflow_oldest_pending_age_seconds Age of the oldest event waiting for delivery.\n# TYPE hookflow_oldest_pending_age_seconds gauge\nhookflow_oldest_pending_age_seconds {age}");
            let _ = writeln!(out, "# HELP hookflow_store_bytes Bytes the store's data takes.\n# TYPE hookflow_store_bytes gauge\nhookflow_store_bytes {}", c.room.bytes_used);
            if let Some(cap) = c.room.bytes_cap {
                let _ = writeln!(out, "# HELP hookflow_store_cap_bytes The store's size cap (limits.max_store_bytes).\n# TYPE hookflow_store_cap_bytes gauge\nhookflow_store_cap_bytes {cap}");
            }
            let _ = writeln!(out, "# HELP hookflow_store_full 1 while new events are refused for lack of room.\n# TYPE hookflow_store_full gauge\nhookflow_store_full {}", u8::from(c.room.full()));
        }
        self.request.render(
            &mut out,
            "hookflow_request_duration_seconds",
            "Time from request to answer on webhook routes.",
        );
        self.delivery.render(
            &mut out,
            "hookflow_delivery_duration_seconds",
            "Time of one delivery request (a dispatch to GitHub, or a POST to an HTTP destination).",
        );
        let _ = writeln!(out, "# HELP hookflow_store_seconds Time of store operations as the relay waits for them: insert (until committed), claim, record.\n# TYPE hookflow_store_seconds histogram");
        for (i, (_, op)) in STORE_OPS.iter().enumerate() {
            self.store[i].samples(&mut out, "hookflow_store_seconds", &format!("op=\"{op}\","));
        }
        let _ = writeln!(out, "# HELP hookflow_config_reloads_total Configuration reloads (SIGHUP, POST /api/reload), applied or refused.\n# TYPE hookflow_config_reloads_total counter");
        for (i, result) in ["ok", "failed"].iter().enumerate() {
            let _ = writeln!(
                out,
                "hookflow_config_reloads_total{{result=\"{result}\"}} {}",
                self.reloads[i].load(Ordering::Relaxed)
            );
        }
        let destinations = self.destinations.read().unwrap_or_else(|e| e.into_inner());
        if !destinations.is_empty() {
            let mut all: Vec<&DestinationStats> =
                destinations.values().flat_map(|m| m.values()).collect();
            all.sort_by(|a, b| a.labels.cmp(&b.labels));
            let _ = writeln!(out, "# HELP hookflow_destination_attempts_total Delivery attempts by endpoint, destination and result.\n# TYPE hookflow_destination_attempts_total counter");
            for d in &all {
                for (i, (_, result)) in DESTINATION_RESULTS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "hookflow_destination_attempts_total{{{}result=\"{result}\"}} {}",
                        d.labels,
                        d.results[i].load(Ordering::Relaxed)
                    );
                }
            }
            let _ = writeln!(out, "# HELP hookflow_destination_duration_seconds Time of one delivery request, by endpoint and destination.\n# TYPE hookflow_destination_duration_seconds histogram");
            for d in &all {
                d.latency
                    .samples(&mut out, "hookflow_destination_duration_seconds", &d.labels);
            }
        }
        if let Some(p) = pool {
            let _ = writeln!(out, "# HELP hookflow_store_pool_connections Database connections of this relay's pool.\n# TYPE hookflow_store_pool_connections gauge");
            for (state, n) in [("open", p.open), ("idle", p.idle), ("max", p.max)] {
                let _ = writeln!(
                    out,
                    "hookflow_store_pool_connections{{state=\"{state}\"}} {n}"
                );
            }
            let _ = writeln!(out, "# HELP hookflow_store_pool_waiting Store operations waiting for a connection.\n# TYPE hookflow_store_pool_waiting gauge\nhookflow_store_pool_waiting {}", p.waiting);
        }
        out
    }
}

/// Minutes in [`Recent`].
const RECENT_MINUTES: usize = 60;

/// Deliveries and failures per minute over the last hour, in memory (a restart starts it
/// again): a ring of minute slots, each reset when its minute comes round again.
struct Recent {
    start: std::time::Instant,
    /// Per slot: its minute (since `start`), deliveries, failures.
    slots: std::sync::Mutex<[(u64, u64, u64); RECENT_MINUTES]>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            start: std::time::Instant::now(),
            slots: std::sync::Mutex::new([(0, 0, 0); RECENT_MINUTES]),
        }
    }
}

impl Recent {
    fn minute(&self) -> u64 {
        self.start.elapsed().as_secs() / 60
    }

    fn add(&self, failed: bool) {
        let m = self.minute();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[(m % RECENT_MINUTES as u64) as usize];
        if slot.0 != m {
            *slot = (m, 0, 0);
        }
        if failed {
            slot.2 += 1;
        } else {
            slot.1 += 1;
        }
    }

    fn last_hour(&self) -> Vec<(u64, u64)> {
        let now = self.minute();
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        (0..RECENT_MINUTES as u64)
            .rev()
            .map(|ago| {
                let Some(m) = now.checked_sub(ago) else {
                    return (0, 0);
                };
                let (at, delivered, failed) = slots[(m % RECENT_MINUTES as u64) as usize];
                if at == m {
                    (delivered, failed)
                } else {
                    (0, 0)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_last_hour_counts_this_minute() {
        let m = Metrics::default();
        m.delivered(Duration::from_millis(3));
        m.delivered(Duration::from_millis(3));
        m.retried(Duration::from_millis(3));
        m.dead(DeadReason::Refused);
        let hour = m.last_hour();
        assert_eq!(hour.len(), 60);
        assert_eq!(hour[59], (2, 2), "this minute");
        assert!(hour[..59].iter().all(|&c| c == (0, 0)));
    }
    use super::*;

    #[test]
    fn destinations_have_their_own_figures() {
        let m = Metrics::for_destinations([
            ("stripe".to_string(), "repo:acme/billing".to_string()),
            (
                "stripe".to_string(),
                "http:https://in.example/\"x\"".to_string(),
            ),
        ]);
        m.destination(
            "stripe",
            "repo:acme/billing",
            DestinationResult::Delivered,
            Some(Duration::from_millis(20)),
        );
        m.destination(
            "stripe",
            "repo:acme/billing",
            DestinationResult::Retried,
            None,
        );
        m.destination("compat", "repo:any/thing", DestinationResult::Dead, None);
        // Not configured: not counted, and no new label.
        m.destination("gone", "repo:a/b", DestinationResult::Dead, None);
        let text = m.render(None, None, 0);
        assert!(text.contains("hookflow_destination_attempts_total{endpoint=\"stripe\",destination=\"repo:acme/billing\",result=\"delivered\"} 1\n"), "{text}");
        assert!(text.contains("hookflow_destination_attempts_total{endpoint=\"stripe\",destination=\"repo:acme/billing\",result=\"retried\"} 1\n"));
        assert!(text.contains("hookflow_destination_attempts_total{endpoint=\"compat\",destination=\"compat\",result=\"dead\"} 1\n"));
        assert!(
            text.contains("destination=\"http:https://in.example/\\\"x\\\"\""),
            "escaped"
        );
        assert!(!text.contains("gone"));
        assert!(text.contains("hookflow_destination_duration_seconds_count{endpoint=\"stripe\",destination=\"repo:acme/billing\"} 1\n"));
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.received();
        m.stored();
        m.rejected(Rejected::Size);
        m.dead(DeadReason::Refused);
        m.request_took(Duration::from_millis(3));
        m.store_took(StoreOp::Insert, Duration::from_micros(800));
        let text = m.render(
            Some(&Counts {
                pending: 2,
                inflight: 1,
                dead: 1,
                oldest_pending: Some(1_000),
                room: crate::store::Room {
                    bytes_used: 40_960,
                    bytes_cap: Some(40_000),
                },
            }),
            Some(PoolStatus {
                open: 3,
                idle: 1,
                waiting: 0,
                max: 16,
            }),
            3_500,
        );
        assert!(text.contains("hookflow_received_total 1\n"));
        assert!(text.contains("hookflow_rejected_total{reason=\"size\"} 1\n"));
        assert!(text.contains("hookflow_dead_lettered_total{reason=\"github_refused\"} 1\n"));
        assert!(text.contains("hookflow_queue_depth{state=\"pending\"} 2\n"));
        assert!(text.contains("hookflow_oldest_pending_age_seconds 2.5\n"));
        assert!(text.contains("hookflow_store_bytes 40960\n"));
        assert!(text.contains("hookflow_store_cap_bytes 40000\n"));
        assert!(
            text.contains("hookflow_store_full 1\n"),
            "used past the cap"
        );
        assert!(text.contains("hookflow_request_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("hookflow_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("hookflow_request_duration_seconds_count 1\n"));
        assert!(text.contains("hookflow_store_seconds_bucket{op=\"insert\",le=\"0.0005\"} 0\n"));
        assert!(text.contains("hookflow_store_seconds_bucket{op=\"insert\",le=\"0.001\"} 1\n"));
        assert!(text.contains("hookflow_store_seconds_count{op=\"insert\"} 1\n"));
        assert!(text.contains("hookflow_store_seconds_count{op=\"claim\"} 0\n"));
        assert!(text.contains("hookflow_store_pool_connections{state=\"open\"} 3\n"));
        assert!(text.contains("hookflow_store_pool_waiting 0\n"));
    }
}
