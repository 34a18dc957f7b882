//! Relays on a shared PostgreSQL store: webhooks accepted by any relay are delivered by one of
//! them, exactly once, with the same behaviour as on SQLite.

use crate::support;

use std::time::{Duration, Instant};

use hookflow_relay::store::postgres::scratch::ScratchDb;
use hookflow_relay::store::Store as _;
use serde_json::json;
use support::fake_github::{Answer, FakeGithub};
use support::relay::{config, post, test_env, WAIT};

async fn start_on(
    db: &ScratchDb,
    gh: &FakeGithub,
    dir: &std::path::Path,
) -> hookflow_relay::Running {
    start_limited(db, gh, dir, 0).await
}

/// As [`start_on`], with a dispatch rate limit per repository and credential.
async fn start_limited(
    db: &ScratchDb,
    gh: &FakeGithub,
    dir: &std::path::Path,
    per_minute: u32,
) -> hookflow_relay::Running {
    // One client address sends everything here: the per-address limits are off.
    let cfg = config(
        dir,
        gh,
        &format!(
            "store: {}\nlimits:\n  compat_requests_per_minute: 0\n  max_requests_per_client: 0\n",
            db.url
        ),
    );
    let mut cfg = cfg;
    cfg.delivery.rate_limit_per_minute = per_minute;
    hookflow_relay::start(cfg, test_env())
        .await
        .expect("relay starts")
}

