use super::dir::DB_FILE;
use super::handle::*;
use super::open::*;
use super::schema::*;
use crate::store::conformance;
use crate::store::event::Destination;
use crate::store::event::Payload;
use crate::store::event::TokenSource;
use hookflow_protocol::SystemClock;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

fn handle(dir: &Path) -> SqliteHandle {
    let store = SqliteStore::open(dir).expect("opens");
    SqliteHandle::start(store, Arc::new(SystemClock)).expect("starts")
}

#[tokio::test]
async fn contract_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::lifecycle(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_fan_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::fan_out(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_lanes() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::lanes(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_dedupe() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::dedupe(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_event_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::event_log(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::bodies(&handle(dir.path())).await;
}

#[tokio::test]
async fn contract_concurrent_inserts() {
    let dir = tempfile::tempdir().expect("tempdir");
    conformance::concurrent_inserts(&handle(dir.path())).await;
}

#[test]
fn survives_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut s = SqliteStore::open(dir.path()).expect("opens");
        s.insert(&[conformance::event("x")], 1).expect("insert");
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
    conformance::dedupe(&SqliteHandle::start(store, Arc::new(SystemClock)).expect("starts")).await;
}
