//! The routes, read top to bottom, and what every answer carries (CORS).

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

use super::answer::not_found;
use super::compat::compat;
use super::endpoint::endpoint;
use super::guard::guard;
use super::health::{healthz, metrics, readyz};
use super::state::AppState;

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
        app.route("/bodies/{id}", get(super::bodies::serve))
    } else {
        app
    };
    app.merge(webhooks)
        .layer(middleware::from_fn(cors))
        .with_state(state)
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
