//! The whole path: a webhook into the relay, the dispatch GitHub receives written as the
//! workflow run's `GITHUB_EVENT_PATH`, then `hookflow run` producing the step outputs.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use hookflow_relay::config::{Overrides, RelayConfig};
use serde_json::{json, Value};
use support::fake_github::FakeGithub;

const SECRET: &str = "e2e-webhook-secret";

fn workflows(dir: &Path) -> PathBuf {
    let wf = dir.join("workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    std::fs::write(
        wf.join("github.yml"),
        "on:\n  webhook:\n    method: POST\n    verify: {preset: github, secret_env: E2E_SECRET}\n    outputs:\n      ref: $.body.ref\n      last: $.body.commits[-1].message\n",
    )
    .expect("write");
    wf
}

/// Writes the event GitHub would give the workflow run for a received dispatch.
fn event_file(dir: &Path, dispatch: &Value) -> PathBuf {
    let event = json!({
        "action": dispatch["event_type"],
        "client_payload": dispatch["client_payload"],
        "repository": {"full_name": "octo/hooks"},
        "sender": {"login": "hookflow-bot"}
    });
    let path = dir.join("event.json");
    std::fs::write(&path, event.to_string()).expect("write");
    path
}

fn run(workflows: &Path, event: &Path) -> Value {
    let out = Command::cargo_bin("hookflow")
        .expect("binary")
        .args(["run", "--json", "--workflows"])
        .arg(workflows)
        .arg("--event")
        .arg(event)
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .env("E2E_SECRET", SECRET)
        .env_remove("HOOKFLOW_NOW")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn sign(body: &str) -> String {
    let mac = hookflow_protocol::signature::hmac(
        hookflow_protocol::signature::Algorithm::Sha256,
        SECRET.as_bytes(),
        &[body.as_bytes()],
    );
    format!("sha256={}", hex::encode(mac))
}

fn push(commits: usize) -> String {
    let commits: Vec<Value> = (0..commits)
        .map(|i| json!({"id": format!("{:040x}", i * 104_729), "message": format!("Commit {i}: tidy the build"), "modified": ["README.md"]}))
        .collect();
    json!({"ref": "refs/heads/main", "commits": commits}).to_string()
}

#[tokio::test]
async fn signed_webhook_reaches_the_step_outputs_verified() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\nendpoints:\n  - slug: github\n    repo: octo/hooks\n    token_env: E2E_GITHUB_TOKEN\n    verify: {{preset: github, secret_env: E2E_SECRET}}\n",
        dir.path().join("data").display(),
        gh.url()
    );
    let relay = hookflow_relay::start(
        RelayConfig::parse(&config, "e2e.yml", &Overrides::default()).expect("config"),
        hookflow_protocol::Environment::with_vars(vec![
            ("E2E_GITHUB_TOKEN".into(), "ghp_e2e".into()),
            ("E2E_SECRET".into(), SECRET.into()),
        ]),
    )
    .await
    .expect("relay starts");
    let client = reqwest::Client::new();
    let wf = workflows(dir.path());

    // A configured endpoint: the relay checks the signature, the runtime checks it again.
    let small = push(3);
    let resp = client
        .post(format!("http://{}/hooks/github", relay.addr))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(&small))
        .body(small.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let d = gh.wait_for(1, Duration::from_secs(10)).await.remove(0);
    let out = run(&wf, &event_file(dir.path(), &d.body));
    assert_eq!(out["matched"], json!(true), "{out}");
    assert_eq!(out["workflow"], json!("github.yml"));
    assert_eq!(out["outputs"]["verified"], json!(true));
    assert_eq!(out["outputs"]["ref"], json!("refs/heads/main"));
    assert_eq!(out["outputs"]["last"], json!("Commit 2: tidy the build"));
    assert_eq!(
        out["outputs"]["body"],
        serde_json::from_str::<Value>(&small).expect("json")
    );

    // The compatible route with a ~300 KB push: carried as gzip+base64, verified end to end.
    let big = push(2200);
    assert!(big.len() > 250_000, "{}", big.len());
    let resp = client
        .post(format!(
            "http://{}/octo/hooks/github/webhook?__token=ghp_compat",
            relay.addr
        ))
        .header("Content-Type", "application/json")
        .header("X-Hub-Signature-256", sign(&big))
        .body(big.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let d = gh.wait_for(2, Duration::from_secs(10)).await.remove(1);
    assert_eq!(
        d.body["client_payload"]["body_encoding"],
        json!("gzip+base64")
    );
    let out = run(&wf, &event_file(dir.path(), &d.body));
    assert_eq!(out["outputs"]["verified"], json!(true), "{}", out["reason"]);
    assert_eq!(out["outputs"]["last"], json!("Commit 2199: tidy the build"));
    relay.stop().await;
}

#[tokio::test]
async fn a_github_app_endpoint_on_an_enterprise_server_reaches_the_step_outputs() {
    let gh = FakeGithub::start().await;
    gh.app(|a| {
        a.app_id = 4711;
        a.installed = true;
        a.permitted = true;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    // The key as the variable's PEM text (PKCS#1), the API under /api/v3 as on GHES.
    let pem = std::fs::read_to_string(support::fake_github::app_key_path(
        "TEST-ONLY-app-key-pkcs1.pem",
    ))
    .expect("test key");
    let config = format!(
        "listen: 127.0.0.1:0\ndata: {}\napi_url: {}/api/v3\ngithub_app:\n  app_id: 4711\n  private_key_env: E2E_APP_KEY\nendpoints:\n  - slug: github\n    repo: octo/hooks\n    auth: app\n    verify: {{preset: github, secret_env: E2E_SECRET}}\n",
        dir.path().join("data").display(),
        gh.url()
    );
    let relay = hookflow_relay::start(
        RelayConfig::parse(&config, "e2e.yml", &Overrides::default()).expect("config"),
        hookflow_protocol::Environment::with_vars(vec![
            ("E2E_APP_KEY".into(), pem),
            ("E2E_SECRET".into(), SECRET.into()),
        ]),
    )
    .await
    .expect("relay starts");
    let body = push(2);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/hooks/github", relay.addr))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign(&body))
        .body(body.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let d = gh.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(d.status, 204);
    assert_eq!(d.authorization, "Bearer ghs_installation1");
    gh.app_state(|a| assert!(a.bad_jwts.is_empty(), "{:?}", a.bad_jwts));
    let out = run(&workflows(dir.path()), &event_file(dir.path(), &d.body));
    assert_eq!(out["matched"], json!(true), "{out}");
    assert_eq!(out["outputs"]["verified"], json!(true));
    assert_eq!(out["outputs"]["last"], json!("Commit 1: tidy the build"));
    relay.stop().await;
}
