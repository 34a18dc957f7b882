//! The door every webhook passes first: shutdown, requests in flight, requests per address,
//! the configuration this request is served under.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::metrics::Rejected;

use super::answer::refuse;
use super::state::AppState;

/// Limits and bookkeeping of webhook requests: concurrency and header limits, the received and
/// rejected counters, the request latency histogram. It takes the configuration in effect once
/// per request and hands it to the handler (a request extension).
pub(super) async fn guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
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
