//! GitHub App tokens against a fake GitHub on 127.0.0.1 that checks the app's JWT with the app's
//! public key, issues installation tokens with an `expires_at`, and answers errors on demand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::ManualClock;
use hookflow_relay::outbound::github_app::{AppError, AppKey, AppTokens};
use serde_json::{json, Value};

const APP_ID: u64 = 424242;
const INSTALLATION: u64 = 77;

fn key_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// What the fake answers, and what it saw.
#[derive(Default)]
struct Fake {
    /// The fake's time (seconds since the epoch), for `iat`/`exp` checks and `expires_at`.
    now_s: AtomicU64,
    /// Answer this status to installation lookups instead (404).
    installation_status: Mutex<Option<u16>>,
    /// Answer this status to token requests instead (403, 401).
    token_status: Mutex<Option<u16>>,
    installation_calls: AtomicU64,
    token_calls: AtomicU64,
    /// Token requests' bodies.
    token_bodies: Mutex<Vec<Value>>,
    /// Problems found in requests (bad JWTs): the test asserts none.
    problems: Mutex<Vec<String>>,
}

struct FakeGithub {
    addr: SocketAddr,
    fake: Arc<Fake>,
}

fn check_jwt(fake: &Fake, headers: &HeaderMap) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(jwt) = auth.strip_prefix("Bearer ") else {
        return Err(format!("no bearer JWT: {auth:?}"));
    };
    let public = std::fs::read(key_file("TEST-ONLY-app-key-public.pem")).expect("public key");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("public key parses");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // The fake's clock, not the machine's: checked by hand below.
    validation.validate_exp = false;
    validation.required_spec_claims = ["iat", "exp", "iss"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map_err(|e| format!("JWT does not verify: {e}"))?;
    let c = data.claims;
    let now = fake.now_s.load(Ordering::SeqCst) as i64;
    let (iat, exp) = (
        c["iat"].as_i64().unwrap_or(0),
        c["exp"].as_i64().unwrap_or(0),
    );
    if c["iss"] != json!(APP_ID.to_string()) {
        return Err(format!("iss is {}", c["iss"]));
    }
    if iat > now - 30 || iat < now - 120 {
        return Err(format!("iat {iat} is not about 60 s before {now}"));
    }
    if exp <= now || exp - iat > 600 {
        return Err(format!(
            "exp {exp} (iat {iat}, now {now}): past, or longer than 10 minutes"
        ));
    }
    Ok(())
}

fn refuse(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).expect("status"),
        Json(json!({"message": message})),
    )
        .into_response()
}

async fn installation(
    State(fake): State<Arc<Fake>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    fake.installation_calls.fetch_add(1, Ordering::SeqCst);
    if let Err(p) = check_jwt(&fake, &headers) {
        fake.problems.lock().expect("lock").push(p.clone());
        return refuse(401, "A JSON web token could not be decoded");
    }
    if let Some(status) = *fake.installation_status.lock().expect("lock") {
        return refuse(status, "Not Found");
    }
    Json(json!({"id": INSTALLATION, "account": {"login": owner}, "repository_selection": "selected", "repo": repo}))
        .into_response()
}

async fn access_token(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let n = fake.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if let Err(p) = check_jwt(&fake, &headers) {
        fake.problems.lock().expect("lock").push(p.clone());
        return refuse(401, "A JSON web token could not be decoded");
    }
    if id != INSTALLATION {
        return refuse(404, "Not Found");
    }
    fake.token_bodies
        .lock()
        .expect("lock")
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    if let Some(status) = *fake.token_status.lock().expect("lock") {
        return refuse(
            status,
            "The permissions requested are not granted to this installation.",
        );
    }
    // Slow enough that concurrent callers overlap.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let expires = fake.now_s.load(Ordering::SeqCst) as i64 + 3600;
    let expires_at = chrono::DateTime::from_timestamp(expires, 0)
        .expect("time")
        .to_rfc3339();
    (
        StatusCode::CREATED,
        Json(json!({"token": format!("ghs_test{n}"), "expires_at": expires_at})),
    )
        .into_response()
}

