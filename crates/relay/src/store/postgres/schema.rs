use super::db::db_error;
use super::db::pool_error;
use super::location::PgLocation;
use crate::store::error::StoreError;
use deadpool_postgres::Pool;

/// The schema, one migration per version, each applied once in its own transaction. A released
/// migration never changes: a new version gets a new entry.
const MIGRATIONS: [(i32, &str); 8] = [
    (
        1,
        "CREATE TABLE hookflow.events (
         id          TEXT PRIMARY KEY,
         received_at TIMESTAMPTZ NOT NULL,
         source      TEXT NOT NULL,
         event_type  TEXT NOT NULL,
         payload     BYTEA NOT NULL,
         body_bytes  BIGINT NOT NULL
     );
     CREATE TABLE hookflow.deliveries (
         id          BIGSERIAL PRIMARY KEY,
         event_id    TEXT NOT NULL REFERENCES hookflow.events (id) ON DELETE CASCADE,
         destination TEXT NOT NULL,
         lane        TEXT NOT NULL,
         token       TEXT,
         state       TEXT NOT NULL CHECK (state IN ('pending', 'inflight', 'delivered', 'dead')),
         attempts    INTEGER NOT NULL DEFAULT 0,
         next_at     TIMESTAMPTZ NOT NULL,
         owner       TEXT,
         claim       UUID,
         lease_until TIMESTAMPTZ,
         last_status INTEGER,
         last_error  TEXT,
         updated_at  TIMESTAMPTZ NOT NULL
     );
     CREATE INDEX deliveries_due ON hookflow.deliveries (next_at, id) WHERE state = 'pending';
     CREATE INDEX deliveries_lease ON hookflow.deliveries (lease_until) WHERE state = 'inflight';
     CREATE INDEX deliveries_event ON hookflow.deliveries (event_id);
     CREATE INDEX deliveries_dead ON hookflow.deliveries (event_id) WHERE state = 'dead';
     CREATE TABLE hookflow.seen (
         key      TEXT PRIMARY KEY,
         event_id TEXT NOT NULL,
         at       TIMESTAMPTZ NOT NULL
     );
     CREATE INDEX seen_at ON hookflow.seen (at);",
    ),
    // Queue tables churn: every row is deleted within moments of its insert. Vacuum them after
    // a fixed number of dead rows, not a fraction of the table, and without pausing, so scans
    // of the due index do not wade through dead entries. The foreign key goes: its per-row
    // triggers cost more than the rest of an insert, and the store's own statements keep
    // events and deliveries together (set-based, in the statement that deletes either).
    (
        2,
        "ALTER TABLE hookflow.deliveries DROP CONSTRAINT deliveries_event_id_fkey;
         ALTER TABLE hookflow.deliveries SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0,
             autovacuum_analyze_scale_factor = 0.02);
         ALTER TABLE hookflow.events SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0);
         ALTER TABLE hookflow.seen SET (autovacuum_vacuum_scale_factor = 0,
             autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_cost_delay = 0);",
    ),
    // The dispatch rate limit of each lane (repository and credential) for the whole cluster:
    // a token bucket, and the last slot booked for a delivery that found it empty.
    (
        3,
        "CREATE TABLE hookflow.lanes (
             lane      TEXT PRIMARY KEY,
             tokens    FLOAT8 NOT NULL,
             at        TIMESTAMPTZ NOT NULL,
             last_slot TIMESTAMPTZ NOT NULL
         );",
    ),
    // Destinations (docs/design/store.md): an event keeps the request as received (its exact
    // body in `payload`, `payload_kind = 'request'`), and each destination builds what it sends
    // from it. Rows from before keep their dispatch body (`payload_kind = 'dispatch'`).
    (
        4,
        "ALTER TABLE hookflow.events
             ADD COLUMN payload_kind TEXT NOT NULL DEFAULT 'dispatch',
             ADD COLUMN method TEXT,
             ADD COLUMN path TEXT,
             ADD COLUMN headers TEXT;",
    ),
    // Batching (docs/design/store.md): a delivery waiting only for its lane's rate limit
    // (`deferred_for = 'rate'`) may join the lane's next batch before its time; `batch_id`
    // names the batch that last carried it. The lane index serves that look.
    (
        5,
        "ALTER TABLE hookflow.deliveries
             ADD COLUMN deferred_for TEXT,
             ADD COLUMN batch_id TEXT;
         CREATE INDEX deliveries_lane ON hookflow.deliveries (lane, id) WHERE state = 'pending';",
    ),
    // Bodies by reference (docs/design/store.md): a body too large for a dispatch is kept
    // here, apart from its event (which goes once delivered), until `keep_until`. Stored
    // uncompressed: they are read whole, and compressing megabytes in the server costs more
    // than the disk it saves for a week.
    (
        6,
        "CREATE TABLE hookflow.bodies (
             id         TEXT PRIMARY KEY,
             bytes      BYTEA NOT NULL,
             keep_until TIMESTAMPTZ NOT NULL
         );
         ALTER TABLE hookflow.bodies ALTER COLUMN bytes SET STORAGE EXTERNAL;
         CREATE INDEX bodies_keep_until ON hookflow.bodies (keep_until);",
    ),
    // The event log (docs/design/event-log.md): delivered deliveries stay (`delivered` was
    // allowed from the start), each try is an attempt row, a replay starts a new `chain`, and
    // events keep the sender's delivery id; indexes for the list's filters.
    (
        7,
        "ALTER TABLE hookflow.deliveries ADD COLUMN chain INTEGER NOT NULL DEFAULT 0;
         CREATE TABLE hookflow.attempts (
             id          BIGSERIAL PRIMARY KEY,
             delivery_id BIGINT NOT NULL,
             event_id    TEXT NOT NULL,
             chain       INTEGER NOT NULL,
             at          TIMESTAMPTZ NOT NULL,
             took_ms     INTEGER,
             status      INTEGER,
             outcome     TEXT NOT NULL,
             message     TEXT,
             relay       TEXT,
             batch_id    TEXT
         );
         CREATE INDEX attempts_event ON hookflow.attempts (event_id);
         ALTER TABLE hookflow.events
             ADD COLUMN delivery_key TEXT,
             ADD COLUMN body_pruned BOOLEAN NOT NULL DEFAULT false;
         CREATE INDEX events_source ON hookflow.events (source, id);
         CREATE INDEX events_delivery_key ON hookflow.events (delivery_key)
             WHERE delivery_key IS NOT NULL;
         CREATE INDEX deliveries_state_event ON hookflow.deliveries (state, event_id);
         CREATE INDEX deliveries_destination_event ON hookflow.deliveries (destination, event_id);",
    ),
    // `retention.bodies` (docs/design/event-log.md): the events that still have their body, in
    // id order, so emptying old bodies never walks those already emptied.
    (
        8,
        "CREATE INDEX events_body_kept ON hookflow.events (id) WHERE NOT body_pruned;",
    ),
];

