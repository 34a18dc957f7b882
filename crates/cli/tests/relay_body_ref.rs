//! Bodies too large for a dispatch, end to end: webhooks of megabytes go into the relay, GitHub
//! (a fake, over real HTTP) receives dispatches naming their bodies by reference, and `hookflow
//! run` on each dispatch fetches the body from the relay over real HTTP on 127.0.0.1 and reads it
//! exactly as an inline body, signatures over the exact bytes included. On SQLite and on
//! PostgreSQL, with the relay restarted between the dispatch and the fetch.

use crate::support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hookflow_protocol::body_ref::Referrer;
use hookflow_protocol::{Clock as _, Environment, ManualClock};
use hookflow_relay::config::{Overrides, RelayConfig};
use hookflow_relay::store::Store as _;
use hookflow_relay::Running;
use hookflow_testkit::noise;
use serde_json::Value;
use support::cli::{github_signature, hookflow, run_step, StepRun};
use support::fake_github::{Dispatch, FakeGithub};
use support::relay::{free_port, get_text, http, on_both_stores};

const URL_SECRET: &str = "body-url-secret-of-the-relays-0123";
const WEBHOOK_SECRET: &str = "hookflow-example-secret";
const MIB: usize = 1024 * 1024;

fn config_text(port: u16, data: &Path, gh: &FakeGithub, store: Option<&str>) -> String {
    format!(
        "listen: 127.0.0.1:{port}
data: {}
api_url: {}
{}public_url: http://127.0.0.1:{port}/
body_ref:
  secret_env: BODY_URL_SECRET
  retention: 1h
delivery:
  initial_backoff: 50ms
  max_backoff: 400ms
  timeout: 5s
  rate_limit_per_minute: 0
endpoints:
  - slug: github
    repo: octo/hooks
    token_env: RELAY_TEST_TOKEN
  - slug: uploads
    repo: octo/hooks
    token_env: RELAY_TEST_TOKEN
",
        data.display(),
        gh.url(),
        store.map(|s| format!("store: {s}\n")).unwrap_or_default(),
    )
}

async fn start(text: &str, clock: &Arc<ManualClock>) -> Running {
    let config = RelayConfig::parse(text, "bodies.yml", &Overrides::default()).expect("parses");
    let env = Environment::with_clock(
        clock.clone(),
        vec![
            ("RELAY_TEST_TOKEN".into(), "ghp_endpointtoken".into()),
            ("BODY_URL_SECRET".into(), URL_SECRET.into()),
        ],
    );
    hookflow_relay::start(config, env)
        .await
        .expect("relay starts")
}

/// A relay with bodies by reference on SQLite (endpoints `extra` appended), with its fake
/// GitHub, its data folder, its port and configuration, and the clock it runs on.
struct Relay {
    gh: FakeGithub,
    /// The data folder: deleted when dropped, so a test keeps it while the relay runs.
    dir: tempfile::TempDir,
    port: u16,
    text: String,
    clock: Arc<ManualClock>,
    r: Running,
}

async fn sqlite_relay(extra: &str) -> Relay {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = config_text(port, &dir.path().join("data"), &gh, None) + extra;
    let clock = Arc::new(ManualClock::at_ms(chrono::Utc::now().timestamp_millis()));
    let r = start(&text, &clock).await;
    Relay {
        gh,
        dir,
        port,
        text,
        clock,
        r,
    }
}

/// A form post of at least `n` bytes whose values do not compress to a dispatch.
fn form(n: usize) -> Vec<u8> {
    let hexed = hex::encode(noise(n / 2, 7));
    format!("payload={hexed}&kind=upload").into_bytes()
}

/// A JSON document of at least `n` bytes that compresses about tenfold: records with
/// varying numbers and words, as exports and batch events are.
fn big_json(n: usize) -> Vec<u8> {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let mut out = String::from("{\"records\":[");
    let mut i: u64 = 0;
    while out.len() < n {
        let r = noise(8, i + 11);
        out.push_str(&format!(
            "{{\"id\":{i},\"name\":\"{}-{}\",\"amount\":{},\"tag\":\"{}\"}},",
            words[(r[0] % 6) as usize],
            hex::encode(&r[1..5]),
            u32::from_le_bytes([r[4], r[5], r[6], r[7]]),
            words[(r[1] % 6) as usize]
        ));
        i += 1;
    }
    out.pop();
    out.push_str("]}");
    out.into_bytes()
}

