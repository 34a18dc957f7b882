//! The relay's HTTP side (axum): routes, authentication, and the answer. A webhook is answered
//! only after its event is committed to the store; anything that would not be delivered (too
//! large, bad signature, no token) is refused before it is stored.
//!
//! Routes, top to bottom:
//! - `GET /healthz`: 200 while the process serves (liveness).
//! - `GET /readyz`: 200 when the store takes writes and the relay is not shutting down.
//! - `GET /metrics`: Prometheus text.
//! - `POST /hooks/<slug>[/<rest>]`: configured endpoints, `202 {"event_id"}`.
//! - `ANY /<owner>/<repo>[/<rest>]`: the webhook2github-compatible route (unless disabled).
//!
//! Every answer carries CORS headers; `OPTIONS` is answered 204.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

use axum::extract::ConnectInfo;
use tokio::sync::{Notify, Semaphore};

use crate::connection::IdleTimeout;
use crate::refused_tokens::RefusedTokens;
use crate::reload::{Current, Live};

use crate::config::{Endpoint, EventTypeSource, Limits};
use crate::destinations::{self, DestinationConfig};
use crate::metrics::{Metrics, Rejected};
use crate::store::{
    self, Destination, Event, Inserted, NewEvent, Payload, Store, StoreError, StoreHandle,
    TokenSource,
};
use hookflow_protocol::credentials;
use hookflow_protocol::dispatch::{Repo, WEBHOOK_EVENT_TYPE};
use hookflow_protocol::payload::PayloadError;
use hookflow_protocol::signature as verify;
use hookflow_protocol::Environment;

/// Query parameters of the compatible route that configure the relay, never forwarded.
/// The compatible route's own query parameters (webhook2github's): never forwarded.
#[derive(Debug, Default)]
struct RelayParams {
    /// `__token`: the GitHub token.
    token: Option<String>,
    /// `__response_code`.
    response_code: Option<String>,
    /// `__response_content_type`.
    response_content_type: Option<String>,
    /// `__response_body`.
    response_body: Option<String>,
}

