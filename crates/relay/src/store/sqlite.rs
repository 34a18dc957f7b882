//! The embedded SQLite store: one file, `events.db`, in the data directory, in WAL mode with
//! `synchronous=FULL` so a committed event survives a process crash and a power cut.
//!
//! Delivered events are deleted with their token (their job is done); dead letters keep theirs
//! until they are replayed and delivered, or purged. The file is readable by its owner only.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    Counts, DeadLetter, DueEvent, Inserted, NewEvent, Recorded, Room, Store, StoreError,
    TokenSource, DEDUPE_WINDOW_MS,
};

/// The schema version this code writes.
/// The schema, one migration per version, each applied once in its own transaction and recorded
/// in `schema_migrations` (and `PRAGMA user_version`). A released migration never changes: a new
/// version gets a new entry.
const MIGRATIONS: [(i64, &str); 1] = [(
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
)];

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
    page_size: i64,
    /// New events are refused at this many pages in use.
    cap_pages: Option<i64>,
}

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

impl Store for SqliteStore {
    fn insert(&mut self, events: &[NewEvent], now: i64) -> Result<Vec<Inserted>, StoreError> {
        if let Some(cap) = self.cap_pages {
            let used = self.used_pages()?;
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
                    "SELECT s.event_id, e.state = 'dead' FROM seen s
                     LEFT JOIN events e ON e.id = s.event_id WHERE s.key = ?1",
                )
                .map_err(fail)?;
            let mut take_over = tx
                .prepare_cached("UPDATE seen SET event_id = ?2, at = ?3 WHERE key = ?1")
                .map_err(fail)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (id, received_at, source, repo, token, event_type, body, state, next_attempt_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?2, ?2)",
                )
                .map_err(fail)?;
            for e in events {
                if let Some(key) = &e.dedupe_key {
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
                stmt.execute(params![
                    e.id,
                    e.received_at,
                    e.source,
                    e.repo,
                    e.token.encode(),
                    e.event_type,
                    e.body
                ])
                .map_err(fail)?;
                results.push(Inserted::New);
            }
        }
        tx.commit().map_err(fail)?;
        if prune {
            self.last_prune = now;
        }
        Ok(results)
    }

    fn claim_due(&mut self, now: i64, limit: usize) -> Result<Vec<DueEvent>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let due: Vec<DueEvent> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, repo, token, body, attempts FROM events
                     WHERE state = 'pending' AND next_attempt_at <= ?1
                     ORDER BY next_attempt_at, id LIMIT ?2",
                )
                .map_err(fail)?;
            let rows = stmt
                .query_map(params![now, limit as i64], |r| {
                    Ok(DueEvent {
                        id: r.get(0)?,
                        repo: r.get(1)?,
                        token: TokenSource::decode(
                            &r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        ),
                        body: r.get(3)?,
                        attempts: r.get::<_, i64>(4)? as u32,
                    })
                })
                .map_err(fail)?;
            rows.collect::<Result<_, _>>().map_err(fail)?
        };
        {
            let mut mark = tx
                .prepare_cached(
                    "UPDATE events SET state = 'inflight', updated_at = ?2 WHERE id = ?1",
                )
                .map_err(fail)?;
            for d in &due {
                mark.execute(params![d.id, now]).map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(due)
    }

    fn record(&mut self, results: &[(String, Recorded)], now: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        for (id, result) in results {
            match result {
                Recorded::Delivered => {
                    tx.prepare_cached("DELETE FROM events WHERE id = ?1")
                        .and_then(|mut s| s.execute(params![id]))
                        .map_err(fail)?;
                }
                Recorded::RetryAt { at, error } => {
                    tx.prepare_cached(
                        "UPDATE events SET state = 'pending', attempts = attempts + 1, next_attempt_at = ?2,
                         last_error = ?3, updated_at = ?4 WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, at, error, now]))
                    .map_err(fail)?;
                }
                Recorded::Defer { at } => {
                    tx.prepare_cached(
                        "UPDATE events SET state = 'pending', next_attempt_at = ?2, updated_at = ?3 WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, at, now]))
                    .map_err(fail)?;
                }
                Recorded::Dead { error, status } => {
                    // The token stays, so the letter can be replayed; purging deletes it.
                    tx.prepare_cached(
                        "UPDATE events SET state = 'dead', attempts = attempts + 1, last_error = ?2, last_status = ?3,
                         updated_at = ?4 WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, error, status.map(i64::from), now]))
                    .map_err(fail)?;
                }
            }
        }
        tx.commit().map_err(fail)
    }

    fn recover(&mut self, now: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "UPDATE events SET state = 'pending', next_attempt_at = min(next_attempt_at, ?1), updated_at = ?1 WHERE state = 'inflight'",
                params![now],
            )
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }

    fn requeue_stale(&mut self, before: i64, now: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "UPDATE events SET state = 'pending', next_attempt_at = ?2, updated_at = ?2
                 WHERE state = 'inflight' AND updated_at < ?1",
                params![before, now],
            )
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }

    fn next_due(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM events WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.fail(e))
    }

    fn counts(&mut self) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT state, count(*), min(received_at) FROM events GROUP BY state")
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

    fn dead_letters(&mut self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, repo, event_type, attempts, coalesce(last_error, ''), received_at FROM events
                 WHERE state = 'dead' ORDER BY received_at, id LIMIT ?1",
            )
            .map_err(|e| unavailable(&self.path, e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    repo: r.get(1)?,
                    event_type: r.get(2)?,
                    attempts: r.get::<_, i64>(3)? as u32,
                    error: r.get(4)?,
                    received_at: r.get(5)?,
                })
            })
            .map_err(|e| unavailable(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| unavailable(&self.path, e))
    }

    fn replay_dead(&mut self, ids: &[String], now: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let sql = "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1 WHERE state = 'dead'";
        if ids.is_empty() {
            return self
                .conn
                .execute(sql, params![now])
                .map(|n| n as u64)
                .map_err(fail);
        }
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        for id in ids {
            n += tx
                .execute(&format!("{sql} AND id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }

    fn ping(&mut self) -> Result<Room, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| self.fail(e))?;
        self.room()
    }

    fn purge_dead(&mut self, before: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "DELETE FROM events WHERE state = 'dead' AND received_at < ?1",
                params![before],
            )
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = SqliteStore::open(dir.path()).expect("opens");
        super::super::contract::lifecycle(&mut store);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = SqliteStore::open(dir.path()).expect("opens");
        super::super::contract::dedupe(&mut store);
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut s = SqliteStore::open(dir.path()).expect("opens");
            s.insert(&[super::super::contract::event("x", 1)], 1)
                .expect("insert");
            s.claim_due(5, 10).expect("claim");
        }
        let mut s = SqliteStore::open(dir.path()).expect("reopens");
        assert_eq!(s.recover(10).expect("recover"), 1);
        assert_eq!(s.claim_due(10, 10).expect("claim")[0].id, "x");
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
    fn a_schema_1_store_from_before_the_migrations_table_is_adopted() {
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
        let mut store = SqliteStore::open_existing(dir.path()).expect("adopted as schema 1");
        super::super::contract::dedupe(&mut store);
    }
}
