//! The relay over real HTTP on 127.0.0.1, delivering to a fake GitHub that is a real server, with
//! a real SQLite file.

use crate::support;

use hookflow_relay::store::Store as _;
use std::time::Duration;

use base64::Engine as _;
use hookflow_relay::{self as relay, Running};
use serde_json::{json, Value};
use support::fake_github::{Answer, FakeGithub};
use support::relay::{
    config, http, json_of, post, settled, start, test_env, url, wait_until, WAIT,
};

#[tokio::test]
async fn compat_route_forwards_the_actionsflow_payload_shape() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let body = "{ \"action\": \"opened\",  \"number\": 7 }";
    let resp = http()
        .post(url(
            &r,
            "/octo/hooks/ci/webhook/deploy?x=1&__token=ghp_querytoken&y=a%20b",
        ))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "pull_request")
        .header("Cookie", "session=secret")
        .body(body)
        .send()
        .await
        .expect("sent");
    let (status, answer) = json_of(resp).await;
    assert_eq!(status, 200);
    assert_eq!(answer["success"], json!(true));
    let id = answer["event_id"].as_str().expect("event id").to_string();

    let d = gh.wait_for(1, WAIT).await.remove(0);
    assert_eq!(d.repo, "octo/hooks");
    assert_eq!(d.authorization, "Bearer ghp_querytoken");
    assert_eq!(d.accept, "application/vnd.github+json");
    assert_eq!(d.api_version, "2022-11-28");
    assert!(d.user_agent.starts_with("hookflow/"), "{}", d.user_agent);
    assert_eq!(d.body["event_type"], json!("webhook"));
    let p = &d.body["client_payload"];
    assert_eq!(
        p["path"],
        json!("/ci/webhook/deploy?x=1&y=a%20b"),
        "relay parameters removed, the rest kept as sent"
    );
    assert_eq!(p["method"], json!("POST"));
    assert_eq!(p["body"], json!(body), "exact bytes, not re-serialised");
    assert_eq!(p["headers"]["x-github-event"], json!("pull_request"));
    assert_eq!(p["headers"].get("cookie"), None);
    assert_eq!(p["id"], json!(id));
    assert_eq!(p["source"], json!("compat"));
    assert!(p["received_at"].as_str().expect("time").ends_with('Z'));
    assert!(
        !d.body.to_string().contains("ghp_querytoken"),
        "the token never reaches the payload"
    );
    r.stop().await;
}

#[tokio::test]
async fn credentials_are_stripped_whichever_carries_the_token() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let client = http();
    client
        .post(url(&r, "/octo/hooks/a/webhook"))
        .header("X-Github-Authorization", "token ghp_headertoken")
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .body("x")
        .send()
        .await
        .expect("sent");
    client
        .put(url(&r, "/octo/hooks/a/webhook"))
        .header("Authorization", "Bearer ghp_authtoken")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .body("y")
        .send()
        .await
        .expect("sent");
    let ds = gh.wait_for(2, WAIT).await;
    let mut auths: Vec<String> = ds.iter().map(|d| d.authorization.clone()).collect();
    auths.sort();
    assert_eq!(auths, ["Bearer ghp_authtoken", "Bearer ghp_headertoken"]);
    for d in &ds {
        let headers = d.body["client_payload"]["headers"]
            .as_object()
            .expect("headers");
        for h in [
            "authorization",
            "x-github-authorization",
            "proxy-authorization",
            "cookie",
        ] {
            assert!(!headers.contains_key(h), "{h} leaked: {headers:?}");
        }
        assert!(!d.body.to_string().contains("ghp_"), "{}", d.body);
    }
    r.stop().await;
}

