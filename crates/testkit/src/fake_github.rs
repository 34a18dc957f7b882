//! A fake GitHub dispatches API: a real HTTP server on 127.0.0.1 that records every dispatch and
//! answers as it is told (204, an error with GitHub's message, rate limits, or never).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// Serves `app` on `addr` (`127.0.0.1:0` for a free port) in the background; returns the
/// address it listens on.
pub async fn serve(app: Router, addr: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind a test server");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 204 No Content.
    Accept,
    /// A status with a GitHub-style JSON message and extra headers.
    Status(u16, &'static str, Vec<(&'static str, String)>),
    /// Never answers (the client must time out).
    Hang,
    /// 204 No Content, after this long.
    AcceptAfter(Duration),
    /// 403 with `x-ratelimit-remaining: 0` and a reset this many seconds after the answer.
    RateLimit403(u64),
}

impl Answer {
    pub fn unauthorized() -> Answer {
        Answer::Status(401, "Bad credentials", vec![])
    }
    pub fn not_found() -> Answer {
        Answer::Status(404, "Not Found", vec![])
    }
    pub fn unprocessable() -> Answer {
        Answer::Status(422, "Invalid request.", vec![])
    }
    pub fn server_error() -> Answer {
        Answer::Status(500, "Server Error", vec![])
    }
    pub fn too_many(retry_after_secs: u64) -> Answer {
        Answer::Status(
            429,
            "Too many requests",
            vec![("retry-after", retry_after_secs.to_string())],
        )
    }
    pub fn rate_limited_403(reset_in_secs: u64) -> Answer {
        Answer::RateLimit403(reset_in_secs)
    }
}

/// One recorded dispatch.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub repo: String,
    pub authorization: String,
    pub accept: String,
    pub api_version: String,
    pub user_agent: String,
    pub body: Value,
    pub at: Instant,
    /// The answer given.
    pub status: u16,
}

impl Dispatch {
    /// The payloads it carries: each event of a batch (`client_payload.batch`), or the one.
    pub fn events(&self) -> Vec<&Value> {
        let payload = &self.body["client_payload"];
        match payload["batch"].as_array() {
            Some(list) => list.iter().collect(),
            None => vec![payload],
        }
    }

    /// The ids of the events it carries.
    pub fn event_ids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|p| p["id"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    /// Answers for one repository (`owner/name`), before the shared script.
    repo_scripts: std::collections::HashMap<String, VecDeque<Answer>>,
    default: Option<Answer>,
    /// Dispatches whose body holds this text are refused with 422 (before any script).
    refuse_containing: Option<String>,
    dispatches: Vec<Dispatch>,
    app: AppSide,
}

/// The GitHub App side: one app, installed (or not) on every repository.
#[derive(Default)]
pub struct AppSide {
    /// The app id the JWT must name.
    pub app_id: u64,
    /// Whether the app is installed (404 on the installation otherwise).
    pub installed: bool,
    /// Whether the installation has `contents: write` (403 on the token otherwise).
    pub permitted: bool,
    /// Installation tokens issued, in order.
    pub issued: Vec<String>,
    /// Tokens the dispatch endpoint refuses with 401 (revoked).
    pub revoked: Vec<String>,
    /// Token requests' bodies.
    pub token_requests: Vec<Value>,
    /// JWTs that did not verify, and why.
    pub bad_jwts: Vec<String>,
}

/// The public half of the relay crate's test key (`crates/relay/tests/keys`).
pub fn app_key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../relay/tests/keys")
        .join(name)
}

fn check_jwt(app_id: u64, headers: &HeaderMap) -> Result<(), String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let jwt = auth.strip_prefix("Bearer ").ok_or("no bearer JWT")?;
    let public = std::fs::read(app_key_path("TEST-ONLY-app-key-public.pem")).expect("public key");
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("public key parses");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.required_spec_claims = ["iat", "exp", "iss"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.set_issuer(&[app_id.to_string()]);
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &v).map_err(|e| e.to_string())?;
    let (iat, exp) = (
        data.claims["iat"].as_i64().unwrap_or(0),
        data.claims["exp"].as_i64().unwrap_or(0),
    );
    if exp - iat > 600 {
        return Err(format!("lifetime {} s is over 10 minutes", exp - iat));
    }
    Ok(())
}

fn github_error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(serde_json::json!({"message": message})),
    )
        .into_response()
}

async fn installation(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut i = inner.lock().expect("lock");
    if let Err(e) = check_jwt(i.app.app_id, &headers) {
        i.app.bad_jwts.push(e);
        return github_error(401, "A JSON web token could not be decoded");
    }
    if !i.app.installed {
        return github_error(404, "Not Found");
    }
    axum::Json(serde_json::json!({"id": 7})).into_response()
}

async fn access_token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let mut i = inner.lock().expect("lock");
    if let Err(e) = check_jwt(i.app.app_id, &headers) {
        i.app.bad_jwts.push(e);
        return github_error(401, "A JSON web token could not be decoded");
    }
    i.app
        .token_requests
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    if !i.app.permitted {
        return github_error(
            403,
            "The permissions requested are not granted to this installation.",
        );
    }
    let token = format!("ghs_installation{}", i.app.issued.len() + 1);
    i.app.issued.push(token.clone());
    let expires_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({"token": token, "expires_at": expires_at})),
    )
        .into_response()
}

impl Inner {
    /// Delivered event ids (`client_payload.id` of 2xx dispatches, each of a batch's events)
    /// with how often each arrived.
    fn delivered_ids(&self) -> std::collections::HashMap<String, usize> {
        let mut out = std::collections::HashMap::new();
        for d in self
            .dispatches
            .iter()
            .filter(|d| (200..300).contains(&d.status))
        {
            for id in d.event_ids() {
                *out.entry(id).or_insert(0) += 1;
            }
        }
        out
    }
}

