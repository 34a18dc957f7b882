use super::dir::prepare_data_dir;
use super::dir::unavailable;
use super::dir::DB_FILE;
use super::schema::migrate_schema;
use super::schema::SCHEMA_VERSION;
use crate::store::delivery::Room;
use crate::store::error::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::path::PathBuf;

pub(super) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The SQLite store.
pub struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) last_prune: i64,
    pub(super) last_reap: i64,
    pub(super) page_size: i64,
    /// New events are refused at this many pages in use.
    pub(super) cap_pages: Option<i64>,
}

/// How often (ms) a claim also frees deliveries whose lease ran out.
pub(super) const REAP_EVERY_MS: i64 = 250;

/// Room kept above the cap for what must go on when the store is full: recording delivery
/// results, dead letters, recovery at start-up (an eighth of the cap, at least 64 KiB).
fn reserve_bytes(cap: u64) -> u64 {
    (cap / 8).max(64 * 1024)
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

    pub(super) fn fail(&self, e: rusqlite::Error) -> StoreError {
        unavailable(&self.path, e)
    }

    /// How much of the cap the data takes.
    pub(super) fn room(&self) -> Result<Room, StoreError> {
        Ok(Room {
            bytes_used: (self.used_pages()? * self.page_size) as u64,
            bytes_cap: self.cap_pages.map(|p| (p * self.page_size) as u64),
        })
    }

    /// Pages holding data (the file's pages less the free ones deleted rows left).
    pub(super) fn used_pages(&self) -> Result<i64, StoreError> {
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
