use super::api::answer;
use super::api::health;
use super::api::list;
use super::api::reload;
use super::api::replay_filtered;
use super::api::replay_one;
use super::api::show;
use super::state::ConsoleState;
use super::state::LOG_TARGET;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use axum::Router;

/// The OpenAPI description of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

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
        .route("/", get(super::page::index))
        .route("/events/{id}", get(super::page::event))
        .route("/events/{id}/replay", post(super::page::replay))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::page::guard,
        ));
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/style.css", get(super::page::style))
        .route(
            "/login",
            get(super::page::login_form).post(super::page::login),
        )
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

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