#[tokio::test]
async fn answers_can_be_shaped_and_carry_cors() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let resp = http()
        .get(url(&r, "/octo/hooks/a/webhook?__token=t&__response_code=201&__response_content_type=text%2Fplain&__response_body=thanks"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(resp.text().await.expect("text"), "thanks");
    let pre = http()
        .request(reqwest::Method::OPTIONS, url(&r, "/octo/hooks/a/webhook"))
        .header("Access-Control-Request-Headers", "x-custom")
        .send()
        .await
        .expect("sent");
    assert_eq!(pre.status().as_u16(), 204);
    assert_eq!(pre.headers()["access-control-allow-headers"], "x-custom");
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    let d = gh.wait_for(1, WAIT).await.remove(0);
    assert_eq!(d.body["client_payload"]["method"], json!("GET"));
    assert_eq!(
        d.body["client_payload"].get("body"),
        None,
        "no body, no field"
    );
    r.stop().await;
}

#[tokio::test]
async fn requests_without_a_token_are_refused_and_not_stored() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let (status, answer) = post(&r, "/octo/hooks/x", "{}").await;
    assert_eq!(status, 401);
    assert!(answer["message"]
        .as_str()
        .expect("message")
        .contains("__token"));
    let (status, _) = json_of(http().get(url(&r, "/nowhere")).send().await.expect("sent")).await;
    assert_eq!(status, 404);
    assert_eq!(r.store.counts().await.expect("counts").pending, 0);
    assert!(gh.dispatches().is_empty());
    let health = http().get(url(&r, "/healthz")).send().await.expect("sent");
    assert_eq!(health.status().as_u16(), 200);
    r.stop().await;
}

async fn send_one(r: &Running) -> String {
    let (status, answer) = post(r, "/octo/hooks/a/webhook?__token=t", "{}").await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn client_errors_become_dead_letters_without_retrying() {
    for (answer, expected) in [
        (Answer::unauthorized(), "Bad credentials"),
        (Answer::not_found(), "not found, or the token has no access"),
        (Answer::unprocessable(), "422: Invalid request."),
        (
            Answer::Status(403, "Resource not accessible by integration", vec![]),
            "needs the `repo` scope",
        ),
    ] {
        let gh = FakeGithub::start().await;
        gh.set_default(answer);
        let dir = tempfile::tempdir().expect("tempdir");
        let r = start(dir.path(), &gh, "").await;
        let id = send_one(&r).await;
        gh.wait_for(1, WAIT).await;
        let store = r.store.clone();
        let mut dead = 0;
        for _ in 0..200 {
            dead = store.counts().await.expect("counts").dead;
            if dead == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dead, 1);
        assert_eq!(gh.dispatches().len(), 1, "never retried blindly");
        r.stop().await;
        let mut s = hookflow_relay::store::sqlite::SqliteStore::open(dir.path()).expect("opens");
        let letters = s.dead_letters(10).expect("dead letters");
        assert_eq!(letters[0].event_id, id);
        assert!(
            letters[0].error.contains(expected),
            "{} lacks {expected}",
            letters[0].error
        );
    }
}

#[tokio::test]
async fn server_errors_are_retried_with_growing_spacing_then_dead() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::server_error());
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    send_one(&r).await;
    let ds = gh.wait_for(4, WAIT).await;
    settled(&r).await;
    assert_eq!(gh.dispatches().len(), 4, "max_attempts is 4");
    let gaps: Vec<Duration> = ds.windows(2).map(|w| w[1].at - w[0].at).collect();
    // Backoff 50 ms doubling; jitter only adds: at least 50, 100, 200 ms.
    for (i, (gap, min)) in gaps.iter().zip([50u64, 100, 200]).enumerate() {
        assert!(*gap >= Duration::from_millis(min), "gap {i} was {gap:?}");
    }
    assert_eq!(r.store.counts().await.expect("counts").dead, 1);
    r.stop().await;
}

#[tokio::test]
async fn rate_limits_and_hangs_are_retried_after_the_wait_github_asks() {
    let gh = FakeGithub::start().await;
    gh.script(vec![
        Answer::too_many(1),
        Answer::rate_limited_403(2),
        Answer::Hang,
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), &gh, "");
    c.delivery.max_attempts = 10;
    let r = relay::start(c, test_env()).await.expect("relay starts");
    send_one(&r).await;
    let ds = gh.wait_for(4, Duration::from_secs(15)).await;
    assert!(
        ds[1].at - ds[0].at >= Duration::from_millis(950),
        "Retry-After: 1 honoured: {:?}",
        ds[1].at - ds[0].at
    );
    assert!(
        ds[2].at - ds[1].at >= Duration::from_millis(900),
        "x-ratelimit-reset honoured: {:?}",
        ds[2].at - ds[1].at
    );
    assert!(
        ds[3].at - ds[2].at >= Duration::from_millis(500),
        "the hung request timed out first"
    );
    wait_until("delivery", || gh.delivered().len() == 1).await;
    r.stop().await;
}

