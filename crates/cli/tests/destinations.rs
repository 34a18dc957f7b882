//! Destinations: one webhook fanned out to several repositories and a plain HTTP endpoint, each
//! delivery with its own attempts, dead letter and replay, on SQLite and on PostgreSQL.

use crate::support;

use std::time::Duration;

use hookflow_protocol::signature::{verify, Scheme};
use hookflow_protocol::Environment;
use hookflow_relay::store::Store as _;
use hookflow_relay::Running;
use serde_json::{json, Map, Value};
use support::fake_github::{Answer, FakeGithub};
use support::receiver::Receiver;
use support::relay::{
    config, get_text, http, on_both_stores, settled, spawn_binary, url, wait_until, WAIT,
};

/// The Standard Webhooks specification's example secret.
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env() -> Environment {
    Environment::with_vars(vec![
        ("BILLING_TOKEN".into(), "ghp_billing".into()),
        ("ANALYTICS_TOKEN".into(), "ghp_analytics".into()),
        ("INTERNAL_WHSEC".into(), WHSEC.into()),
    ])
}

fn endpoints(receiver: &Receiver) -> String {
    format!(
        "endpoints:
  - slug: stripe
    event_type_path: type
    destinations:
      - repo: acme/billing
        token_env: BILLING_TOKEN
        event_types: ['invoice.*']
      - repo: acme/analytics
        token_env: ANALYTICS_TOKEN
        transform: {{id: $.id, kind: $.type, amount: $.data.object.amount_paid}}
      - url: {}
        secret_env: INTERNAL_WHSEC
        headers: {{X-Team: billing}}
  - slug: invoices-only
    event_type_path: type
    destinations:
      - repo: acme/billing
        token_env: BILLING_TOKEN
        event_types: ['invoice.*']
",
        receiver.url("/in/stripe")
    )
}

async fn start(
    dir: &std::path::Path,
    gh: &FakeGithub,
    receiver: &Receiver,
    store: Option<&str>,
) -> Running {
    let extra = format!(
        "{}{}",
        store.map(|s| format!("store: {s}\n")).unwrap_or_default(),
        endpoints(receiver)
    );
    hookflow_relay::start(config(dir, gh, &extra), env())
        .await
        .expect("relay starts")
}

const INVOICE: &str =
    r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"amount_paid":4200,"lines":[1,2]}}}"#;

async fn send(r: &Running, path: &str, body: &str) -> (u16, Value) {
    let resp = http()
        .post(url(r, path))
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", "t=1,v1=not-checked-here")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    support::relay::json_of(resp).await
}

