//! `/healthz`, `/readyz` and `/metrics`: what a load balancer and a scraper ask.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::Store;

use super::answer::refuse;
use super::state::AppState;

/// How long `/metrics` shows the same queue figures: counting is a scan of the queue, and
/// scrapers (several Prometheus servers, a dashboard) may ask often.
const QUEUE_FIGURES_TTL: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) async fn readyz(State(state): State<AppState>) -> Response {
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

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
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

pub(super) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}
