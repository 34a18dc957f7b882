//! Bodies by reference (`body_ref`): a body too large for a dispatch even gzip-compressed is
//! kept in the store and dispatched as a signed URL on the relay's `public_url`, which any relay
//! sharing the store (and the secret) serves at `GET /bodies/<id>?expires=…&sig=…` until the
//! body's time is over; then a background task prunes it.
//!
//! A body is kept when its first dispatch is built, for `body_ref.retention` from then: the
//! URL's expiry and the body's time are the same instant, so a genuine URL never outlives its
//! body. The event keeps its own copy until it is delivered, as every event does.
//!
//! What a stranger can do here: ask for bodies with made-up URLs (refused by the HMAC check in
//! constant time, before the store is read), or hold many slow downloads (bounded by
//! `body_ref.concurrency`, then 503; the connection limits and idle timeout of the public
//! listener apply as to webhooks).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::RelayConfig;
use crate::http::AppState;
use crate::metrics::{BodyRefused, Metrics};
use crate::store::{Event, Payload, Request, Store, StoreError, StoreHandle};
use hookflow_protocol::body_ref::{check_url, BodyRef, Referrer, UrlError};
use hookflow_protocol::Environment;

/// The longest body id served: an event id (26), a dash and 16 hex digits, with room.
const MAX_ID_CHARS: usize = 64;

/// How many expired bodies one prune statement deletes: small, so it never holds the store
/// long (each row may be megabytes).
const PRUNE_BATCH: usize = 32;

/// The pieces a body is sent in.
const SEND_CHUNK: usize = 256 * 1024;

/// How often expired bodies are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Bodies by reference as configured: how URLs are made and checked, how long bodies are kept,
/// where, and how many are served at once.
pub struct Bodies {
    referrer: Referrer,
    retention: Duration,
    serving: Arc<Semaphore>,
    store: StoreHandle,
    metrics: Arc<Metrics>,
}

/// A body to keep before its dispatch is sent: under `id`, until `keep_until` (milliseconds
/// since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// The id in the URL.
    pub id: String,
    /// When it may be pruned (the URL's expiry).
    pub keep_until: i64,
}

impl Bodies {
    /// Bodies by reference for `config`, when it has `body_ref` (and its secret is set: the
    /// relay checks that before it starts).
    pub fn of(
        config: &RelayConfig,
        env: &Environment,
        store: StoreHandle,
        metrics: Arc<Metrics>,
    ) -> Option<Bodies> {
        let b = config.body_ref.as_ref()?;
        let public_url = config.public_url.clone()?;
        let secret = env.var(&b.secret_env)?;
        Some(Bodies {
            referrer: Referrer {
                public_url,
                secret: secret.into_bytes(),
            },
            retention: b.retention,
            serving: Arc::new(Semaphore::new(b.concurrency)),
            store,
            metrics,
        })
    }

    /// The id the body of `request` (what a destination of `event` is sent) is kept under: the
    /// event id for the body as received, with a digest suffix for another body (a
    /// destination's transform), so two destinations never share an id for different bytes.
    pub fn id(event: &Event, request: &Request) -> String {
        let same = match &event.payload {
            Payload::Request(r) => {
                std::ptr::eq(r.body.as_slice(), request.body.as_slice()) || r.body == request.body
            }
            Payload::Dispatch(_) => false,
        };
        if same {
            return event.id.clone();
        }
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(&request.body));
        format!("{}-{}", event.id, &digest[..16])
    }

    /// The reference to `body` kept under `id` from `now_ms`, and the keeping it needs.
    pub fn reference(&self, id: &str, body: &[u8], now_ms: i64) -> (BodyRef, Keep) {
        let keep_until = now_ms.saturating_add(self.retention.as_millis() as i64);
        // Whole seconds, rounded down: the URL ends no later than the body's time.
        let expires = keep_until.div_euclid(1000);
        let reference = self.referrer.reference(id, body, expires);
        (
            reference,
            Keep {
                id: id.to_string(),
                keep_until: expires * 1000,
            },
        )
    }

    /// A reference of the right size to measure a dispatch with, without hashing the body
    /// (the accept path, which must answer at once).
    pub fn stand_in(&self, id: &str, size: usize, now_ms: i64) -> BodyRef {
        let expires = now_ms.saturating_add(self.retention.as_millis() as i64) / 1000;
        self.referrer
            .reference_to(id, size as u64, "0".repeat(64), expires)
    }

    /// Keeps `bytes` as `keep` says, before a dispatch names it.
    pub async fn keep(&self, keep: Keep, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .keep_body(keep.id, bytes, keep.keep_until)
            .await?;
        self.metrics.body_kept();
        Ok(())
    }
}