impl RelayParams {
    /// Splits a query string into the relay's own parameters and the rest (raw `k=v` pairs,
    /// as sent), which is what the workflow sees: the same rule on every route.
    fn split(query: Option<&str>) -> (RelayParams, Vec<&str>) {
        let mut relay = RelayParams::default();
        let mut kept = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let key = pair.split('=').next().unwrap_or_default();
            let key = form_urlencoded::parse(key.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if let Some(slot) = relay.slot(&key) {
                let value = form_urlencoded::parse(pair.as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                *slot = Some(value);
            } else {
                kept.push(pair);
            }
        }
        (relay, kept)
    }

    /// The slot of a relay parameter, `None` for a parameter the workflow should see.
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        match key {
            "__token" => Some(&mut self.token),
            "__response_code" => Some(&mut self.response_code),
            "__response_content_type" => Some(&mut self.response_content_type),
            "__response_body" => Some(&mut self.response_body),
            _ => None,
        }
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// The event store.
    pub store: StoreHandle,
    /// The configuration in effect, swapped on reload, and the bounds it sets.
    pub live: Arc<Live>,
    /// Wakes the delivery workers when an event is stored.
    pub wake: Arc<Notify>,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// Set when a shutdown began (`/readyz` turns 503).
    pub shutting_down: Arc<AtomicBool>,
    /// Tokens GitHub refused lately: refused at the door.
    pub refused: Arc<RefusedTokens>,
    /// The clock and the secrets (API keys, signature secrets).
    pub env: Environment,
    /// Bodies by reference, when `body_ref` is configured.
    pub bodies: Option<Arc<crate::bodies::Bodies>>,
    /// The queue figures `/metrics` showed last, and when they were counted.
    pub queue_figures: Arc<std::sync::Mutex<Option<(std::time::Instant, crate::store::Counts)>>>,
}

/// How long `/metrics` shows the same queue figures: counting is a scan of the queue, and
/// scrapers (several Prometheus servers, a dashboard) may ask often.
const QUEUE_FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The router.
pub fn router(state: AppState) -> Router {
    // The compatible route is always routed: whether it is on is the configuration's, read
    // per request (a reload may turn it on or off).
    let webhooks = Router::new()
        .route("/hooks/{slug}", any(endpoint))
        .route("/hooks/{slug}/{*rest}", any(endpoint))
        .route("/{owner}/{repo}", any(compat))
        .route("/{owner}/{repo}/{*rest}", any(compat))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    // Only where bodies are served: elsewhere `/bodies/…` stays the compatible route's.
    let app = if state.bodies.is_some() {
        app.route("/bodies/{id}", get(crate::bodies::serve))
    } else {
        app
    };
    app.merge(webhooks)
        .layer(middleware::from_fn(cors))
        .with_state(state)
}

/// Limits and bookkeeping of webhook requests: concurrency and header limits, the received and
/// rejected counters, the request latency histogram. It takes the configuration in effect once
/// per request and hands it to the handler (a request extension).
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let m = &state.metrics;
    m.received();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let bounds = &state.live.bounds;
    let _client_permit = match client.map(|ip| (ip, bounds.per_client.try_acquire(ip))) {
        Some((ip, None)) => {
            m.rejected(Rejected::Overload);
            tracing::warn!(client = %ip, "too many requests in flight from one address; answering 429");
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests in flight from your address (limits.max_requests_per_client); retry shortly",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Some((_, permit)) => permit,
        None => None,
    };
    let Ok(_permit) = bounds.in_flight.clone().try_acquire_owned() else {
        m.rejected(Rejected::Overload);
        tracing::warn!("too many requests in flight; answering 503");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is busy; retry shortly",
        );
    };
    let now = state.live.current();
    let limits = &now.config.limits;
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if headers.len() > limits.max_headers || header_bytes > limits.max_header_bytes {
        m.rejected(Rejected::Size);
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} headers of {header_bytes} bytes; the relay accepts {} headers and {} bytes",
                headers.len(),
                limits.max_headers,
                limits.max_header_bytes
            ),
        );
    }
    // The handler works with the configuration the guard checked against.
    request.extensions_mut().insert(now.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let reason = match status {
        401 | 403 => Some(Rejected::Auth),
        408 => Some(Rejected::Timeout),
        413 | 431 => Some(Rejected::Size),
        405 => Some(Rejected::Method),
        404 => Some(Rejected::NotFound),
        400 => Some(Rejected::BadRequest),
        500..=599 => Some(Rejected::Store),
        _ => None,
    };
    if let Some(r) = reason {
        m.rejected(r);
    }
    m.request_took(started.elapsed());
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::SeqCst) {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    match state.store.ping().await {
        Ok(room) if room.full() => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the event store is full ({} of {} bytes); deliveries go on, new events wait",
                room.bytes_used,
                room.bytes_cap.unwrap_or_default()
            ),
        ),
        Ok(_) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "not ready: the store cannot take writes");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event store cannot take writes",
            )
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let cached = state
        .queue_figures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|(at, _)| at.elapsed() < QUEUE_FIGURES_TTL)
        .map(|(_, c)| c.clone());
    let counts = match cached {
        Some(c) => Some(c),
        None => {
            let fresh = state.store.counts().await.ok();
            if let Some(c) = &fresh {
                *state
                    .queue_figures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some((std::time::Instant::now(), c.clone()));
            }
            fresh
        }
    };
    let text = state.metrics.render(
        counts.as_ref(),
        state.store.pool_status(),
        state.env.now_ms(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// An error answer: `{"success": false, "message": …}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    Refused(status, message.into()).into_response()
}

/// A refused request, before it is turned into an answer.
struct Refused(StatusCode, String);

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refused(status, message.into())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(json!({"success": false, "message": self.1})),
        )
            .into_response()
    }
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn not_found(uri: Uri) -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {}; send webhooks to /<owner>/<repo>/<path> or /hooks/<slug>",
            uri.path()
        ),
    )
}