/// POSTs a webhook; returns the event id of its 202.
async fn post(
    r: &Running,
    path: &str,
    content_type: &str,
    extra: &[(&str, String)],
    body: Vec<u8>,
) -> String {
    let mut req = http()
        .post(format!("http://{}{path}", r.addr))
        .timeout(Duration::from_secs(60))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.expect("json answer");
    assert_eq!(status, 202, "{answer}");
    answer["event_id"]
        .as_str()
        .expect("an event id")
        .to_string()
}

/// The dispatch GitHub received for event `id`.
fn dispatch_of<'a>(delivered: &'a [Dispatch], id: &str) -> &'a Dispatch {
    delivered
        .iter()
        .find(|d| d.event_ids().iter().any(|e| e == id))
        .unwrap_or_else(|| panic!("no dispatch for {id}"))
}

/// `hookflow run` on `event` (a dispatch as the workflow run's event file), allowed to fetch
/// over plain http from `hosts`.
async fn run(dir: &Path, name: &str, event: &Value, hosts: &str) -> StepRun {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, event.to_string()).expect("event file");
    let (dir, hosts, name) = (dir.to_path_buf(), hosts.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        run_step(
            &file,
            &dir.join(format!("{name}.outputs")),
            &dir.join(format!("{name}.temp")),
            WEBHOOK_SECRET,
            &hosts,
            &["--max-body-bytes", "30000000"],
        )
    })
    .await
    .expect("joined")
}

/// The body a successful run read: its `body_file`, else its `body` output.
fn body_read(r: &StepRun) -> Vec<u8> {
    match r.outputs.get("body_file").filter(|f| !f.is_empty()) {
        Some(file) => std::fs::read(file).expect("body file"),
        None => r.outputs["body"].clone().into_bytes(),
    }
}

