//! The relay's durable event store: what was acknowledged, what is due, what failed for good.
//!
//! [`Store`] is an async trait with one implementation per engine: SQLite ([`sqlite`]), embedded
//! in one relay, and PostgreSQL ([`postgres`]), shared by several relays. Both batch concurrent
//! inserts into one transaction (one commit, many events), so every request is acknowledged only
//! after its event is committed without paying a commit each. Deliveries are claimed with a
//! lease and a claim token: a lease that runs out makes the delivery claimable again, and only
//! the current claim may record a result. [`StoreHandle`] is whichever engine a relay uses.
//!
//! The contract tests at the bottom of this file run against every engine.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::time::Duration;

/// Where the GitHub token of an event comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// An environment variable of the relay (configured endpoints). Only the name is stored.
    Env(String),
    /// A token sent with the request (the compatible route). Stored while the event waits, and
    /// erased once it is delivered (the event log keeps the delivery without it) or purged.
    Inline(String),
    /// The relay's GitHub App: an installation token minted at delivery. Nothing is stored.
    App,
}

impl TokenSource {
    fn encode(&self) -> String {
        match self {
            TokenSource::Env(n) => format!("env:{n}"),
            TokenSource::Inline(t) => format!("inline:{t}"),
            TokenSource::App => "app:".into(),
        }
    }

    fn decode(s: &str) -> TokenSource {
        match s.split_once(':') {
            Some(("env", n)) => TokenSource::Env(n.to_string()),
            Some(("inline", t)) => TokenSource::Inline(t.to_string()),
            Some(("app", _)) => TokenSource::App,
            _ => TokenSource::Inline(String::new()),
        }
    }

    /// The credential's part of a rate-limit lane: a fingerprint of a token that came with the
    /// request, the name of the endpoint's token variable, or the app.
    pub fn lane_key(&self) -> String {
        match self {
            TokenSource::Inline(t) => hookflow_protocol::credentials::fingerprint(t),
            TokenSource::Env(name) => format!("env:{name}"),
            TokenSource::App => "app".into(),
        }
    }
}

/// Where one delivery of an event goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A repository's `repository_dispatch`, sent with this credential.
    Repo {
        /// `owner/name`.
        repo: String,
        /// The GitHub token to dispatch with.
        token: TokenSource,
    },
    /// A plain HTTP endpoint. Its secret, extra headers and transform are looked up in the
    /// running configuration by the event's endpoint and [`Destination::key`].
    Http {
        /// The URL the body is posted to.
        url: String,
    },
}

impl Destination {
    /// What names the destination in the store, in dead letters and in the configuration:
    /// `repo:OWNER/NAME` or `http:<url>`.
    pub fn key(&self) -> String {
        match self {
            Destination::Repo { repo, .. } => format!("repo:{repo}"),
            Destination::Http { url } => format!("http:{url}"),
        }
    }

    /// The credential column: a repository's token source, nothing for HTTP.
    fn token_column(&self) -> Option<String> {
        match self {
            Destination::Repo { token, .. } => Some(token.encode()),
            Destination::Http { .. } => None,
        }
    }

    /// Reads the `destination` and `token` columns back.
    fn from_columns(destination: &str, token: Option<&str>) -> Destination {
        match destination.split_once(':') {
            Some(("http", url)) => Destination::Http { url: url.into() },
            Some(("repo", repo)) => Destination::Repo {
                repo: repo.into(),
                token: TokenSource::decode(token.unwrap_or_default()),
            },
            // Not written by any version: a repository that does not parse makes a dead
            // letter that names it.
            _ => Destination::Repo {
                repo: destination.into(),
                token: TokenSource::decode(token.unwrap_or_default()),
            },
        }
    }

    /// The rate-limit lane: a repository with its credential (events carrying strangers'
    /// tokens never spend the slots of an authenticated sender's), or the URL.
    pub fn lane(&self) -> String {
        match self {
            Destination::Repo { repo, token } => format!("repo:{repo} {}", token.lane_key()),
            Destination::Http { url } => format!("http:{url}"),
        }
    }
}

/// What an event carries to its destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// The request as the relay received it (stored from schema 4 on): each destination
    /// builds what it sends from it at delivery.
    Request(Request),
    /// The dispatch body built when the event was accepted (events stored before schema 4,
    /// which have one repository destination): sent as it is.
    Dispatch(Vec<u8>),
}

/// A received request, as an event keeps it: the method, the path with the query kept, the
/// forwarded headers (lowercase names, credentials already removed), the exact body bytes.
pub use hookflow_protocol::payload::Incoming as Request;

impl Payload {
    /// How it is stored: the kind, the bytes, and the request's method, path and headers.
    fn columns(
        &self,
    ) -> (
        &'static str,
        &[u8],
        Option<&str>,
        Option<&str>,
        Option<String>,
    ) {
        match self {
            Payload::Dispatch(b) => ("dispatch", b, None, None, None),
            Payload::Request(r) => (
                "request",
                &r.body,
                Some(&r.method),
                Some(&r.path),
                serde_json::to_string(&r.headers).ok(),
            ),
        }
    }

    /// Reads the columns back.
    fn from_columns(
        kind: &str,
        bytes: Vec<u8>,
        method: Option<String>,
        path: Option<String>,
        headers: Option<&str>,
    ) -> Payload {
        if kind != "request" {
            return Payload::Dispatch(bytes);
        }
        let headers = headers
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        Payload::Request(Request {
            method: method.unwrap_or_default(),
            path: path.unwrap_or_default(),
            headers,
            body: bytes,
        })
    }

    /// The bytes stored.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Dispatch(b) => b,
            Payload::Request(r) => &r.body,
        }
    }
}

/// An event as stored: what every one of its deliveries sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Sortable unique id (ULID).
    pub id: String,
    /// Milliseconds since the epoch.
    pub received_at: i64,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// The event type (the dispatch `event_type`).
    pub event_type: String,
    /// The request, or an old event's dispatch body.
    pub payload: Payload,
}

