//! Configured endpoints, `POST /hooks/<slug>[/<rest>]`: authenticated, routed to their
//! destinations, answered `202 {"event_id"}` once stored.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::live::Current;

use crate::config::DestinationConfig;
use crate::config::EventTypeSource;
use crate::store::{self, Destination};

use super::accept::{delivery_id, forwarded_headers, read_body, store_request, Accepted};
use super::answer::refuse;
use super::auth::{check_api_key, check_signature};
use super::query::RelayParams;
use super::state::AppState;

/// `POST /hooks/<slug>[/<rest>]`: a configured endpoint.
pub(super) async fn endpoint(
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
