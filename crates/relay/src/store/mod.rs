//! The relay's durable event store: what was acknowledged, what is due, what failed for good.
//!
//! A [`Store`] is a small synchronous trait over one database; [`StoreHandle`] runs it on its own
//! thread and batches concurrent writes into one transaction (one commit, one `fsync`, many
//! events), so every request is acknowledged only after its event is committed without paying a
//! commit each. SQLite ([`sqlite`]) is the embedded engine; a shared database can implement the
//! same trait for running several relays.
//!
//! The contract tests at the bottom of this file run against every engine.

pub mod sqlite;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use hookflow_protocol::Clock;
use tokio::sync::oneshot;

/// Where the GitHub token of an event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable of the relay (configured endpoints). Only the name is stored.
    Env(String),
    /// A token sent with the request (the compatible route). Stored while the event waits, and
    /// deleted with the event once it is delivered or purged.
    Inline(String),
}

impl TokenSource {
    fn encode(&self) -> String {
        match self {
            TokenSource::Env(n) => format!("env:{n}"),
            TokenSource::Inline(t) => format!("inline:{t}"),
        }
    }

    fn decode(s: &str) -> TokenSource {
        match s.split_once(':') {
            Some(("env", n)) => TokenSource::Env(n.to_string()),
            Some(("inline", t)) => TokenSource::Inline(t.to_string()),
            _ => TokenSource::Inline(String::new()),
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

/// An event claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEvent {
    /// Its id.
    pub id: String,
    /// `owner/name`.
    pub repo: String,
    /// The token to dispatch with.
    pub token: TokenSource,
    /// The JSON body of the dispatch request.
    pub body: Vec<u8>,
    /// Deliveries tried before this one.
    pub attempts: u32,
}

/// What a delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// GitHub accepted it: the event is done.
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt {
        /// When.
        at: i64,
        /// Why the last attempt failed.
        error: String,
    },
    /// Not tried (the repository's rate limit): try at this time, without counting an attempt.
    Defer {
        /// When (ms since the epoch).
        at: i64,
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

/// A database of events. Implementations must make `insert` durable before returning.
pub trait Store: Send {
    /// Stores events in one transaction; all or none. Events whose `dedupe_key` was seen within
    /// [`DEDUPE_WINDOW_MS`] are not stored again, unless that first event is a dead letter (a
    /// sender's retry of a failed delivery is a new chance, not a repeat). `now` is the store clock's time (ms).
    fn insert(&mut self, events: &[NewEvent], now: i64) -> Result<Vec<Inserted>, StoreError>;
    /// Claims up to `limit` pending events due at `now` (ms) and marks them in flight.
    fn claim_due(&mut self, now: i64, limit: usize) -> Result<Vec<DueEvent>, StoreError>;
    /// Records delivery results in one transaction.
    fn record(&mut self, results: &[(String, Recorded)], now: i64) -> Result<(), StoreError>;
    /// Returns events left in flight by a crash to pending; returns how many.
    fn recover(&mut self, now: i64) -> Result<u64, StoreError>;
    /// Returns events in flight since before `before` (ms) to pending: a delivery whose result
    /// could not be recorded is tried again without waiting for a restart. Returns how many.
    fn requeue_stale(&mut self, before: i64, now: i64) -> Result<u64, StoreError>;
    /// When the next pending event is due (ms), if any.
    fn next_due(&mut self) -> Result<Option<i64>, StoreError>;
    /// Counts by state.
    fn counts(&mut self) -> Result<Counts, StoreError>;
    /// Dead letters, oldest first.
    fn dead_letters(&mut self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;
    /// Makes dead letters pending again (all when `ids` is empty); returns how many.
    fn replay_dead(&mut self, ids: &[String], now: i64) -> Result<u64, StoreError>;
    /// Deletes dead letters received before `before` (ms); returns how many.
    fn purge_dead(&mut self, before: i64) -> Result<u64, StoreError>;
    /// Checks that the store can take a write now, and says how full it is (cheaply: `/readyz`
    /// calls it, and must not scan the events).
    fn ping(&mut self) -> Result<Room, StoreError>;
}

enum Command {
    Insert(NewEvent, oneshot::Sender<Result<Inserted, StoreError>>),
    Record(
        Vec<(String, Recorded)>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Claim(usize, oneshot::Sender<Result<Vec<DueEvent>, StoreError>>),
    NextDue(oneshot::Sender<Result<Option<i64>, StoreError>>),
    Counts(oneshot::Sender<Result<Counts, StoreError>>),
    Ping(oneshot::Sender<Result<Room, StoreError>>),
    RequeueStale(i64, oneshot::Sender<Result<u64, StoreError>>),
}

/// Most inserts committed together.
const MAX_BATCH: usize = 512;

/// An async handle to a store running on its own thread. Cloning shares the thread.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    clock: Arc<dyn Clock>,
}

impl StoreHandle {
    /// Starts the store thread; `clock` gives every time the store records. Events left in
    /// flight by a previous run become pending.
    pub fn start(
        mut store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<StoreHandle, StoreError> {
        store.recover(clock.now_ms())?;
        let (tx, rx) = mpsc::channel::<Command>();
        let thread_clock = clock.clone();
        std::thread::Builder::new()
            .name("hookflow-store".into())
            .spawn(move || run(store, rx, thread_clock.as_ref()))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        Ok(StoreHandle { tx, clock })
    }

    /// The store clock's time, in milliseconds since the epoch: what every time in the store is
    /// measured against.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Stores one event; returns once it is committed (batched with concurrent inserts).
    pub async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        self.call(|r| Command::Insert(event, r)).await
    }

    /// Records delivery results.
    pub async fn record(&self, results: Vec<(String, Recorded)>) -> Result<(), StoreError> {
        self.call(|r| Command::Record(results, r)).await
    }

    /// Claims due events.
    pub async fn claim_due(&self, limit: usize) -> Result<Vec<DueEvent>, StoreError> {
        self.call(|r| Command::Claim(limit, r)).await
    }

    /// When the next pending event is due.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.call(Command::NextDue).await
    }

    /// Counts by state.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        self.call(Command::Counts).await
    }

    /// Whether the store can take a write now, and how full it is.
    pub async fn ping(&self) -> Result<Room, StoreError> {
        self.call(Command::Ping).await
    }

    /// Returns events in flight for longer than `lease` to pending.
    pub async fn requeue_stale(&self, lease: Duration) -> Result<u64, StoreError> {
        let before = self.now_ms() - lease.as_millis() as i64;
        self.call(|r| Command::RequeueStale(before, r)).await
    }
}

/// The store thread: takes every command waiting, runs all inserts and records in one
/// transaction, then answers.
fn run(mut store: Box<dyn Store>, rx: mpsc::Receiver<Command>, clock: &dyn Clock) {
    while let Ok(first) = rx.recv() {
        let mut commands = vec![first];
        while commands.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => commands.push(c),
                Err(_) => break,
            }
        }
        let mut inserts = Vec::new();
        let mut insert_replies = Vec::new();
        let mut records = Vec::new();
        let mut record_replies = Vec::new();
        let mut others = Vec::new();
        for c in commands {
            match c {
                Command::Insert(e, r) => {
                    inserts.push(e);
                    insert_replies.push(r);
                }
                Command::Record(mut rs, r) => {
                    records.append(&mut rs);
                    record_replies.push(r);
                }
                other => others.push(other),
            }
        }
        if !inserts.is_empty() {
            match store.insert(&inserts, clock.now_ms()) {
                Ok(results) => {
                    for (r, result) in insert_replies.into_iter().zip(results) {
                        let _ = r.send(Ok(result));
                    }
                }
                Err(e) => {
                    for r in insert_replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        }
        if !records.is_empty() {
            let result = store.record(&records, clock.now_ms());
            for r in record_replies {
                let _ = r.send(result.clone());
            }
        }
        for c in others {
            match c {
                Command::Claim(limit, r) => {
                    let _ = r.send(store.claim_due(clock.now_ms(), limit));
                }
                Command::NextDue(r) => {
                    let _ = r.send(store.next_due());
                }
                Command::Counts(r) => {
                    let _ = r.send(store.counts());
                }
                Command::Ping(r) => {
                    let _ = r.send(store.ping());
                }
                Command::RequeueStale(before, r) => {
                    let _ = r.send(store.requeue_stale(before, clock.now_ms()));
                }
                Command::Insert(..) | Command::Record(..) => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every engine must have.
    use super::*;

    pub fn event(id: &str, received_at: i64) -> NewEvent {
        NewEvent {
            id: id.into(),
            received_at,
            source: "compat".into(),
            repo: "octo/hooks".into(),
            token: TokenSource::Inline("ghp_secret".into()),
            event_type: "webhook".into(),
            body: br#"{"event_type":"webhook","client_payload":{}}"#.to_vec(),
            dedupe_key: None,
        }
    }

    pub fn lifecycle(store: &mut dyn Store) {
        store
            .insert(&[event("a", 1), event("b", 2)], 2)
            .expect("insert");
        store
            .insert(
                &[NewEvent {
                    token: TokenSource::Env("TOKEN".into()),
                    ..event("c", 3)
                }],
                3,
            )
            .expect("insert");
        assert_eq!(store.counts().expect("counts").pending, 3);
        assert_eq!(store.next_due().expect("next"), Some(1));

        let due = store.claim_due(10, 2).expect("claim");
        assert_eq!(
            due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"],
            "oldest first"
        );
        assert_eq!(due[0].token, TokenSource::Inline("ghp_secret".into()));
        assert!(
            store
                .claim_due(10, 10)
                .expect("claim")
                .iter()
                .all(|d| d.id == "c"),
            "claimed ones are not handed out twice"
        );
        let c = store.counts().expect("counts");
        assert_eq!((c.pending, c.inflight), (0, 3));

        store
            .record(
                &[
                    ("a".into(), Recorded::Delivered),
                    (
                        "b".into(),
                        Recorded::RetryAt {
                            at: 100,
                            error: "503".into(),
                        },
                    ),
                    (
                        "c".into(),
                        Recorded::Dead {
                            error: "404 not found".into(),
                            status: Some(404),
                        },
                    ),
                ],
                50,
            )
            .expect("record");
        assert!(
            store.claim_due(99, 10).expect("claim").is_empty(),
            "b waits until 100"
        );
        let b = store.claim_due(100, 10).expect("claim");
        assert_eq!((b[0].id.as_str(), b[0].attempts), ("b", 1));

        // In flight since 100: not stale before 100, stale before 150.
        assert_eq!(store.requeue_stale(100, 120).expect("requeue"), 0);
        assert_eq!(store.requeue_stale(150, 150).expect("requeue"), 1);
        assert_eq!(store.claim_due(150, 10).expect("claim").len(), 1);
        // A crash leaves b in flight; recovery makes it pending again.
        assert_eq!(store.recover(200).expect("recover"), 1);
        assert_eq!(store.claim_due(200, 10).expect("claim").len(), 1);

        let dead = store.dead_letters(10).expect("dead");
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                dead[0].id.as_str(),
                dead[0].error.as_str(),
                dead[0].attempts
            ),
            ("c", "404 not found", 1)
        );
        assert_eq!(store.replay_dead(&[], 300).expect("replay"), 1);
        let again = store.claim_due(300, 10).expect("claim");
        assert_eq!(
            again.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        store
            .record(
                &[(
                    "c".into(),
                    Recorded::Dead {
                        error: "x".into(),
                        status: None,
                    },
                )],
                301,
            )
            .expect("record");
        assert_eq!(store.purge_dead(4).expect("purge"), 1);
        assert_eq!(store.counts().expect("counts").dead, 0);
    }

    pub fn dedupe(store: &mut dyn Store) {
        let keyed = |id: &str, key: &str| NewEvent {
            dedupe_key: Some(key.into()),
            ..event(id, 1_000)
        };
        let first = store
            .insert(
                &[keyed("a", "gh:1"), keyed("b", "gh:2"), keyed("c", "gh:1")],
                1_000,
            )
            .expect("insert");
        assert_eq!(
            first,
            [
                Inserted::New,
                Inserted::New,
                Inserted::Duplicate("a".into())
            ],
            "within one batch too"
        );
        let again = store
            .insert(
                &[keyed("d", "gh:2"), keyed("e", "gh:3"), event("f", 1)],
                2_000,
            )
            .expect("insert");
        assert_eq!(
            again,
            [
                Inserted::Duplicate("b".into()),
                Inserted::New,
                Inserted::New
            ]
        );
        assert_eq!(store.counts().expect("counts").pending, 4);

        // A dead letter does not swallow its sender's retry; the retry then counts as the first.
        let due = store.claim_due(i64::MAX, 10).expect("claim");
        assert!(due.iter().any(|d| d.id == "a"));
        let dead: Vec<(String, Recorded)> = due
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    Recorded::Dead {
                        error: "422".into(),
                        status: Some(422),
                    },
                )
            })
            .collect();
        store.record(&dead, 3_000).expect("record");
        let retry = store
            .insert(&[keyed("g", "gh:1"), keyed("h", "gh:1")], 4_000)
            .expect("insert");
        assert_eq!(retry, [Inserted::New, Inserted::Duplicate("g".into())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_protocol::SystemClock;

    #[tokio::test]
    async fn concurrent_inserts_share_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = sqlite::SqliteStore::open(dir.path()).expect("opens");
        let handle = StoreHandle::start(Box::new(store), Arc::new(SystemClock)).expect("starts");
        let mut tasks = Vec::new();
        for i in 0..200 {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.insert(contract::event(&format!("e{i:04}"), i)).await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("insert");
        }
        assert_eq!(handle.counts().await.expect("counts").pending, 200);
    }
}
