//! What a stranger on the internet can make the relay do, over real TCP on 127.0.0.1 with a real
//! SQLite file and a fake GitHub: each test is an attack that worked before its fix.

use crate::support;

use hookflow_relay::store::Store as _;
use std::time::{Duration, Instant};

use hookflow_protocol::Environment;
use serde_json::{json, Value};
use support::fake_github::FakeGithub;
use support::relay::{config, http, post, settled, start, test_env, url, WAIT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads until the relay closes the connection; `Err` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Result<Duration, ()> {
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return Err(()),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "limits:\n  idle_timeout: 1s\n").await;
    // Not even a first byte.
    let mut silent = TcpStream::connect(r.addr).await.expect("connect");
    let took = closed_within(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent connection is closed");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // Quiet after a request (keep-alive).
    let mut quiet = TcpStream::connect(r.addr).await.expect("connect");
    quiet
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    closed_within(&mut quiet, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    r.stop().await;
}

#[tokio::test]
async fn open_connections_are_capped_and_real_requests_get_through_when_one_ends() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(
        dir.path(),
        &gh,
        "limits:\n  idle_timeout: 30s\n  max_connections: 3\n",
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(r.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .expect("client");
    assert!(
        quick.get(url(&r, "/healthz")).send().await.is_err(),
        "a fourth connection waits while three are open"
    );
    idle.pop();
    let resp = http()
        .get(url(&r, "/healthz"))
        .send()
        .await
        .expect("served once a place is free");
    assert_eq!(resp.status().as_u16(), 200);
    r.stop().await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_request_slot_with_slow_bodies() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(
        dir.path(),
        &gh,
        "limits:\n  max_requests_per_client: 2\n  body_timeout: 20s\n",
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(r.addr).await.expect("connect");
        s.write_all(b"POST /octo/hooks/a/webhook?__token=t HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            .await
            .expect("write");
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = http()
        .post(url(&r, "/octo/hooks/a/webhook?__token=t"))
        .body("{}")
        .send()
        .await
        .expect("answered at once");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    drop(slow);
    settled(&r).await;
    r.stop().await;
}

const KEYED_ENDPOINT: &str = "endpoints:
  - slug: keyed
    repo: octo/hooks
    token_env: RELAY_TEST_TOKEN
    api_keys_env: RELAY_TEST_KEYS
";

#[tokio::test]
async fn an_endpoint_refuses_a_missing_api_key_before_reading_the_body() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, KEYED_ENDPOINT).await;
    let mut s = TcpStream::connect(r.addr).await.expect("connect");
    // Promise a body and never send it.
    s.write_all(b"POST /hooks/keyed HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    r.stop().await;
}

#[tokio::test]
async fn no_route_forwards_credentials() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, KEYED_ENDPOINT).await;
    let resp = http()
        .post(url(&r, "/hooks/keyed/x?__token=ghp_querytoken&keep=1"))
        .header("Authorization", "Bearer key-one")
        .header("X-Github-Authorization", "token ghp_headertoken")
        .header("Cookie", "session=abc")
        .header("X-Other", "kept")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=ghp_compat&keep=2", "{}").await;
    assert_eq!(status, 200);
    let ds = gh.wait_for(2, WAIT).await;
    for d in ds {
        let text = d.body.to_string();
        for secret in [
            "key-one",
            "ghp_querytoken",
            "ghp_headertoken",
            "session=abc",
            "ghp_compat",
            "__token",
        ] {
            assert!(!text.contains(secret), "{secret} forwarded: {text}");
        }
        let payload = &d.body["client_payload"];
        if payload["source"] == "keyed" {
            assert_eq!(payload["headers"]["x-other"], json!("kept"), "{payload}");
        }
        assert!(
            payload["path"]
                .as_str()
                .is_some_and(|p| p.contains("keep=")),
            "{payload}"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn caller_chosen_answers_cannot_run_script_in_a_browser() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let resp = http()
        .post(url(
            &r,
            "/octo/hooks/a/webhook?__token=t&__response_content_type=text/html&__response_body=%3Cscript%3Ealert(1)%3C/script%3E",
        ))
        .header("Origin", "https://evil.example")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(
        h["content-type"], "text/html",
        "webhook2github's option still works"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let csp = h["content-security-policy"].to_str().expect("ascii");
    assert!(csp.starts_with("sandbox"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    settled(&r).await;
    r.stop().await;
}

#[tokio::test]
async fn a_stranger_cannot_swallow_anothers_delivery_id() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let send = |token: &'static str| {
        let client = http();
        let u = url(&r, &format!("/octo/hooks/a/webhook?__token={token}"));
        async move {
            let resp = client
                .post(u)
                .header("X-GitHub-Delivery", "victim-delivery-1")
                .body("{}")
                .send()
                .await
                .expect("sent");
            resp.json::<Value>().await.expect("json")
        }
    };
    let first = send("ghp_madeup").await;
    assert_eq!(first.get("duplicate"), None);
    let victim = send("ghp_realtoken").await;
    assert_eq!(
        victim.get("duplicate"),
        None,
        "the real sender's event is its own: {victim}"
    );
    let again = send("ghp_realtoken").await;
    assert_eq!(again["duplicate"], json!(true), "its own retry is a repeat");
    gh.wait_for(2, WAIT).await;
    settled(&r).await;
    assert_eq!(gh.dispatches().len(), 2);
    r.stop().await;
}

#[tokio::test]
async fn event_types_and_tokens_with_control_characters_are_refused_at_the_door() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(
        dir.path(),
        &gh,
        "endpoints:\n  - slug: typed\n    repo: octo/hooks\n    token_env: RELAY_TEST_TOKEN\n    event_type_path: type\n",
    )
    .await;
    let resp = http()
        .post(url(&r, "/hooks/typed"))
        .body(r#"{"type": "order.paid\n::error::pwned"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await.expect("body");
    assert!(text.contains("control characters"), "{text}");
    let (status, answer) = post(
        &r,
        "/octo/hooks/a/webhook?__token=ghp_x%0D%0AX-Injected:%201",
        "{}",
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(r.store.counts().await.expect("counts").pending, 0);
    settled(&r).await;
    assert!(gh.dispatches().is_empty(), "nothing stored, nothing sent");
    r.stop().await;
}

#[tokio::test]
async fn a_relay_whose_token_variable_is_unset_does_not_start() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), &gh, KEYED_ENDPOINT);
    let err = hookflow_relay::start(c, Environment::with_vars(Vec::new()))
        .await
        .err()
        .expect("refuses to start");
    let text = err.to_string();
    assert!(
        text.contains("token_env names RELAY_TEST_TOKEN, which is not set"),
        "{text}"
    );
    assert!(
        text.contains("api_keys_env names RELAY_TEST_KEYS"),
        "{text}"
    );
    // With the variables, it starts.
    let r = hookflow_relay::start(config(dir.path(), &gh, KEYED_ENDPOINT), test_env())
        .await
        .expect("starts");
    r.stop().await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_shared_world_writable_data_folder_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt as _;
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = hookflow_relay::start(config(&shared, &gh, ""), test_env())
        .await
        .err()
        .expect("refuses");
    assert!(err.to_string().contains("writable by every user"), "{err}");
    let mode = std::fs::metadata(&shared)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o777, "its permissions are untouched");
    // A folder the relay creates is private.
    let fresh = dir.path().join("fresh/data");
    let r = hookflow_relay::start(config(&fresh, &gh, ""), test_env())
        .await
        .expect("starts");
    let mode = std::fs::metadata(&fresh)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    r.stop().await;
}

#[tokio::test]
async fn a_full_store_keeps_delivering_restarts_and_makes_room_by_itself() {
    use support::fake_github::Answer;
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::server_error());
    let dir = tempfile::tempdir().expect("tempdir");
    let relay_config = || {
        let mut c = config(dir.path(), &gh, "limits:\n  max_store_bytes: 100000\n");
        c.delivery.max_attempts = 10_000;
        c
    };
    let r = hookflow_relay::start(relay_config(), test_env())
        .await
        .expect("starts");
    // Strangers fill it: refused with 503 once full, never acknowledged and lost.
    let mut acknowledged = 0u64;
    let mut full = false;
    for _ in 0..400 {
        let (status, answer) = post(&r, "/octo/hooks/a/webhook?__token=t", vec![b'z'; 3000]).await;
        match status {
            200 => acknowledged += 1,
            503 => {
                assert!(
                    answer["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("full")),
                    "{answer}"
                );
                full = true;
                break;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(full, "the cap was reached after {acknowledged} events");
    let ready = http().get(url(&r, "/readyz")).send().await.expect("sent");
    assert_eq!(ready.status().as_u16(), 503);
    assert!(ready.text().await.expect("text").contains("full"));
    let metrics = http()
        .get(url(&r, "/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("hookflow_store_full 1"), "{metrics}");
    // Delivery and recording results go on while full (GitHub fails: every attempt is recorded).
    let before = gh.dispatches().len();
    let start_wait = Instant::now();
    while gh.dispatches().len() < before + 20 {
        assert!(
            start_wait.elapsed() < WAIT,
            "deliveries stalled on a full store"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A restart on a full store works and loses nothing.
    r.stop().await;
    let r = hookflow_relay::start(relay_config(), test_env())
        .await
        .expect("restarts on a full store");
    let c = r.store.counts().await.expect("counts");
    assert_eq!(
        c.pending + c.inflight,
        acknowledged,
        "every acknowledged event is kept"
    );
    // GitHub recovers: everything goes out, and room comes back by itself.
    gh.set_default(Answer::Accept);
    settled(&r).await;
    let ready = http().get(url(&r, "/readyz")).send().await.expect("sent");
    assert_eq!(ready.status().as_u16(), 200);
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=t", "{}").await;
    assert_eq!(status, 200, "new events are taken again");
    settled(&r).await;
    assert_eq!(gh.delivered_ids().len() as u64, acknowledged + 1);
    r.stop().await;
}

#[tokio::test]
async fn junk_with_made_up_tokens_does_not_delay_an_authenticated_event() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), &gh, "");
    c.delivery.rate_limit_per_minute = 60;
    let r = hookflow_relay::start(c, test_env()).await.expect("starts");
    // 60 with one made-up token (a minute's worth of its bucket, then one a second) and 60 with
    // a different one each.
    for i in 0..120 {
        let token = if i < 60 {
            "ghp_junk".to_string()
        } else {
            format!("ghp_junk{i}")
        };
        let (status, _) = post(&r, &format!("/octo/hooks/a/webhook?__token={token}"), "{}").await;
        assert_eq!(status, 200);
    }
    let sent = Instant::now();
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=ghp_real", "{}").await;
    assert_eq!(status, 200);
    loop {
        if gh
            .dispatches()
            .iter()
            .any(|d| d.authorization == "Bearer ghp_real")
        {
            break;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "the authenticated event waited behind junk's rate slots"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.stop().await;
}

#[tokio::test]
async fn a_token_github_refused_is_refused_at_the_door() {
    use support::fake_github::Answer;
    let gh = FakeGithub::start().await;
    gh.script(vec![Answer::unauthorized()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=ghp_madeup", "{}").await;
    assert_eq!(status, 200, "unknown until GitHub says so");
    settled(&r).await;
    assert_eq!(r.store.counts().await.expect("counts").dead, 1);
    let (status, answer) = post(&r, "/octo/hooks/b/webhook?__token=ghp_madeup", "{}").await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused this token")),
        "{answer}"
    );
    let c = r.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.inflight, c.dead), (0, 0, 1), "nothing stored");
    assert_eq!(gh.dispatches().len(), 1, "GitHub asked once");
    // Other tokens are unaffected.
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=ghp_other", "{}").await;
    assert_eq!(status, 200);
    r.stop().await;
}

#[tokio::test]
async fn one_address_gets_its_share_of_the_unauthenticated_route() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(
        dir.path(),
        &gh,
        "limits:\n  compat_requests_per_minute: 30\n",
    )
    .await;
    let mut codes = Vec::new();
    for i in 0..40 {
        let (status, _) = post(
            &r,
            &format!("/octo/hooks/a/webhook?__token=ghp_random{i}"),
            "{}",
        )
        .await;
        codes.push(status);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 30, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 10, "{codes:?}");
    let c = r.store.counts().await.expect("counts");
    assert!(
        c.pending + c.inflight <= 30,
        "refused requests are not stored"
    );
    // Authenticated endpoints are not counted against it.
    let health = http().get(url(&r, "/healthz")).send().await.expect("sent");
    assert_eq!(health.status().as_u16(), 200);
    settled(&r).await;
    r.stop().await;
}

#[tokio::test]
async fn a_hung_delivery_does_not_hold_a_shutdown_past_its_timeout() {
    use support::fake_github::Answer;
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let hung_config = || {
        let mut c = config(dir.path(), &gh, "shutdown_timeout: 1s\n");
        c.delivery.timeout = Duration::from_secs(60);
        c
    };
    let r = hookflow_relay::start(hung_config(), test_env())
        .await
        .expect("starts");
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=t", "{}").await;
    assert_eq!(status, 200);
    gh.wait_for(1, WAIT).await;
    let stopping = Instant::now();
    r.stop().await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stop waited {took:?} for a hung delivery"
    );
    // The cancelled delivery is back in the queue, and goes out after a restart.
    gh.set_default(Answer::Accept);
    let r = hookflow_relay::start(hung_config(), test_env())
        .await
        .expect("restarts");
    settled(&r).await;
    assert_eq!(gh.delivered_ids().len(), 1);
    r.stop().await;
}

/// Random requests (paths, queries, headers, bodies, seeded with the attacks above) against a
/// running relay: never a 500, never a hang, and nothing stored carries a credential.
#[test]
fn random_requests_are_answered_and_never_forward_credentials() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let gh = rt.block_on(FakeGithub::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let r = rt.block_on(start(dir.path(), &gh, KEYED_ENDPOINT));
    let client = http();
    let segment = prop_oneof![
        "[a-zA-Z0-9._~-]{1,8}",
        Just("%0A::error::x".to_string()),
        Just("..".to_string()),
        Just("%2F%2E%2E".to_string()),
        Just("hooks".to_string()),
        Just("keyed".to_string()),
        Just("octo".to_string()),
    ];
    let strategy = (
        prop::collection::vec(segment, 0..5),
        prop::collection::vec(
            prop_oneof![
                Just("__token=ghp_fuzztoken".to_string()),
                Just("__response_code=299".to_string()),
                Just("__response_content_type=text/html".to_string()),
                "[a-z_]{1,6}=[a-zA-Z0-9%]{0,8}",
            ],
            0..4,
        ),
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        prop::collection::vec(any::<u8>(), 0..300),
        prop::sample::select(vec![
            ("authorization", "Bearer key-one"),
            ("x-github-authorization", "token ghp_fuzzheader"),
            ("cookie", "session=fuzzcookie"),
            ("x-github-delivery", "fuzz-1"),
            ("content-type", "application/json"),
        ]),
    );
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 96,
        ..Default::default()
    });
    runner
        .run(&strategy, |(segments, query, method, body, header)| {
            let mut path = format!("/{}", segments.join("/"));
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let status = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    client
                        .request(method, url(&r, &path))
                        .header(header.0, header.1)
                        .body(body)
                        .send(),
                )
                .await
                .expect("answered in time")
                .map(|resp| resp.status().as_u16())
            });
            if let Ok(code) = status {
                prop_assert!(code != 500, "{path}: 500");
            }
            Ok(())
        })
        .expect("every request is answered");
    rt.block_on(settled(&r));
    for d in gh.dispatches() {
        let text = d.body.to_string();
        for secret in [
            "ghp_fuzztoken",
            "ghp_fuzzheader",
            "fuzzcookie",
            "key-one",
            "__token",
        ] {
            assert!(!text.contains(secret), "{secret} forwarded: {text}");
        }
    }
    rt.block_on(r.stop());
}

#[tokio::test]
async fn a_port_clash_leaves_no_data_directory_behind() {
    let gh = FakeGithub::start().await;
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut c = config(&data, &gh, "");
    c.listen = taken.local_addr().expect("addr");
    let err = hookflow_relay::start(c, test_env())
        .await
        .err()
        .expect("the port is taken");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
    assert!(
        !data.exists(),
        "nothing created before the address was bound"
    );
}