/// CORS on every answer; preflight `OPTIONS` answered here.
async fn cors(request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let wanted = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        origin.unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        wanted.unwrap_or(HeaderValue::from_static("*")),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    // The compatible route answers with a caller-chosen type and body
    // (`__response_content_type=text/html`): a browser must never sniff it into something else
    // or run script from it, whoever's page sent the request.
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

/// Reads the body up to the configured limit.
async fn read_body(body: Body, limits: &Limits) -> Result<Vec<u8>, Response> {
    let limit = limits.max_body_bytes;
    let Ok(read) =
        tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit)).await
    else {
        return Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {:?} (limits.body_timeout)",
                limits.body_timeout
            ),
        ));
    };
    // Not copied: the collected bytes become the Vec when nothing else holds them.
    read.map(Vec::from).map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the relay's limit of {limit} bytes (limits.max_body_bytes)"),
        )
    })
}

/// Request headers as the payload carries them: lowercase names, repeated values joined, and
/// never a credential meant for the relay or GitHub ([`credentials::STRIPPED_HEADERS`]), on
/// every route.
fn forwarded_headers(headers: &HeaderMap) -> Map<String, Value> {
    header_object(headers, credentials::is_stripped_header)
}

/// Request headers as a JSON object (lowercase names, repeated values joined), without those
/// `drop` names.
fn header_object(headers: &HeaderMap, drop: impl Fn(&str) -> bool) -> Map<String, Value> {
    let mut out = Map::new();
    for name in headers.keys() {
        let n = name.as_str();
        if drop(n) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(n.to_string(), Value::String(values.join(", ")));
    }
    out
}

/// The sender's delivery id, when it sends one (`X-GitHub-Delivery`, `webhook-id`, …), as
/// `header:value`.
fn delivery_id(headers: &HeaderMap) -> Option<String> {
    hookflow_protocol::payload::sender_delivery_id(|h| headers.get(h)?.to_str().ok())
        .map(|(h, v)| format!("{h}:{v}"))
}

/// A token from `scheme token` or a bare `token`.
fn bearer(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let token = text.split_whitespace().last()?;
    (!token.is_empty()).then(|| token.to_string())
}

/// A request the relay accepted, and where it goes.
struct Accepted<'a> {
    request: store::Request,
    event_type: String,
    /// The route or endpoint slug.
    source: &'a str,
    /// Its destinations (at least one), with their configuration when the endpoint has one.
    destinations: Vec<(Destination, Option<&'a DestinationConfig>)>,
    dedupe_key: Option<String>,
}

/// Checks that every destination can be sent the request (a repository's dispatch fits
/// GitHub's limits: 413 otherwise; a transform finds JSON: 400 otherwise), then stores it once:
/// the id the sender sees, and whether it repeats an event already stored.
async fn store_request(
    state: &AppState,
    now: &Current,
    r: Accepted<'_>,
) -> Result<(String, bool), Response> {
    let event = Event {
        id: ulid::Ulid::generate().to_string(),
        received_at: state.env.now_ms(),
        source: r.source.to_string(),
        event_type: r.event_type,
        payload: Payload::Request(r.request),
    };
    for (destination, config) in &r.destinations {
        let sent = now.destinations.build(&event, *config).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("{}: {e}", destination.key()),
            )
        })?;
        if let Destination::Repo { .. } = destination {
            destinations::check_dispatch(&event, &sent, state.bodies.as_deref())
                .map_err(|e| payload_error(e, state.bodies.is_some()))?;
        }
    }
    let event = NewEvent {
        event,
        destinations: r.destinations.into_iter().map(|(d, _)| d).collect(),
        dedupe_key: r.dedupe_key,
    };
    store_event(state, event)
        .await
        .map_err(IntoResponse::into_response)
}

