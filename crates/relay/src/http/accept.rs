//! An accepted request made a stored event: its body read within the limits, its headers kept
//! (credentials never), committed to the store before it is answered.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::live::Current;

use crate::config::DestinationConfig;
use crate::config::Limits;
use crate::destinations;
use crate::store::{self, Destination, Event, Inserted, NewEvent, Payload, Store, StoreError};
use hookflow_protocol::credentials;
use hookflow_protocol::payload::PayloadError;

use super::answer::{refuse, Refused};
use super::state::AppState;

/// Reads the body up to the configured limit.
pub(super) async fn read_body(body: Body, limits: &Limits) -> Result<Vec<u8>, Response> {
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
pub(super) fn forwarded_headers(headers: &HeaderMap) -> Map<String, Value> {
    header_object(headers, credentials::is_stripped_header)
}

/// Request headers as a JSON object (lowercase names, repeated values joined), without those
/// `drop` names.
pub(super) fn header_object(
    headers: &HeaderMap,
    drop: impl Fn(&str) -> bool,
) -> Map<String, Value> {
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
pub(super) fn delivery_id(headers: &HeaderMap) -> Option<String> {
    hookflow_protocol::payload::sender_delivery_id(|h| headers.get(h)?.to_str().ok())
        .map(|(h, v)| format!("{h}:{v}"))
}

/// A request the relay accepted, and where it goes.
pub(super) struct Accepted<'a> {
    pub(super) request: store::Request,
    pub(super) event_type: String,
    /// The route or endpoint slug.
    pub(super) source: &'a str,
    /// Its destinations (at least one), with their configuration when the endpoint has one.
    pub(super) destinations: Vec<(Destination, Option<&'a DestinationConfig>)>,
    pub(super) dedupe_key: Option<String>,
}

/// Checks that every destination can be sent the request (a repository's dispatch fits
/// GitHub's limits: 413 otherwise; a transform finds JSON: 400 otherwise), then stores it once:
/// the id the sender sees, and whether it repeats an event already stored.
pub(super) async fn store_request(
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