fn headers_map(pairs: &[(String, String)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

/// The whole story on one store: fan-out, a retry on one repository, a dead letter on the HTTP
/// endpoint replayed alone, event-type filters, per-destination metrics.
async fn fan_out_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    gh.script_for("acme/analytics", vec![Answer::server_error()]);
    let receiver = Receiver::start().await;
    receiver.script(&[404]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, &receiver, store).await;

    let (status, answer) = send(&r, "/hooks/stripe", INVOICE).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["event_id"]
        .as_str()
        .expect("an event id")
        .to_string();
    settled(&r).await;

    // billing: delivered once, the exact body and the sender's signature header kept.
    let to = |repo: &str| -> Vec<_> {
        gh.dispatches()
            .into_iter()
            .filter(|d| d.repo == repo)
            .collect()
    };
    let billing = to("acme/billing");
    assert_eq!(billing.len(), 1, "{billing:?}");
    assert_eq!(billing[0].authorization, "Bearer ghp_billing");
    let payload = &billing[0].body["client_payload"];
    assert_eq!(payload["id"], id.as_str());
    assert_eq!(payload["body"], INVOICE, "the exact bytes");
    assert_eq!(
        payload["headers"]["stripe-signature"],
        "t=1,v1=not-checked-here"
    );
    assert_eq!(billing[0].body["event_type"], "invoice.paid");
    // analytics: 500, then delivered after its retry; the transform's body, no signature.
    let analytics = to("acme/analytics");
    assert_eq!(
        analytics.iter().map(|d| d.status).collect::<Vec<_>>(),
        [500, 204]
    );
    let payload = &analytics[1].body["client_payload"];
    assert_eq!(
        serde_json::from_str::<Value>(payload["body"].as_str().expect("text")).expect("json"),
        json!({"id": "evt_1", "kind": "invoice.paid", "amount": 4200})
    );
    assert!(
        payload["headers"].get("stripe-signature").is_none(),
        "{payload}"
    );
    assert_eq!(payload["headers"]["content-type"], "application/json");
    // The HTTP endpoint: the exact body with its headers, signed; 404 made it a dead letter.
    let got = receiver.received();
    assert_eq!(got.len(), 1, "a 404 is not retried");
    let first = &got[0];
    assert_eq!(first.path, "/in/stripe");
    assert_eq!(first.body, INVOICE.as_bytes());
    assert_eq!(
        first.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(first.header("x-hookflow-event-id"), Some(id.as_str()));
    assert_eq!(first.header("x-hookflow-endpoint"), Some("stripe"));
    assert_eq!(first.header("x-hookflow-event-type"), Some("invoice.paid"));
    assert_eq!(first.header("x-team"), Some("billing"));
    assert_eq!(first.header("webhook-id"), Some(id.as_str()));
    let now = chrono::Utc::now().timestamp();
    verify(
        &Scheme::StandardWebhooks,
        &headers_map(&first.headers),
        &first.body,
        WHSEC.as_bytes(),
        now,
        300,
    )
    .expect("the Standard Webhooks signature verifies");
    assert!(verify(
        &Scheme::StandardWebhooks,
        &headers_map(&first.headers),
        b"{}",
        WHSEC.as_bytes(),
        now,
        300,
    )
    .is_err());

    let letters = r.store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event_id, id);
    assert_eq!(
        letters[0].destination,
        format!("http:{}", receiver.url("/in/stripe"))
    );
    assert!(letters[0].error.contains("404"), "{}", letters[0].error);

    // Replayed alone, by its delivery id: the HTTP endpoint gets it again; no repository does.
    assert_eq!(
        r.store
            .replay_dead(vec![letters[0].id.clone()])
            .await
            .expect("replay"),
        1
    );
    wait_until("the replay delivered", || receiver.received().len() == 2).await;
    settled(&r).await;
    assert_eq!(receiver.received()[1].status, 204);
    assert_eq!(receiver.received()[1].body, INVOICE.as_bytes());
    assert_eq!(to("acme/billing").len(), 1);
    assert_eq!(to("acme/analytics").len(), 2);
    let c = r.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));

    // Event-type filters: billing takes invoices only.
    let (status, _) = send(
        &r,
        "/hooks/stripe",
        r#"{"id":"evt_2","type":"customer.created","data":{"object":{}}}"#,
    )
    .await;
    assert_eq!(status, 202);
    wait_until("the customer event fanned out", || {
        receiver.received().len() == 3 && to("acme/analytics").len() == 3
    })
    .await;
    settled(&r).await;
    assert_eq!(
        to("acme/billing").len(),
        1,
        "billing does not take customer.*"
    );
    // An event no destination takes is acknowledged and not stored.
    let (status, answer) = send(
        &r,
        "/hooks/invoices-only",
        r#"{"id":"evt_3","type":"customer.created"}"#,
    )
    .await;
    assert_eq!(status, 202);
    assert!(answer["event_id"].is_null(), "{answer}");
    assert!(
        answer["ignored"]
            .as_str()
            .unwrap_or_default()
            .contains("customer.created"),
        "{answer}"
    );

    let metrics = get_text(&url(&r, "/metrics")).await;
    for line in [
        "hookflow_destination_attempts_total{endpoint=\"stripe\",destination=\"repo:acme/billing\",result=\"delivered\"} 1",
        "hookflow_destination_attempts_total{endpoint=\"stripe\",destination=\"repo:acme/analytics\",result=\"retried\"} 1",
        "hookflow_destination_attempts_total{endpoint=\"stripe\",destination=\"repo:acme/analytics\",result=\"delivered\"} 2",
        "hookflow_ignored_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let http_dead = format!(
        "hookflow_destination_attempts_total{{endpoint=\"stripe\",destination=\"http:{}\",result=\"dead\"}} 1",
        receiver.url("/in/stripe")
    );
    assert!(metrics.contains(&http_dead), "{http_dead} in\n{metrics}");
    r.stop().await;
}

on_both_stores!(fan_out_story: fan_out_on_sqlite, fan_out_on_postgres);

