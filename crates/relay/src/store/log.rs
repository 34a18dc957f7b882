use super::delivery::DeliveryStatus;
use super::event::Event;
use super::event::Payload;

/// Which events a list shows: every filter given must hold (an event matches a delivery filter
/// when one of its deliveries does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Some delivery in this state.
    pub status: Option<DeliveryStatus>,
    /// Some delivery to this destination ([`Destination::key`], `repo:OWNER/NAME`).
    pub destination: Option<String>,
    /// The endpoint slug, or `compat`.
    pub source: Option<String>,
    /// Received at or after (ms since the epoch).
    pub since: Option<i64>,
    /// Received before (ms since the epoch).
    pub until: Option<i64>,
    /// The sender's delivery id (`X-GitHub-Delivery` and the like).
    pub delivery_key: Option<String>,
    /// Text in the path (case-sensitive).
    pub path_contains: Option<String>,
    /// Keyset pagination: events older than this id (the last id of the previous page).
    pub before: Option<String>,
}

/// One event of a list, with the state of each delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// The event id.
    pub id: String,
    /// When it was received (ms since the epoch).
    pub received_at: i64,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// The request's method and path (empty for events stored before schema 4).
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The sender's delivery id, when it sent one.
    pub delivery_key: Option<String>,
    /// Its deliveries, in the order they were made.
    pub deliveries: Vec<LoggedDelivery>,
}

/// One delivery of a logged event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDelivery {
    /// The delivery id (replays this destination alone).
    pub id: String,
    /// Where it goes ([`Destination::key`]).
    pub destination: String,
    /// Its state.
    pub status: DeliveryStatus,
    /// Attempts of its current chain.
    pub attempts: u32,
    /// Its attempt chain: 0, then one more for each replay.
    pub chain: u32,
    /// The destination's last status.
    pub last_status: Option<u16>,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it is due (pending) or last changed (ms since the epoch).
    pub next_at: i64,
    /// Its attempts, oldest first (filled in by [`Store::logged_event`] only).
    pub tries: Vec<LoggedAttempt>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAttempt {
    /// The attempt chain it belongs to.
    pub chain: u32,
    /// When it started (ms since the epoch).
    pub at: i64,
    /// How long it took.
    pub took_ms: Option<u32>,
    /// The destination's status, when it answered.
    pub status: Option<u16>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
    /// The failure, for a retry or a dead letter.
    pub message: Option<String>,
    /// The relay that made it (PostgreSQL: its id).
    pub relay: Option<String>,
    /// The batch that carried it, if any.
    pub batch_id: Option<String>,
}

/// An event of the log, whole: the request as stored, and every delivery with its attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The summary (deliveries with their attempts).
    pub summary: EventSummary,
    /// The request (its body empty once `body_pruned`).
    pub payload: Payload,
    /// Whether `retention.bodies` dropped its body (a replay cannot send it again).
    pub body_pruned: bool,
}

/// A logged event from the event as stored, its sender's delivery id and its deliveries.
pub(crate) fn logged(
    event: Event,
    delivery_key: Option<String>,
    body_pruned: bool,
    deliveries: Vec<LoggedDelivery>,
) -> LoggedEvent {
    let (method, path) = match &event.payload {
        Payload::Request(r) => (r.method.clone(), r.path.clone()),
        Payload::Dispatch(_) => (String::new(), String::new()),
    };
    LoggedEvent {
        summary: EventSummary {
            id: event.id,
            received_at: event.received_at,
            source: event.source,
            event_type: event.event_type,
            method,
            path,
            delivery_key,
            deliveries,
        },
        payload: event.payload,
        body_pruned,
    }
}

/// A list's filter as SQL, the same on both engines: the conditions on the events, those on a
/// delivery `d`, and their text parameters in placeholder order.
pub(crate) struct FilterSql {
    /// Conditions on `e` (and on `id`, the column the list is ordered by).
    pub events: Vec<String>,
    /// Conditions on a delivery `d` of the event.
    pub deliveries: Vec<String>,
    /// The parameters, `mark(1)` first.
    pub params: Vec<String>,
}

/// [`FilterSql`] of `filter`: `id` is the event id column the list is ordered by, `mark(n)` the
/// engine's n-th placeholder (`?n`, `$n`), `contains` its substring function (`instr`,
/// `strpos`: both `f(haystack, needle) > 0`).
pub(crate) fn filter_sql(
    filter: &EventFilter,
    id: &str,
    mark: impl Fn(usize) -> String,
    contains: &str,
) -> FilterSql {
    let mut params: Vec<String> = Vec::new();
    let mut arg = |v: String| {
        params.push(v);
        mark(params.len())
    };
    let mut events = Vec::new();
    if let Some(b) = &filter.before {
        events.push(format!("{id} < {}", arg(b.clone())));
    }
    if let Some(t) = filter.since {
        events.push(format!("{id} >= {}", arg(ulid_floor(t))));
    }
    if let Some(t) = filter.until {
        events.push(format!("{id} < {}", arg(ulid_floor(t))));
    }
    if let Some(src) = &filter.source {
        events.push(format!("e.source = {}", arg(src.clone())));
    }
    if let Some(k) = &filter.delivery_key {
        events.push(format!("e.delivery_key = {}", arg(k.clone())));
    }
    if let Some(q) = &filter.path_contains {
        events.push(format!("{contains}(e.path, {}) > 0", arg(q.clone())));
    }
    let mut deliveries = Vec::new();
    if let Some(st) = filter.status {
        deliveries.push(format!("d.state = {}", arg(st.as_str().to_string())));
    }
    if let Some(dest) = &filter.destination {
        deliveries.push(format!("d.destination = {}", arg(dest.clone())));
    }
    FilterSql {
        events,
        deliveries,
        params,
    }
}

/// The most events one list returns.
pub const MAX_PAGE: usize = 500;

/// What the event log's retention removes of an old event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPart {
    /// The whole event, with its deliveries and attempts (`retention.events`).
    Events,
    /// Only its body (`retention.bodies`): the log keeps the rest.
    Bodies,
}

/// The smallest ULID of a time (milliseconds since the epoch): event ids are ULIDs, so an id
/// range is a time range, served by the primary key.
pub fn ulid_floor(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

/// Replay ids split into delivery ids (all digits) and event ids (ULIDs, never all digits).
pub(crate) fn split_replay_ids(ids: &[String]) -> (Vec<i64>, Vec<String>) {
    let mut deliveries = Vec::new();
    let mut events = Vec::new();
    for id in ids {
        match id.parse::<i64>() {
            Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => deliveries.push(n),
            _ => events.push(id.clone()),
        }
    }
    (deliveries, events)
}
