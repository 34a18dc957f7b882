//! The admin API (`admin:`), on an address of its own (default `127.0.0.1:8081`) so the public
//! webhook port never exposes it: the event log (list with filters, one event whole), replays,
//! and the queue's health, as JSON documented by `GET /openapi.json`. Every route but
//! `/openapi.json` needs a bearer token from `admin.tokens_env`, compared in constant time.
//!
//! Routes:
//! - `GET /api/events?status=&repository=&destination=&source=&since=&until=&delivery=&q=&before=&limit=`
//! - `GET /api/events/{id}`
//! - `POST /api/events/{id}/replay`
//! - `POST /api/replay` with the list's filters as a JSON object (at most 10,000 events)
//! - `GET /api/health`
//! - `POST /api/reload`: reads the configuration file again (as `SIGHUP` does)
//!
//! And the page ([`page`]): `GET /`, `GET /events/{id}`, `POST /events/{id}/replay`, behind a
//! sign-in (`GET|POST /login`) with the same tokens.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hookflow_protocol::credentials;
use serde_json::{json, Value};

use crate::live::{Live, ReloadError};
use crate::metrics::Metrics;
use crate::operator::{self, event_filter, MAX_REPLAY};
use crate::store::{Store, StoreHandle};
use hookflow_protocol::Environment;

