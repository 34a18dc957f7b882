//! The embedded SQLite store: one file, `events.db`, in the data directory, in WAL mode with
//! `synchronous=FULL` so a committed event survives a process crash and a power cut.
//!
//! Delivered events are deleted with their token (their job is done); dead letters keep theirs
//! until they are replayed and delivered, or purged. The file is readable by its owner only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use hookflow_protocol::Clock;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{
    split_replay_ids, ulid_floor, ClaimRef, Claimed, Counts, DeadLetter, DeliveryState,
    DeliveryStatus, Destination, Event, EventFilter, EventSummary, Inserted, LogPart,
    LoggedAttempt, LoggedDelivery, LoggedEvent, NewEvent, Payload, Recorded, Room, SeenKey, Store,
    StoreError, StoredEvent, DEDUPE_WINDOW_MS, MAX_PAGE,
};

/// The schema, one migration per version, each applied once in its own transaction and recorded
/// in `schema_migrations` (and `PRAGMA user_version`). A released migration never changes: a new
/// version gets a new entry.
const MIGRATIONS: [(i64, &str); 8] = [
    (
    1,
    "CREATE TABLE events (
         id TEXT PRIMARY KEY,
         received_at INTEGER NOT NULL,
         source TEXT NOT NULL,
         repo TEXT NOT NULL,
         token TEXT,
         event_type TEXT NOT NULL,
         body BLOB NOT NULL,
         state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'dead')),
         attempts INTEGER NOT NULL DEFAULT 0,
         next_attempt_at INTEGER NOT NULL,
         last_error TEXT,
         last_status INTEGER,
         updated_at INTEGER NOT NULL
     );
     CREATE INDEX events_due ON events (state, next_attempt_at, id);
     CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, at INTEGER NOT NULL);
     CREATE INDEX IF NOT EXISTS seen_at ON seen (at)",
    ),
    // Leases: a claim token checked when a result is recorded, and when the claim runs out.
    (
        2,
        "ALTER TABLE events ADD COLUMN claim TEXT;
         ALTER TABLE events ADD COLUMN lease_until INTEGER",
    ),
    // One event, one delivery per destination (docs/design/store.md), as on PostgreSQL: the
    // event keeps what was received, each delivery its state, attempts, claim and lease.
    (
        3,
        "CREATE TABLE events_v3 (
             id TEXT PRIMARY KEY,
             received_at INTEGER NOT NULL,
             source TEXT NOT NULL,
             event_type TEXT NOT NULL,
             payload BLOB NOT NULL,
             payload_kind TEXT NOT NULL DEFAULT 'dispatch'
         );
         CREATE TABLE deliveries (
             id INTEGER PRIMARY KEY,
             event_id TEXT NOT NULL,
             destination TEXT NOT NULL,
             token TEXT,
             state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'dead')),
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL,
             claim TEXT,
             lease_until INTEGER,
             last_status INTEGER,
             last_error TEXT,
             updated_at INTEGER NOT NULL
         );
         INSERT INTO events_v3 (id, received_at, source, event_type, payload)
             SELECT id, received_at, source, event_type, body FROM events;
         INSERT INTO deliveries (event_id, destination, token, state, attempts, next_at, claim,
                 lease_until, last_status, last_error, updated_at)
             SELECT id, 'repo:' || repo, token, state, attempts, next_attempt_at, claim,
                 lease_until, last_status, last_error, updated_at
             FROM events ORDER BY id;
         DROP TABLE events;
         ALTER TABLE events_v3 RENAME TO events;
         CREATE INDEX deliveries_due ON deliveries (state, next_at, id);
         CREATE INDEX deliveries_event ON deliveries (event_id)",
    ),
    // Destinations (docs/design/store.md): an event keeps the request as received (its exact
    // body in `payload`, `payload_kind = 'request'`), and each destination builds what it sends
    // from it. Rows from before keep their dispatch body (`payload_kind = 'dispatch'`).
    (
        4,
        "ALTER TABLE events ADD COLUMN method TEXT;
         ALTER TABLE events ADD COLUMN path TEXT;
         ALTER TABLE events ADD COLUMN headers TEXT",
    ),
    // Batching (docs/design/store.md): a delivery waiting only for its lane's rate limit
    // (`deferred_for = 'rate'`) may join the lane's next batch before its time; `batch_id`
    // names the batch that last carried it. The lane index serves that look.
    (
        5,
        "ALTER TABLE deliveries ADD COLUMN deferred_for TEXT;
         ALTER TABLE deliveries ADD COLUMN batch_id TEXT;
         CREATE INDEX deliveries_lane ON deliveries (destination, state, id)",
    ),
    // Bodies by reference (docs/design/store.md): a body too large for a dispatch is kept
    // here, apart from its event (which goes once delivered), until `keep_until`.
    (
        6,
        "CREATE TABLE bodies (
             id TEXT PRIMARY KEY,
             bytes BLOB NOT NULL,
             keep_until INTEGER NOT NULL
         );
         CREATE INDEX bodies_keep_until ON bodies (keep_until)",
    ),
    // The event log (docs/design/event-log.md): delivered deliveries stay (`state =
    // 'delivered'`; the table is rebuilt for its CHECK), each try is an attempt row, a replay
    // starts a new `chain`, and events keep the sender's delivery id; indexes for the list's
    // filters.
    (
        7,
        "CREATE TABLE deliveries_v7 (
             id INTEGER PRIMARY KEY,
             event_id TEXT NOT NULL,
             destination TEXT NOT NULL,
             token TEXT,
             state TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead')),
             attempts INTEGER NOT NULL DEFAULT 0,
             next_at INTEGER NOT NULL,
             claim TEXT,
             lease_until INTEGER,
             last_status INTEGER,
             last_error TEXT,
             updated_at INTEGER NOT NULL,
             deferred_for TEXT,
             batch_id TEXT,
             chain INTEGER NOT NULL DEFAULT 0
         );
         INSERT INTO deliveries_v7 (id, event_id, destination, token, state, attempts, next_at,
                 claim, lease_until, last_status, last_error, updated_at, deferred_for, batch_id)
             SELECT id, event_id, destination, token, state, attempts, next_at, claim,
                 lease_until, last_status, last_error, updated_at, deferred_for, batch_id
             FROM deliveries;
         DROP TABLE deliveries;
         ALTER TABLE deliveries_v7 RENAME TO deliveries;
         CREATE INDEX deliveries_due ON deliveries (state, next_at, id);
         CREATE INDEX deliveries_event ON deliveries (event_id);
         CREATE INDEX deliveries_lane ON deliveries (destination, state, id);
         CREATE INDEX deliveries_state_event ON deliveries (state, event_id);
         CREATE INDEX deliveries_destination_event ON deliveries (destination, event_id);
         CREATE TABLE attempts (
             id INTEGER PRIMARY KEY,
             delivery_id INTEGER NOT NULL,
             event_id TEXT NOT NULL,
             chain INTEGER NOT NULL,
             at INTEGER NOT NULL,
             took_ms INTEGER,
             status INTEGER,
             outcome TEXT NOT NULL,
             message TEXT,
             relay TEXT,
             batch_id TEXT
         );
         CREATE INDEX attempts_event ON attempts (event_id);
         ALTER TABLE events ADD COLUMN delivery_key TEXT;
         ALTER TABLE events ADD COLUMN body_pruned INTEGER NOT NULL DEFAULT 0;
         CREATE INDEX events_source ON events (source, id);
         CREATE INDEX events_delivery_key ON events (delivery_key) WHERE delivery_key IS NOT NULL",
    ),
    // `retention.bodies` (docs/design/event-log.md): the events that still have their body, in
    // id order, so emptying old bodies never walks those already emptied.
    (
        8,
        "CREATE INDEX events_body_kept ON events (id) WHERE body_pruned = 0",
    ),
];