/// Stores the event and wakes the workers; 503 when the store cannot take it. Returns the id
/// the sender should see, and whether the event is a repeat of one already stored.
async fn store_event(state: &AppState, event: NewEvent) -> Result<(String, bool), Refused> {
    let id = event.event.id.clone();
    let started = std::time::Instant::now();
    let inserted = state.store.insert(event).await;
    state
        .metrics
        .store_took(crate::metrics::StoreOp::Insert, started.elapsed());
    match inserted {
        Ok(Inserted::New) => {
            state.metrics.stored();
            // PostgreSQL announces its new events to every relay (this one included) or hands
            // them to this relay's worker; SQLite's worker is woken here.
            if !state.store.announces_new_events() {
                state.wake.notify_one();
            }
            tracing::info!(event_id = %id, "stored");
            Ok((id, false))
        }
        Ok(Inserted::Duplicate(first)) => {
            state.metrics.duplicate();
            tracing::info!(event_id = %first, "repeat of a stored event; not stored again");
            Ok((first, true))
        }
        Err(e @ StoreError::Full { .. }) => {
            tracing::warn!(event_id = %id, error = %e, "store full: answering 503");
            Err(Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay's store is full; retry later".into(),
            ))
        }
        Err(e) => {
            tracing::error!(event_id = %id, error = %e, "EVENT NOT STORED: answering 503");
            Err(Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay cannot store events right now; retry later".into(),
            ))
        }
    }
}

/// The answer to a request GitHub would refuse; `by_reference`: whether this relay sends
/// large bodies by reference (if not, a too-large body's answer says how to).
fn payload_error(e: PayloadError, by_reference: bool) -> Response {
    match e {
        PayloadError::TooLarge { .. } if !by_reference => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{e}; the relay's operator can set public_url and body_ref to send such bodies by reference"),
        ),
        PayloadError::TooLarge { .. } | PayloadError::RefTooLarge(_) => {
            refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
        }
        PayloadError::Limit(_) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `ANY /<owner>/<repo>/<path…>`: the webhook2github-compatible route.
async fn compat(
    State(state): State<AppState>,
    axum::Extension(now): axum::Extension<Arc<Current>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !now.config.compat_route {
        return not_found(uri).await;
    }
    // Anyone may call this route (only GitHub can tell a real token), so each address gets a
    // share of it: strangers cannot fill the store at the speed of the relay.
    if let Some(axum::Extension(ConnectInfo(peer))) = peer {
        if let Err(wait) = state
            .live
            .bounds
            .compat_rate
            .try_take(&peer.ip().to_string())
        {
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from your address to this route (limits.compat_requests_per_minute); retry later",
            );
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    let raw_path = uri.path();
    let mut segments = raw_path.trim_start_matches('/').splitn(3, '/');
    let owner = segments.next().unwrap_or_default();
    let name = segments.next().unwrap_or_default();
    let rest = segments
        .next()
        .map(|r| format!("/{r}"))
        .unwrap_or_else(|| "/".into());
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let repo = match Repo::parse(&format!("{}/{}", decode(owner), decode(name))) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e.to_string()),
    };
    if !now.config.compat_allows(&repo) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("this relay does not dispatch to {repo} (compat_repos)"),
        );
    }

    let (mut relay, kept) = RelayParams::split(uri.query());
    let token = relay
        .token
        .take()
        .filter(|t| !t.is_empty())
        .or_else(|| headers.get("x-github-authorization").and_then(bearer))
        .or_else(|| headers.get(header::AUTHORIZATION).and_then(bearer));
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no GitHub token: pass ?__token=…, an X-Github-Authorization header, or an Authorization header",
        );
    };
    if !credentials::is_token_text(&token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the GitHub token holds characters no token has (spaces, line breaks, control characters)",
        );
    }
    if state
        .refused
        .refused(&credentials::fingerprint(&token), state.env.now_ms())
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "GitHub refused this token (401) within the last hour; nothing was stored",
        );
    }
    let body = match read_body(body, &now.config.limits).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let path = if kept.is_empty() {
        rest
    } else {
        format!("{rest}?{}", kept.join("&"))
    };
    // The credential is part of the key: a stranger repeating a victim's delivery id with
    // another token must not make the victim's own request look like a repeat.
    let dedupe_key = delivery_id(&headers)
        .map(|d| format!("compat:{repo}:{}:{d}", credentials::fingerprint(&token)));
    let request = Accepted {
        request: store::Request {
            method: method.as_str().to_string(),
            path,
            headers: forwarded_headers(&headers),
            body,
        },
        event_type: WEBHOOK_EVENT_TYPE.into(),
        source: "compat",
        destinations: vec![(
            Destination::Repo {
                repo: repo.to_string(),
                token: TokenSource::Inline(token),
            },
            None,
        )],
        dedupe_key,
    };
    let (id, duplicate) = match store_request(&state, &now, request).await {
        Ok(stored) => stored,
        Err(r) => return r,
    };

    let status = relay
        .response_code
        .as_deref()
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200)
        .unwrap_or(StatusCode::OK);
    let content_type = relay
        .response_content_type
        .unwrap_or_else(|| "application/json".to_string());
    let body = match relay.response_body {
        Some(b) => b,
        None if duplicate => {
            json!({"success": true, "event_id": id, "duplicate": true}).to_string()
        }
        None => json!({"success": true, "event_id": id}).to_string(),
    };
    let mut response = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// `POST /hooks/<slug>[/<rest>]`: a configured endpoint.