/// A relay stopped while one destination's delivery hangs: after the restart that delivery is
/// made, and the destinations already delivered are not sent again.
async fn restart_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    gh.script_for("acme/analytics", vec![Answer::Hang]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, &receiver, store).await;
    let (status, answer) = send(&r, "/hooks/stripe", INVOICE).await;
    assert_eq!(status, 202, "{answer}");
    let to = |repo: &str| dispatches_to(&gh, repo);
    first_attempts_made(&gh, &receiver).await;
    r.stop().await;
    let r = start(dir.path(), &gh, &receiver, store).await;
    wait_until("analytics delivered after the restart", || {
        gh.dispatches()
            .iter()
            .any(|d| d.repo == "acme/analytics" && d.status == 204)
    })
    .await;
    settled(&r).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(to("acme/billing"), 1, "not repeated");
    assert_eq!(receiver.received().len(), 1, "not repeated");
    assert_eq!(
        to("acme/analytics"),
        2,
        "the hung attempt, then the one after the restart"
    );
    let c = r.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 0));
    r.stop().await;
    let _ = WAIT;
}

on_both_stores!(restart_story:
    a_restart_mid_fan_out_repeats_nothing_recorded_on_sqlite,
    a_restart_mid_fan_out_repeats_nothing_recorded_on_postgres);

/// Dispatches `gh` received for `repo`, whatever it answered.
fn dispatches_to(gh: &FakeGithub, repo: &str) -> usize {
    gh.dispatches().iter().filter(|d| d.repo == repo).count()
}

/// Waits until each destination of the invoice saw its first attempt (billing and the endpoint
/// delivered, analytics hanging).
async fn first_attempts_made(gh: &FakeGithub, receiver: &Receiver) {
    wait_until(
        "billing and the endpoint delivered, analytics hanging",
        || {
            dispatches_to(gh, "acme/billing") == 1
                && receiver.received().len() == 1
                && dispatches_to(gh, "acme/analytics") == 1
        },
    )
    .await;
}

/// Deliveries not done (pending, in flight or dead), read from the store a relay is using.
async fn deliveries_left(data: &std::path::Path, store: Option<&str>) -> u64 {
    let counts = match store {
        None => hookflow_relay::store::sqlite::SqliteStore::open(data)
            .expect("opens")
            .counts()
            .expect("counts"),
        Some(url) => {
            let location =
                hookflow_relay::store::postgres::PgLocation::parse(url).expect("a store URL");
            hookflow_relay::store::postgres::PgStore::open(&location, false)
                .await
                .expect("opens")
                .counts()
                .await
                .expect("counts")
        }
    };
    counts.pending + counts.inflight + counts.dead
}

/// A relay killed (SIGKILL) while one destination's delivery is in flight: after a restart on
/// the same store, that delivery is made, and the ones recorded delivered are not repeated.
async fn killed_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    gh.script_for("acme/analytics", vec![Answer::Hang]);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.yml");
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\n{}delivery:\n  initial_backoff: 50ms\n  timeout: 2s\n  lease: 3s\n  rate_limit_per_minute: 0\n{}",
            dir.path().join("data").display(),
            gh.url(),
            store.map(|s| format!("store: {s}\n")).unwrap_or_default(),
            endpoints(&receiver)
        ),
    )
    .expect("config");
    let spawn = || {
        spawn_binary(
            env!("CARGO_BIN_EXE_hookflow"),
            &file,
            &[
                ("BILLING_TOKEN", "ghp_billing"),
                ("ANALYTICS_TOKEN", "ghp_analytics"),
                ("INTERNAL_WHSEC", WHSEC),
            ],
        )
    };
    let (mut first, addr) = spawn().await;
    let resp = http()
        .post(format!("http://{addr}/hooks/stripe"))
        .header("content-type", "application/json")
        .body(INVOICE)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let to = |repo: &str| dispatches_to(&gh, repo);
    first_attempts_made(&gh, &receiver).await;
    // Killed once the two results are recorded (a delivery made but not yet recorded is
    // rightly made again: at least once).
    let data = dir.path().join("data");
    let mut left = u64::MAX;
    for _ in 0..200 {
        left = deliveries_left(&data, store).await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(left, 1, "only the hanging delivery is left");
    first.kill().await.expect("SIGKILL");
    let (mut second, _) = spawn().await;
    wait_until("analytics delivered after the restart", || {
        gh.dispatches()
            .iter()
            .any(|d| d.repo == "acme/analytics" && d.status == 204)
    })
    .await;
    // Long enough for anything wrongly due again to go out.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(to("acme/billing"), 1, "recorded delivered: not repeated");
    assert_eq!(
        receiver.received().len(),
        1,
        "recorded delivered: not repeated"
    );
    assert_eq!(to("acme/analytics"), 2, "the one in flight, then once more");
    second.kill().await.expect("stop");
}

on_both_stores!(killed_story:
    a_relay_killed_mid_fan_out_repeats_nothing_recorded_on_sqlite,
    a_relay_killed_mid_fan_out_repeats_nothing_recorded_on_postgres);