/// An event to store, with one delivery per destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event.
    pub event: Event,
    /// Where it goes: one delivery each, in this order. At least one.
    pub destinations: Vec<Destination>,
    /// The sender's delivery id (`X-GitHub-Delivery`, `webhook-id`, `Idempotency-Key`, …),
    /// scoped to the source: a second event with the same key within a day is not stored again.
    pub dedupe_key: Option<String>,
}

/// A delivery's state as it moves to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    /// A dead letter, not a pending delivery.
    pub dead: bool,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (milliseconds since the epoch).
    pub next_attempt_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The destination's status of the last failure.
    pub last_status: Option<u16>,
}

/// An event waiting in a store (some delivery pending, or a dead letter), as it moves to
/// another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event as it was stored with the destinations it still owes (its `dedupe_key` is
    /// in [`SeenKey`]s).
    pub event: NewEvent,
    /// Each destination's delivery state, in the order of `event.destinations`.
    pub deliveries: Vec<DeliveryState>,
}

/// A sender's delivery id the store remembers, so a repeat is recognised after a move too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenKey {
    /// The de-duplication key.
    pub key: String,
    /// The event it named first.
    pub event_id: String,
    /// When (milliseconds since the epoch).
    pub at: i64,
}

/// A connection pool's figures (PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub open: usize,
    /// Open and idle.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// The pool's size.
    pub max: usize,
}

/// What became of an event given to [`Store::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    New,
    /// The sender sent it before: not stored again; this is the first event's id.
    Duplicate(String),
}

/// How long a delivery id is remembered for de-duplication.
pub const DEDUPE_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A delivery claimed by this relay: it holds the lease until it records a result or the lease
/// runs out (then any relay may claim it again, and this relay's result is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The delivery's id: what results are recorded against.
    pub id: String,
    /// Where it goes.
    pub destination: Destination,
    /// The event (shared by the deliveries of one event claimed together).
    pub event: std::sync::Arc<Event>,
    /// Deliveries tried before this one.
    pub attempts: u32,
    /// The claim token: a result is recorded only with it, so a relay whose lease ran out and
    /// whose delivery another relay claimed cannot overwrite that relay's result.
    pub claim: String,
}

/// Which claim a result is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    /// The delivery's id.
    pub id: String,
    /// The claim token.
    pub claim: String,
}

impl From<&Claimed> for ClaimRef {
    fn from(c: &Claimed) -> Self {
        ClaimRef {
            id: c.id.clone(),
            claim: c.claim.clone(),
        }
    }
}

/// What a delivery attempt came to. Times are relative: each engine adds them to its own clock
/// (the database's, for a shared database), never to the relay host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The destination accepted it: the delivery is done (and kept in the event log).
    Delivered {
        /// The attempt that delivered it.
        tried: Option<Tried>,
    },
    /// Try again after this long.
    RetryAfter {
        /// How long.
        delay: Duration,
        /// Why the last attempt failed.
        error: String,
        /// The attempt, when a request was made.
        tried: Option<Tried>,
    },
    /// Not tried (a shutdown, a batch split): try after this long, without counting an attempt.
    Defer {
        /// How long.
        delay: Duration,
    },
    /// Not tried for the lane's dispatch rate limit: try after this long, without counting an
    /// attempt. A batching lane's next batch may take it sooner ([`Store::claim_lane`]).
    RateLimited {
        /// How long.
        delay: Duration,
    },
    /// Failed for good: kept as a dead letter.
    Dead {
        /// Why.
        error: String,
        /// GitHub's status, when it answered.
        status: Option<u16>,
        /// The attempt, when a request was made (none for a delivery that could not be sent
        /// at all, such as a token variable that is not set).
        tried: Option<Tried>,
    },
}

impl Recorded {
    /// Delivered, without an attempt to log (tests, tools).
    pub fn delivered() -> Recorded {
        Recorded::Delivered { tried: None }
    }

    /// The attempt this result comes from, if a request was made.
    pub fn tried(&self) -> Option<&Tried> {
        match self {
            Recorded::Delivered { tried }
            | Recorded::RetryAfter { tried, .. }
            | Recorded::Dead { tried, .. } => tried.as_ref(),
            Recorded::Defer { .. } | Recorded::RateLimited { .. } => None,
        }
    }
}

/// One try of a delivery, as the event log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    /// How long the destination took to answer (or to fail).
    pub took: Duration,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The dispatch that carried it, when it went in a batch.
    pub batch_id: Option<String>,
}

/// A dead letter: one delivery of an event that failed for good (the event's other
/// deliveries go their own way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The delivery's id (replays this destination alone).
    pub id: String,
    /// The event's id (replays every dead delivery of the event).
    pub event_id: String,
    /// Where it was going ([`Destination::key`]: `repo:OWNER/NAME` or `http:<url>`).
    pub destination: String,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// The event type.
    pub event_type: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// When it was received (ms since the epoch).
    pub received_at: i64,
}

/// Counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting for delivery (including retries).
    pub pending: u64,
    /// Being delivered now.
    pub inflight: u64,
    /// Failed for good.
    pub dead: u64,
    /// Receive time of the oldest pending event (ms), if any.
    pub oldest_pending: Option<i64>,
    /// How much room the store's data takes.
    pub room: Room,
}

/// How much of the store's size cap its data takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    /// Bytes the store's data takes (free pages not counted).
    pub bytes_used: u64,
    /// The size cap new events may not pass, if any.
    pub bytes_cap: Option<u64>,
}

impl Room {
    /// Whether new events are refused for lack of room.
    pub fn full(&self) -> bool {
        self.bytes_cap.is_some_and(|cap| self.bytes_used >= cap)
    }
}

