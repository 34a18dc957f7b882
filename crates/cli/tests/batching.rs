//! Batching: webhooks waiting behind GitHub's dispatch rate limit go together in one dispatch,
//! in order, none twice; a quiet event goes alone at once; a batch GitHub refuses is split until
//! the one bad event is a dead letter alone; a relay killed mid-batch loses nothing. Real HTTP
//! to a fake GitHub, real SQLite files and a real PostgreSQL.

use crate::support;

use std::time::{Duration, Instant};

use hookflow_protocol::Environment;
use hookflow_relay::config::{Overrides, RelayConfig};
use hookflow_relay::store::{
    Destination, Event, NewEvent, Payload, Request, Store as _, TokenSource,
};
use hookflow_relay::Running;
use serde_json::{Map, Value};
use support::fake_github::{Answer, Dispatch, FakeGithub};
use support::relay::{http, on_both_stores, spawn_binary, url};

fn env() -> Environment {
    Environment::with_vars(vec![("BUSY_TOKEN".into(), "ghp_busy".into())])
}

/// A relay whose endpoint `busy` batches for `acme/busy`, at `per_minute` dispatches a minute.
fn relay_config(
    dir: &std::path::Path,
    gh: &FakeGithub,
    store: Option<&str>,
    per_minute: u32,
    batching: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:0
data: {}
api_url: {}
{}delivery:
  initial_backoff: 50ms
  max_backoff: 400ms
  timeout: 2s
  lease: 3s
  rate_limit_per_minute: {per_minute}
endpoints:
  - slug: busy
    repo: acme/busy
    token_env: BUSY_TOKEN
    event_type_path: kind
    batching: {batching}
",
        dir.join("data").display(),
        gh.url(),
        store.map(|s| format!("store: {s}\n")).unwrap_or_default(),
    )
}

async fn start(text: &str) -> Running {
    let config =
        RelayConfig::parse(text, "batching.yml", &Overrides::default()).expect("config parses");
    hookflow_relay::start(config, env())
        .await
        .expect("relay starts")
}

async fn send(r: &Running, n: usize, kind: &str) {
    let resp = http()
        .post(url(r, "/hooks/busy"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"n":{n},"kind":"{kind}"}}"#))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202, "event {n}");
}

/// The `n` of each event a dispatch carries.
fn numbers(d: &Dispatch) -> Vec<u64> {
    d.events()
        .iter()
        .map(|p| {
            let body: Value =
                serde_json::from_str(p["body"].as_str().expect("a text body")).expect("JSON body");
            body["n"].as_u64().expect("n")
        })
        .collect()
}

