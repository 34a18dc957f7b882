use super::dir::unavailable;
use super::dir::DB_FILE;
use crate::store::error::StoreError;
use rusqlite::params;
use rusqlite::Connection;
use std::path::Path;

/// The schema, one migration per version, each applied once in its own transaction and recorded
/// in `schema_migrations` (and `PRAGMA user_version`). A released migration never changes: a new
/// version gets a new entry.
pub(super) const MIGRATIONS: [(i64, &str); 8] = [
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
pub(super) fn migrate_schema(conn: &Connection, version: i64, now_ms: i64) -> rusqlite::Result<()> {
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