/// `GET /bodies/<id>?expires=…&sig=…`: the exact bytes of a kept body, gzip-compressed in
/// transfer when the client accepts it (and it helps); 403 for a URL that is not genuine or has
/// expired, 404 once the body is pruned, 503 while `body_ref.concurrency` bodies are being sent.
pub async fn serve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(bodies) = state.bodies.as_deref() else {
        return answer(
            StatusCode::NOT_FOUND,
            "this relay does not serve bodies (body_ref is not configured)",
        );
    };
    let m = &state.metrics;
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let checked = if well_formed {
        check_url(
            &bodies.referrer.secret,
            &id,
            query.as_deref().unwrap_or_default(),
            state.env.now_ms() / 1000,
        )
    } else {
        Err(UrlError::BadSignature)
    };
    match checked {
        Ok(()) => {}
        Err(UrlError::Expired) => {
            m.body_refused(BodyRefused::Expired);
            return answer(
                StatusCode::FORBIDDEN,
                "this body URL has expired (body_ref.retention); replay the event to dispatch a fresh one",
            );
        }
        Err(e) => {
            m.body_refused(BodyRefused::Signature);
            return answer(StatusCode::FORBIDDEN, &e.to_string());
        }
    }
    let Ok(permit) = bodies.serving.clone().try_acquire_owned() else {
        m.body_refused(BodyRefused::Busy);
        let mut r = answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is sending as many bodies as it may (body_ref.concurrency); retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let bytes = match state.store.body(id.clone()).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            m.body_refused(BodyRefused::Gone);
            return answer(
                StatusCode::NOT_FOUND,
                "this body is no longer kept (pruned after body_ref.retention); replay the event to dispatch it again",
            );
        }
        Err(e) => {
            tracing::error!(body = %id, error = %e, "cannot read a kept body");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the relay cannot read its store right now; retry shortly",
            );
        }
    };
    let size = bytes.len();
    let gzip = accepts_gzip(&headers) && size > 1024;
    let (bytes, encoded) = if gzip {
        match tokio::task::spawn_blocking(move || compress(bytes)).await {
            Ok(pair) => pair,
            Err(_) => {
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot compress the body",
                )
            }
        }
    } else {
        (bytes, false)
    };
    m.body_served(size);
    tracing::info!(body = %id, bytes = size, gzip = encoded, "body served");
    // The place among the bodies being served is held until the last byte is sent, not only
    // while the answer is made: it bounds the memory the bodies in transfer hold.
    let length = bytes.len();
    let bytes = axum::body::Bytes::from(bytes);
    let chunks = (0..length.div_ceil(SEND_CHUNK)).map(move |i| {
        let _held = &permit;
        Ok::<_, std::convert::Infallible>(
            bytes.slice(i * SEND_CHUNK..((i + 1) * SEND_CHUNK).min(length)),
        )
    });
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if encoded {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether `Accept-Encoding` lists gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The bytes gzip-compressed (fast) when that saves a tenth or more, else as they are; and
/// whether they were compressed.
fn compress(bytes: Vec<u8>) -> (Vec<u8>, bool) {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    if enc.write_all(&bytes).is_err() {
        return (bytes, false);
    }
    match enc.finish() {
        Ok(small) if small.len() < bytes.len() / 10 * 9 => (small, true),
        _ => (bytes, false),
    }
}

fn answer(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "message": message})),
    )
        .into_response()
}

/// Prunes bodies whose time is over, a few at a time, every minute until `stop` turns true.
pub async fn prune(store: StoreHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut pruned = 0u64;
        loop {
            match store.prune_bodies(PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH as u64 || *stop.borrow() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune kept bodies; trying again later");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(bodies = pruned, "pruned bodies past body_ref.retention");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_taken_when_accepted() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(v).expect("value"),
            );
            m
        };
        assert!(accepts_gzip(&h("deflate, gzip")));
        assert!(accepts_gzip(&h("GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn compression_is_kept_only_when_it_helps() {
        let text = b"{\"a\": 1}".repeat(10_000);
        let (small, yes) = compress(text.clone());
        assert!(yes && small.len() < text.len() / 10);
        let mut x: u64 = 88_172_645_463_325_252;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let (same, no) = compress(noise.clone());
        assert!(!no);
        assert_eq!(same, noise);
    }
}