#[tokio::test]
async fn github_down_for_a_while_loses_nothing() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::server_error());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path(), &gh, "");
    c.delivery.max_attempts = 1000;
    let r = relay::start(c, test_env()).await.expect("relay starts");
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(send_one(&r).await);
    }
    gh.wait_for(20, WAIT).await;
    gh.set_default(Answer::Accept);
    wait_until("all delivered", || gh.delivered().len() == 20).await;
    let got = gh.delivered_ids();
    assert!(
        got.values().all(|n| *n == 1),
        "each delivered once: {got:?}"
    );
    let mut got: Vec<String> = got.into_keys().collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    r.stop().await;
}

#[tokio::test]
async fn a_restart_during_delivery_loses_nothing() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(send_one(&r).await);
    }
    gh.wait_for(1, WAIT).await;
    r.stop().await;
    gh.set_default(Answer::Accept);
    let r = start(dir.path(), &gh, "").await;
    wait_until("all delivered after restart", || {
        gh.delivered_ids().len() == 10
    })
    .await;
    assert_eq!(r.store.counts().await.expect("counts").pending, 0);
    r.stop().await;
}

const ENDPOINTS: &str = "endpoints:
  - slug: github
    repo: octo/hooks
    token_env: RELAY_TEST_TOKEN
    event_type_path: action
    verify: {preset: github, secret_env: RELAY_TEST_SECRET}
  - slug: keyed
    repo: octo/other
    token_env: RELAY_TEST_TOKEN
    event_type: deploy
    path: /deploys/webhook
    api_keys_env: RELAY_TEST_KEYS
";

fn github_signature(body: &str) -> String {
    support::cli::github_signature("endpoint-secret", body.as_bytes())
}

#[tokio::test]
async fn configured_endpoints_check_signatures_and_keys() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, ENDPOINTS).await;
    let client = http();
    let body = r#"{"action":"opened","number":1}"#;

    let (status, answer) = json_of(
        client
            .post(url(&r, "/hooks/github?src=gh"))
            .header("X-Hub-Signature-256", github_signature(body))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(answer["event_id"].is_string());
    let bad = client
        .post(url(&r, "/hooks/github"))
        .header("X-Hub-Signature-256", github_signature("{}"))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status().as_u16(), 401);
    let unsigned = client
        .post(url(&r, "/hooks/github"))
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(unsigned.status().as_u16(), 401);
    let no_type = client
        .post(url(&r, "/hooks/github"))
        .header("X-Hub-Signature-256", github_signature("{not json"))
        .body("{not json")
        .send()
        .await
        .expect("sent");
    let (status, answer) = json_of(no_type).await;
    assert_eq!(status, 400);
    assert!(
        answer["message"]
            .as_str()
            .expect("m")
            .contains("at `action`"),
        "{answer}"
    );

    for (key, expected) in [
        (Some("key-two"), 202),
        (Some("key-three"), 401),
        (None, 401),
    ] {
        let mut req = client
            .post(url(&r, "/hooks/keyed/prod"))
            .body("not json at all");
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        assert_eq!(
            req.send().await.expect("sent").status().as_u16(),
            expected,
            "key {key:?}"
        );
    }
    assert_eq!(
        client
            .get(url(&r, "/hooks/keyed"))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16(),
        405
    );
    assert_eq!(
        client
            .post(url(&r, "/hooks/nope"))
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16(),
        404
    );

    let ds = gh.wait_for(2, WAIT).await;
    settled(&r).await;
    assert_eq!(gh.dispatches().len(), 2, "refused requests are not stored");
    let gh_event = ds
        .iter()
        .find(|d| d.repo == "octo/hooks")
        .expect("github endpoint dispatch");
    assert_eq!(gh_event.authorization, "Bearer ghp_endpointtoken");
    assert_eq!(gh_event.body["event_type"], json!("opened"));
    assert_eq!(
        gh_event.body["client_payload"]["path"],
        json!("/github/webhook?src=gh")
    );
    assert_eq!(
        gh_event.body["client_payload"]["headers"]["x-hub-signature-256"],
        json!(github_signature(body))
    );
    let keyed = ds
        .iter()
        .find(|d| d.repo == "octo/other")
        .expect("keyed endpoint dispatch");
    assert_eq!(keyed.body["event_type"], json!("deploy"));
    assert_eq!(
        keyed.body["client_payload"]["path"],
        json!("/deploys/webhook/prod")
    );
    assert_eq!(
        keyed.body["client_payload"]["body"],
        json!("not json at all"),
        "malformed JSON is forwarded as is"
    );
    assert!(
        !keyed.body.to_string().contains("key-two"),
        "API keys never reach the payload"
    );
    r.stop().await;
}

