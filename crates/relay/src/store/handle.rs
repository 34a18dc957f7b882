use super::contract::Store;
use super::delivery::ClaimRef;
use super::delivery::Claimed;
use super::delivery::Counts;
use super::delivery::DeadLetter;
use super::delivery::PoolStatus;
use super::delivery::Recorded;
use super::delivery::Room;
use super::error::StoreError;
use super::event::Inserted;
use super::event::NewEvent;
use super::log::EventFilter;
use super::log::EventSummary;
use super::log::LogPart;
use super::log::LoggedEvent;
use std::time::Duration;

/// The store a relay was started with, whichever the engine. Cloning shares it.
#[derive(Clone)]
pub enum StoreHandle {
    /// The embedded SQLite store.
    Sqlite(super::sqlite::SqliteHandle),
    /// A shared PostgreSQL database.
    Postgres(super::postgres::PgStore),
}

/// How a store is opened: by the relay that owns it, or by an operator's command beside it.
pub enum Opening {
    /// The relay's own store: SQLite's data directory locked against a second relay, created
    /// or migrated as `migrate` says, capped at `cap` bytes, and deliveries left in flight by
    /// a crash made due again (as of `now_ms`).
    Own {
        /// Create the store or apply migrations when needed.
        migrate: bool,
        /// SQLite's cap on what the store may occupy.
        cap: Option<u64>,
        /// Now, in ms since the epoch.
        now_ms: i64,
    },
    /// A store that exists, opened while its relay may run (SQLite's WAL lets both work;
    /// PostgreSQL is shared anyway): nothing created, migrated or locked.
    Existing,
}

/// An opened store, and the data directory's lock while the relay owns a SQLite store.
pub struct Opened {
    /// The store.
    pub store: StoreHandle,
    /// Held for as long as the relay runs (SQLite only).
    pub lock: Option<std::fs::File>,
    /// Deliveries made due again on opening (SQLite's crash recovery).
    pub recovered: u64,
}

impl StoreHandle {
    /// Opens the store at `postgres` (or, without one, the SQLite store in `data`): the one
    /// place a store is opened, for the relay and for the operator's commands alike.
    pub async fn open(
        postgres: Option<&super::postgres::PgLocation>,
        data: &std::path::Path,
        how: Opening,
        clock: std::sync::Arc<dyn hookflow_protocol::Clock>,
    ) -> Result<Opened, StoreError> {
        use super::sqlite::{SqliteHandle, SqliteStore};
        match (postgres, how) {
            (
                None,
                Opening::Own {
                    migrate,
                    cap,
                    now_ms,
                },
            ) => {
                let lock = super::sqlite::lock_data_dir(data)?;
                let mut sqlite = SqliteStore::open_with(data, cap, migrate)?;
                // This relay holds the lock: whatever is in flight was left by a crash.
                let recovered = sqlite.recover(now_ms)?;
                Ok(Opened {
                    store: StoreHandle::Sqlite(SqliteHandle::start(sqlite, clock)?),
                    lock: Some(lock),
                    recovered,
                })
            }
            (None, Opening::Existing) => {
                let sqlite = SqliteStore::open_existing(data)?;
                Ok(Opened {
                    store: StoreHandle::Sqlite(SqliteHandle::start(sqlite, clock)?),
                    lock: None,
                    recovered: 0,
                })
            }
            (Some(location), how) => {
                let migrate = matches!(how, Opening::Own { migrate: true, .. });
                Ok(Opened {
                    store: StoreHandle::Postgres(
                        super::postgres::PgStore::open(location, migrate).await?,
                    ),
                    lock: None,
                    recovered: 0,
                })
            }
        }
    }
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