/// Two relays on one database, each with a data folder of its own (kept while the relays run).
async fn two_relays(
    db: &ScratchDb,
    gh: &FakeGithub,
    per_minute: u32,
) -> (
    hookflow_relay::Running,
    hookflow_relay::Running,
    [tempfile::TempDir; 2],
) {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let a = start_limited(db, gh, dirs[0].path(), per_minute).await;
    let b = start_limited(db, gh, dirs[1].path(), per_minute).await;
    (a, b, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_postgres_accepts_deduplicates_and_delivers() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start_on(&db, &gh, dir.path()).await;
    assert_eq!(r.store.engine(), "postgres");
    let (status, answer) = post(
        &r,
        "/octo/hooks/ci/webhook?__token=ghp_pgtoken",
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let d = gh.wait_for(1, WAIT).await.remove(0);
    assert_eq!(d.body["client_payload"]["body"], json!(r#"{"n":1}"#));
    assert_eq!(d.body["client_payload"]["path"], json!("/ci/webhook"));
    // No SQLite file was made: the data folder is not the store.
    assert!(!dir.path().join("events.db").exists());
    support::relay::settled(&r).await;
    // /metrics: the pool, the time of store operations, the queue.
    let text = support::relay::get_text(&support::relay::url(&r, "/metrics")).await;
    for line in [
        "hookflow_store_pool_connections{state=\"max\"} 16\n",
        "hookflow_store_seconds_count{op=\"insert\"} 1\n",
        "hookflow_store_seconds_count{op=\"record\"} 1\n",
        "hookflow_queue_depth{state=\"pending\"} 0\n",
        "hookflow_store_pool_waiting 0\n",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_database_deliver_every_webhook_exactly_once() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let gh = FakeGithub::start().await;
    let (a, b, _dirs) = two_relays(&db, &gh, 0).await;
    let n = 1_000;
    let client = support::relay::http();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = if i % 2 == 0 {
            support::relay::url(&a, "")
        } else {
            support::relay::url(&b, "")
        };
        let client = client.clone();
        sends.spawn(async move {
            client
                .post(format!(
                    "{url}/octo/hooks/ci/webhook?__token=ghp_pgtoken{}",
                    i % 7
                ))
                .body(format!("{{\"n\":{i}}}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
    }
    let mut acknowledged = 0;
    while let Some(r) = sends.join_next().await {
        if r.expect("task").expect("sent") == 200 {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, n, "every webhook acknowledged");
    let start = Instant::now();
    while gh.delivered_ids().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "delivered {} of {n}",
            gh.delivered_ids().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = gh.delivered_ids();
    assert_eq!(ids.len(), n);
    assert!(ids.values().all(|&times| times == 1), "each exactly once");
    let (from_a, from_b) = (a.metrics.delivered_count(), b.metrics.delivered_count());
    assert_eq!(from_a + from_b, n as u64);
    assert!(
        from_a > 0 && from_b > 0,
        "both relays delivered: {from_a} and {from_b}"
    );
    // GitHub can hear of the last delivery a moment before its relay's result is committed.
    support::relay::settled(&a).await;
    let c = a.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_a_stopped_sqlite_relay_into_postgres() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    // A SQLite relay with 3 deliveries waiting for a retry in an hour and 2 dead letters.
    let gh = FakeGithub::start().await;
    gh.script(vec![
        Answer::server_error(),
        Answer::server_error(),
        Answer::server_error(),
        Answer::not_found(),
        Answer::not_found(),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut cfg = config(&data, &gh, "");
    cfg.delivery.initial_backoff = Duration::from_secs(3600);
    cfg.delivery.max_backoff = Duration::from_secs(3600);
    let sqlite = hookflow_relay::start(cfg.clone(), test_env())
        .await
        .expect("relay starts");
    let client = support::relay::http();
    let send = |url: String, n: usize| {
        let client = client.clone();
        async move {
            let resp = client
                .post(format!("{url}/octo/hooks/ci/webhook?__token=ghp_moving{n}"))
                .header("X-GitHub-Delivery", format!("delivery-{n}"))
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .expect("sent");
            support::relay::json_of(resp).await
        }
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, answer) = send(support::relay::url(&sqlite, ""), n).await;
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["event_id"].as_str().expect("id").to_string());
    }
    gh.wait_for(5, WAIT).await;
    let start = Instant::now();
    loop {
        let c = sqlite.store.counts().await.expect("counts");
        if (c.pending, c.inflight, c.dead) == (3, 0, 2) {
            break;
        }
        assert!(start.elapsed() < WAIT, "{c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Refused while the relay holds the folder.
    let migrate = || {
        support::cli::hookflow()
            .args(["relay", "migrate-store", "--from"])
            .arg(&data)
            .args(["--to", &db.url])
            .output()
            .expect("runs")
    };
    let out = migrate();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another hookflow relay is using"), "{err}");
    sqlite.stop().await;

    let out = migrate();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("moved 3 pending deliveries, 2 dead letters and 5 de-duplication keys"),
        "{err}"
    );
    assert!(
        !data.join("events.db").exists(),
        "the SQLite file is set aside"
    );
    assert!(
        std::fs::read_dir(&data)
            .expect("list")
            .filter_map(Result::ok)
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("events.db.moved-")),
        "{err}"
    );
    // Run again: nothing left to move, and it says so.
    let again = migrate();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no event store in"));

    // In PostgreSQL: the same events, states, attempts and due times.
    let c = db.client().await.expect("session");
    let rows = c
        .query(
            "SELECT e.id, d.state, d.attempts, d.next_at > now() + interval '50 minutes',
                    d.last_error, d.token, convert_from(e.payload, 'UTF8'), e.payload_kind,
                    e.path, e.headers
             FROM hookflow.events e JOIN hookflow.deliveries d ON d.event_id = e.id ORDER BY e.id",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.len(), 5);
    let mut moved_ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    moved_ids.sort();
    ids.sort();
    assert_eq!(moved_ids, ids);
    for r in &rows {
        let state: String = r.get(1);
        assert_eq!(r.get::<_, i32>(2), 1, "one attempt made");
        let error: Option<String> = r.get(4);
        if state == "pending" {
            assert!(r.get::<_, bool>(3), "still due in an hour");
        } else {
            assert_eq!(state, "dead");
            assert!(error.unwrap_or_default().contains("404"));
        }
        let token: String = r.get(5);
        assert!(
            token.contains("ghp_moving"),
            "the sender's token came along"
        );
        // The request as received: the exact body, its path and headers.
        let payload: String = r.get(6);
        assert!(payload.starts_with("{\"n\":"), "{payload}");
        assert_eq!(r.get::<_, String>(7), "request");
        assert_eq!(r.get::<_, String>(8), "/ci/webhook");
        let headers: String = r.get(9);
        assert!(headers.contains("x-github-delivery"), "{headers}");
    }

    // A relay on PostgreSQL: a sender's retry is still recognised, and the moved deliveries go
    // out once due.
    let gh2 = FakeGithub::start().await;
    let pg = start_on(&db, &gh2, dir.path()).await;
    let (status, answer) = send(support::relay::url(&pg, ""), 0).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], json!(true), "{answer}");
    c.batch_execute("UPDATE hookflow.deliveries SET next_at = now() WHERE state = 'pending'")
        .await
        .expect("due now");
    let delivered = gh2.wait_for(3, WAIT).await;
    let mut tokens: Vec<String> = delivered.iter().map(|d| d.authorization.clone()).collect();
    tokens.sort();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.iter().all(|t| t.starts_with("Bearer ghp_moving")),
        "{tokens:?}"
    );
    let letters = pg.store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 2);
    pg.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatch_rate_limit_holds_for_the_cluster_not_per_relay() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let gh = FakeGithub::start().await;
    // 6 a minute: a burst of 6, then one every 10 s, whichever relay delivers.
    let (a, b, _dirs) = two_relays(&db, &gh, 6).await;
    for n in 0..10 {
        let r = if n % 2 == 0 { &a } else { &b };
        let (status, answer) = post(
            r,
            "/octo/hooks/ci/webhook?__token=ghp_limited",
            format!("{{\"n\":{n}}}"),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    gh.wait_for(6, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        gh.delivered().len(),
        6,
        "two relays together sent one burst, not one each"
    );
    // The other four wait for slots 10 s apart, booked across both relays.
    let c = db.client().await.expect("session");
    let waits: Vec<f64> = c
        .query(
            "SELECT extract(epoch FROM next_at - now())::float8 FROM hookflow.deliveries
             WHERE state = 'pending' ORDER BY next_at",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(waits.len(), 4, "{waits:?}");
    for (i, pair) in waits.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!((gap - 10.0).abs() < 1.0, "slot {i} to {}: {waits:?}", i + 1);
    }
    assert!(waits[0] > 4.0 && waits[0] < 11.0, "{waits:?}");
    // A repository of its own has its own bucket.
    let (status, _) = post(&a, "/octo/other/ci/webhook?__token=ghp_limited", "{}").await;
    assert_eq!(status, 200);
    gh.wait_for(7, WAIT).await;
    a.stop().await;
    b.stop().await;
}
