//! `GET /bodies/<id>`: a kept body served to the runner that fetches it, its URL checked in
//! constant time before the store is read, gzip in transfer when asked, within
//! `body_ref.concurrency`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use super::answer::refuse;
use super::state::AppState;
use crate::metrics::BodyRefused;
use crate::store::Store;
use hookflow_protocol::body_ref::UrlError;

/// The longest body id served: an event id (26), a dash and 16 hex digits, with room.
const MAX_ID_CHARS: usize = 64;

/// The pieces a body is sent in.
const SEND_CHUNK: usize = 256 * 1024;

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
        return refuse(
            StatusCode::NOT_FOUND,
            "this relay does not serve bodies (body_ref is not configured)",
        );
    };
    let m = &state.metrics;
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let checked = if well_formed {
        bodies.check(
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
            return refuse(
                StatusCode::FORBIDDEN,
                "this body URL has expired (body_ref.retention); replay the event to dispatch a fresh one",
            );
        }
        Err(e) => {
            m.body_refused(BodyRefused::Signature);
            return refuse(StatusCode::FORBIDDEN, e.to_string());
        }
    }
    let Some(permit) = bodies.try_serve() else {
        m.body_refused(BodyRefused::Busy);
        let mut r = refuse(
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
            return refuse(
                StatusCode::NOT_FOUND,
                "this body is no longer kept (pruned after body_ref.retention); replay the event to dispatch it again",
            );
        }
        Err(e) => {
            tracing::error!(body = %id, error = %e, "cannot read a kept body");
            return refuse(
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
                return refuse(
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