fn large_push() -> String {
    let commits: Vec<Value> = (0..300)
        .map(|i| {
            json!({"id": format!("{:040x}", i * 7919), "message": format!("Change {i}: update the deployment scripts"),
                   "added": [format!("src/module_{i}.rs")], "modified": ["README.md"], "removed": [],
                   "author": {"name": "Mona Lisa", "email": "mona@example.com"}})
        })
        .collect();
    json!({"ref": "refs/heads/main", "commits": commits, "repository": {"full_name": "octo/hooks"}})
        .to_string()
}

#[tokio::test]
async fn large_bodies_are_compressed_or_refused_at_the_door() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "limits:\n  max_body_bytes: 600000\n").await;
    let push = large_push();
    assert!(push.len() > 60_000, "{}", push.len());
    let (status, _) = post(&r, "/octo/hooks/github/webhook?__token=t", push.clone()).await;
    assert_eq!(status, 200);
    let d = gh.wait_for(1, WAIT).await.remove(0);
    let p = &d.body["client_payload"];
    assert_eq!(p["body_encoding"], json!("gzip+base64"));
    let packed = base64::engine::general_purpose::STANDARD
        .decode(p["body"].as_str().expect("s"))
        .expect("base64");
    let mut out = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(packed.as_slice()),
        &mut out,
    )
    .expect("gunzip");
    assert_eq!(out, push);

    let noise = hookflow_testkit::noise(200_000, 88172645463325252);
    let (status, answer) = post(&r, "/octo/hooks/a/webhook?__token=t", noise).await;
    assert_eq!(status, 413);
    assert!(
        answer["message"]
            .as_str()
            .expect("m")
            .contains("200000 bytes"),
        "{answer}"
    );
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=t", vec![b'a'; 700_000]).await;
    assert_eq!(status, 413);
    settled(&r).await;
    assert_eq!(gh.dispatches().len(), 1, "refused bodies are never stored");
    r.stop().await;
}

#[tokio::test]
async fn a_full_store_answers_503_and_never_2xx() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    // The empty store's tables and indexes take about 80 KB of it.
    let r = start(dir.path(), &gh, "limits:\n  max_store_bytes: 104000\n").await;
    let mut codes = Vec::new();
    for _ in 0..40 {
        let resp = http()
            .post(url(&r, "/octo/hooks/a/webhook?__token=t"))
            .body(vec![b'z'; 3000])
            .send()
            .await
            .expect("sent");
        codes.push(resp.status().as_u16());
    }
    assert!(codes.contains(&200), "{codes:?}");
    assert!(codes.contains(&503), "the store filled up: {codes:?}");
    let accepted = codes.iter().filter(|c| **c == 200).count() as u64;
    let counts = r.store.counts().await.expect("counts");
    assert_eq!(
        counts.pending + counts.inflight,
        accepted,
        "every 2xx is stored, nothing else"
    );
    r.stop().await;
}

