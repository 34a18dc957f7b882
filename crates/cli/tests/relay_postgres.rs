//! Relays on a shared PostgreSQL store: webhooks accepted by any relay are delivered by one of
//! them, exactly once, with the same behaviour as on SQLite.

mod support;

use std::time::{Duration, Instant};

use hookflow_relay::store::postgres::scratch::ScratchDb;
use hookflow_relay::store::Store as _;
use serde_json::json;
use support::fake_github::FakeGithub;
use support::relay::{config, post, test_env, WAIT};

async fn start_on(
    db: &ScratchDb,
    gh: &FakeGithub,
    dir: &std::path::Path,
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
    hookflow_relay::start(cfg, test_env())
        .await
        .expect("relay starts")
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
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_database_deliver_every_webhook_exactly_once() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let gh = FakeGithub::start().await;
    let (d1, d2) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = start_on(&db, &gh, d1.path()).await;
    let b = start_on(&db, &gh, d2.path()).await;
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
    let c = a.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
    a.stop().await;
    b.stop().await;
}