pub mod page;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::console=…`), kept as it was before
/// the module moved.
const LOG_TARGET: &str = "hookflow_relay::console";

/// The OpenAPI description of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the admin handlers share.
#[derive(Clone)]
pub struct ConsoleState {
    /// The event store.
    pub store: StoreHandle,
    /// The relay's metrics (delivery rate).
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub env: Environment,
    /// The admin tokens.
    tokens: Arc<Vec<String>>,
    /// The key of the page's session cookies, made at start-up.
    session_key: Arc<Vec<u8>>,
    /// Whether the admin address is this machine only (cookies without `Secure` then).
    loopback: bool,
    /// The running configuration, for reloads.
    live: Arc<Live>,
}

impl ConsoleState {
    /// The state of a console accepting `tokens`.
    pub fn new(
        store: StoreHandle,
        metrics: Arc<Metrics>,
        env: Environment,
        tokens: Vec<String>,
        loopback: bool,
        live: Arc<Live>,
    ) -> ConsoleState {
        let mut key = vec![0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // No randomness: sessions cannot be trusted, so none is ever valid.
            tracing::error!(target: LOG_TARGET, "no system randomness: the admin page cannot sign anyone in");
            key.clear();
        }
        ConsoleState {
            store,
            metrics,
            env,
            tokens: Arc::new(tokens),
            session_key: Arc::new(key),
            loopback,
            live,
        }
    }

    /// Whether `token` is one of the admin tokens: each compared in full, in constant time.
    fn admits(&self, token: &str) -> bool {
        credentials::one_of(self.tokens.iter().map(|t| t.as_bytes()), token.as_bytes())
    }
}

/// The admin router.
pub fn router(state: ConsoleState) -> Router {
    let api = Router::new()
        .route("/api/events", get(list))
        .route("/api/events/{id}", get(show))
        .route("/api/events/{id}/replay", post(replay_one))
        .route("/api/replay", post(replay_filtered))
        .route("/api/health", get(health))
        .route("/api/reload", post(reload))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let pages = Router::new()
        .route("/", get(page::index))
        .route("/events/{id}", get(page::event))
        .route("/events/{id}/replay", post(page::replay))
        .layer(middleware::from_fn_with_state(state.clone(), page::guard));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/style.css", get(page::style))
        .route("/login", get(page::login_form).post(page::login))
        .merge(api)
        .merge(pages)
        .fallback(|| async {
            answer(
                StatusCode::NOT_FOUND,
                "no such admin route; see /openapi.json",
            )
        })
        .layer(middleware::from_fn(harden))
        .with_state(state)
}

/// A bearer token from `Authorization`, checked against the admin tokens.
async fn authenticate(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if state.admits(t) => next.run(request).await,
        found => {
            tracing::warn!(target: LOG_TARGET,
                with_token = found.is_some(),
                "admin request refused: no valid admin token"
            );
            let mut r = answer(
                StatusCode::UNAUTHORIZED,
                "send an admin token (admin.tokens_env) as Authorization: Bearer TOKEN",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// Headers every admin answer carries: never cached, never framed, never sniffed.
async fn harden(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    r
}

fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "message": message})),
    )
        .into_response()
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(target: LOG_TARGET, error = %e, "admin: the store cannot answer");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "the event store cannot answer right now; retry shortly",
    )
}

/// The pairs of a query string, decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn list(State(state): State<ConsoleState>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let (filter, limit) = match event_filter(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(f) => f,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match state.store.list_events(filter, limit).await {
        Ok(events) => axum::Json(operator::event_page_json(&events, limit)).into_response(),
        Err(e) => store_failed(e),
    }
}

async fn show(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    match state.store.logged_event(id.clone()).await {
        Ok(Some(e)) => axum::Json(operator::logged_event_json(&e)).into_response(),
        Ok(None) => answer(
            StatusCode::NOT_FOUND,
            &format!("no event {id} in the log (never received, or pruned after retention.events)"),
        ),
        Err(e) => store_failed(e),
    }
}

async fn replay_one(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    match state
        .store
        .replay(vec![id.clone()], Default::default(), 1)
        .await
    {
        Ok(0) => answer(
            StatusCode::NOT_FOUND,
            &format!("{id} has no delivered or dead delivery to replay (unknown, pruned, or still on its way)"),
        ),
        Ok(n) => {
            tracing::info!(target: LOG_TARGET, id = %id, deliveries = n, "admin: replayed");
            axum::Json(json!({"replayed": n})).into_response()
        }
        Err(e) => store_failed(e),
    }
}

async fn replay_filtered(State(state): State<ConsoleState>, body: axum::body::Bytes) -> Response {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "send the list's filters as a JSON object, e.g. {\"status\": \"dead\", \"repository\": \"octo/hooks\"}",
        );
    };
    let mut pairs = Vec::new();
    let mut limit = MAX_REPLAY;
    for (k, v) in &fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    &format!("filter `{k}` must be a string or a number"),
                )
            }
        };
        if k == "limit" {
            match text.parse::<usize>() {
                Ok(n) if (1..=MAX_REPLAY).contains(&n) => limit = n,
                _ => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        &format!("limit must be 1 to {MAX_REPLAY}"),
                    )
                }
            }
        } else {
            pairs.push((k.clone(), text));
        }
    }
    if pairs.is_empty() {
        return answer(
            StatusCode::BAD_REQUEST,
            "give at least one filter (such as {\"status\": \"dead\"}); replaying everything is not what a filter is for",
        );
    }
    let (filter, _) = match event_filter(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(f) => f,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Pages of the list, newest first, until `limit` events were taken.
    let mut replayed = 0;
    let mut events = 0;
    let mut page = filter;
    while events < limit {
        let size = (limit - events).min(crate::store::MAX_PAGE);
        let listed = match state.store.list_events(page.clone(), size).await {
            Ok(l) => l,
            Err(e) => return store_failed(e),
        };
        let ids: Vec<String> = listed.iter().map(|e| e.id.clone()).collect();
        if ids.is_empty() {
            break;
        }
        events += ids.len();
        page.before = ids.last().cloned();
        match state.store.replay(ids, Default::default(), size).await {
            Ok(n) => replayed += n,
            Err(e) => return store_failed(e),
        }
        if listed.len() < size {
            break;
        }
    }
    tracing::info!(target: LOG_TARGET, events, deliveries = replayed, "admin: replayed by filter");
    axum::Json(json!({"replayed": replayed, "events": events})).into_response()
}

async fn health(State(state): State<ConsoleState>) -> Response {
    match state.store.counts().await {
        Ok(c) => {
            let now = state.env.now_ms();
            let hour = state.metrics.last_hour();
            axum::Json(json!({
                "pending": c.pending, "inflight": c.inflight, "dead": c.dead,
                "oldest_pending_seconds": c.oldest_pending.map(|t| (now - t).max(0) / 1000),
                "delivered_total": state.metrics.delivered_count(),
                "store_bytes": c.room.bytes_used, "store_cap_bytes": c.room.bytes_cap,
                "last_hour": {
                    "delivered": hour.iter().map(|(d, _)| d).collect::<Vec<_>>(),
                    "failed": hour.iter().map(|(_, f)| f).collect::<Vec<_>>(),
                },
            }))
            .into_response()
        }
        Err(e) => store_failed(e),
    }
}

/// `POST /api/reload`: the configuration file read again and applied, or refused with what is
/// wrong in it (the running configuration stays).
async fn reload(State(state): State<ConsoleState>) -> Response {
    let live = state.live.clone();
    let result = match tokio::task::spawn_blocking(move || live.reload()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(target: LOG_TARGET, error = %e, "admin: the reload did not finish");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reload did not finish; see the relay's log",
            );
        }
    };
    match result {
        Ok(r) => axum::Json(json!({
            "reloaded": true,
            "file": r.file,
            "changed": r.changed,
            "restart_needed": r.kept,
        }))
        .into_response(),
        Err(e) => {
            let status = match e {
                ReloadError::NoFile => StatusCode::CONFLICT,
                ReloadError::Invalid(_) | ReloadError::Refused { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            };
            (
                status,
                axum::Json(json!({"success": false, "reloaded": false, "message": e.to_string()})),
            )
                .into_response()
        }
    }
}