impl FakeGithub {
    async fn start(now_s: u64) -> FakeGithub {
        let fake = Arc::new(Fake::default());
        fake.now_s.store(now_s, Ordering::SeqCst);
        let app = Router::new()
            .route("/repos/{owner}/{repo}/installation", get(installation))
            .route("/app/installations/{id}/access_tokens", post(access_token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub { addr, fake }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn problems(&self) -> Vec<String> {
        self.fake.problems.lock().expect("lock").clone()
    }
}

const T0: u64 = 1_800_000_000;

fn tokens(gh: &FakeGithub, key: &str, clock: Arc<ManualClock>) -> AppTokens {
    let key = AppKey::from_file(APP_ID, &key_file(key)).expect("test key loads");
    AppTokens::new(key, reqwest::Client::new(), &gh.url(), clock)
}

fn repo() -> Repo {
    Repo::parse("octo-org/hooks").expect("repo")
}

#[tokio::test]
async fn tokens_are_minted_narrowed_cached_and_renewed_before_they_expire() {
    let gh = FakeGithub::start(T0).await;
    let clock = Arc::new(ManualClock::at_ms(T0 as i64 * 1000));
    let app = tokens(&gh, "TEST-ONLY-app-key-pkcs1.pem", clock.clone());
    assert_eq!(app.token(&repo()).await, Ok("ghs_test1".into()));
    assert_eq!(
        gh.fake.token_bodies.lock().expect("lock")[0],
        json!({"repositories": ["hooks"], "permissions": {"contents": "write"}}),
        "narrowed to the repository and contents: write"
    );
    // 54 minutes on: still more than 5 minutes left, so the same token.
    clock.advance_ms(54 * 60 * 1000);
    gh.fake.now_s.store(T0 + 54 * 60, Ordering::SeqCst);
    assert_eq!(app.token(&repo()).await, Ok("ghs_test1".into()));
    // 56 minutes on: less than 5 minutes left, so a new one.
    clock.advance_ms(2 * 60 * 1000);
    gh.fake.now_s.store(T0 + 56 * 60, Ordering::SeqCst);
    assert_eq!(app.token(&repo()).await, Ok("ghs_test2".into()));
    assert_eq!(gh.fake.token_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        gh.fake.installation_calls.load(Ordering::SeqCst),
        1,
        "the installation is looked up once"
    );
    assert!(gh.problems().is_empty(), "{:?}", gh.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_deliveries_share_one_token_request() {
    let gh = FakeGithub::start(T0).await;
    let clock = Arc::new(ManualClock::at_ms(T0 as i64 * 1000));
    let app = Arc::new(tokens(&gh, "TEST-ONLY-app-key-pkcs8.pem", clock));
    let mut all = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = app.clone();
        all.spawn(async move { app.token(&repo()).await });
    }
    let mut got = HashMap::new();
    while let Some(t) = all.join_next().await {
        *got.entry(t.expect("task").expect("token")).or_insert(0) += 1;
    }
    assert_eq!(got, HashMap::from([("ghs_test1".to_string(), 50)]));
    assert_eq!(gh.fake.token_calls.load(Ordering::SeqCst), 1);
    assert!(gh.problems().is_empty(), "{:?}", gh.problems());
}

#[tokio::test]
async fn a_refused_token_is_forgotten_and_the_next_is_new() {
    let gh = FakeGithub::start(T0).await;
    let clock = Arc::new(ManualClock::at_ms(T0 as i64 * 1000));
    let app = tokens(&gh, "TEST-ONLY-app-key-pkcs1.pem", clock);
    let first = app.token(&repo()).await.expect("token");
    app.forget(&repo(), &first).await;
    assert_eq!(app.token(&repo()).await, Ok("ghs_test2".into()));
    // Forgetting a token that was already replaced keeps the new one.
    app.forget(&repo(), &first).await;
    assert_eq!(app.token(&repo()).await, Ok("ghs_test2".into()));
}

#[tokio::test]
async fn each_refusal_says_what_to_do() {
    let gh = FakeGithub::start(T0).await;
    let clock = Arc::new(ManualClock::at_ms(T0 as i64 * 1000));
    let app = tokens(&gh, "TEST-ONLY-app-key-pkcs1.pem", clock.clone());

    *gh.fake.installation_status.lock().expect("lock") = Some(404);
    let e = app.token(&repo()).await.expect_err("not installed");
    assert!(matches!(e, AppError::NotInstalled { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("not installed on octo-org (or has no access to octo-org/hooks)"),
        "{e}"
    );

    *gh.fake.installation_status.lock().expect("lock") = None;
    *gh.fake.token_status.lock().expect("lock") = Some(403);
    let e = app.token(&repo()).await.expect_err("no permission");
    assert!(e.to_string().contains("Contents: Read and write"), "{e}");

    // A JWT GitHub cannot verify (here: dated by a clock a day behind GitHub's).
    *gh.fake.token_status.lock().expect("lock") = None;
    clock.advance_ms(-86_400_000);
    let e = app.token(&repo()).await.expect_err("refused JWT");
    assert!(
        matches!(e, AppError::Credentials { status: 401, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("check github_app.app_id"), "{e}");

    // Network trouble is worth a retry.
    let down = AppTokens::new(
        AppKey::from_file(APP_ID, &key_file("TEST-ONLY-app-key-pkcs1.pem")).expect("key"),
        reqwest::Client::new(),
        "http://127.0.0.1:9",
        Arc::new(ManualClock::at_ms(T0 as i64 * 1000)),
    );
    assert!(matches!(
        down.token(&repo()).await,
        Err(AppError::Transient(_))
    ));
}

#[test]
fn malformed_keys_are_refused_with_where_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("key.pem");
    std::fs::write(
        &bad,
        "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n",
    )
    .expect("write");
    let e = AppKey::from_file(APP_ID, &bad).expect_err("refused");
    assert!(e.to_string().contains(&bad.display().to_string()), "{e}");
    assert!(
        e.to_string().contains("is not an RSA private key in PEM"),
        "{e}"
    );
    let e = AppKey::from_file(APP_ID, &dir.path().join("missing.pem")).expect_err("refused");
    assert!(e.to_string().contains("cannot read"), "{e}");
    let public = std::fs::read_to_string(key_file("TEST-ONLY-app-key-public.pem")).expect("read");
    assert!(AppKey::from_pem(APP_ID, &public, "the public key").is_err());
    // Never printed.
    let key = AppKey::from_file(APP_ID, &key_file("TEST-ONLY-app-key-pkcs8.pem")).expect("loads");
    assert!(!format!("{key:?}").contains("PRIVATE"));
}