/// The schema version this hookflow writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies the migrations after `version`, and records the ones a store made before
/// `schema_migrations` existed already has.
fn migrate_schema(conn: &Connection, version: i64, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);",
    )?;
    for v in 1..=version {
        conn.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![v, now_ms],
        )?;
    }
    if version >= 1 {
        // Stores of schema 1 made before de-duplication keys existed.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS seen_at ON seen (at);",
        )?;
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql}; INSERT INTO schema_migrations (version, applied_at) VALUES ({v}, {now_ms}); PRAGMA user_version = {v}; COMMIT;"
        ))?;
    }
    Ok(())
}

/// The schema version of the store in `dir` (0 when there is none yet), without changing it.
pub fn schema_version(dir: &Path) -> Result<i64, StoreError> {
    let path = dir.join(DB_FILE);
    if !path.exists() {
        return Ok(0);
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| unavailable(&path, e))?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| unavailable(&path, e))
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Takes the data directory's lock file (`relay.lock`), so two relays never deliver from one
/// store and nothing moves the store while a relay runs on it. Held while the file is open.
pub fn lock_data_dir(dir: &Path) -> Result<std::fs::File, StoreError> {
    prepare_data_dir(dir)?;
    let path = dir.join("relay.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| unavailable(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(unavailable(&path, format!("cannot lock: {e}")))
        }
    }
}

/// Makes the data directory private when the relay creates it (tokens sent with requests wait
/// there), and refuses one that every user may write to. A folder that already exists keeps its
/// permissions: pointing `--data` at a shared folder must not lock its other users out.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir)
                .map_err(|e| unavailable(dir, e))?
                .permissions()
                .mode();
            if mode & 0o002 != 0 {
                return Err(unavailable(
                    dir,
                    format!("the data directory is writable by every user (mode {:o}); give the relay a folder of its own (a new --data, or chmod o-w)", mode & 0o7777),
                ));
            }
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| unavailable(dir, format!("cannot create the data directory: {e}")))
}

/// The store's file name in the data directory.
pub const DB_FILE: &str = "events.db";

/// The SQLite store.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    last_prune: i64,
    last_reap: i64,
    page_size: i64,
    /// New events are refused at this many pages in use.
    cap_pages: Option<i64>,
}

/// How often (ms) a claim also frees deliveries whose lease ran out.
const REAP_EVERY_MS: i64 = 250;