/// A running fake GitHub.
#[derive(Clone)]
pub struct FakeGithub {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGithub {
    /// Starts on an ephemeral port of 127.0.0.1 (or `addr`).
    pub async fn start_on(addr: &str) -> FakeGithub {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let api = Router::new()
            .route("/repos/{owner}/{repo}/dispatches", post(dispatch))
            .route(
                "/repos/{owner}/{repo}/installation",
                axum::routing::get(installation),
            )
            .route("/app/installations/{id}/access_tokens", post(access_token));
        // At the root as api.github.com, and under /api/v3 as a GitHub Enterprise Server.
        let app = api
            .clone()
            .nest("/api/v3", api)
            .route("/_stats", axum::routing::get(stats))
            .with_state(inner.clone());
        let addr = serve(app, addr).await;
        FakeGithub { addr, inner }
    }

    pub async fn start() -> FakeGithub {
        Self::start_on("127.0.0.1:0").await
    }

    /// The API base to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers these first, in order, then the default.
    pub fn script(&self, answers: Vec<Answer>) {
        self.inner.lock().expect("lock").script.extend(answers);
    }

    /// Answers these first, in order, to dispatches to `repo` (`owner/name`) only.
    pub fn script_for(&self, repo: &str, answers: Vec<Answer>) {
        self.inner
            .lock()
            .expect("lock")
            .repo_scripts
            .entry(repo.to_string())
            .or_default()
            .extend(answers);
    }

    /// Refuses with 422 ("Invalid request.") every dispatch whose body holds `text`.
    pub fn refuse_containing(&self, text: &str) {
        self.inner.lock().expect("lock").refuse_containing = Some(text.to_string());
    }

    /// The answer once the script is used up (204 unless set).
    pub fn set_default(&self, answer: Answer) {
        self.inner.lock().expect("lock").default = Some(answer);
    }

    /// Changes the GitHub App side (installed, permitted, app id, revoked tokens).
    pub fn app(&self, change: impl FnOnce(&mut AppSide)) {
        change(&mut self.inner.lock().expect("lock").app);
    }

    /// Reads the GitHub App side.
    pub fn app_state<T>(&self, read: impl FnOnce(&AppSide) -> T) -> T {
        read(&self.inner.lock().expect("lock").app)
    }

    /// Every dispatch received, in order.
    pub fn dispatches(&self) -> Vec<Dispatch> {
        self.inner.lock().expect("lock").dispatches.clone()
    }

    /// Dispatches answered 2xx.
    pub fn delivered(&self) -> Vec<Dispatch> {
        self.dispatches()
            .into_iter()
            .filter(|d| (200..300).contains(&d.status))
            .collect()
    }

    /// Delivered event ids (`client_payload.id`) with how often each arrived.
    pub fn delivered_ids(&self) -> std::collections::HashMap<String, usize> {
        self.inner.lock().expect("lock").delivered_ids()
    }

    /// Waits until at least `n` dispatches arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Dispatch> {
        let start = Instant::now();
        loop {
            let d = self.dispatches();
            if d.len() >= n {
                return d;
            }
            assert!(
                start.elapsed() < timeout,
                "expected {n} dispatches within {timeout:?}, got {}",
                d.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `GET /_stats`: counts, for load scripts.
async fn stats(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let i = inner.lock().expect("lock");
    let ids = i.delivered_ids();
    axum::Json(serde_json::json!({
        "dispatches": i.dispatches.len(),
        "delivered": ids.values().sum::<usize>(),
        "unique_ids": ids.len(),
    }))
    .into_response()
}

async fn dispatch(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let answer = {
        let mut i = inner.lock().expect("lock");
        let bearer = header("authorization");
        let revoked = i
            .app
            .revoked
            .iter()
            .any(|t| bearer == format!("Bearer {t}"));
        let refused = i
            .refuse_containing
            .as_ref()
            .is_some_and(|t| body.windows(t.len()).any(|w| w == t.as_bytes()));
        let answer = if revoked {
            Answer::unauthorized()
        } else if refused {
            Answer::unprocessable()
        } else {
            i.repo_scripts
                .get_mut(&format!("{owner}/{repo}"))
                .and_then(VecDeque::pop_front)
                .or_else(|| i.script.pop_front())
                .or_else(|| i.default.clone())
                .unwrap_or(Answer::Accept)
        };
        let status = match &answer {
            Answer::Accept | Answer::AcceptAfter(_) => 204,
            Answer::Status(s, _, _) => *s,
            Answer::RateLimit403(_) => 403,
            Answer::Hang => 0,
        };
        i.dispatches.push(Dispatch {
            repo: format!("{owner}/{repo}"),
            authorization: header("authorization"),
            accept: header("accept"),
            api_version: header("x-github-api-version"),
            user_agent: header("user-agent"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            at: Instant::now(),
            status,
        });
        answer
    };
    match answer {
        Answer::Accept => StatusCode::NO_CONTENT.into_response(),
        Answer::AcceptAfter(wait) => {
            tokio::time::sleep(wait).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Answer::RateLimit403(reset_in) => {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
                + reset_in;
            let mut r = (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({"message": "API rate limit exceeded"})),
            )
                .into_response();
            r.headers_mut().insert(
                "x-ratelimit-remaining",
                axum::http::HeaderValue::from_static("0"),
            );
            if let Ok(v) = reset.to_string().parse() {
                r.headers_mut().insert("x-ratelimit-reset", v);
            }
            r
        }
        Answer::Status(code, message, extra) => {
            let mut r = (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(serde_json::json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
            )
                .into_response();
            for (k, v) in extra {
                if let Ok(v) = v.parse() {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
    }
}
