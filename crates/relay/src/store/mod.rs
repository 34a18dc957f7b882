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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable of the relay (configured endpoints). Only the name is stored.
    Env(String),
    /// A token sent with the request (the compatible route). Stored while the event waits, and
    /// deleted with the event once it is delivered or purged.
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

/// An event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Sortable unique id (ULID).
    pub id: String,
    /// Milliseconds since the epoch.
    pub received_at: i64,
    /// The endpoint slug, or `compat`.
    pub source: String,
    /// `owner/name`.
    pub repo: String,
    /// The token to dispatch with.
    pub token: TokenSource,
    /// The dispatch `event_type`.
    pub event_type: String,
    /// The JSON body of the dispatch request.
    pub body: Vec<u8>,
    /// The sender's delivery id (`X-GitHub-Delivery`, `webhook-id`, `Idempotency-Key`, …),
    /// scoped to the source: a second event with the same key within a day is not stored again.
    pub dedupe_key: Option<String>,
}

/// An event waiting in a store (pending, or a dead letter), as it moves to another store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The event as it was stored (its `dedupe_key` is in [`SeenKey`]s).
    pub event: NewEvent,
    /// A dead letter, not a pending delivery.
    pub dead: bool,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (milliseconds since the epoch).
    pub next_attempt_at: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// GitHub's status of the last failure.
    pub last_status: Option<u16>,
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
    /// The event's id (the same as `id` while an event has one delivery).
    pub event_id: String,
    /// `owner/name`.
    pub repo: String,
    /// The token to dispatch with.
    pub token: TokenSource,
    /// The JSON body of the dispatch request.
    pub body: Vec<u8>,
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
    /// GitHub accepted it: the event is done.
    Delivered,
    /// Try again after this long.
    RetryAfter {
        /// How long.
        delay: Duration,
        /// Why the last attempt failed.
        error: String,
    },
    /// Not tried (a rate limit, or a shutdown): try after this long, without counting an attempt.
    Defer {
        /// How long.
        delay: Duration,
    },
    /// Failed for good: kept as a dead letter.
    Dead {
        /// Why.
        error: String,
        /// GitHub's status, when it answered.
        status: Option<u16>,
    },
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id.
    pub id: String,
    /// `owner/name`.
    pub repo: String,
    /// The dispatch `event_type`.
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
    /// Makes dead letters pending again (all when `ids` is empty); returns how many.
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

    pub fn event(id: &str) -> NewEvent {
        NewEvent {
            id: id.into(),
            received_at: now_ms(),
            source: "compat".into(),
            repo: "octo/hooks".into(),
            token: TokenSource::Inline("ghp_secret".into()),
            event_type: "webhook".into(),
            body: br#"{"event_type":"webhook","client_payload":{}}"#.to_vec(),
            dedupe_key: None,
        }
    }

    fn ids(claimed: &[Claimed]) -> Vec<&str> {
        claimed.iter().map(|c| c.event_id.as_str()).collect()
    }

    fn dead(c: &Claimed, error: &str, status: Option<u16>) -> (ClaimRef, Recorded) {
        (
            c.into(),
            Recorded::Dead {
                error: error.into(),
                status,
            },
        )
    }

    pub async fn lifecycle(store: &impl Store) {
        let lease = Duration::from_secs(60);
        let c_event = NewEvent {
            token: TokenSource::Env("TOKEN".into()),
            ..event("c")
        };
        for e in [event("a"), event("b"), c_event] {
            assert_eq!(store.insert(e).await.expect("insert"), Inserted::New);
        }
        assert_eq!(store.counts().await.expect("counts").pending, 3);
        assert_eq!(store.next_due().await.expect("next"), Some(Duration::ZERO));

        let due = store.claim(2, lease).await.expect("claim");
        assert_eq!(ids(&due), ["a", "b"], "oldest first");
        assert_eq!(due[0].token, TokenSource::Inline("ghp_secret".into()));
        assert_eq!(due[0].repo, "octo/hooks");
        let rest = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&rest), ["c"], "claimed ones are not handed out twice");
        assert_eq!(rest[0].token, TokenSource::Env("TOKEN".into()));
        let c = store.counts().await.expect("counts");
        assert_eq!((c.pending, c.inflight), (0, 3));

        let n = store
            .record(vec![
                ((&due[0]).into(), Recorded::Delivered),
                (
                    (&due[1]).into(),
                    Recorded::RetryAfter {
                        delay: Duration::from_millis(400),
                        error: "503".into(),
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
            wait > Duration::ZERO && wait <= Duration::from_millis(400),
            "{wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
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
                .record(vec![(stale, Recorded::Delivered)])
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
            .claim(10, Duration::from_millis(100))
            .await
            .expect("claim");
        assert_eq!(ids(&first), ["b"]);
        assert_eq!(first[0].attempts, 1, "a deferral is not an attempt");
        assert!(store.claim(10, lease).await.expect("claim").is_empty());
        // Expired leases are freed within a quarter second (PostgreSQL reaps them now and then).
        tokio::time::sleep(Duration::from_millis(400)).await;
        let second = store.claim(10, lease).await.expect("claim");
        assert_eq!(ids(&second), ["b"], "the lease ran out");
        assert_ne!(first[0].claim, second[0].claim);
        assert_eq!(
            store
                .record(vec![((&first[0]).into(), Recorded::Delivered)])
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
            .map(|l| (l.id.as_str(), l.error.as_str(), l.attempts))
            .collect();
        assert_eq!(
            summary,
            [("b", "422 unprocessable", 2), ("c", "404 not found", 1)]
        );
        assert_eq!(letters[0].repo, "octo/hooks");
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

    /// Many concurrent inserts, several per key: each key is stored once, and every repeat
    /// names the event stored for its key, even within one batch.
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
