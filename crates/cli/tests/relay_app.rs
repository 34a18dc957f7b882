//! The relay dispatching as a GitHub App, against a fake GitHub that verifies the app's JWT with
//! its public key and issues installation tokens.

use crate::support;

use std::time::{Duration, Instant};

use hookflow_relay::store::Store as _;
use serde_json::json;
use support::fake_github::{app_key_path, FakeGithub};
use support::relay::{config, post, test_env, wait_until, WAIT};

const APP_ID: u64 = 31337;

async fn start_app_relay(gh: &FakeGithub, dir: &std::path::Path) -> hookflow_relay::Running {
    gh.app(|a| {
        a.app_id = APP_ID;
        a.installed = true;
        a.permitted = true;
    });
    let extra = format!(
        "github_app:\n  app_id: {APP_ID}\n  private_key_file: {}\nendpoints:\n  - slug: app\n    repo: octo/hooks\n",
        app_key_path("TEST-ONLY-app-key-pkcs8.pem").display()
    );
    hookflow_relay::start(config(dir, gh, &extra), test_env())
        .await
        .expect("relay starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_endpoint_dispatches_with_a_narrowed_installation_token_it_reuses() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start_app_relay(&gh, dir.path()).await;
    for n in 0..2 {
        let (status, answer) = post(&r, "/hooks/app", format!("{{\"n\":{n}}}")).await;
        assert_eq!(status, 202, "{answer}");
    }
    let got = gh.wait_for(2, WAIT).await;
    for d in &got {
        assert_eq!(d.status, 204);
        assert_eq!(d.authorization, "Bearer ghs_installation1");
        assert_eq!(d.repo, "octo/hooks");
    }
    gh.app_state(|a| {
        assert_eq!(a.issued.len(), 1, "one token for both");
        assert_eq!(
            a.token_requests[0],
            json!({"repositories": ["hooks"], "permissions": {"contents": "write"}})
        );
        assert!(a.bad_jwts.is_empty(), "{:?}", a.bad_jwts);
    });
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_replaced_once_and_the_event_delivered() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start_app_relay(&gh, dir.path()).await;
    post(&r, "/hooks/app", "{\"n\":1}").await;
    gh.wait_for(1, WAIT).await;
    gh.app(|a| a.revoked.push("ghs_installation1".into()));
    let (status, _) = post(&r, "/hooks/app", "{\"n\":2}").await;
    assert_eq!(status, 202, "endpoints answer 202 Accepted");
    let got = gh.wait_for(3, WAIT).await;
    let answers: Vec<(String, u16)> = got
        .iter()
        .map(|d| (d.authorization.clone(), d.status))
        .collect();
    assert_eq!(
        answers,
        [
            ("Bearer ghs_installation1".to_string(), 204),
            ("Bearer ghs_installation1".to_string(), 401),
            ("Bearer ghs_installation2".to_string(), 204),
        ]
    );
    support::relay::settled(&r).await;
    let c = r.store.counts().await.expect("counts");
    assert_eq!(c.dead, 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_become_dead_letters_that_say_what_to_do_and_replay_with_a_fresh_token() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start_app_relay(&gh, dir.path()).await;
    gh.app(|a| a.installed = false);
    post(&r, "/hooks/app", "{\"n\":1}").await;
    let store = r.store.clone();
    let dead = || {
        let store = store.clone();
        async move { store.dead_letters(10).await.expect("dead letters") }
    };
    let start = Instant::now();
    while dead().await.is_empty() {
        assert!(start.elapsed() < WAIT, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = dead().await;
    assert!(
        letters[0]
            .error
            .contains("the GitHub App is not installed on octo (or has no access to octo/hooks)"),
        "{}",
        letters[0].error
    );
    gh.app(|a| {
        a.installed = true;
        a.permitted = false;
    });
    post(&r, "/hooks/app", "{\"n\":2}").await;
    let start = Instant::now();
    while dead().await.len() < 2 {
        assert!(start.elapsed() < WAIT, "no second dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let letters = dead().await;
    assert!(
        letters
            .iter()
            .any(|l| l.error.contains("Contents: Read and write")),
        "{letters:?}"
    );
    assert!(
        gh.dispatches().is_empty(),
        "nothing was sent without a token"
    );
    // The dead letters hold no token, only that the app sends them.
    let db = rusqlite::Connection::open(dir.path().join("events.db")).expect("open");
    let tokens: Vec<String> = db
        .prepare("SELECT coalesce(token, '') FROM deliveries")
        .expect("prepare")
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(tokens, ["app:", "app:"]);
    // Fixed on GitHub's side: the letters go out with a token minted now.
    gh.app(|a| a.permitted = true);
    assert_eq!(r.store.replay_dead(Vec::new()).await.expect("replay"), 2);
    let got = gh.wait_for(2, WAIT).await;
    assert!(got
        .iter()
        .all(|d| d.status == 204 && d.authorization == "Bearer ghs_installation1"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_app_credentials_wait_are_counted_and_the_relay_stays_ready() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start_app_relay(&gh, dir.path()).await;
    // GitHub knows the key under another app id.
    gh.app(|a| a.app_id = APP_ID + 1);
    let (status, _) = post(&r, "/hooks/app", "{}").await;
    assert_eq!(status, 202);
    wait_until("a refused JWT", || gh.app_state(|a| !a.bad_jwts.is_empty())).await;
    let client = support::relay::http();
    let start = Instant::now();
    loop {
        let text = support::relay::get_text(&support::relay::url(&r, "/metrics")).await;
        if text.contains("hookflow_github_app_auth_failures_total 1\n") {
            break;
        }
        assert!(start.elapsed() < WAIT, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = client
        .get(support::relay::url(&r, "/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200, "the relay still takes webhooks");
    // Waiting, not dead, and no attempt spent.
    let c = r.store.counts().await.expect("counts");
    assert_eq!((c.pending, c.dead), (1, 0), "{c:?}");
    assert!(gh.dispatches().is_empty());
    r.stop().await;
}

#[test]
fn check_config_loads_the_key_and_says_what_is_wrong_with_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("app.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let config = dir.path().join("relay.yml");
    let write_config = |key: &std::path::Path| {
        std::fs::write(
            &config,
            format!(
                "github_app:\n  app_id: 1\n  private_key_file: {}\nendpoints:\n  - {{slug: a, repo: o/r}}\n",
                key.display()
            ),
        )
        .expect("write")
    };
    let check = || {
        support::cli::hookflow()
            .args(["relay", "--check-config", "--config"])
            .arg(&config)
            .output()
            .expect("runs")
    };
    write_config(&key);
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "error: the GitHub App's private key from {}",
            key.display()
        )) && err.contains("is not an RSA private key in PEM"),
        "{err}"
    );
    // The relay does not start on it either.
    let out = support::cli::hookflow()
        .args(["relay", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an RSA private key"));
    // A good key: ok.
    write_config(&app_key_path("TEST-ONLY-app-key-pkcs8.pem"));
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