async fn endpoint(
    State(state): State<AppState>,
    axum::Extension(now): axum::Extension<Arc<Current>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let after = uri.path().trim_start_matches("/hooks/");
    let (slug, rest) = after.split_once('/').map_or((after, ""), |(s, r)| (s, r));
    let Some(ep) = now.config.endpoints.iter().find(|e| e.slug == slug) else {
        return refuse(StatusCode::NOT_FOUND, format!("no endpoint named `{slug}`"));
    };
    if method != Method::POST {
        let mut r = refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("endpoint `{slug}` accepts POST, not {method}"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return r;
    }
    // What the headers alone can prove is checked before the body is read: a stranger without
    // the API key cannot hold a request slot by sending a body a byte at a time.
    if let Err(r) = check_api_key(ep, &state.env, &headers) {
        return r.into_response();
    }
    let body = match read_body(body, &now.config.limits).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    if let Err(r) = check_signature(ep, &state.env, &headers, &body) {
        return r.into_response();
    }
    let event_type = match &ep.event_type {
        EventTypeSource::Fixed(t) => t.clone(),
        EventTypeSource::BodyPath(p) => {
            let parsed: Option<Value> = serde_json::from_slice(&body).ok();
            match parsed.as_ref().and_then(|v| hookflow_protocol::dotpath::lookup(v, p)) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        format!("endpoint `{slug}` takes the event type from the JSON body at `{p}`, and this body has no text there"),
                    )
                }
            }
        }
    };
    let mut path = ep.path.clone();
    if !rest.is_empty() {
        path = format!("{}/{rest}", path.trim_end_matches('/'));
    }
    // Credentials in the query (`__token`) never reach the payload, as on the compatible route.
    let (_, kept) = RelayParams::split(uri.query());
    if !kept.is_empty() {
        path = format!("{path}?{}", kept.join("&"));
    }
    let destinations: Vec<(Destination, Option<&DestinationConfig>)> = ep
        .destinations
        .iter()
        .filter(|d| d.takes(&event_type))
        .map(|d| (d.store_destination(), Some(d)))
        .collect();
    if destinations.is_empty() {
        // Not an error of the sender's: acknowledged, so it does not retry, and not stored.
        state.metrics.ignored();
        tracing::info!(endpoint = slug, %event_type, "no destination takes this event type; not stored");
        return (
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "event_id": null,
                "ignored": format!("no destination of endpoint `{slug}` takes event type `{event_type}`"),
            })),
        )
            .into_response();
    }
    let request = Accepted {
        request: store::Request {
            method: method.as_str().to_string(),
            path,
            headers: forwarded_headers(&headers),
            body,
        },
        event_type,
        source: slug,
        destinations,
        dedupe_key: delivery_id(&headers).map(|d| format!("hooks:{slug}:{d}")),
    };
    let (id, duplicate) = match store_request(&state, &now, request).await {
        Ok(stored) => stored,
        Err(r) => return r,
    };
    let answer = if duplicate {
        json!({"event_id": id, "duplicate": true})
    } else {
        json!({"event_id": id})
    };
    (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
}