async fn wait_for_ids(gh: &FakeGithub, n: usize, within: Duration) {
    let start = Instant::now();
    while gh.delivered_ids().len() < n {
        assert!(
            start.elapsed() < within,
            "{} of {n} events delivered after {within:?} in {} dispatches",
            gh.delivered_ids().len(),
            gh.dispatches().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 1,000 webhooks in a burst to one repository allowed 12 dispatches a minute: all delivered,
/// in order, none twice, in a few dispatches; then a quiet event goes alone, at once, as an
/// ordinary dispatch.
async fn burst_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(&relay_config(
        dir.path(),
        &gh,
        store,
        12,
        "{mode: adaptive, max_events: 400}",
    ))
    .await;
    for n in 0..1000 {
        send(&r, n, "order.paid").await;
    }
    wait_for_ids(&gh, 1000, Duration::from_secs(60)).await;
    let dispatches = gh.dispatches();
    assert!(dispatches.iter().all(|d| d.status == 204), "all taken");
    assert!(gh.delivered_ids().values().all(|&k| k == 1), "none twice");
    let order: Vec<u64> = dispatches.iter().flat_map(numbers).collect();
    assert_eq!(
        order,
        (0..1000).collect::<Vec<u64>>(),
        "arrival order, within and across dispatches"
    );
    let sizes: Vec<usize> = dispatches.iter().map(|d| d.events().len()).collect();
    assert!(dispatches.len() <= 12 + 8, "few dispatches: {sizes:?}");
    assert!(
        sizes.iter().any(|&s| s >= 100),
        "batches of many: {sizes:?}"
    );
    for d in dispatches.iter().filter(|d| d.events().len() > 1) {
        let payload = &d.body["client_payload"];
        assert_eq!(
            d.body["event_type"], "order.paid",
            "the events' common type"
        );
        assert_eq!(
            payload["batch_size"].as_u64(),
            Some(d.events().len() as u64)
        );
        assert!(payload["batch_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        assert!(payload.as_object().expect("object").len() <= 10);
        assert!(serde_json::to_vec(&d.body).expect("json").len() < 65536);
        for e in d.events() {
            assert_eq!(e["headers"]["content-type"], "application/json");
            assert_eq!(e["path"], "/busy/webhook");
            assert_eq!(e["source"], "busy");
            assert_eq!(e["event_type"], "order.paid");
        }
    }
    // The queue is empty and the lane has a token again within 5 s: a quiet event goes alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = gh.dispatches().len();
    let sent = Instant::now();
    send(&r, 1000, "order.refunded").await;
    let d = gh.wait_for(before + 1, Duration::from_secs(10)).await;
    let took = sent.elapsed();
    let last = d.last().expect("a dispatch");
    assert!(
        last.body["client_payload"].get("batch").is_none(),
        "an ordinary dispatch: {:?}",
        last.body
    );
    assert_eq!(last.body["event_type"], "order.refunded");
    assert_eq!(numbers(last), [1000]);
    assert!(took < Duration::from_secs(1), "sent at once: {took:?}");
    r.stop().await;
}

on_both_stores!(burst_story: a_burst_goes_in_few_ordered_batches_on_sqlite, a_burst_goes_in_few_ordered_batches_on_postgres);

/// Events stored straight into the running relay's store, as the accept path stores them.
async fn store_events(r: &Running, bodies: &[String]) {
    let requests = bodies.iter().map(|body| {
        let mut headers = Map::new();
        headers.insert("content-type".into(), "application/json".into());
        (
            "order.paid",
            Request {
                method: "POST".into(),
                path: "/busy/webhook".into(),
                headers,
                body: body.clone().into_bytes(),
            },
        )
    });
    store_requests(r, requests).await;
}

/// Requests stored straight into the running relay's store with their event types; the `i`th
/// has the id `01BATCHTEST` and `i` in 15 digits.
async fn store_requests<'a>(r: &Running, requests: impl IntoIterator<Item = (&'a str, Request)>) {
    let started = Instant::now();
    for (i, (event_type, request)) in requests.into_iter().enumerate() {
        let event = NewEvent {
            event: Event {
                id: format!("01BATCHTEST{i:015}"),
                received_at: chrono::Utc::now().timestamp_millis(),
                source: "busy".into(),
                event_type: event_type.into(),
                payload: Payload::Request(request),
            },
            destinations: vec![Destination::Repo {
                repo: "acme/busy".into(),
                token: TokenSource::Env("BUSY_TOKEN".into()),
            }],
            dedupe_key: None,
        };
        r.store.insert(event).await.expect("stored");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// GitHub refuses (422) any dispatch carrying one poisoned event: its batch is split until the
/// poisoned one goes alone and is a dead letter; its neighbours are delivered once each.
async fn split_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    gh.refuse_containing("poison");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(&relay_config(dir.path(), &gh, store, 0, "{mode: adaptive}")).await;
    // Waiting together (as behind a rate limit): the relay finds them at its next look.
    let bodies: Vec<String> = (0..16)
        .map(|n| {
            if n == 5 {
                r#"{"n":5,"poison":true}"#.to_string()
            } else {
                format!(r#"{{"n":{n}}}"#)
            }
        })
        .collect();
    store_events(&r, &bodies).await;
    wait_for_ids(&gh, 15, Duration::from_secs(20)).await;
    let start = Instant::now();
    loop {
        let c = r.store.counts().await.expect("counts");
        if c.dead == 1 && c.pending == 0 && c.inflight == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids = gh.delivered_ids();
    assert_eq!(ids.len(), 15, "every neighbour delivered");
    assert!(ids.values().all(|&k| k == 1), "none twice: {ids:?}");
    assert!(!ids.contains_key("01BATCHTEST000000000000005"));
    let dispatches = gh.dispatches();
    let refused: Vec<usize> = dispatches
        .iter()
        .filter(|d| d.status == 422)
        .map(|d| d.events().len())
        .collect();
    assert!(
        refused.iter().any(|&n| n > 1),
        "a batch was refused: {refused:?}"
    );
    assert_eq!(
        refused.last(),
        Some(&1),
        "then the poisoned event alone: {refused:?}"
    );
    assert!(
        refused.len() <= 10,
        "halving finds it in a few tries: {refused:?}"
    );
    let dead = r.store.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "01BATCHTEST000000000000005");
    assert!(
        dead[0].error.contains("422") || dead[0].error.contains("Invalid request"),
        "{}",
        dead[0].error
    );
    r.stop().await;
}

on_both_stores!(split_story: a_refused_batch_is_split_until_the_bad_event_is_alone_on_sqlite, a_refused_batch_is_split_until_the_bad_event_is_alone_on_postgres);

/// The relay is killed (SIGKILL) while GitHub holds a batch unanswered: after the restart every
/// event is delivered once, the batch GitHub never acknowledged included.
async fn killed_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    // The first event is held a second, so the rest wait for its lane; their batch hangs.
    gh.script(vec![
        Answer::AcceptAfter(Duration::from_secs(1)),
        Answer::Hang,
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.yml");
    std::fs::write(
        &file,
        relay_config(dir.path(), &gh, store, 0, "{mode: adaptive}"),
    )
    .expect("config");
    let spawn = || {
        spawn_binary(
            env!("CARGO_BIN_EXE_hookflow"),
            &file,
            &[("BUSY_TOKEN", "ghp_busy")],
        )
    };
    let (mut first, addr) = spawn().await;
    for n in 0..60 {
        let resp = http()
            .post(format!("http://{addr}/hooks/busy"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"n":{n},"kind":"order.paid"}}"#))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 202);
    }
    let d = gh.wait_for(2, Duration::from_secs(30)).await;
    assert!(d[1].events().len() > 1, "the hanging dispatch is a batch");
    first.kill().await.expect("SIGKILL");
    let (mut second, _) = spawn().await;
    wait_for_ids(&gh, 60, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = gh.delivered_ids();
    assert_eq!(ids.len(), 60);
    assert!(
        ids.values().all(|&k| k == 1),
        "acknowledged once, none repeated: {ids:?}"
    );
    second.kill().await.expect("stop");
}

on_both_stores!(killed_story: a_relay_killed_mid_batch_loses_nothing_on_sqlite, a_relay_killed_mid_batch_loses_nothing_on_postgres);

/// Real GitHub webhooks, signed, one of them forged, travel in one batch; `hookflow run` on what
/// GitHub received checks each event's own signature: the forged one is refused, the others
/// verify and match, and the step still succeeds.
async fn runtime_story(store: Option<&str>) {
    const SECRET: &str = "batch-story-secret";
    let Some(examples) = support::examples::dir() else {
        return;
    };
    let gh = FakeGithub::start().await;
    // The first event is held, so the rest wait together for its lane.
    gh.script(vec![Answer::AcceptAfter(Duration::from_millis(700))]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(&relay_config(dir.path(), &gh, store, 0, "{mode: adaptive}")).await;
    // (example, GitHub event, forged)
    let cases = [
        ("ping/payload.json", "ping", false),
        ("push/with-organization.payload.json", "push", false),
        ("pull_request/opened.payload.json", "pull_request", true),
        ("push/with-new-branch.payload.json", "push", false),
        ("pull_request/labeled.payload.json", "pull_request", false),
    ];
    let requests: Vec<(&str, Request)> = cases
        .iter()
        .map(|(file, event, forged)| {
            let body = std::fs::read(examples.join(file)).expect("example payload");
            let secret = if *forged { "not-the-secret" } else { SECRET };
            let mut headers = Map::new();
            headers.insert("content-type".into(), "application/json".into());
            headers.insert("x-github-event".into(), (*event).into());
            headers.insert(
                "x-hub-signature-256".into(),
                support::cli::github_signature(secret, &body).into(),
            );
            let request = Request {
                method: "POST".into(),
                path: "/github/webhook".into(),
                headers,
                body,
            };
            ("webhook", request)
        })
        .collect();
    store_requests(&r, requests).await;
    wait_for_ids(&gh, cases.len(), Duration::from_secs(20)).await;
    let delivered = gh.delivered();
    assert!(
        delivered.iter().any(|d| d.events().len() > 2),
        "they went in a batch: {:?}",
        delivered
            .iter()
            .map(|d| d.events().len())
            .collect::<Vec<_>>()
    );

    // Each dispatch as the workflow run sees it, through `hookflow run` and $GITHUB_OUTPUT.
    let workflows = support::cli::root().join("examples/workflows");
    let mut seen = std::collections::BTreeMap::new();
    for (k, d) in delivered.iter().enumerate() {
        let event_file = dir.path().join(format!("event-{k}.json"));
        std::fs::write(&event_file, d.body.to_string()).expect("event file");
        let outputs_file = dir.path().join(format!("outputs-{k}.txt"));
        let out = support::cli::hookflow()
            .args(["run", "--event"])
            .arg(&event_file)
            .arg("--workflows")
            .arg(&workflows)
            .env("GITHUB_OUTPUT", &outputs_file)
            .env("RUNNER_TEMP", dir.path())
            .env("EXAMPLE_WEBHOOK_SECRET", SECRET)
            .output()
            .expect("hookflow runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let outputs = support::cli::read_outputs(&outputs_file);
        let events: Vec<Value> = serde_json::from_str(&outputs["events"]).expect("events is JSON");
        assert_eq!(outputs["batch_size"], events.len().to_string());
        assert_eq!(events.len(), d.events().len());
        let any_matched = events.iter().any(|e| e["matched"] == true);
        assert_eq!(out.status.success(), any_matched, "{stderr}");
        if any_matched {
            let first = events.iter().find(|e| e["matched"] == true).expect("one");
            assert_eq!(
                outputs["request_id"],
                first["request_id"].as_str().expect("id")
            );
        }
        for e in events {
            let i: usize = e["id"].as_str().expect("id")[11..].parse().expect("number");
            seen.insert(i, (e, stderr.to_string()));
        }
    }
    assert_eq!(seen.len(), cases.len(), "every event was in a dispatch");
    for (i, (_, event, forged)) in cases.iter().enumerate() {
        let (e, stderr) = &seen[&i];
        if *forged {
            assert_eq!(e["matched"], false, "{e}");
            let refusal = e["refusal"].as_str().expect("a refusal");
            assert!(refusal.contains("signature"), "{refusal}");
            assert!(
                stderr.contains(&format!("(event 01BATCHTEST{i:015}) refused")),
                "the step's log says which event was refused: {stderr}"
            );
        } else {
            assert_eq!(e["matched"], true, "{e}");
            assert_eq!(e["verified"], true, "{e}");
            assert_eq!(e["workflow"], "github.yml");
            assert_eq!(e["outputs"]["event"], *event);
            assert_eq!(e["headers"]["x-github-event"], *event);
        }
    }
    r.stop().await;
}

on_both_stores!(runtime_story: the_runtime_checks_each_event_of_a_batch_on_sqlite, the_runtime_checks_each_event_of_a_batch_on_postgres);