/// Room kept above the cap for what must go on when the store is full: recording delivery
/// results, dead letters, recovery at start-up (an eighth of the cap, at least 64 KiB).
fn reserve_bytes(cap: u64) -> u64 {
    (cap / 8).max(64 * 1024)
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`. Refuses a file that is not a hookflow
    /// store or is corrupt, and never truncates it.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with_limit(dir, None)
    }

    /// Like [`SqliteStore::open`], with a cap on the database size: past it, inserts fail (the
    /// relay answers 503) instead of filling the disk.
    pub fn open_with_limit(dir: &Path, max_bytes: Option<u64>) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, max_bytes, true)
    }

    /// Opens the store of a relay that may be running, without migrating it: an older schema is
    /// refused with what to run, so a newer command never changes a store under an older relay.
    pub fn open_existing(dir: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_with(dir, None, false)
    }

    /// Opens the store with a size cap; `migrate` applies pending schema migrations, else an
    /// older schema is refused.
    pub fn open_with(
        dir: &Path,
        max_bytes: Option<u64>,
        migrate: bool,
    ) -> Result<SqliteStore, StoreError> {
        prepare_data_dir(dir)?;
        let path = dir.join(DB_FILE);
        if !migrate && !path.exists() {
            // Opening would create the file: that is a migration (from nothing) too.
            return Err(unavailable(
                &path,
                format!("there is no store yet and this hookflow needs schema {SCHEMA_VERSION}; run `hookflow relay migrate` (or start the relay without --no-migrate)"),
            ));
        }
        let conn = Connection::open(&path).map_err(|e| unavailable(&path, e))?;
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(fail)?;
        // Reading the header first tells a corrupt or foreign file apart before anything is written.
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| unavailable(&path, format!("not a readable SQLite database ({e}); move it aside or restore it, it was left untouched")))?;
        if check != "ok" {
            return Err(unavailable(
                &path,
                format!("the database is damaged ({check}); it was left untouched"),
            ));
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unavailable(
                &path,
                format!("cannot switch to WAL mode (got {mode})"),
            ));
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
            .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        let has_migrations: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='schema_migrations'",
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if version == 0 && tables > 0 && !has_migrations {
            return Err(unavailable(
                &path,
                "this database was not made by hookflow; it was left untouched",
            ));
        }
        if version > SCHEMA_VERSION {
            return Err(unavailable(
                &path,
                format!("made by a newer hookflow (schema {version}, this one knows {SCHEMA_VERSION}); upgrade hookflow"),
            ));
        }
        if version < SCHEMA_VERSION && !migrate {
            return Err(unavailable(
                &path,
                format!("the store's schema is {version} and this hookflow needs {SCHEMA_VERSION}; run `hookflow relay migrate` (or start the relay without --no-migrate)"),
            ));
        }
        migrate_schema(&conn, version, now_unix_ms()).map_err(fail)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(fail)?;
        let page_size = page_size.max(512);
        let cap_pages = max_bytes.map(|max| (max as i64 / page_size).max(1));
        if let Some(max) = max_bytes {
            // The hard ceiling is the cap plus a reserve: inserts stop at the cap, and what
            // must still happen on a full store (results, recovery) has room above it.
            let ceiling = ((max + reserve_bytes(max)) as i64 / page_size).max(2);
            conn.query_row(
                &format!("PRAGMA max_page_count = {ceiling}"),
                [],
                |_| Ok(()),
            )
            .map_err(fail)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(SqliteStore {
            conn,
            path,
            last_prune: 0,
            last_reap: i64::MIN,
            page_size,
            cap_pages,
        })
    }

    fn fail(&self, e: rusqlite::Error) -> StoreError {
        unavailable(&self.path, e)
    }

    /// How much of the cap the data takes.
    fn room(&self) -> Result<Room, StoreError> {
        Ok(Room {
            bytes_used: (self.used_pages()? * self.page_size) as u64,
            bytes_cap: self.cap_pages.map(|p| (p * self.page_size) as u64),
        })
    }

    /// Pages holding data (the file's pages less the free ones deleted rows left).
    fn used_pages(&self) -> Result<i64, StoreError> {
        let used: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT page_count FROM pragma_page_count()) - (SELECT freelist_count FROM pragma_freelist_count())",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.fail(e))?;
        Ok(used.max(0))
    }
}

/// The engine itself: synchronous, one connection, used from one thread ([`SqliteHandle`]) or
/// by a command that reads the store directly. Times are milliseconds since the epoch.
impl SqliteStore {
    /// Stores events in one transaction; all or none (see [`Store::insert`]).
    pub fn insert(&mut self, events: &[NewEvent], now: i64) -> Result<Vec<Inserted>, StoreError> {
        if let Some(cap) = self.cap_pages {
            let used = self.make_room(cap, now)?;
            if used >= cap {
                return Err(StoreError::Full {
                    used: (used * self.page_size) as u64,
                    cap: (cap * self.page_size) as u64,
                });
            }
        }
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let prune = now - self.last_prune > 600_000;
        let tx = self.conn.transaction().map_err(fail)?;
        let mut results = Vec::with_capacity(events.len());
        {
            if prune {
                tx.execute(
                    "DELETE FROM seen WHERE at < ?1",
                    params![now - DEDUPE_WINDOW_MS],
                )
                .map_err(fail)?;
            }
            let mut remember = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen (key, event_id, at) VALUES (?1, ?2, ?3)",
                )
                .map_err(fail)?;
            // The first event of a key, and whether it failed for good: a dead letter's
            // redelivery (how senders retry) is a new event, not a repeat.
            let mut first = tx
                .prepare_cached(
                    "SELECT s.event_id,
                         EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = s.event_id)
                         AND NOT EXISTS (SELECT 1 FROM deliveries d
                                         WHERE d.event_id = s.event_id AND d.state <> 'dead')
                     FROM seen s WHERE s.key = ?1",
                )
                .map_err(fail)?;
            let mut take_over = tx
                .prepare_cached("UPDATE seen SET event_id = ?2, at = ?3 WHERE key = ?1")
                .map_err(fail)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (id, received_at, source, event_type, payload,
                         payload_kind, method, path, headers, delivery_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(fail)?;
            let mut delivery = tx
                .prepare_cached(
                    "INSERT INTO deliveries (event_id, destination, token, state, next_at, updated_at)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                )
                .map_err(fail)?;
            for NewEvent {
                event: e,
                destinations,
                dedupe_key,
            } in events
            {
                if let Some(key) = dedupe_key {
                    if remember
                        .execute(params![key, e.id, e.received_at])
                        .map_err(fail)?
                        == 0
                    {
                        let (id, dead): (String, Option<bool>) = first
                            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                            .map_err(fail)?;
                        if dead == Some(true) {
                            take_over
                                .execute(params![key, e.id, e.received_at])
                                .map_err(fail)?;
                        } else {
                            results.push(Inserted::Duplicate(id));
                            continue;
                        }
                    }
                }
                let (kind, bytes, method, request_path, headers) = e.payload.columns();
                stmt.execute(params![
                    e.id,
                    e.received_at,
                    e.source,
                    e.event_type,
                    bytes,
                    kind,
                    method,
                    request_path,
                    headers,
                    dedupe_key.as_deref().and_then(super::sender_delivery_id)
                ])
                .map_err(fail)?;
                for d in destinations {
                    delivery
                        .execute(params![e.id, d.key(), d.token_column(), e.received_at])
                        .map_err(fail)?;
                }
                results.push(Inserted::New);
            }
        }
        tx.commit().map_err(fail)?;
        if prune {
            self.last_prune = now;
        }
        Ok(results)
    }

    /// Claims up to `limit` due events, leased until `now + lease_ms` (see [`Store::claim`]).
    pub fn claim(
        &mut self,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let reap = now.saturating_sub(self.last_reap) >= REAP_EVERY_MS || now < self.last_reap;
        let tx = self.conn.transaction().map_err(fail)?;
        if reap {
            // Leases that ran out: the delivery is due again, and its old claim is void. Now
            // and then, not at every claim.
            tx.prepare_cached(
                "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = min(next_at, ?1)
                 WHERE state = 'inflight' AND lease_until < ?1",
            )
            .and_then(|mut s| s.execute(params![now]))
            .map_err(fail)?;
        }
        let due = claim_rows(
            &tx,
            &format!(
                "{CLAIM_SELECT} WHERE d.state = 'pending' AND d.next_at <= ?1
                 ORDER BY d.next_at, d.id LIMIT ?2"
            ),
            params![now, limit as i64],
        )
        .map_err(fail)?;
        mark_claimed(&tx, &due, None, now, lease_ms).map_err(fail)?;
        tx.commit().map_err(fail)?;
        if reap {
            self.last_reap = now;
        }
        Ok(due)
    }

    /// Claims more of a batch's lane (see [`Store::claim_lane`]).
    pub fn claim_lane(
        &mut self,
        now: i64,
        leader: &Claimed,
        members: &[ClaimRef],
        batch_id: &str,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let more = if limit == 0 {
            Vec::new()
        } else {
            claim_rows(
                &tx,
                &format!(
                    "{CLAIM_SELECT} WHERE d.destination = ?1 AND d.token IS ?2 AND e.source = ?3
                     AND d.state = 'pending' AND (d.next_at <= ?4 OR d.deferred_for = 'rate')
                     ORDER BY d.id LIMIT ?5"
                ),
                params![
                    leader.destination.key(),
                    leader.destination.token_column(),
                    leader.event.source,
                    now,
                    limit as i64
                ],
            )
            .map_err(fail)?
        };
        mark_claimed(&tx, &more, Some(batch_id), now, lease_ms).map_err(fail)?;
        {
            let mut name = tx
                .prepare_cached(
                    "UPDATE deliveries SET batch_id = ?3 WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                )
                .map_err(fail)?;
            for m in members {
                name.execute(params![m.id, m.claim, batch_id])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(more)
    }

    /// Records results in one transaction; those whose claim is not current change nothing.
    /// Returns, for each result, whether it was recorded.
    pub fn record(
        &mut self,
        results: &[(ClaimRef, Recorded)],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let at = |d: &Duration| now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut recorded = Vec::with_capacity(results.len());
        for (c, result) in results {
            // A reference that names no delivery is not recorded.
            let Ok(id) = c.id.parse::<i64>() else {
                recorded.push(false);
                continue;
            };
            let changed = match result {
                // Kept, as the event log's record of it; a token that came with the request
                // is not kept past its use.
                Recorded::Delivered { tried } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'delivered', claim = NULL, attempts = attempts + 1,
                         last_status = ?3, last_error = NULL, updated_at = ?4, deferred_for = NULL,
                         token = CASE WHEN token LIKE 'inline:%' THEN 'inline:' ELSE token END
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        let status = tried.as_ref().and_then(|t| t.status).map(i64::from);
                        s.execute(params![id, c.claim, status, now])
                    }),
                Recorded::RetryAfter { delay, error, .. } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', claim = NULL, attempts = attempts + 1, next_at = ?3,
                         last_error = ?4, updated_at = ?5, deferred_for = NULL
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| s.execute(params![id, c.claim, at(delay), error, now])),
                Recorded::Defer { delay } | Recorded::RateLimited { delay } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = ?3, updated_at = ?4,
                             deferred_for = ?5
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        let rate = matches!(result, Recorded::RateLimited { .. }).then_some("rate");
                        s.execute(params![id, c.claim, at(delay), now, rate])
                    }),
                // The token stays, so the letter can be replayed; purging deletes it.
                Recorded::Dead { error, status, .. } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'dead', claim = NULL, attempts = attempts + 1, last_error = ?3,
                         last_status = ?4, updated_at = ?5, deferred_for = NULL
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, c.claim, error, status.map(i64::from), now])
                    }),
            }
            .and_then(|changed| {
                // The try itself, in the same transaction: the log never disagrees with the state.
                if let (1.., Some(t)) = (changed, result.tried()) {
                    let message = match result {
                        Recorded::RetryAfter { error, .. } | Recorded::Dead { error, .. } => {
                            Some(error.as_str())
                        }
                        _ => None,
                    };
                    tx.prepare_cached(
                        "INSERT INTO attempts (delivery_id, event_id, chain, at, took_ms, status,
                             outcome, message, batch_id)
                         SELECT id, event_id, chain, ?2, ?3, ?4, ?5, ?6, ?7 FROM deliveries WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        now - t.took.as_millis() as i64,
                        t.took.as_millis().min(i64::MAX as u128) as i64,
                        t.status.map(i64::from),
                        super::attempt_outcome(result),
                        message,
                        t.batch_id
                    ])?;
                }
                Ok(changed)
            })
            .map_err(fail)?;
            recorded.push(changed > 0);
        }
        tx.commit().map_err(fail)?;
        Ok(recorded)
    }

    /// Returns events left in flight by a crash to pending; returns how many. Only for the one
    /// relay that holds the data directory's lock: on a shared store it would take others' work.
    pub fn recover(&mut self, now: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = min(next_at, ?1), updated_at = ?1 WHERE state = 'inflight'",
                params![now],
            )
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }

    /// When the next pending event is due (ms), if any.
    pub fn next_due(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_at) FROM deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.fail(e))
    }

    /// Counts by state.
    pub fn counts(&mut self) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.state, count(*), min(e.received_at)
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state IN ('pending', 'inflight', 'dead') GROUP BY d.state",
            )
            .map_err(|e| unavailable(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| unavailable(&self.path, e))?;
        for row in rows {
            let (state, n, oldest) = row.map_err(|e| unavailable(&self.path, e))?;
            match state.as_str() {
                "pending" => {
                    c.pending = n as u64;
                    c.oldest_pending = oldest;
                }
                "inflight" => c.inflight = n as u64,
                _ => c.dead = n as u64,
            }
        }
        c.room = self.room()?;
        Ok(c)
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&mut self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, e.id, d.destination, e.source, e.event_type, d.attempts,
                        coalesce(d.last_error, ''), e.received_at
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state = 'dead' ORDER BY e.received_at, e.id, d.id LIMIT ?1",
            )
            .map_err(|e| unavailable(&self.path, e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(DeadLetter {
                    id: r.get::<_, i64>(0)?.to_string(),
                    event_id: r.get(1)?,
                    destination: r.get(2)?,
                    source: r.get(3)?,
                    event_type: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                    error: r.get(6)?,
                    received_at: r.get(7)?,
                })
            })
            .map_err(|e| unavailable(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| unavailable(&self.path, e))
    }

    /// Up to `limit` waiting events (some delivery pending, in flight or dead) with ids after
    /// `after`, in id order, each whole with its deliveries: a page of a move to another store.
    /// In flight counts as pending: the relay that held this store is stopped, so no delivery
    /// is running.
    pub fn export_events(
        &mut self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, e.received_at, e.source, e.event_type, e.payload, e.payload_kind,
                        e.method, e.path, e.headers,
                        d.destination, d.token, d.state, d.attempts, d.next_at, d.last_error,
                        d.last_status
                 FROM (SELECT * FROM events WHERE id > ?1
                       AND EXISTS (SELECT 1 FROM deliveries w
                                   WHERE w.event_id = events.id AND w.state <> 'delivered')
                       ORDER BY id LIMIT ?2) e
                 JOIN deliveries d ON d.event_id = e.id AND d.state <> 'delivered'
                 ORDER BY e.id, d.id",
            )
            .map_err(fail)?;
        let mut rows = stmt.query(params![after, limit as i64]).map_err(fail)?;
        let mut out: Vec<StoredEvent> = Vec::new();
        while let Some(r) = rows.next().map_err(fail)? {
            let id: String = r.get(0).map_err(fail)?;
            if out.last().map(|s| &s.event.event.id) != Some(&id) {
                out.push(StoredEvent {
                    event: NewEvent {
                        event: event_at(r, 0).map_err(fail)?,
                        destinations: Vec::new(),
                        dedupe_key: None,
                    },
                    deliveries: Vec::new(),
                });
            }
            let Some(last) = out.last_mut() else { break };
            last.event.destinations.push(Destination::from_columns(
                &r.get::<_, String>(9).map_err(fail)?,
                r.get::<_, Option<String>>(10).map_err(fail)?.as_deref(),
            ));
            last.deliveries.push(DeliveryState {
                dead: r.get::<_, String>(11).map_err(fail)? == "dead",
                attempts: r.get::<_, i64>(12).map_err(fail)?.clamp(0, u32::MAX.into()) as u32,
                next_attempt_at: r.get(13).map_err(fail)?,
                last_error: r.get(14).map_err(fail)?,
                last_status: r
                    .get::<_, Option<i64>>(15)
                    .map_err(fail)?
                    .and_then(|s| u16::try_from(s).ok()),
            });
        }
        Ok(out)
    }

    /// The de-duplication keys remembered since `since` (milliseconds since the epoch).
    pub fn export_seen(&mut self, since: i64) -> Result<Vec<SeenKey>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, event_id, at FROM seen WHERE at >= ?1 ORDER BY at")
            .map_err(fail)?;
        let rows = stmt
            .query_map(params![since], |r| {
                Ok(SeenKey {
                    key: r.get(0)?,
                    event_id: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)
    }

    /// Closes the store after writing everything into the main file (no `-wal` left beside
    /// it), so the file can be moved.
    pub fn close(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| unavailable(&self.path, e))?;
        self.conn
            .close()
            .map_err(|(_, e)| unavailable(&self.path, e))
    }

    /// Makes dead letters pending again: by delivery or event id, all when `ids` is empty
    /// (see [`Store::replay_dead`]); returns how many.
    pub fn replay_dead(&mut self, ids: &[String], now: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, chain = chain + 1, next_at = ?1, updated_at = ?1 WHERE state = 'dead'";
        if ids.is_empty() {
            return self
                .conn
                .execute(sql, params![now])
                .map(|n| n as u64)
                .map_err(fail);
        }
        let (deliveries, events) = split_replay_ids(ids);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        for id in deliveries {
            n += tx
                .execute(&format!("{sql} AND id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        for id in events {
            n += tx
                .execute(&format!("{sql} AND event_id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }

    /// Checks that a write can start now, and how full the store is.
    pub fn ping(&mut self) -> Result<Room, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| self.fail(e))?;
        if let Some(cap) = self.cap_pages {
            self.make_room(cap, now_unix_ms())?;
        }
        self.room()
    }

    /// The pages in use; at the cap, the oldest finished events of the event log go first,
    /// whatever their age (new events matter more than old log lines), until the store is
    /// under its cap or none is left.
    fn make_room(&mut self, cap: i64, now: i64) -> Result<i64, StoreError> {
        let mut used = self.used_pages()?;
        let before = ulid_floor(now);
        while used >= cap {
            let pruned =
                self.prune_bodies(now, 64)? + self.prune_events(LogPart::Events, &before, 64)?;
            if pruned == 0 {
                break;
            }
            tracing::warn!(
                events = pruned,
                "the store is at its size cap: the oldest delivered events left the event log early"
            );
            used = self.used_pages()?;
        }
        Ok(used)
    }

    /// Keeps a body until `keep_until` (see [`Store::keep_body`]).
    pub fn keep_body(&mut self, id: &str, bytes: &[u8], keep_until: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO bodies (id, bytes, keep_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET keep_until = max(keep_until, excluded.keep_until)",
                params![id, bytes, keep_until],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// A kept body whose time is not over at `now` (see [`Store::body`]).
    pub fn body(&mut self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT bytes FROM bodies WHERE id = ?1 AND keep_until > ?2",
                params![id, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Deletes up to `limit` bodies whose time is over at `now`.
    pub fn prune_bodies(&mut self, now: i64, limit: usize) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute(
                // Past their time; or kept for an event whose every delivery is dead (no run
                // will fetch it, and a replay keeps it again): a stranger's junk cannot hold
                // the store for a week.
                "DELETE FROM bodies WHERE id IN
                     (SELECT b.id FROM bodies b
                      WHERE b.keep_until <= ?1
                         OR (EXISTS (SELECT 1 FROM deliveries d
                                     WHERE d.event_id = substr(b.id, 1, 26))
                             AND NOT EXISTS (SELECT 1 FROM deliveries d
                                             WHERE d.event_id = substr(b.id, 1, 26)
                                               AND d.state <> 'dead'))
                      ORDER BY b.keep_until LIMIT ?2)",
                params![now, limit as i64],
            )
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }

    /// Deletes dead letters received before `before` (ms), and their events once they have no
    /// other delivery; returns how many letters.
    pub fn purge_dead(&mut self, before: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let letters: Vec<(i64, String)> = tx
            .prepare(
                "DELETE FROM deliveries WHERE state = 'dead'
                 AND event_id IN (SELECT id FROM events WHERE received_at < ?1)
                 RETURNING id, event_id",
            )
            .and_then(|mut s| {
                s.query_map(params![before], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(fail)?;
        for (delivery, event) in &letters {
            tx.execute(
                "DELETE FROM attempts WHERE delivery_id = ?1",
                params![delivery],
            )
            .map_err(fail)?;
            tx.execute(
                "DELETE FROM events WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ?1)",
                params![event],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(letters.len() as u64)
    }

    /// Deletes up to `limit` events with ids before `before` (received before its time) whose
    /// deliveries are all delivered, with their deliveries and attempts: the event log's
    /// retention. Dead letters stay until replayed or purged. Returns how many events.
    pub fn prune_events(
        &mut self,
        part: LogPart,
        before: &str,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        if part == LogPart::Bodies {
            // Through the partial index of events that still have their body.
            return self
                .conn
                .prepare_cached(
                    "UPDATE events SET payload = x'', body_pruned = 1 WHERE id IN
                         (SELECT e.id FROM events e WHERE e.body_pruned = 0 AND e.id < ?1
                          AND NOT EXISTS (SELECT 1 FROM deliveries d
                                          WHERE d.event_id = e.id AND d.state <> 'delivered')
                          ORDER BY e.id LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![before, limit as i64]))
                .map(|n| n as u64)
                .map_err(fail);
        }
        let tx = self.conn.transaction().map_err(fail)?;
        let ids: Vec<String> = tx
            .prepare_cached(
                "SELECT e.id FROM events e WHERE e.id < ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d
                                 WHERE d.event_id = e.id AND d.state <> 'delivered')
                 ORDER BY e.id LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![before, limit as i64], |r| r.get(0))?
                    .collect()
            })
            .map_err(fail)?;
        for id in &ids {
            for sql in [
                "DELETE FROM attempts WHERE event_id = ?1",
                "DELETE FROM deliveries WHERE event_id = ?1",
                "DELETE FROM events WHERE id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute(params![id]))
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(ids.len() as u64)
    }
}

/// The event log (docs/design/event-log.md): lists, one event whole, replays.
impl SqliteStore {
    /// The newest events that pass `filter` (see [`Store::list_events`]). A filter on the
    /// deliveries (status, destination) reads them through their index in event order; any
    /// other reads the events by id, newest first; either stops at `limit` events.
    pub fn list_events(
        &mut self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let limit = limit.clamp(1, MAX_PAGE);
        let by_delivery = filter.status.is_some() || filter.destination.is_some();
        let id = if by_delivery { "d.event_id" } else { "e.id" };
        let f = super::filter_sql(filter, id, |n| format!("?{n}"), "instr");
        let conds: Vec<String> = f.events.iter().chain(&f.deliveries).cloned().collect();
        let filters = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let from = if by_delivery {
            "deliveries d JOIN events e ON e.id = d.event_id"
        } else {
            "events e"
        };
        let sql = format!(
            "SELECT e.id, e.received_at, e.source, e.event_type, coalesce(e.method, ''),
                    coalesce(e.path, ''), e.delivery_key
             FROM {from} {filters} ORDER BY {id} DESC"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(fail)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(&f.params))
            .map_err(fail)?;
        let mut out: Vec<EventSummary> = Vec::new();
        // Rows come in event order: an event with several matching deliveries repeats.
        while let Some(r) = rows.next().map_err(fail)? {
            let id: String = r.get(0).map_err(fail)?;
            if out.last().is_some_and(|e| e.id == id) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(EventSummary {
                id,
                received_at: r.get(1).map_err(fail)?,
                source: r.get(2).map_err(fail)?,
                event_type: r.get(3).map_err(fail)?,
                method: r.get(4).map_err(fail)?,
                path: r.get(5).map_err(fail)?,
                delivery_key: r.get(6).map_err(fail)?,
                deliveries: Vec::new(),
            });
        }
        drop(rows);
        drop(stmt);
        for e in &mut out {
            e.deliveries = self.deliveries_of(&e.id)?;
        }
        Ok(out)
    }

    /// The deliveries of an event, in the order they were made (without their attempts).
    fn deliveries_of(&mut self, event_id: &str) -> Result<Vec<LoggedDelivery>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, destination, state, attempts, chain, last_status, last_error,
                        CASE WHEN state = 'pending' THEN next_at ELSE updated_at END
                 FROM deliveries WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(fail)?;
        let rows = stmt
            .query_map(params![event_id], |r| {
                Ok(LoggedDelivery {
                    id: r.get::<_, i64>(0)?.to_string(),
                    destination: r.get(1)?,
                    status: DeliveryStatus::parse(&r.get::<_, String>(2)?)
                        .unwrap_or(DeliveryStatus::Pending),
                    attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX.into()) as u32,
                    chain: r.get::<_, i64>(4)?.clamp(0, u32::MAX.into()) as u32,
                    last_status: r
                        .get::<_, Option<i64>>(5)?
                        .and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(6)?,
                    next_at: r.get(7)?,
                    tries: Vec::new(),
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)
    }

    /// One event of the log, whole (see [`Store::logged_event`]).
    pub fn logged_event(&mut self, id: &str) -> Result<Option<LoggedEvent>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let found = self
            .conn
            .query_row(
                "SELECT id, received_at, source, event_type, payload, payload_kind, method, path,
                        headers, delivery_key, body_pruned
                 FROM events WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        event_at(r, 0)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, bool>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(fail)?;
        let Some((event, delivery_key, body_pruned)) = found else {
            return Ok(None);
        };
        let mut deliveries = self.deliveries_of(id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT delivery_id, chain, at, took_ms, status, outcome, message, relay, batch_id
                 FROM attempts WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(fail)?;
        let tries = stmt
            .query_map(params![id], |r| {
                Ok((
                    r.get::<_, i64>(0)?.to_string(),
                    LoggedAttempt {
                        chain: r.get::<_, i64>(1)?.clamp(0, u32::MAX.into()) as u32,
                        at: r.get(2)?,
                        took_ms: r
                            .get::<_, Option<i64>>(3)?
                            .map(|t| t.clamp(0, u32::MAX.into()) as u32),
                        status: r
                            .get::<_, Option<i64>>(4)?
                            .and_then(|s| u16::try_from(s).ok()),
                        outcome: r.get(5)?,
                        message: r.get(6)?,
                        relay: r.get(7)?,
                        batch_id: r.get(8)?,
                    },
                ))
            })
            .map_err(fail)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        for (delivery, attempt) in tries {
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery) {
                d.tries.push(attempt);
            }
        }
        Ok(Some(super::logged(
            event,
            delivery_key,
            body_pruned,
            deliveries,
        )))
    }

    /// Replays delivered and dead deliveries as new attempt chains (see [`Store::replay`]).
    pub fn replay(
        &mut self,
        ids: &[String],
        filter: &EventFilter,
        limit: usize,
        now: i64,
    ) -> Result<u64, StoreError> {
        let listed: Vec<String> = if ids.is_empty() {
            self.list_events(filter, limit)?
                .into_iter()
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, chain = chain + 1,
                       next_at = ?1, updated_at = ?1, claim = NULL, deferred_for = NULL
                   WHERE state IN ('delivered', 'dead')
                     AND NOT EXISTS (SELECT 1 FROM events e
                                     WHERE e.id = deliveries.event_id AND e.body_pruned = 1)";
        let (by_delivery, by_event) = split_replay_ids(ids);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        for id in by_delivery {
            n += tx
                .execute(&format!("{sql} AND id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        for id in by_event.iter().chain(&listed) {
            n += tx
                .execute(&format!("{sql} AND event_id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }
}

/// The event in a row's columns from `at`: id, received_at, source, event_type, payload,
/// payload_kind, method, path, headers.
fn event_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(at)?,
        received_at: r.get(at + 1)?,
        source: r.get(at + 2)?,
        event_type: r.get(at + 3)?,
        payload: Payload::from_columns(
            &r.get::<_, String>(at + 5)?,
            r.get(at + 4)?,
            r.get(at + 6)?,
            r.get(at + 7)?,
            r.get::<_, Option<String>>(at + 8)?.as_deref(),
        ),
    })
}

enum Command {
    Insert(Box<NewEvent>, oneshot::Sender<Result<Inserted, StoreError>>),
    Record(
        Vec<(ClaimRef, Recorded)>,
        oneshot::Sender<Result<usize, StoreError>>,
    ),
    Claim(
        usize,
        Duration,
        oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
    ),
    ClaimLane(Box<LaneClaim>),
    NextDue(oneshot::Sender<Result<Option<Duration>, StoreError>>),
    Counts(oneshot::Sender<Result<Counts, StoreError>>),
    Ping(oneshot::Sender<Result<Room, StoreError>>),
    DeadLetters(usize, oneshot::Sender<Result<Vec<DeadLetter>, StoreError>>),
    ReplayDead(Vec<String>, oneshot::Sender<Result<u64, StoreError>>),
    PurgeDead(Duration, oneshot::Sender<Result<u64, StoreError>>),
    KeepBody(
        String,
        Vec<u8>,
        i64,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    Body(String, oneshot::Sender<Result<Option<Vec<u8>>, StoreError>>),
    PruneBodies(usize, oneshot::Sender<Result<u64, StoreError>>),
    PruneEvents(
        LogPart,
        Duration,
        usize,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
    ListEvents(
        Box<EventFilter>,
        usize,
        oneshot::Sender<Result<Vec<EventSummary>, StoreError>>,
    ),
    LoggedEvent(
        String,
        oneshot::Sender<Result<Option<LoggedEvent>, StoreError>>,
    ),
    Replay(
        Vec<String>,
        Box<EventFilter>,
        usize,
        oneshot::Sender<Result<u64, StoreError>>,
    ),
}

/// What [`Store::claim_lane`] was asked.
struct LaneClaim {
    leader: Claimed,
    members: Vec<ClaimRef>,
    batch_id: String,
    limit: usize,
    lease: Duration,
    reply: oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
}

/// Most inserts committed together.
const MAX_BATCH: usize = 512;

/// The columns a claim reads: the delivery, then its event from column 4 on ([`event_at`]).
const CLAIM_SELECT: &str = "SELECT d.id, d.destination, d.token, d.attempts, e.id, e.received_at,
        e.source, e.event_type, e.payload, e.payload_kind, e.method, e.path, e.headers
    FROM deliveries d JOIN events e ON e.id = d.event_id";

/// The deliveries a [`CLAIM_SELECT`] query finds, each with a new claim token; the deliveries
/// of one event share it.
fn claim_rows(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Claimed>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut events: HashMap<String, Arc<Event>> = HashMap::new();
    let mut rows = stmt.query(params)?;
    let mut due = Vec::new();
    while let Some(r) = rows.next()? {
        let event_id: String = r.get(4)?;
        let event = match events.get(&event_id) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(event_at(r, 4)?);
                events.insert(event_id, e.clone());
                e
            }
        };
        due.push(Claimed {
            id: r.get::<_, i64>(0)?.to_string(),
            destination: Destination::from_columns(
                &r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.as_deref(),
            ),
            attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX.into()) as u32,
            event,
            claim: ulid::Ulid::generate().to_string(),
        });
    }
    Ok(due)
}

/// Marks claimed deliveries in flight under their claim tokens until `now + lease_ms`, naming
/// their batch when they have one.
fn mark_claimed(
    tx: &rusqlite::Transaction<'_>,
    claimed: &[Claimed],
    batch_id: Option<&str>,
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<()> {
    let mut mark = tx.prepare_cached(
        "UPDATE deliveries SET state = 'inflight', claim = ?2, lease_until = ?3, updated_at = ?4,
             batch_id = coalesce(?5, batch_id)
         WHERE id = ?1",
    )?;
    for d in claimed {
        mark.execute(params![
            d.id,
            d.claim,
            now.saturating_add(lease_ms),
            now,
            batch_id
        ])?;
    }
    Ok(())
}

/// The SQLite store as a [`Store`]: the connection lives on a thread of its own, which takes
/// every command waiting and runs all inserts (and all results) in one transaction, so a burst
/// of requests pays one commit. Cloning shares the thread.
#[derive(Clone)]
pub struct SqliteHandle {
    tx: mpsc::Sender<Command>,
}

impl SqliteHandle {
    /// Starts the store thread; `clock` gives every time the store records.
    pub fn start(store: SqliteStore, clock: Arc<dyn Clock>) -> Result<SqliteHandle, StoreError> {
        let (tx, rx) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name("hookflow-store".into())
            .spawn(move || run(store, rx, clock.as_ref()))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store thread: {e}")))?;
        Ok(SqliteHandle { tx })
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }
}

impl Store for SqliteHandle {
    async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        self.call(|r| Command::Insert(Box::new(event), r)).await
    }
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        self.call(|r| Command::Claim(limit, lease, r)).await
    }
    async fn record(&self, results: Vec<(ClaimRef, Recorded)>) -> Result<usize, StoreError> {
        self.call(|r| Command::Record(results, r)).await
    }
    async fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let leader = leader.clone();
        self.call(|reply| {
            Command::ClaimLane(Box::new(LaneClaim {
                leader,
                members,
                batch_id,
                limit,
                lease,
                reply,
            }))
        })
        .await
    }
    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        self.call(Command::NextDue).await
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        self.call(Command::Counts).await
    }
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.call(|r| Command::DeadLetters(limit, r)).await
    }
    async fn replay_dead(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        self.call(|r| Command::ReplayDead(ids, r)).await
    }
    async fn purge_dead(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.call(|r| Command::PurgeDead(older_than, r)).await
    }
    async fn ping(&self) -> Result<Room, StoreError> {
        self.call(Command::Ping).await
    }
    async fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        self.call(|r| Command::KeepBody(id, bytes, keep_until, r))
            .await
    }
    async fn body(&self, id: String) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(|r| Command::Body(id, r)).await
    }
    async fn prune_bodies(&self, limit: usize) -> Result<u64, StoreError> {
        self.call(|r| Command::PruneBodies(limit, r)).await
    }
    async fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.call(|r| Command::PruneEvents(part, older_than, limit, r))
            .await
    }
    async fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        self.call(|r| Command::ListEvents(Box::new(filter), limit, r))
            .await
    }
    async fn logged_event(&self, id: String) -> Result<Option<LoggedEvent>, StoreError> {
        self.call(|r| Command::LoggedEvent(id, r)).await
    }
    async fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.call(|r| Command::Replay(ids, Box::new(filter), limit, r))
            .await
    }
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The store thread: takes every command waiting, runs all inserts and all results in one
/// transaction each, then answers.
fn run(mut store: SqliteStore, rx: mpsc::Receiver<Command>, clock: &dyn Clock) {
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
                    inserts.push(*e);
                    insert_replies.push(r);
                }
                Command::Record(rs, r) => {
                    record_replies.push((r, rs.len()));
                    records.extend(rs);
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
            match store.record(&records, clock.now_ms()) {
                Ok(done) => {
                    let mut done = done.into_iter();
                    for (r, mine) in record_replies {
                        let _ = r.send(Ok(done.by_ref().take(mine).filter(|d| *d).count()));
                    }
                }
                Err(e) => {
                    for (r, _) in record_replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        }
        for c in others {
            let now = clock.now_ms();
            match c {
                Command::Claim(limit, lease, r) => {
                    let _ = r.send(store.claim(now, limit, millis(lease)));
                }
                Command::ClaimLane(c) => {
                    let c = *c;
                    let _ = c.reply.send(store.claim_lane(
                        now,
                        &c.leader,
                        &c.members,
                        &c.batch_id,
                        c.limit,
                        millis(c.lease),
                    ));
                }
                Command::NextDue(r) => {
                    let _ =
                        r.send(store.next_due().map(|at| {
                            at.map(|at| Duration::from_millis((at - now).max(0) as u64))
                        }));
                }
                Command::Counts(r) => {
                    let _ = r.send(store.counts());
                }
                Command::Ping(r) => {
                    let _ = r.send(store.ping());
                }
                Command::DeadLetters(limit, r) => {
                    let _ = r.send(store.dead_letters(limit));
                }
                Command::ReplayDead(ids, r) => {
                    let _ = r.send(store.replay_dead(&ids, now));
                }
                Command::PurgeDead(older_than, r) => {
                    let before = if older_than.is_zero() {
                        i64::MAX
                    } else {
                        now - millis(older_than)
                    };
                    let _ = r.send(store.purge_dead(before));
                }
                Command::KeepBody(id, bytes, keep_until, r) => {
                    let _ = r.send(store.keep_body(&id, &bytes, keep_until));
                }
                Command::Body(id, r) => {
                    let _ = r.send(store.body(&id, now));
                }
                Command::PruneBodies(limit, r) => {
                    let _ = r.send(store.prune_bodies(now, limit));
                }
                Command::ListEvents(filter, limit, r) => {
                    let _ = r.send(store.list_events(&filter, limit));
                }
                Command::LoggedEvent(id, r) => {
                    let _ = r.send(store.logged_event(&id));
                }
                Command::Replay(ids, filter, limit, r) => {
                    let _ = r.send(store.replay(&ids, &filter, limit, now));
                }
                Command::PruneEvents(part, older_than, limit, r) => {
                    let before = ulid_floor(now - millis(older_than));
                    let _ = r.send(store.prune_events(part, &before, limit));
                }
                Command::Insert(..) | Command::Record(..) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::{contract, TokenSource};
    use hookflow_protocol::SystemClock;

    fn handle(dir: &Path) -> SqliteHandle {
        let store = SqliteStore::open(dir).expect("opens");
        SqliteHandle::start(store, Arc::new(SystemClock)).expect("starts")
    }

    #[tokio::test]
    async fn contract_lifecycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::lifecycle(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_fan_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::fan_out(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_lanes() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::lanes(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_dedupe() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::dedupe(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_event_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::event_log(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_bodies() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::bodies(&handle(dir.path())).await;
    }

    #[tokio::test]
    async fn contract_concurrent_inserts() {
        let dir = tempfile::tempdir().expect("tempdir");
        contract::concurrent_inserts(&handle(dir.path())).await;
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = SqliteStore::open(dir.path()).expect("opens");
            s.insert(&[contract::event("x")], 1).expect("insert");
            s.claim(i64::MAX - 1, 10, 60_000).expect("claim");
        }
        let mut s = SqliteStore::open(dir.path()).expect("reopens");
        assert_eq!(s.recover(10).expect("recover"), 1);
        assert_eq!(
            s.claim(i64::MAX - 1, 10, 60_000).expect("claim")[0]
                .event
                .id,
            "x"
        );
    }

    #[test]
    fn foreign_and_corrupt_files_are_refused_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("events.db");
        std::fs::write(
            &file,
            b"this is not a database at all, just some text that is long enough",
        )
        .expect("write");
        let before = std::fs::read(&file).expect("read");
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&file).expect("read"), before);

        let dir = tempfile::tempdir().expect("tempdir");
        let other = Connection::open(dir.path().join("events.db")).expect("open");
        other
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .expect("create");
        drop(other);
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("not made by hookflow"), "{err}");
    }

    #[test]
    fn migrations_are_recorded_and_newer_or_unmigrated_stores_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        // --no-migrate on a folder without a store: nothing is created.
        let err = SqliteStore::open_with(dir.path(), None, false)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("hookflow relay migrate"), "{err}");
        assert_eq!(schema_version(dir.path()).expect("version"), 0);
        drop(SqliteStore::open(dir.path()).expect("creates"));
        assert_eq!(schema_version(dir.path()).expect("version"), SCHEMA_VERSION);
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
        let recorded: Vec<i64> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(recorded, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        // Up to date: opening without migrating works.
        drop(SqliteStore::open_existing(dir.path()).expect("current schema"));
        // A store from a newer hookflow is refused, untouched.
        conn.execute_batch("PRAGMA user_version = 99;")
            .expect("bump");
        drop(conn);
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(
            err.to_string().contains("newer hookflow (schema 99"),
            "{err}"
        );
        assert_eq!(schema_version(dir.path()).expect("version"), 99);
    }

    #[test]
    fn a_schema_2_store_splits_into_events_and_deliveries_with_nothing_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
        // What the last release wrote: migrations 1 and 2.
        conn.execute_batch(&format!(
            "{}; {}; CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 1), (2, 1); PRAGMA user_version = 2;",
            MIGRATIONS[0].1, MIGRATIONS[1].1
        ))
        .expect("schema 2");
        conn.execute_batch(
            "INSERT INTO events (id, received_at, source, repo, token, event_type, body, state,
                 attempts, next_attempt_at, last_error, last_status, updated_at, claim, lease_until)
             VALUES
             ('a', 10, 'compat', 'octo/one', 'inline:ghp_a', 'webhook', x'7b7d', 'pending', 2, 500, 'GitHub answered 502', NULL, 11, NULL, NULL),
             ('b', 20, 'stripe', 'octo/two', 'env:TOKEN', 'invoice.paid', x'7b7d', 'dead', 7, 20, 'repository not found', 404, 21, NULL, NULL),
             ('c', 30, 'compat', 'octo/one', 'inline:ghp_c', 'webhook', x'7b7d', 'inflight', 0, 30, NULL, NULL, 31, 'old-claim', 99);",
        )
        .expect("rows");
        drop(conn);
        let mut s = SqliteStore::open(dir.path()).expect("migrated");
        assert_eq!(schema_version(dir.path()).expect("version"), SCHEMA_VERSION);
        let c = s.counts().expect("counts");
        assert_eq!((c.pending, c.inflight, c.dead), (1, 1, 1));
        let letters = s.dead_letters(10).expect("dead letters");
        assert_eq!(letters.len(), 1);
        assert_eq!(
            (
                letters[0].event_id.as_str(),
                letters[0].destination.as_str(),
                letters[0].attempts
            ),
            ("b", "repo:octo/two", 7)
        );
        assert_eq!(letters[0].error, "repository not found");
        assert_eq!(s.recover(40).expect("recover"), 1, "c was in flight");
        let due = s.claim(1_000, 10, 60_000).expect("claim");
        let mut got: Vec<(String, u32, Destination, Payload)> = due
            .into_iter()
            .map(|d| {
                (
                    d.event.id.clone(),
                    d.attempts,
                    d.destination,
                    d.event.payload.clone(),
                )
            })
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        let repo = |t: &str| Destination::Repo {
            repo: "octo/one".into(),
            token: TokenSource::Inline(t.into()),
        };
        // Rows from before schema 4 keep their dispatch body, sent as it is.
        assert_eq!(
            got,
            [
                (
                    "a".into(),
                    2,
                    repo("ghp_a"),
                    Payload::Dispatch(b"{}".to_vec())
                ),
                (
                    "c".into(),
                    0,
                    repo("ghp_c"),
                    Payload::Dispatch(b"{}".to_vec())
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_schema_1_store_from_before_the_migrations_table_is_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
        // What earlier hookflow wrote: the events table and user_version 1, nothing else.
        conn.execute_batch(&format!(
            "{}; PRAGMA user_version = 1;",
            MIGRATIONS[0]
                .1
                .split("CREATE TABLE IF NOT EXISTS seen")
                .next()
                .unwrap_or_default()
        ))
        .expect("old schema");
        drop(conn);
        let store = SqliteStore::open(dir.path()).expect("adopted as schema 1, then migrated");
        contract::dedupe(&SqliteHandle::start(store, Arc::new(SystemClock)).expect("starts")).await;
    }
}
