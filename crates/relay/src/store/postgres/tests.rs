use super::db::uuid_text;
use super::location::*;
use super::open::*;
use super::schema::*;
use super::scratch::server_url;
use super::scratch::ScratchDb;
use crate::store::conformance;
use crate::store::contract::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

async fn fresh_db() -> Option<ScratchDb> {
    ScratchDb::for_tests().await
}

/// A store on a fresh database (kept while the returned guard lives).
async fn fresh_store() -> Option<(ScratchDb, PgStore)> {
    let db = fresh_db().await?;
    let store = PgStore::open(&db.location, true).await.expect("opens");
    Some((db, store))
}

#[tokio::test]
async fn contract_lifecycle() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::lifecycle(&store).await;
    }
}

#[tokio::test]
async fn rate_limit_lanes_book_slots_and_full_ones_are_forgotten() {
    let Some((db, store)) = fresh_store().await else {
        return;
    };
    // 60 a minute: a burst of 60, then one a second, booked in turn.
    for _ in 0..60 {
        assert_eq!(
            store.take_slot("octo/a x", 60, true).await.expect("slot"),
            Ok(())
        );
    }
    // (The burst itself took time, during which the bucket refilled a little: the first
    // slot is within a second, the next ones a second apart.)
    let waits: Vec<f64> = booked_waits(&store, "octo/a x", 3)
        .await
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    assert!(waits[0] > 0.0 && waits[0] <= 1.05, "{waits:?}");
    for pair in waits.windows(2) {
        assert!((pair[1] - pair[0] - 1.0).abs() < 0.25, "{waits:?}");
    }
    // A batching lane books nothing: its wait is the next token's, whatever is booked.
    for _ in 0..3 {
        let wait = store
            .take_slot("octo/a x", 60, false)
            .await
            .expect("slot")
            .expect_err("no token");
        assert!(wait <= Duration::from_millis(1050), "{wait:?}");
    }
    let after = booked_waits(&store, "octo/a x", 1).await[0].as_secs_f64();
    assert!(
        (after - waits[2] - 1.0).abs() < 0.25,
        "waits that book nothing push no slot back: {after} after {waits:?}"
    );
    assert_eq!(
        store.take_slot("octo/b x", 60, true).await.expect("slot"),
        Ok(())
    );
    // A stranger's made-up lanes do not stay: idle and full for a minute, they go; a lane
    // with slots booked ahead stays.
    let c = db.client().await.expect("session");
    c.batch_execute(
        "UPDATE hookflow.lanes SET at = now() - interval '2 minutes';
             UPDATE hookflow.lanes SET last_slot = now() + interval '1 minute' WHERE lane = 'octo/a x'",
    )
    .await
    .expect("age the lanes");
    let client = store.client().await.expect("pool");
    assert_eq!(PgStore::prune_lanes(&client).await.expect("prune"), 1);
    let left: Vec<String> = c
        .query("SELECT lane FROM hookflow.lanes", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["octo/a x"]);
}

async fn booked_waits(store: &PgStore, lane: &str, n: usize) -> Vec<Duration> {
    let mut waits = Vec::new();
    for _ in 0..n {
        waits.push(
            store
                .take_slot(lane, 60, true)
                .await
                .expect("slot")
                .expect_err("booked"),
        );
    }
    waits
}

#[tokio::test]
async fn contract_fan_out() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::fan_out(&store).await;
    }
}

#[tokio::test]
async fn contract_lanes() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::lanes(&store).await;
    }
}

#[tokio::test]
async fn contract_dedupe() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::dedupe(&store).await;
    }
}

#[tokio::test]
async fn contract_event_log() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::event_log(&store).await;
    }
}

#[tokio::test]
async fn contract_bodies() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::bodies(&store).await;
    }
}

#[tokio::test]
async fn contract_concurrent_inserts() {
    if let Some((_db, store)) = fresh_store().await {
        conformance::concurrent_inserts(&store).await;
    }
}

#[tokio::test]
async fn migrations_are_versioned_and_a_newer_database_refused() {
    let Some(db) = fresh_db().await else {
        return;
    };
    let err = PgStore::open(&db.location, false)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("hookflow relay migrate"), "{err}");
    assert_eq!(
        PgStore::schema(&db.location).await.expect("schema").version,
        0
    );
    assert_eq!(
        PgStore::migrate(&db.location).await.expect("migrates"),
        (0, SCHEMA_VERSION)
    );
    assert_eq!(
        PgStore::migrate(&db.location).await.expect("again"),
        (SCHEMA_VERSION, SCHEMA_VERSION)
    );
    drop(
        PgStore::open(&db.location, false)
            .await
            .expect("current schema"),
    );
    let store = PgStore::open(&db.location, true).await.expect("opens");
    store
        .client()
        .await
        .expect("client")
        .batch_execute("INSERT INTO hookflow.schema_migrations (version) VALUES (99)")
        .await
        .expect("bump");
    let err = PgStore::open(&db.location, true)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("newer hookflow (schema 99"),
        "{err}"
    );
}