async fn bodies_by_reference(store: Option<&str>) {
    let Some(_) = support::examples::dir() else {
        return;
    };
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = config_text(port, &dir.path().join("data"), &gh, store);
    let clock = Arc::new(ManualClock::at_ms(chrono::Utc::now().timestamp_millis()));
    let r = start(&text, &clock).await;
    let hosts = format!("127.0.0.1:{port}");

    // (name, endpoint path, content type, body, signed as GitHub would)
    let push = support::examples::push_of_size(5 * MIB);
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        ("push-5mb", "/hooks/github", "application/json", push),
        (
            "form-2mb",
            "/hooks/uploads",
            "application/x-www-form-urlencoded",
            form(2 * MIB),
        ),
        (
            "binary-2mb",
            "/hooks/uploads",
            "application/octet-stream",
            noise(2 * MIB, 3),
        ),
        (
            "json-20mb",
            "/hooks/uploads",
            "application/json",
            big_json(20 * MIB),
        ),
        (
            "binary-20mb",
            "/hooks/uploads",
            "application/octet-stream",
            noise(20 * MIB, 5),
        ),
        (
            "json-2mb",
            "/hooks/uploads",
            "application/json",
            big_json(2 * MIB),
        ),
        (
            "form-20mb",
            "/hooks/uploads",
            "application/x-www-form-urlencoded",
            form(20 * MIB),
        ),
        (
            "small",
            "/hooks/uploads",
            "application/json",
            br#"{"small": true}"#.to_vec(),
        ),
    ];
    let mut ids = Vec::new();
    for (name, path, content_type, body) in &cases {
        let mut extra = vec![("x-github-event", "push".to_string())];
        if *name == "push-5mb" {
            extra.push((
                "x-hub-signature-256",
                github_signature(WEBHOOK_SECRET, body),
            ));
        }
        let id = post(&r, path, content_type, &extra, body.clone()).await;
        ids.push(id);
    }
    gh.wait_for(cases.len(), Duration::from_secs(60)).await;
    let delivered = gh.delivered();

    // What GitHub received: small dispatches naming the big bodies, the small one inline.
    for ((name, _, _, body), id) in cases.iter().zip(&ids) {
        let d = dispatch_of(&delivered, id);
        let size = serde_json::to_vec(&d.body).expect("json").len();
        assert!(size < 65_536, "{name}: a dispatch of {size} bytes");
        let payload = &d.body["client_payload"];
        if *name == "small" {
            assert_eq!(payload["body"], r#"{"small": true}"#, "{name}");
            assert!(payload.get("body_ref").is_none());
            continue;
        }
        let reference = &payload["body_ref"];
        assert!(
            payload.get("body").is_none(),
            "{name}: sent inline ({:?})",
            payload.get("body_encoding")
        );
        assert_eq!(reference["size"], body.len(), "{name}");
        let url = reference["url"].as_str().expect("url");
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{port}/bodies/{id}?expires=")),
            "{name}: {url}"
        );
        assert_eq!(reference["content_encoding"], "identity");
    }

    // The relay restarts between the dispatch and the fetch: the bodies are in its store.
    r.stop().await;
    let r = start(&text, &clock).await;

    for ((name, _, content_type, body), id) in cases.iter().zip(&ids) {
        let d = dispatch_of(&delivered, id);
        let started = std::time::Instant::now();
        let out = run(dir.path(), name, &d.body, &hosts).await;
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_eq!(out.outputs["matched"], "true", "{name}");
        // The fetch checked size and SHA-256 of the exact bytes; what the step reads of them:
        let read = body_read(&out);
        match *content_type {
            "application/octet-stream" => {
                // Not UTF-8: the step gets base64 of the exact bytes, as for an inline body.
                assert_eq!(out.outputs["body_encoding"], "base64", "{name}");
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(read.trim_ascii())
                    .expect("base64");
                assert!(&decoded == body, "{name}: the exact bytes");
            }
            "application/json" => assert!(
                serde_json::from_slice::<Value>(&read).ok()
                    == serde_json::from_slice::<Value>(body).ok(),
                "{name}: the same JSON"
            ),
            _ => {
                let form: Value = serde_json::from_slice(&read).expect("the form as JSON");
                let text = String::from_utf8_lossy(body);
                let payload = text
                    .strip_prefix("payload=")
                    .and_then(|t| t.strip_suffix("&kind=upload"))
                    .expect("the form sent");
                assert!(form["payload"] == payload, "{name}: the form's fields");
                assert_eq!(form["kind"], "upload");
            }
        }
        eprintln!("{name}: hookflow run took {:?}", started.elapsed());
        if *name == "push-5mb" {
            assert_eq!(out.outputs["workflow"], "github.yml");
            assert_eq!(
                out.outputs["verified"], "true",
                "the signature covers the fetched bytes"
            );
            assert_eq!(out.outputs["event"], "push");
        }
    }
    let metrics = get_text(&format!("http://{}/metrics", r.addr)).await;
    assert!(
        metrics.contains("hookflow_bodies_served_total 7"),
        "{metrics}"
    );
    let bytes: usize = cases
        .iter()
        .filter(|c| c.0 != "small")
        .map(|c| c.3.len())
        .sum();
    assert!(
        metrics.contains(&format!("hookflow_body_bytes_served_total {bytes}")),
        "{metrics}"
    );

    // The transfer is compressed for a client that accepts it; the bytes are the same.
    let json_id = &ids[3];
    let json_ref = &dispatch_of(&delivered, json_id).body["client_payload"]["body_ref"];
    let url = json_ref["url"].as_str().expect("url").to_string();
    let resp = http()
        .get(&url)
        .header("accept-encoding", "gzip")
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("fetched");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let gz = resp.bytes().await.expect("bytes");
    assert!(gz.len() < 20 * MIB / 3, "{} bytes in transfer", gz.len());
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
        .expect("gunzip");
    assert_eq!(plain, cases[3].3);

    // Attacks on the URLs and the reference.
    let push_event = dispatch_of(&delivered, &ids[0]).body.clone();
    let push_url = push_event["client_payload"]["body_ref"]["url"]
        .as_str()
        .expect("url")
        .to_string();
    // A body changed on the way (its digest no longer matches).
    let mut tampered = push_event.clone();
    tampered["client_payload"]["body_ref"]["sha256"] = Value::String("ab".repeat(32));
    let out = run(dir.path(), "tampered", &tampered, &hosts).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("SHA-256"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("sig="),
        "the signature is not printed: {}",
        out.stderr
    );
    // Another event's body with this URL's signature.
    let mut forged = push_event.clone();
    forged["client_payload"]["body_ref"]["url"] = Value::String(push_url.replace(&ids[0], &ids[1]));
    let out = run(dir.path(), "forged", &forged, &hosts).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("refused the URL (403)"),
        "{}",
        out.stderr
    );
    // A host the step does not allow over plain http is not contacted.
    let out = run(dir.path(), "not-allowed", &push_event, "").await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("only https URLs are fetched"),
        "{}",
        out.stderr
    );
    // A genuine URL for a body the relay no longer keeps: 404, said plainly.
    let referrer = Referrer {
        public_url: format!("http://127.0.0.1:{port}"),
        secret: URL_SECRET.as_bytes().to_vec(),
    };
    let gone = referrer.reference(
        "01JPRUNEDBODY0000000000000",
        b"x",
        clock.now_ms() / 1000 + 600,
    );
    let mut pruned = push_event.clone();
    pruned["client_payload"]["body_ref"] = gone.to_value();
    let out = run(dir.path(), "pruned", &pruned, &hosts).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no longer has this body (404)"),
        "{}",
        out.stderr
    );
    // Made-up and malformed URLs, straight to the relay.
    for path in [
        format!(
            "/bodies/{}?expires=9999999999&sig={}",
            ids[0],
            "0".repeat(64)
        ),
        format!("/bodies/{}", ids[0]),
        "/bodies/..%2F..%2Fetc%2Fpasswd?expires=1&sig=x".to_string(),
        format!("/bodies/{}?expires=9999999999&sig=zz", "A".repeat(300)),
    ] {
        let resp = http()
            .get(format!("http://{}{path}", r.addr))
            .send()
            .await
            .expect("answered");
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }

    // Past the retention: the URL has expired, and the body goes with the next prune.
    clock.advance_ms(2 * 3_600_000);
    let resp = http().get(&push_url).send().await.expect("answered");
    assert_eq!(resp.status().as_u16(), 403);
    let answer: Value = resp.json().await.expect("json");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{answer}"
    );
    let out = run(dir.path(), "expired", &push_event, &hosts).await;
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("refused the URL (403)"),
        "{}",
        out.stderr
    );
    if store.is_none() {
        // SQLite keeps the relay's clock; PostgreSQL its own (its pruning is in the store's
        // contract tests).
        assert_eq!(r.store.prune_bodies(100).await.expect("prunes"), 7);
    }
    let metrics = get_text(&format!("http://{}/metrics", r.addr)).await;
    for line in [
        "hookflow_body_requests_refused_total{reason=\"signature\"} 5",
        "hookflow_body_requests_refused_total{reason=\"expired\"} 2",
        "hookflow_body_requests_refused_total{reason=\"pruned\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    r.stop().await;
}