fn dispatch_cmd(gh: &FakeGithub, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"));
    cmd.arg("dispatch")
        .args(args)
        .args(["--api-url", &gh.url()])
        .env("GITHUB_TOKEN", "ghp_manual");
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_by_hand_as_a_github_app() {
    let gh = FakeGithub::start().await;
    gh.app(|a| {
        a.app_id = 8080;
        a.installed = true;
        a.permitted = true;
    });
    let key = support::fake_github::app_key_path("TEST-ONLY-app-key-pkcs1.pem");
    let args = [
        "--repo",
        "octo/hooks",
        "--event-type",
        "deploy",
        "--payload",
        "{\"env\":\"prod\"}",
        "--app-id",
        "8080",
        "--private-key",
        key.to_str().expect("utf-8"),
    ];
    let out = dispatch_cmd(&gh, &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = gh.wait_for(1, WAIT).await.remove(0);
    assert_eq!(d.authorization, "Bearer ghs_installation1");
    assert_eq!(d.body["client_payload"], json!({"env": "prod"}));
    // Not installed: it says so.
    gh.app(|a| a.installed = false);
    let out = dispatch_cmd(&gh, &args, None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not installed on octo"), "{err}");
    // The key needs its app id.
    let out = dispatch_cmd(&gh, &args[..8], None);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_says_when_the_payload_is_a_whole_event() {
    let gh = FakeGithub::start().await;
    for whole in [
        r#"{"action":"webhook","client_payload":{"path":"/a/webhook"}}"#,
        r#"{"event_type":"webhook","client_payload":{"path":"/a/webhook"}}"#,
    ] {
        let out = dispatch_cmd(
            &gh,
            &[
                "--repo",
                "octo/hooks",
                "--event-type",
                "webhook",
                "--payload",
                whole,
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is a whole event") && stderr.contains("jq -c .client_payload"),
            "{stderr}"
        );
    }
    assert!(gh.dispatches().is_empty(), "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_sends_one_event_by_hand() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let payload_file = dir.path().join("payload.json");
    std::fs::write(&payload_file, r#"{"ref":"main"}"#).expect("write");
    let at_file = format!("@{}", payload_file.display());

    let out = dispatch_cmd(
        &gh,
        &[
            "--repo",
            "octo/hooks",
            "--event-type",
            "deploy",
            "--payload",
            r#"{"env":"prod"}"#,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("GitHub accepted the dispatch (204)"));
    let out = dispatch_cmd(
        &gh,
        &[
            "--repo",
            "octo/hooks",
            "--event-type",
            "deploy",
            "--payload",
            &at_file,
        ],
        None,
    );
    assert!(out.status.success());
    let out = dispatch_cmd(
        &gh,
        &[
            "--repo",
            "octo/hooks",
            "--event-type",
            "deploy",
            "--payload",
            "-",
        ],
        Some(r#"{"n":3}"#),
    );
    assert!(out.status.success());
    let ds = gh.wait_for(3, WAIT).await;
    assert_eq!(
        ds[0].body,
        json!({"event_type": "deploy", "client_payload": {"env": "prod"}})
    );
    assert_eq!(ds[1].body["client_payload"], json!({"ref": "main"}));
    assert_eq!(ds[2].body["client_payload"], json!({"n": 3}));
    assert_eq!(ds[0].authorization, "Bearer ghp_manual");

    gh.set_default(Answer::not_found());
    let out = dispatch_cmd(
        &gh,
        &["--repo", "octo/nope", "--event-type", "deploy"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("repository octo/nope not found"));

    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!(i))).collect();
    let eleven = Value::Object(eleven).to_string();
    for (args, expected) in [
        (
            vec![
                "--repo",
                "octo/hooks",
                "--event-type",
                "deploy",
                "--payload",
                eleven.as_str(),
            ],
            "at most 10",
        ),
        (
            vec![
                "--repo",
                "octo/hooks",
                "--event-type",
                "deploy",
                "--payload",
                "{oops",
            ],
            "--payload is not valid JSON",
        ),
        (
            vec!["--repo", "octo", "--event-type", "deploy"],
            "expected OWNER/REPO",
        ),
    ] {
        let out = dispatch_cmd(&gh, &args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
        .args([
            "dispatch",
            "--repo",
            "o/r",
            "--event-type",
            "x",
            "--token-env",
            "HOOKFLOW_NO_SUCH_TOKEN",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOOKFLOW_NO_SUCH_TOKEN is not set"));
}

#[tokio::test]
async fn a_sender_retrying_the_same_delivery_is_stored_once() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, ENDPOINTS).await;
    let client = http();
    let body = r#"{"action":"opened"}"#;
    let mut ids = Vec::new();
    for delivery in ["d-1", "d-1", "d-2"] {
        let (status, answer) = json_of(
            client
                .post(url(&r, "/hooks/github"))
                .header("X-GitHub-Delivery", delivery)
                .header("X-Hub-Signature-256", github_signature(body))
                .body(body)
                .send()
                .await
                .expect("sent"),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
        ids.push((
            answer["event_id"].as_str().expect("id").to_string(),
            answer.get("duplicate").is_some(),
        ));
    }
    assert_eq!(
        ids[0].0, ids[1].0,
        "the repeat answers with the first event's id"
    );
    assert_eq!((ids[0].1, ids[1].1, ids[2].1), (false, true, false));
    assert_ne!(ids[0].0, ids[2].0);
    // The compatible route, with a generic Idempotency-Key.
    for _ in 0..2 {
        let resp = client
            .post(url(&r, "/octo/hooks/a/webhook?__token=t"))
            .header("Idempotency-Key", "k-9")
            .body("{}")
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 200);
    }
    gh.wait_for(3, WAIT).await;
    settled(&r).await;
    assert_eq!(
        gh.dispatches().len(),
        3,
        "two github deliveries and one compat request"
    );
    let metrics = r.metrics.render(None, None, 0);
    assert!(metrics.contains("hookflow_duplicates_total 2"), "{metrics}");
    r.stop().await;
}

#[tokio::test]
async fn the_compatible_route_dispatches_only_to_allowed_repositories() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, "compat_repos: [octo/*]\n").await;
    let (status, _) = post(&r, "/octo/hooks/a/webhook?__token=t", "{}").await;
    assert_eq!(status, 200);
    let (status, answer) = post(&r, "/stranger/repo/a/webhook?__token=t", "{}").await;
    assert_eq!(status, 403);
    assert!(
        answer["message"]
            .as_str()
            .expect("m")
            .contains("compat_repos"),
        "{answer}"
    );
    gh.wait_for(1, WAIT).await;
    settled(&r).await;
    assert_eq!(gh.dispatches().len(), 1);
    r.stop().await;
}

/// The README's recipe: `hookflow sign --format curl` piped into `curl -K -` sends a signed test
/// webhook that the relay accepts (every header the preset writes, not only the first).
#[tokio::test]
async fn a_signed_test_webhook_sent_with_curl_is_accepted() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, ENDPOINTS).await;
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, r#"{"action":"opened","number":3}"#).expect("write");
    let url = url(&r, "/hooks/github");
    let body_arg = format!("@{}", body_file.display());
    let status = tokio::task::spawn_blocking(move || {
        let sign = std::process::Command::new(env!("CARGO_BIN_EXE_hookflow"))
            .args([
                "sign",
                "--preset",
                "github",
                "--secret-env",
                "S",
                "--format",
                "curl",
            ])
            .arg(&body_file)
            .env("S", "endpoint-secret")
            .output()
            .expect("sign runs");
        assert!(sign.status.success());
        let config = String::from_utf8(sign.stdout).expect("utf-8");
        assert_eq!(config.lines().count(), 2, "both GitHub headers: {config}");
        let mut curl = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-K", "-"])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(&body_arg)
            .arg(&url)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl is installed (.ci/run installs it)");
        use std::io::Write as _;
        curl.stdin
            .take()
            .expect("stdin")
            .write_all(config.as_bytes())
            .expect("write");
        let out = curl.wait_with_output().expect("curl ends");
        String::from_utf8_lossy(&out.stdout).to_string()
    })
    .await
    .expect("join");
    assert_eq!(status, "202", "the relay verified the signature");
    let ds = gh.wait_for(1, WAIT).await;
    assert_eq!(ds[0].body["event_type"], "opened");
    r.stop().await;
}