#[tokio::test]
async fn relays_starting_together_migrate_once() {
    let Some(db) = fresh_db().await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let l = db.location.clone();
            tokio::spawn(async move { PgStore::open(&l, true).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        o.await.expect("task").expect("opens");
    }
    assert_eq!(
        PgStore::schema(&db.location).await.expect("schema").version,
        SCHEMA_VERSION
    );
}

#[tokio::test]
async fn two_relays_never_claim_the_same_delivery() {
    let Some(db) = fresh_db().await else {
        return;
    };
    let a = PgStore::open(&db.location, true).await.expect("opens");
    let b = PgStore::open(&db.location, true).await.expect("opens");
    for i in 0..400 {
        a.insert(conformance::event(&format!("e{i:04}")))
            .await
            .expect("insert");
    }
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    loop {
        let (x, y) = tokio::join!(
            a.claim(7, Duration::from_secs(60)),
            b.claim(7, Duration::from_secs(60))
        );
        let (x, y) = (x.expect("claim"), y.expect("claim"));
        if x.is_empty() && y.is_empty() {
            break;
        }
        seen_a.extend(x.into_iter().map(|c| c.event.id.clone()));
        seen_b.extend(y.into_iter().map(|c| c.event.id.clone()));
    }
    let mut all: Vec<String> = seen_a.iter().chain(&seen_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "every delivery claimed");
    assert_eq!(seen_a.len() + seen_b.len(), 400, "and none twice");
    assert!(
        !seen_a.is_empty() && !seen_b.is_empty(),
        "both relays worked"
    );
}

#[tokio::test]
async fn a_new_event_wakes_every_listening_relay() {
    let Some(db) = fresh_db().await else {
        return;
    };
    let a = PgStore::open(&db.location, true).await.expect("opens");
    let b = PgStore::open(&db.location, true).await.expect("opens");
    let wake = Arc::new(Notify::new());
    b.notify_new_events(wake.clone());
    // Give the LISTEN session a moment to start, then insert on the other relay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.insert(conformance::event("x")).await.expect("insert");
    tokio::time::timeout(Duration::from_secs(5), wake.notified())
        .await
        .expect("woken by NOTIFY");
}

/// The URL of `db` with `query` added and its host replaced.
fn variant(db: &ScratchDb, host: &str, query: &str) -> PgLocation {
    let mut url = url::Url::parse(&server_url()).expect("URL");
    url.set_path(&format!("/{}", db.name));
    url.set_host(Some(host)).expect("host");
    let text = format!(
        "{url}{}{query}",
        if url.query().is_some() { "&" } else { "?" }
    );
    PgLocation::parse(&text).expect("parses")
}

#[tokio::test]
async fn tls_modes_mean_what_they_mean_to_libpq() {
    let Some(db) = fresh_db().await else {
        return;
    };
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    let ssl: String = client.query_one("SHOW ssl", &[]).await.expect("ssl").get(0);
    let host = url::Url::parse(&server_url())
        .expect("URL")
        .host_str()
        .unwrap_or("127.0.0.1")
        .to_string();
    let require = variant(&db, &host, "sslmode=require");
    if ssl != "on" {
        // A server without TLS: `require` refuses to go on in clear.
        let err = PgStore::open(&require, true).await.expect_err("refused");
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
        return;
    }
    let store = PgStore::open(&require, true)
        .await
        .expect("require: TLS, unchecked");
    let encrypted: bool = store
        .client()
        .await
        .expect("client")
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted, "the session is encrypted");
    // verify-full against the web's roots: a self-signed server certificate is refused.
    let err = PgStore::open(&variant(&db, &host, "sslmode=verify-full"), true)
        .await
        .expect_err("an unknown issuer is refused");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // With the server's own certificate as root (sslrootcert), verify-ca accepts it.
    let cert: String = client
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .expect("cert file")
        .get(0);
    if std::path::Path::new(&cert).is_file() {
        let with_root = format!("sslmode=verify-ca&sslrootcert={cert}");
        PgStore::open(&variant(&db, &host, &with_root), true)
            .await
            .expect("verify-ca with the server's certificate as root");
    }
}

#[test]
fn urls_are_parsed_and_passwords_never_shown() {
    let l =
        PgLocation::parse("postgres://app:s3cret@db.example.com:6543/hooks?sslmode=verify-full")
            .expect("parses");
    assert_eq!(l.tls, TlsMode::VerifyFull);
    assert_eq!(l.database(), "hooks");
    assert!(!l.to_string().contains("s3cret"), "{l}");
    assert!(!format!("{l:?}").contains("s3cret"));
    let err =
        PgLocation::parse("postgres://app:s3cret@db/hooks?sslmode=sometimes").expect_err("refused");
    assert!(
        err.contains("sslmode=sometimes") && !err.contains("s3cret"),
        "{err}"
    );
    let err = PgLocation::parse("mysql://db/hooks").expect_err("refused");
    assert!(err.contains("postgres://"), "{err}");
    assert_eq!(
        PgLocation::parse("postgresql://u@h/d?sslmode=disable")
            .expect("parses")
            .tls,
        TlsMode::Disable
    );
    assert!(uuid_text("not-a-uuid").is_err());
    assert!(uuid_text("0b9a5f3e-2c1d-4e5f-8a7b-6c5d4e3f2a1b").is_ok());
}