on_both_stores!(bodies_by_reference: bodies_of_any_size_go_by_reference_on_sqlite, bodies_of_any_size_go_by_reference_on_postgres);

/// The door: bodies past `limits.max_body_bytes` (25 MiB with `body_ref`) are refused, and a
/// relay without `body_ref` refuses what does not fit a dispatch, saying how to send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_at_the_door() {
    let Relay {
        gh,
        dir: _dir,
        port,
        text,
        clock,
        r,
    } = sqlite_relay("").await;
    let resp = http()
        .post(format!("http://{}/hooks/uploads", r.addr))
        .timeout(Duration::from_secs(60))
        .body(noise(25 * MIB + 1, 9))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 413);
    let answer: Value = resp.json().await.expect("json");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("26214400 bytes"),
        "{answer}"
    );
    r.stop().await;

    let plain = text
        .replace(&format!("public_url: http://127.0.0.1:{port}/\n"), "")
        .replace(
            "body_ref:\n  secret_env: BODY_URL_SECRET\n  retention: 1h\n",
            "",
        );
    let r = start(&plain, &clock).await;
    let resp = http()
        .post(format!("http://{}/hooks/uploads", r.addr))
        .body(noise(MIB / 2, 9))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 413);
    let answer: Value = resp.json().await.expect("json");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(message.contains("set public_url and body_ref"), "{answer}");
    // And `/bodies/…` is not served at all.
    let resp = http()
        .get(format!("http://{}/bodies/01J?expires=1&sig=0", r.addr))
        .send()
        .await
        .expect("answered");
    assert_ne!(resp.status().as_u16(), 200);
    r.stop().await;
    assert!(gh.dispatches().is_empty(), "nothing refused was stored");
}