/// An endpoint's API keys (`Authorization: Bearer`), checked from the headers alone.
fn check_api_key(ep: &Endpoint, env: &Environment, headers: &HeaderMap) -> Result<(), Refused> {
    if let Some(var) = &ep.api_keys_env {
        let keys = env.var(var).unwrap_or_default();
        let keys: Vec<&str> = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            tracing::error!(endpoint = %ep.slug, variable = %var, "api_keys_env is not set; refusing requests");
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this endpoint is not configured correctly",
            ));
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .trim();
        // Compare with every key, so the time taken does not tell which one is close.
        let ok = keys.iter().fold(false, |acc, k| {
            acc | (k.len() == given.len() && bool::from(k.as_bytes().ct_eq(given.as_bytes())))
        });
        if !ok {
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (Authorization: Bearer <key>)",
            ));
        }
    }
    Ok(())
}

/// An endpoint's signature check over the exact body; nothing is stored when it fails.
fn check_signature(
    ep: &Endpoint,
    env: &Environment,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    if let Some(v) = &ep.verify {
        let Some(secret) = env.var(&v.secret_env) else {
            tracing::error!(endpoint = %ep.slug, variable = %v.secret_env, "verify.secret_env is not set; refusing requests");
            return Err(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "this endpoint is not configured correctly",
            ));
        };
        let map = header_object(headers, |_| false);
        if let Err(e) = verify::verify(
            &v.scheme,
            &map,
            body,
            secret.as_bytes(),
            env.now(),
            v.tolerance,
        ) {
            tracing::warn!(endpoint = %ep.slug, error = %e, "signature check failed");
            return Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                format!("{} signature check failed: {e}", v.scheme),
            ));
        }
    }
    Ok(())
}

/// Accepts connections until `stop` turns true, then waits up to `drain` for the connections in
/// flight. At most `limits.max_connections` are open at once (more wait in the kernel's queue);
/// each is closed after `limits.idle_timeout` without a byte moving (the first byte included),
/// and HTTP/1 enforces `limits.header_timeout` and `limits.max_headers` while reading a request.
/// `limits` is asked for each new connection (a reload changes them); `max_connections` is
/// read once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: impl Fn() -> Limits + Send + 'static,
    drain: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connection = |limits: &Limits| {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes.max(8192) * 2);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32);
        builder
    };
    let open = Arc::new(Semaphore::new(limits().max_connections));
    loop {
        // Take a connection's place before accepting, so excess connections wait in the
        // kernel's queue instead of holding file descriptors here.
        let place = tokio::select! {
            p = open.clone().acquire_owned() => p,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(place) = place else { break };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let service = hyper_util::service::TowerToHyperService::new(app);
        let now = limits();
        let io = TokioIo::new(IdleTimeout::new(stream, now.idle_timeout));
        let conn = connection(&now)
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(place);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
}