/// A store failure. `Unavailable` means the event was not stored: answer 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be written (disk full, read-only, locked, corrupt).
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The store thread is gone (shutting down).
    #[error("the event store is shut down")]
    Closed,
    /// A relay holds the SQLite data directory.
    #[error("another hookflow relay is using {0}; stop it first, or give this one its own --data")]
    Locked(std::path::PathBuf),
    /// The store reached its size cap: new events are refused until delivered ones make room;
    /// deliveries and their results still go on.
    #[error("the event store is full ({used} of {cap} bytes, limits.max_store_bytes); new events are refused until delivered ones make room")]
    Full {
        /// Bytes in use.
        used: u64,
        /// The cap.
        cap: u64,
    },
}

/// A delivery's state as the event log shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting (a first try or a retry).
    Pending,
    /// Being delivered now.
    Inflight,
    /// Accepted by its destination.
    Delivered,
    /// Failed for good: a dead letter.
    Dead,
}

impl DeliveryStatus {
    /// Its name in the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Inflight => "inflight",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    /// From its name.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Inflight,
            DeliveryStatus::Delivered,
            DeliveryStatus::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

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

/// The durable queue behind the relay: SQLite embedded in one relay ([`sqlite`]) or PostgreSQL
/// shared by several ([`postgres`]). Every method may be called from many tasks at once; each
/// engine batches what it can (concurrent inserts share one commit).
pub trait Store: Send + Sync {
    /// Stores one event; returns once it is committed. An event whose `dedupe_key` was seen within
    /// [`DEDUPE_WINDOW_MS`] is not stored again, unless that first event is a dead letter (a
    /// sender's retry of a failed delivery is a new chance, not a repeat).
    fn insert(&self, event: NewEvent) -> impl Future<Output = Result<Inserted, StoreError>> + Send;
    /// Claims up to `limit` due deliveries (pending and due, or in flight with an expired lease),
    /// oldest first, each leased to this relay for `lease`.
    fn claim(
        &self,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;
    /// Claims, for a batch led by `leader`, up to `limit` more pending deliveries of the same
    /// endpoint and lane (repository and credential), oldest first: those due now and those
    /// waiting only for the lane's rate limit ([`Recorded::RateLimited`]), never one waiting
    /// out a retry's backoff. Every delivery of the batch (`members`, claimed already, and
    /// those returned) records `batch_id`.
    fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Claimed>, StoreError>> + Send;
    /// Records results; one whose claim is no longer current (its lease ran out and another
    /// relay claimed it) changes nothing. Returns how many were recorded.
    fn record(
        &self,
        results: Vec<(ClaimRef, Recorded)>,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
    /// How long until the next pending delivery is due (zero when one is due now), if any.
    fn next_due(&self) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;
    /// Counts by state.
    fn counts(&self) -> impl Future<Output = Result<Counts, StoreError>> + Send;
    /// Dead letters, oldest first.
    fn dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;
    /// Makes dead letters pending again, each from its first attempt; returns how many. An id
    /// is a delivery's (digits: that destination alone) or an event's (every dead delivery of
    /// it); all dead letters when `ids` is empty.
    fn replay_dead(&self, ids: Vec<String>)
        -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes dead letters received more than `older_than` ago (all of them for zero); returns
    /// how many.
    fn purge_dead(
        &self,
        older_than: Duration,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Checks that the store can take a write now, and says how full it is (cheaply: `/readyz`
    /// calls it, and must not scan the events).
    fn ping(&self) -> impl Future<Output = Result<Room, StoreError>> + Send;
    /// Keeps `bytes` as the body `id` until `keep_until` (milliseconds since the epoch), to
    /// serve by reference (`GET /bodies/<id>`); a body kept already keeps its bytes and the
    /// later of the two times. Not bound by the store's size cap: the bodies are those of
    /// events already accepted.
    fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A kept body while its time lasts; `None` once it is over (or never kept).
    fn body(&self, id: String) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// Deletes up to `limit` bodies whose time is over, or whose event's every delivery is
    /// dead (no run will fetch them; a replay keeps them again); returns how many.
    fn prune_bodies(&self, limit: usize) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The newest events that pass `filter`, at most `limit` ([`MAX_PAGE`]), newest first.
    fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<EventSummary>, StoreError>> + Send;
    /// One event of the log, whole, if the store has it.
    fn logged_event(
        &self,
        id: String,
    ) -> impl Future<Output = Result<Option<LoggedEvent>, StoreError>> + Send;
    /// Makes delivered and dead deliveries pending again, each as a new attempt chain: those
    /// named (delivery ids, or event ids for all of an event's), or with `ids` empty those of
    /// the events `filter` lists (at most `limit`). Events whose body `retention.bodies`
    /// dropped are left out: there is nothing to send again. Returns how many deliveries.
    fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The event log's retention, oldest first, up to `limit` events received more than
    /// `older_than` ago whose deliveries are all delivered: deletes them with their deliveries
    /// and attempts ([`LogPart::Events`]), or empties their bodies ([`LogPart::Bodies`]:
    /// `body_pruned`, the rest stays). Dead letters stay whole until replayed or purged.
    /// Returns how many events.
    fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What the event log's retention removes of an old event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPart {
    /// The whole event, with its deliveries and attempts (`retention.events`).
    Events,
    /// Only its body (`retention.bodies`): the log keeps the rest.
    Bodies,
}

/// The sender's own delivery id in a de-duplication key (`hooks:<slug>:<header>:<value>`,
/// `compat:…:<header>:<value>`): what the event log finds an event by.
pub(crate) fn sender_delivery_id(dedupe_key: &str) -> Option<&str> {
    hookflow_protocol::payload::DELIVERY_ID_HEADERS
        .iter()
        .find_map(|h| {
            let marker = format!(":{h}:");
            dedupe_key
                .find(&marker)
                .map(|i| &dedupe_key[i + marker.len()..])
        })
        .filter(|v| !v.is_empty())
}

/// The smallest ULID of a time (milliseconds since the epoch): event ids are ULIDs, so an id
/// range is a time range, served by the primary key.
pub fn ulid_floor(ms: i64) -> String {
    ulid::Ulid::from_parts(ms.max(0) as u64, 0).to_string()
}

/// What an attempt came to, as the event log writes it.
pub(crate) fn attempt_outcome(r: &Recorded) -> &'static str {
    match r {
        Recorded::Delivered { .. } => "delivered",
        Recorded::Dead { .. } => "dead",
        _ => "retry",
    }
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

/// The store a relay was started with, whichever the engine. Cloning shares it.
#[derive(Clone)]
pub enum StoreHandle {
    /// The embedded SQLite store.
    Sqlite(sqlite::SqliteHandle),
    /// A shared PostgreSQL database.
    Postgres(postgres::PgStore),
}

/// Calls the same method on whichever engine.
macro_rules! each_engine {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            StoreHandle::Sqlite($s) => $call.await,
            StoreHandle::Postgres($s) => $call.await,
        }
    };
}

impl Store for StoreHandle {
    async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        each_engine!(self, s => s.insert(event))
    }
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        each_engine!(self, s => s.claim(limit, lease))
    }
    async fn record(&self, results: Vec<(ClaimRef, Recorded)>) -> Result<usize, StoreError> {
        each_engine!(self, s => s.record(results))
    }
    async fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        each_engine!(self, s => s.claim_lane(leader, members, batch_id, limit, lease))
    }
    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        each_engine!(self, s => s.next_due())
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        each_engine!(self, s => s.counts())
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        each_engine!(self, s => s.dead_letters(limit))
    }
    async fn replay_dead(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        each_engine!(self, s => s.replay_dead(ids))
    }
    async fn purge_dead(&self, older_than: Duration) -> Result<u64, StoreError> {
        each_engine!(self, s => s.purge_dead(older_than))
    }
    async fn ping(&self) -> Result<Room, StoreError> {
        each_engine!(self, s => s.ping())
    }
    async fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        each_engine!(self, s => s.keep_body(id, bytes, keep_until))
    }
    async fn body(&self, id: String) -> Result<Option<Vec<u8>>, StoreError> {
        each_engine!(self, s => s.body(id))
    }
    async fn prune_bodies(&self, limit: usize) -> Result<u64, StoreError> {
        each_engine!(self, s => s.prune_bodies(limit))
    }
    async fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        each_engine!(self, s => s.prune_events(part, older_than, limit))
    }
    async fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        each_engine!(self, s => s.list_events(filter, limit))
    }
    async fn logged_event(&self, id: String) -> Result<Option<LoggedEvent>, StoreError> {
        each_engine!(self, s => s.logged_event(id))
    }
    async fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> Result<u64, StoreError> {
        each_engine!(self, s => s.replay(ids, filter, limit))
    }
}

