//! Event logs made by SQL, fast: for the retention and event-log tests and benchmarks.

/// Fills a new SQLite store in `dir` (by SQL, fast) with an event for each of `ids`: received
/// at `at(i)`, its delivery (two for every tenth) in `state(i)`, an attempt each.
pub fn fill_sqlite_log(
    dir: &std::path::Path,
    ids: &[String],
    at: impl Fn(usize) -> i64,
    state: impl Fn(usize) -> &'static str,
    source: impl Fn(usize) -> &'static str,
    path: impl Fn(usize) -> String,
) {
    let store = hookflow_relay::store::sqlite::SqliteStore::open(dir).expect("store");
    drop(store);
    let mut conn =
        rusqlite::Connection::open(dir.join(hookflow_relay::store::sqlite::DB_FILE)).expect("db");
    let tx = conn.transaction().expect("tx");
    {
        let mut ev = tx
            .prepare("INSERT INTO events (id, received_at, source, event_type, payload, payload_kind, method, path, headers, delivery_key) VALUES (?1, ?2, ?3, 'webhook', ?4, 'request', 'POST', ?5, '{}', ?6)")
            .expect("prepare");
        let mut de = tx
            .prepare("INSERT INTO deliveries (id, event_id, destination, token, state, attempts, next_at, updated_at) VALUES (?1, ?2, ?3, 'env:T', ?4, 1, ?5, ?5)")
            .expect("prepare");
        let mut at_ = tx
            .prepare("INSERT INTO attempts (delivery_id, event_id, chain, at, took_ms, status, outcome) VALUES (?1, ?2, 0, ?3, 120, 204, ?4)")
            .expect("prepare");
        let mut d = 0i64;
        for (i, id) in ids.iter().enumerate() {
            ev.execute(rusqlite::params![
                id,
                at(i),
                source(i),
                br#"{"ok":true}"#.as_slice(),
                path(i),
                format!("d-{i}")
            ])
            .expect("event");
            let dests: &[&str] = if i % 10 == 0 {
                &["repo:octo/hooks", "repo:octo/billing"]
            } else {
                &["repo:octo/hooks"]
            };
            for dest in dests {
                d += 1;
                de.execute(rusqlite::params![d, id, dest, state(i), at(i)])
                    .expect("delivery");
                at_.execute(rusqlite::params![d, id, at(i), state(i)])
                    .expect("attempt");
            }
        }
    }
    tx.commit().expect("commit");
    conn.execute_batch("ANALYZE").expect("analyze");
}

/// A SQLite store in `dir` with `n` delivered events received `days` days ago and before (one a
/// second, back from then): what the retention then prunes.
pub fn old_delivered(dir: &std::path::Path, n: usize, days: i64) {
    let newest = chrono::Utc::now().timestamp_millis() - days * 86_400_000;
    let at = |i: usize| newest - (n - i) as i64 * 1000;
    let ids: Vec<String> = (0..n)
        .map(|i| ulid::Ulid::from_parts(at(i) as u64, i as u128).to_string())
        .collect();
    fill_sqlite_log(
        dir,
        &ids,
        at,
        |_| "delivered",
        |i| ["github", "stripe", "shop"][i % 3],
        |i| format!("/hook/{}", i % 1000),
    );
}