/// The schema version this hookflow writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// What [`PgStore::schema`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// The database's schema version (0: no hookflow tables yet).
    pub version: i32,
    /// This hookflow's.
    pub current: i32,
}

pub(super) async fn read_version(
    client: &tokio_postgres::Client,
    location: &PgLocation,
) -> Result<i32, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('hookflow.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| db_error(&format!("cannot read {location}"), e))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = client
        .query_one("SELECT max(version) FROM hookflow.schema_migrations", &[])
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    Ok(v.unwrap_or(0))
}

pub(super) async fn schema_state(
    pool: &Pool,
    location: &PgLocation,
) -> Result<SchemaState, StoreError> {
    let client = pool
        .get()
        .await
        .map_err(|e| db_error(&format!("cannot connect to {location}"), e))?;
    Ok(SchemaState {
        version: read_version(&client, location).await?,
        current: SCHEMA_VERSION,
    })
}

/// Applies every migration the database lacks, under an advisory lock (relays starting together
/// wait for the first to finish).
pub(super) async fn apply_migrations(pool: &Pool, location: &PgLocation) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start the migration", e))?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7279431580416);
         CREATE SCHEMA IF NOT EXISTS hookflow;
         CREATE TABLE IF NOT EXISTS hookflow.schema_migrations (
             version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    )
    .await
    .map_err(|e| db_error(&format!("cannot prepare {location} for hookflow"), e))?;
    let have: Option<i32> = tx
        .query_one("SELECT max(version) FROM hookflow.schema_migrations", &[])
        .await
        .map_err(|e| db_error("cannot read the schema version", e))?
        .get(0);
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > have.unwrap_or(0)) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| db_error(&format!("migration {v}"), e))?;
        tx.execute(
            "INSERT INTO hookflow.schema_migrations (version) VALUES ($1)",
            &[v],
        )
        .await
        .map_err(|e| db_error(&format!("migration {v}"), e))?;
    }
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit the migration", e))
}