/// `hookflow dispatch` cannot put a large body in a dispatch itself, says so, and sends it
/// through a relay when given one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookflow_dispatch_sends_large_bodies_through_a_relay() {
    let Relay {
        gh,
        dir,
        port,
        text: _text,
        clock: _clock,
        r,
    } = sqlite_relay("").await;
    let body = noise(3 * MIB, 21);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &body).expect("body file");
    let payload = dir.path().join("payload.json");
    std::fs::write(
        &payload,
        serde_json::json!({"body": hex::encode(&body[..200_000])}).to_string(),
    )
    .expect("payload file");
    let (relay_url, gh_url) = (format!("http://127.0.0.1:{port}/hooks/uploads"), gh.url());
    let (direct, through) = tokio::task::spawn_blocking(move || {
        let direct = hookflow()
            .args([
                "dispatch",
                "--repo",
                "octo/hooks",
                "--event-type",
                "webhook",
            ])
            .arg("--payload")
            .arg(format!("@{}", payload.display()))
            .args(["--api-url", &gh_url])
            .env("GITHUB_TOKEN", "ghp_x")
            .output()
            .expect("runs");
        let through = hookflow()
            .args(["dispatch", "--relay", &relay_url, "--body"])
            .arg(format!("@{}", file.display()))
            .args(["-H", "Content-Type: application/octet-stream"])
            .args(["-H", "X-GitHub-Event: release"])
            .output()
            .expect("runs");
        (direct, through)
    })
    .await
    .expect("joined");
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert_ne!(direct.status.code(), Some(0));
    assert!(
        stderr.contains("GitHub accepts dispatches under 65536 bytes")
            && stderr.contains("hookflow dispatch --relay"),
        "{stderr}"
    );
    let stderr = String::from_utf8_lossy(&through.stderr);
    assert_eq!(through.status.code(), Some(0), "{stderr}");
    let answer: Value = serde_json::from_slice(&through.stdout).expect("the relay's answer");
    let id = answer["event_id"]
        .as_str()
        .expect("an event id")
        .to_string();
    assert!(
        stderr.contains(&format!("stored the webhook as event {id}")),
        "{stderr}"
    );
    gh.wait_for(1, Duration::from_secs(20)).await;
    let delivered = gh.delivered();
    assert_eq!(
        delivered.len(),
        1,
        "only the dispatch through the relay reached GitHub"
    );
    let payload = &dispatch_of(&delivered, &id).body["client_payload"];
    assert_eq!(payload["body_ref"]["size"], body.len());
    assert_eq!(payload["headers"]["x-github-event"], "release");
    r.stop().await;
}

/// On a batching lane, an event too large for a batch goes alone, by reference, while the
/// events around it share a dispatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_event_on_a_batching_lane_goes_alone_by_reference() {
    use support::fake_github::Answer;
    // `_dir` holds the data folder for as long as the relay runs.
    let Relay {
        gh,
        clock,
        r,
        dir: _dir,
        ..
    } = sqlite_relay(
        "  - slug: batched\n    repo: octo/batched\n    token_env: RELAY_TEST_TOKEN\n    batching: {mode: adaptive}\n",
    )
    .await;
    // The first dispatch is held, so the others queue behind it in the lane.
    gh.script(vec![Answer::AcceptAfter(Duration::from_millis(700))]);
    let big = noise(MIB, 33);
    // Stored together, as events waiting in a lane are: the relay finds them at one look.
    let mut ids = Vec::new();
    for (i, body) in [
        b"{\"n\":1}".to_vec(),
        b"{\"n\":2}".to_vec(),
        big.clone(),
        b"{\"n\":3}".to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        use hookflow_relay::store::{Destination, Event, NewEvent, Payload, TokenSource};
        let id = format!("01JBATCHLANE{i:014}");
        let mut request = hookflow_relay::store::Request {
            method: "POST".into(),
            path: "/batched/webhook".into(),
            headers: serde_json::Map::new(),
            body,
        };
        request
            .headers
            .insert("content-type".into(), "application/octet-stream".into());
        r.store
            .insert(NewEvent {
                event: Event {
                    id: id.clone(),
                    received_at: clock.now_ms(),
                    source: "batched".into(),
                    event_type: "webhook".into(),
                    payload: Payload::Request(request),
                },
                destinations: vec![Destination::Repo {
                    repo: "octo/batched".into(),
                    token: TokenSource::Env("RELAY_TEST_TOKEN".into()),
                }],
                dedupe_key: None,
            })
            .await
            .expect("stored");
        ids.push(id);
    }
    let start_wait = std::time::Instant::now();
    while gh
        .delivered()
        .iter()
        .map(|d| d.event_ids().len())
        .sum::<usize>()
        < 4
    {
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "all four delivered: {:?}; dead letters {:?}",
            gh.dispatches()
                .iter()
                .map(|d| (d.event_ids(), d.status))
                .collect::<Vec<_>>(),
            r.store
                .dead_letters(10)
                .await
                .map(|l| l.into_iter().map(|l| l.error).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let delivered = gh.delivered();
    let alone = dispatch_of(&delivered, &ids[2]);
    assert_eq!(
        alone.event_ids(),
        vec![ids[2].clone()],
        "the large one goes alone"
    );
    assert_eq!(alone.body["client_payload"]["body_ref"]["size"], big.len());
    assert!(
        delivered.iter().any(|d| d.event_ids().len() > 1),
        "the small ones still share a dispatch: {:?}",
        delivered.iter().map(|d| d.event_ids()).collect::<Vec<_>>()
    );
    r.stop().await;
}