impl StoreHandle {
    /// The engine's name, for logs and reports (`sqlite`, `postgres`).
    pub fn engine(&self) -> &'static str {
        match self {
            StoreHandle::Sqlite(_) => "sqlite",
            StoreHandle::Postgres(_) => "postgres",
        }
    }

    /// Whether the store itself tells the delivery workers of new events (PostgreSQL's
    /// `NOTIFY`, or its hand-over), so that storing one needs no wake-up of its own.
    pub fn announces_new_events(&self) -> bool {
        matches!(self, StoreHandle::Postgres(_))
    }

    /// The connection pool's figures, for an engine that has one.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        match self {
            StoreHandle::Sqlite(_) => None,
            StoreHandle::Postgres(s) => Some(s.pool_status()),
        }
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every engine must have. Times are real (a shared database keeps its own
    //! clock), so waits are short sleeps.
    use super::*;

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    pub fn request(body: &[u8]) -> Payload {
        let mut headers = serde_json::Map::new();
        headers.insert("content-type".into(), "application/json".into());
        headers.insert("x-github-event".into(), "push".into());
        Payload::Request(Request {
            method: "POST".into(),
            path: "/ci/webhook?x=1".into(),
            headers,
            body: body.to_vec(),
        })
    }

    pub fn repo(repo: &str, token: TokenSource) -> Destination {
        Destination::Repo {
            repo: repo.into(),
            token,
        }
    }

    pub fn event(id: &str) -> NewEvent {
        NewEvent {
            event: Event {
                id: id.into(),
                received_at: now_ms(),
                source: "compat".into(),
                event_type: "webhook".into(),
                payload: request(br#"{"ref":"refs/heads/main"}"#),
            },
            destinations: vec![repo("octo/hooks", TokenSource::Inline("ghp_secret".into()))],
            dedupe_key: None,
        }
    }

    fn ids(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.event.id.as_str()).collect()
    }

    fn dead(c: &Claimed, error: &str, status: Option<u16>) -> (ClaimRef, Recorded) {
        (
            c.into(),
            Recorded::Dead {
                error: error.into(),
                status,
                tried: None,
            },
        )
    }

    pub async fn lifecycle(store: &impl Store) {
        let lease = Duration::from_secs(60);
        // Made in order: an event's receive time is its first due time, so `c` made first
        // (in an earlier millisecond) would rightly be claimed first.
        let (a, b) = (event("a"), event("b"));
        let c_event = NewEvent {
            destinations: vec![repo("octo/hooks", TokenSource::Env("TOKEN".into()))],
            ..event("c")
        };
        for e in [a, b, c_event] {
            assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
        }
        assert_eq!(store.counts().await.expect("counts").pending, 3);
        assert_eq!(store.next_due().await.expect("next"), Some(Duration::ZERO));

        let due = store.claim(2, lease).await.expect("claim");
        assert_eq!(ids(&due), ["a", "b"], "oldest first");
        assert_eq!(
            due[0].destination,
            repo("octo/hooks", TokenSource::Inline("ghp_secret".into()))
        );
        assert_eq!(
            due[0].event.payload,
            request(br#"{"ref":"refs/heads/main"}"#)
        );
        assert_eq!(due[0].event.event_type, "webhook");
        let rest = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&rest), ["c"], "claimed ones are not handed out twice");
        assert_eq!(
            rest[0].destination,
            repo("octo/hooks", TokenSource::Env("TOKEN".into()))
        );
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight), (0, 3));

        let n = store
            .record(vec![
                ((&due[0]).into(), Recorded::delivered()),
                (
                    (&due[1]).into(),
                    Recorded::RetryAfter {
                        // Long enough that a loaded machine cannot reach the checks below
                        // after it is due.
                        delay: Duration::from_millis(1500),
                        error: "503".into(),
                        tried: None,
                    },
                ),
                dead(&rest[0], "404 not found", Some(404)),
            ])
            .await
            .expect("record");
        assert_eq!(n, 3);
        assert!(
            store.claim(10, lease).await.expect("claim").is_empty(),
            "b waits for its retry"
        );
        let wait = store.next_due().await.expect("next").expect("b is pending");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(1500),
            "{wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(1550)).await;
        let b = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&b), ["b"]);
        assert_eq!(b[0].attempts, 1);

        // A result for a claim that is not current changes nothing.
        let stale = ClaimRef {
            id: b[0].id.clone(),
            claim: "not-the-claim".into(),
        };
        assert_eq!(
            store
                .record(vec![(stale, Recorded::delivered())])
                .await
                .expect("record"),
            0
        );
        // A lease that runs out makes the delivery claimable again, and the first claim's
        // result is refused: it cannot overwrite the second's.
        let deferred = Recorded::Defer {
            delay: Duration::ZERO,
        };
        assert_eq!(
            store
                .record(vec![((&b[0]).into(), deferred)])
                .await
                .expect("record"),
            1
        );
        let first = store
            .claim(10, Duration::from_millis(1000))
            .await
            .expect("claim");
        assert_eq!(ids(&first), ["b"]);
        assert_eq!(first[0].attempts, 1, "a deferral is not an attempt");
        assert!(store.claim(10, lease).await.expect("claim").is_empty());
        // Expired leases are freed within a quarter second (PostgreSQL reaps them now and then).
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let second = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&second), ["b"], "the lease ran out");
        assert_ne!(first[0].claim, second[0].claim);
        assert_eq!(
            store
                .record(vec![((&first[0]).into(), Recorded::delivered())])
                .await
                .expect("record"),
            0
        );
        assert_eq!(
            store
                .record(vec![dead(&second[0], "422 unprocessable", Some(422))])
                .await
                .expect("record"),
            1
        );

        let letters = store.dead_letters(10).await.expect("dead");
        let summary: Vec<(&str, &str, u32)> = letters
            .iter()
            .map(|l| (l.event_id.as_str(), l.error.as_str(), l.attempts))
            .collect();
        assert_eq!(
            summary,
            [("b", "422 unprocessable", 2), ("c", "404 not found", 1)]
        );
        assert_eq!(letters[0].destination, "repo:octo/hooks");
        assert_eq!(letters[0].source, "compat");
        assert_eq!(
            store
                .replay_dead(vec!["c".into(), "zz".into()])
                .await
                .expect("replay"),
            1
        );
        let again = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&again), ["c"]);
        assert_eq!(again[0].attempts, 0, "a replay starts over");
        store
            .record(vec![dead(&again[0], "x", None)])
            .await
            .expect("record");
        assert_eq!(store.replay_dead(Vec::new()).await.expect("replay"), 2);
        let both = store.claim(10, lease).await.expect("claim");
        assert_eq!(both.len(), 2);
        store
            .record(both.iter().map(|c| dead(c, "x", None)).collect())
            .await
            .expect("record");
        assert_eq!(
            store
                .purge_dead(Duration::from_secs(3600))
                .await
                .expect("purge"),
            0,
            "not an hour old"
        );
        assert_eq!(store.purge_dead(Duration::ZERO).await.expect("purge"), 2);
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
        assert_eq!(store.next_due().await.expect("next"), None);
        store.ping().await.expect("ping");
    }

    pub async fn dedupe(store: &impl Store) {
        let keyed = |id: &str, key: &str| NewEvent {
            dedupe_key: Some(key.into()),
            ..event(id)
        };
        let mut got = Vec::new();
        for e in [
            keyed("a", "gh:1"),
            keyed("b", "gh:2"),
            keyed("c", "gh:1"),
            keyed("d", "gh:2"),
            keyed("e", "gh:3"),
            event("f"),
        ] {
            got.push(store.insert(e).await.expect("insert"));
        }
        assert_eq!(
            got,
            [
                Inserted::New,
                Inserted::New,
                Inserted::Duplicate("a".into()),
                Inserted::Duplicate("b".into()),
                Inserted::New,
                Inserted::New
            ]
        );
        assert_eq!(store.counts().await.expect("counts").pending, 4);

        // A dead letter does not swallow its sender's retry; the retry then counts as the first.
        let due = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claim");
        assert_eq!(due.len(), 4);
        store
            .record(due.iter().map(|c| dead(c, "422", Some(422))).collect())
            .await
            .expect("record");
        assert_eq!(
            store.insert(keyed("g", "gh:1")).await.expect("insert"),
            Inserted::New
        );
        assert_eq!(
            store.insert(keyed("h", "gh:1")).await.expect("insert"),
            Inserted::Duplicate("g".into())
        );
    }

    /// One event, three destinations: each delivery has its own attempts, result and dead
    /// letter; the event stays until its last delivery is done, and is stored once.
    pub async fn fan_out(store: &impl Store) {
        let lease = Duration::from_secs(60);
        let hook = Destination::Http {
            url: "https://hooks.example/in".into(),
        };
        let e = NewEvent {
            destinations: vec![
                repo("octo/billing", TokenSource::Env("T".into())),
                repo("octo/analytics", TokenSource::App),
                hook.clone(),
            ],
            ..event("f")
        };
        assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
        assert_eq!(store.counts().await.expect("counts").pending, 3);
        let due = store.claim(10, lease).await.expect("claim");
        let mut keys: Vec<String> = due.iter().map(|c| c.destination.key()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "http:https://hooks.example/in",
                "repo:octo/analytics",
                "repo:octo/billing"
            ]
        );
        assert!(due
            .iter()
            .all(|c| c.event.id == "f"
                && c.event.payload == request(br#"{"ref":"refs/heads/main"}"#)));
        let by = |k: &str| due.iter().find(|c| c.destination.key() == k).expect(k);
        let (billing, analytics, http) = (
            by("repo:octo/billing"),
            by("repo:octo/analytics"),
            by("http:https://hooks.example/in"),
        );
        assert_eq!(
            analytics.destination,
            repo("octo/analytics", TokenSource::App)
        );
        store
            .record(vec![
                (billing.into(), Recorded::delivered()),
                (
                    analytics.into(),
                    Recorded::RetryAfter {
                        delay: Duration::from_millis(200),
                        error: "500".into(),
                        tried: None,
                    },
                ),
                dead(http, "404 not found", Some(404)),
            ])
            .await
            .expect("record");
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight, c.dead), (1, 0, 1));
        let letters = store.dead_letters(10).await.expect("dead");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].event_id, "f");
        assert_eq!(letters[0].id, http.id);
        assert_eq!(letters[0].destination, "http:https://hooks.example/in");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = store.claim(10, lease).await.expect("claim");
        assert_eq!(again.len(), 1, "only the retried delivery comes back");
        assert_eq!(again[0].destination.key(), "repo:octo/analytics");
        assert_eq!(again[0].attempts, 1);
        store
            .record(vec![((&again[0]).into(), Recorded::delivered())])
            .await
            .expect("record");
        // The dead HTTP delivery keeps its event: replayed alone, by its delivery id, it
        // sends the same request.
        assert_eq!(
            store
                .replay_dead(vec![http.id.clone()])
                .await
                .expect("replay"),
            1
        );
        let replayed = store.claim(10, lease).await.expect("claim");
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].destination, hook);
        assert_eq!(replayed[0].attempts, 0);
        assert_eq!(
            replayed[0].event.payload,
            request(br#"{"ref":"refs/heads/main"}"#)
        );
        store
            .record(vec![((&replayed[0]).into(), Recorded::delivered())])
            .await
            .expect("record");
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
        assert!(store.claim(10, lease).await.expect("claim").is_empty());
    }

    /// Many concurrent inserts, several per key: each key is stored once, and every repeat
    /// names the event stored for its key, even within one batch.
    /// A batch's leader takes more of its endpoint's lane: due deliveries and those waiting only
    /// for the rate limit, oldest first; never one in retry backoff, another lane's or another
    /// endpoint's.
    pub async fn lanes(store: &impl Store) {
        let lease = Duration::from_secs(60);
        let ci = |id: &str, repo_name: &str, source: &str| NewEvent {
            event: Event {
                source: source.into(),
                ..event(id).event
            },
            destinations: vec![repo(repo_name, TokenSource::Env("TOKEN".into()))],
            dedupe_key: None,
        };
        for e in [
            ci("a", "octo/hooks", "ci"),
            ci("b", "octo/hooks", "ci"),
            ci("c", "octo/hooks", "ci"),
            ci("d", "octo/hooks", "ci"),
            ci("e", "octo/other", "ci"),
            ci("f", "octo/hooks", "other"),
            ci("g", "octo/hooks", "ci"),
        ] {
            assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
        }
        let first = store.claim(3, lease).await.expect("claim");
        assert_eq!(ids(&first), ["a", "b", "c"]);
        let minute = Duration::from_secs(60);
        let results = vec![
            ((&first[1]).into(), Recorded::RateLimited { delay: minute }),
            (
                (&first[2]).into(),
                Recorded::RetryAfter {
                    delay: minute,
                    error: "503".into(),
                    tried: None,
                },
            ),
        ];
        assert_eq!(store.record(results).await.expect("record"), 2);
        let leader = &first[0];
        let more = store
            .claim_lane(leader, vec![leader.into()], "batch-1".into(), 10, lease)
            .await
            .expect("claim lane");
        assert_eq!(
            ids(&more),
            ["b", "d", "g"],
            "due and rate-limited deliveries of the lane, in order; not c (backoff), e (another \
             repository) or f (another endpoint)"
        );
        let again = store
            .claim_lane(leader, Vec::new(), "batch-2".into(), 10, lease)
            .await
            .expect("claim lane again");
        assert!(ids(&again).is_empty(), "claimed ones are not claimed twice");
        let counts = store.counts().await.expect("counts");
        assert_eq!((counts.inflight, counts.pending), (4, 3));
        let done: Vec<(ClaimRef, Recorded)> = std::iter::once(leader)
            .chain(&more)
            .map(|c| (c.into(), Recorded::delivered()))
            .collect();
        assert_eq!(store.record(done).await.expect("record"), 4);
        let rest = store.claim(10, lease).await.expect("claim the rest");
        assert_eq!(ids(&rest), ["e", "f"], "c waits out its backoff");
        let none = store
            .claim_lane(&rest[0], Vec::new(), "batch-3".into(), 0, lease)
            .await
            .expect("claim nothing");
        assert!(none.is_empty());
    }

    /// The event log: delivered deliveries stay with their attempts, lists filter and page,
    /// replays start new chains, retention prunes what is all delivered.
    pub async fn event_log(store: &impl Store) {
        let base = now_ms();
        let id = |i: u64| ulid::Ulid::from_parts(base as u64 - 10_000 + i, 7).to_string();
        let tried = |ms: u64, status: Option<u16>| {
            Some(Tried {
                took: Duration::from_millis(ms),
                status,
                batch_id: None,
            })
        };
        // Event 0 goes to two repositories; 1 and 2 to one; 2 comes from another endpoint.
        let mut e0 = event(&id(0));
        e0.destinations
            .push(repo("octo/other", TokenSource::Env("T".into())));
        e0.dedupe_key = Some("hooks:gh:x-github-delivery:72d3162e-cc78-11e3".into());
        if let Payload::Request(r) = &mut e0.event.payload {
            r.path = "/github/webhook?ref=main".into();
        }
        let e1 = event(&id(1));
        let mut e2 = event(&id(2));
        e2.event.source = "stripe".into();
        for e in [e0, e1, e2] {
            store.insert(e).await.expect("stored");
        }
        let claimed = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claims");
        assert_eq!(claimed.len(), 4);
        let results: Vec<(ClaimRef, Recorded)> = claimed
            .iter()
            .map(|c| {
                let r = if c.destination.key() == "repo:octo/other" {
                    Recorded::RetryAfter {
                        delay: Duration::from_millis(1),
                        error: "GitHub answered 502".into(),
                        tried: tried(40, Some(502)),
                    }
                } else {
                    Recorded::Delivered {
                        tried: tried(25, None),
                    }
                };
                (c.into(), r)
            })
            .collect();
        assert_eq!(store.record(results).await.expect("records"), 4);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let again = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claims");
        assert_eq!(again.len(), 1, "the retry");
        store
            .record(vec![(
                (&again[0]).into(),
                Recorded::Dead {
                    error: "GitHub answered 404".into(),
                    status: Some(404),
                    tried: tried(30, Some(404)),
                },
            )])
            .await
            .expect("records");
        // The queue figures leave delivered deliveries out.
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 1));

        let all = store
            .list_events(EventFilter::default(), 50)
            .await
            .expect("lists");
        assert_eq!(
            all.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            vec![id(2), id(1), id(0)],
            "newest first"
        );
        assert_eq!(all[2].deliveries.len(), 2);
        assert_eq!(all[2].deliveries[0].status, DeliveryStatus::Delivered);
        assert_eq!(all[2].deliveries[1].status, DeliveryStatus::Dead);
        assert_eq!(all[2].deliveries[1].attempts, 2);
        assert_eq!(
            all[2].delivery_key.as_deref(),
            Some("72d3162e-cc78-11e3"),
            "the sender's delivery id"
        );
        let list = |f: EventFilter| async move {
            store
                .list_events(f, 50)
                .await
                .expect("lists")
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            list(EventFilter {
                status: Some(DeliveryStatus::Dead),
                ..Default::default()
            })
            .await,
            vec![id(0)]
        );
        assert_eq!(
            list(EventFilter {
                status: Some(DeliveryStatus::Delivered),
                ..Default::default()
            })
            .await,
            vec![id(2), id(1), id(0)]
        );
        assert_eq!(
            list(EventFilter {
                destination: Some("repo:octo/other".into()),
                ..Default::default()
            })
            .await,
            vec![id(0)]
        );
        assert_eq!(
            list(EventFilter {
                source: Some("stripe".into()),
                ..Default::default()
            })
            .await,
            vec![id(2)]
        );
        assert_eq!(
            list(EventFilter {
                delivery_key: Some("72d3162e-cc78-11e3".into()),
                ..Default::default()
            })
            .await,
            vec![id(0)]
        );
        assert_eq!(
            list(EventFilter {
                path_contains: Some("ref=main".into()),
                ..Default::default()
            })
            .await,
            vec![id(0)]
        );
        assert_eq!(
            list(EventFilter {
                since: Some(base - 10_000 + 1),
                until: Some(base - 10_000 + 2),
                ..Default::default()
            })
            .await,
            vec![id(1)],
            "a time range"
        );
        assert_eq!(
            list(EventFilter {
                before: Some(id(2)),
                ..Default::default()
            })
            .await,
            vec![id(1), id(0)],
            "the next page"
        );
        assert_eq!(
            store
                .list_events(EventFilter::default(), 2)
                .await
                .expect("lists")
                .len(),
            2
        );

        // One event whole: its request and every attempt.
        let whole = store
            .logged_event(id(0))
            .await
            .expect("reads")
            .expect("found");
        let Payload::Request(r) = &whole.payload else {
            panic!("a request")
        };
        assert_eq!(r.body, br#"{"ref":"refs/heads/main"}"#);
        let dead = &whole.summary.deliveries[1];
        assert_eq!(
            dead.tries
                .iter()
                .map(|t| (t.outcome.as_str(), t.status, t.took_ms))
                .collect::<Vec<_>>(),
            vec![
                ("retry", Some(502), Some(40)),
                ("dead", Some(404), Some(30))
            ]
        );
        assert_eq!(
            dead.tries[0].message.as_deref(),
            Some("GitHub answered 502")
        );
        assert_eq!(whole.summary.deliveries[0].tries.len(), 1);
        assert_eq!(whole.summary.deliveries[0].tries[0].outcome, "delivered");
        assert!(store
            .logged_event("01JNONE".into())
            .await
            .expect("reads")
            .is_none());

        // Replaying the dead ones (by filter) starts chain 1; delivered again, it says so.
        let n = store
            .replay(
                Vec::new(),
                EventFilter {
                    status: Some(DeliveryStatus::Dead),
                    ..Default::default()
                },
                100,
            )
            .await
            .expect("replays");
        assert_eq!(n, 2, "every finished delivery of the listed event");
        let replayed = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claims");
        assert_eq!(replayed.len(), 2);
        // A token that came with the request was erased once it was used.
        assert!(
            replayed
                .iter()
                .any(|c| c.destination == repo("octo/hooks", TokenSource::Inline(String::new()))),
            "{:?}",
            replayed
                .iter()
                .map(|c| c.destination.key())
                .collect::<Vec<_>>()
        );
        let results = replayed
            .iter()
            .map(|c| {
                (
                    c.into(),
                    Recorded::Delivered {
                        tried: tried(5, Some(204)),
                    },
                )
            })
            .collect();
        store.record(results).await.expect("records");
        let whole = store
            .logged_event(id(0))
            .await
            .expect("reads")
            .expect("found");
        let d = &whole.summary.deliveries[1];
        assert_eq!(
            (d.status, d.chain, d.attempts),
            (DeliveryStatus::Delivered, 1, 1)
        );
        assert_eq!(
            d.tries.iter().map(|t| t.chain).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
        // A replay by id of a delivered delivery works too.
        assert_eq!(
            store
                .replay(vec![d.id.clone()], EventFilter::default(), 1)
                .await
                .expect("replays"),
            1
        );
        let back = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claims");
        store
            .record(vec![(
                (&back[0]).into(),
                Recorded::Dead {
                    error: "gone".into(),
                    status: Some(410),
                    tried: tried(1, Some(410)),
                },
            )])
            .await
            .expect("records");

        // Body retention: the bodies of events all delivered go first, the rest of them stays;
        // such an event cannot be replayed (nothing to send); a dead letter keeps its body.
        let prune = |part: LogPart, age: Duration, limit: usize| async move {
            store.prune_events(part, age, limit).await.expect("prunes")
        };
        assert_eq!(
            prune(LogPart::Bodies, Duration::from_secs(3600), 100).await,
            0
        );
        assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 1).await, 1);
        assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 100).await, 1);
        assert_eq!(prune(LogPart::Bodies, Duration::ZERO, 100).await, 0, "once");
        for i in [1, 2] {
            let e = store
                .logged_event(id(i))
                .await
                .expect("reads")
                .expect("kept");
            assert!(e.body_pruned);
            let Payload::Request(r) = &e.payload else {
                panic!("a request")
            };
            assert!(r.body.is_empty(), "emptied");
            assert_eq!(e.summary.deliveries.len(), 1, "its delivery stays");
            assert_eq!(e.summary.deliveries[0].tries.len(), 1, "and its attempt");
        }
        let kept = store
            .logged_event(id(0))
            .await
            .expect("reads")
            .expect("kept");
        assert!(!kept.body_pruned);
        assert_eq!(
            store
                .replay(vec![id(1)], EventFilter::default(), 1)
                .await
                .expect("replays"),
            0,
            "no body to send again"
        );

        // Retention: events all delivered and old enough go, with their rows; a dead letter
        // stays.
        assert_eq!(
            prune(LogPart::Events, Duration::from_secs(3600), 100).await,
            0,
            "nothing is an hour old"
        );
        assert_eq!(
            prune(LogPart::Events, Duration::ZERO, 1).await,
            1,
            "a batch at a time"
        );
        assert_eq!(prune(LogPart::Events, Duration::ZERO, 100).await, 1);
        assert_eq!(list(EventFilter::default()).await, vec![id(0)]);
    }

    /// Bodies by reference: kept until their time, never shortened, pruned after.
    pub async fn bodies(store: &impl Store) {
        let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let later = now_ms() + 60_000;
        store
            .keep_body("01JBIG".into(), big.clone(), later)
            .await
            .expect("kept");
        assert_eq!(
            store.body("01JBIG".into()).await.expect("reads"),
            Some(big.clone())
        );
        // Kept again with an earlier time (another destination's dispatch): the later stays.
        store
            .keep_body("01JBIG".into(), big.clone(), now_ms() + 1_000)
            .await
            .expect("kept again");
        store
            .keep_body("01JEMPTY".into(), Vec::new(), later)
            .await
            .expect("kept");
        assert_eq!(
            store.body("01JEMPTY".into()).await.expect("reads"),
            Some(Vec::new())
        );
        store
            .keep_body("01JOLD".into(), b"old".to_vec(), now_ms() + 300)
            .await
            .expect("kept");
        assert!(store.body("01JOLD".into()).await.expect("reads").is_some());
        assert_eq!(store.body("01JNEVER".into()).await.expect("reads"), None);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // Past its time: no longer served, then pruned; the others stay.
        assert_eq!(store.body("01JOLD".into()).await.expect("reads"), None);
        assert_eq!(store.prune_bodies(100).await.expect("prunes"), 1);
        assert_eq!(store.prune_bodies(100).await.expect("prunes"), 0);
        assert_eq!(store.body("01JBIG".into()).await.expect("reads"), Some(big));

        // A body kept for an event whose every delivery is dead goes at once (a stranger's
        // junk tokens cannot hold the store for a week); one whose delivery succeeded stays.
        let (dead_id, done_id) = (
            ulid::Ulid::generate().to_string(),
            ulid::Ulid::generate().to_string(),
        );
        for id in [&dead_id, &done_id] {
            store.insert(event(id)).await.expect("stored");
        }
        let claimed = store
            .claim(10, Duration::from_secs(60))
            .await
            .expect("claims");
        let results = claimed
            .iter()
            .map(|c| {
                let r = if c.event.id == dead_id {
                    Recorded::Dead {
                        error: "401".into(),
                        status: Some(401),
                        tried: None,
                    }
                } else {
                    Recorded::delivered()
                };
                (c.into(), r)
            })
            .collect();
        store.record(results).await.expect("records");
        for id in [&dead_id, &done_id] {
            store
                .keep_body(id.clone(), b"kept".to_vec(), later)
                .await
                .expect("kept");
        }
        assert_eq!(store.prune_bodies(100).await.expect("prunes"), 1);
        assert_eq!(store.body(dead_id).await.expect("reads"), None);
        assert!(store.body(done_id).await.expect("reads").is_some());
    }

    pub async fn concurrent_inserts<S: Store + Clone + 'static>(store: &S) {
        let mut tasks = Vec::new();
        for i in 0..300 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("k{}", i % 50);
                let e = NewEvent {
                    dedupe_key: Some(key.clone()),
                    ..event(&format!("e{i:04}"))
                };
                (key, format!("e{i:04}"), s.insert(e).await.expect("insert"))
            }));
        }
        let mut stored = std::collections::HashMap::new();
        let mut repeats = Vec::new();
        for t in tasks {
            let (key, id, inserted) = t.await.expect("task");
            match inserted {
                Inserted::New => assert!(stored.insert(key, id).is_none(), "one per key"),
                Inserted::Duplicate(first) => repeats.push((key, first)),
            }
        }
        assert_eq!(stored.len(), 50);
        for (key, first) in repeats {
            assert_eq!(stored.get(&key), Some(&first));
        }
        assert_eq!(store.counts().await.expect("counts").pending, 50);
    }
}
