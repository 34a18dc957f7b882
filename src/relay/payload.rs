//! The `client_payload` the relay builds from an HTTP request (DESIGN §2): `path`, `method`,
//! `headers`, `body` (the exact bytes as text, `base64` when not UTF-8, `gzip+base64` when the
//! dispatch would otherwise reach GitHub's 64 KB limit), plus `id`, `received_at`, `source`.
//!
//! The runtime's [`crate::request`] reads this shape back; a request too large even compressed
//! is refused here, before anything is stored.

use std::io::Write as _;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::github::{check_limits, LimitError};

/// A request as the relay received it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// HTTP method as sent (`POST`).
    pub method: String,
    /// The path for the payload, with the query string to keep (`/ci/webhook?x=1`).
    pub path: String,
    /// Headers to forward, lowercase names, credentials already removed.
    pub headers: Map<String, Value>,
    /// The exact body bytes.
    pub body: Vec<u8>,
}

/// Why a request cannot be dispatched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Too large for GitHub, even compressed.
    #[error("the webhook is too large to dispatch: the body is {body} bytes and the dispatch would be {dispatch} bytes even gzip-compressed ({compressed} bytes of body); GitHub accepts dispatches under {limit} bytes", limit = crate::github::MAX_REQUEST_BYTES)]
    TooLarge {
        /// Body bytes received.
        body: usize,
        /// Body bytes after gzip.
        compressed: usize,
        /// Dispatch request bytes with the compressed body.
        dispatch: usize,
    },
    /// Another GitHub limit (event type length).
    #[error("{0}")]
    Limit(LimitError),
}

/// A payload ready to store: the dispatch request body GitHub will receive.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The JSON body of `POST /repos/{o}/{r}/dispatches`.
    pub dispatch_body: Vec<u8>,
    /// How the body was carried (`None` plain text).
    pub body_encoding: Option<&'static str>,
}

/// Builds the payload and checks it against GitHub's limits, compressing when needed.
pub fn prepare(
    incoming: &Incoming,
    event_type: &str,
    id: &str,
    received_at: &str,
    source: &str,
) -> Result<Prepared, PayloadError> {
    let build = |body: Option<(String, Option<&'static str>)>| {
        let mut p = Map::new();
        p.insert("path".into(), Value::String(incoming.path.clone()));
        p.insert("method".into(), Value::String(incoming.method.clone()));
        p.insert("headers".into(), Value::Object(incoming.headers.clone()));
        if let Some((text, encoding)) = body {
            p.insert("body".into(), Value::String(text));
            if let Some(e) = encoding {
                p.insert("body_encoding".into(), Value::String(e.into()));
            }
        }
        p.insert("id".into(), Value::String(id.into()));
        p.insert("received_at".into(), Value::String(received_at.into()));
        p.insert("source".into(), Value::String(source.into()));
        Value::Object(p)
    };
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    let first = if incoming.body.is_empty() {
        None
    } else {
        match std::str::from_utf8(&incoming.body) {
            Ok(text) => Some((text.to_string(), None)),
            Err(_) => Some((b64(&incoming.body), Some("base64"))),
        }
    };
    let plain_encoding = first.as_ref().and_then(|(_, e)| *e);
    match check_limits(event_type, &build(first)) {
        Ok(dispatch_body) => {
            return Ok(Prepared {
                dispatch_body,
                body_encoding: plain_encoding,
            })
        }
        Err(LimitError::TooLarge(_)) => {}
        Err(other) => return Err(PayloadError::Limit(other)),
    }
    let compressed = gzip(&incoming.body);
    match check_limits(
        event_type,
        &build(Some((b64(&compressed), Some("gzip+base64")))),
    ) {
        Ok(dispatch_body) => Ok(Prepared {
            dispatch_body,
            body_encoding: Some("gzip+base64"),
        }),
        Err(LimitError::TooLarge(dispatch)) => Err(PayloadError::TooLarge {
            body: incoming.body.len(),
            compressed: compressed.len(),
            dispatch,
        }),
        Err(other) => Err(PayloadError::Limit(other)),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::best(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{unpack_body, BodyEncoding};

    fn incoming(body: Vec<u8>) -> Incoming {
        Incoming {
            method: "POST".into(),
            path: "/ci/webhook?x=1".into(),
            headers: serde_json::json!({"content-type": "application/json"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            body,
        }
    }

    fn payload(p: &Prepared) -> Value {
        let v: Value = serde_json::from_slice(&p.dispatch_body).expect("json");
        v["client_payload"].clone()
    }

    #[test]
    fn text_binary_and_compressed_bodies_round_trip() {
        let raw = b"{ \"pretty\": true }".to_vec();
        let p = prepare(
            &incoming(raw.clone()),
            "webhook",
            "01J",
            "2026-11-28T00:00:00Z",
            "compat",
        )
        .expect("fits");
        let v = payload(&p);
        assert_eq!(
            v["body"],
            Value::String("{ \"pretty\": true }".into()),
            "exact bytes, not re-serialised"
        );
        assert_eq!(v.get("body_encoding"), None);
        assert_eq!(v["id"], "01J");

        let bin = vec![0xff, 0xfe, 0x00, 0x01];
        let v = payload(&prepare(&incoming(bin.clone()), "webhook", "i", "t", "s").expect("fits"));
        assert_eq!(v["body_encoding"], "base64");
        let text = v["body"].as_str().expect("string");
        assert_eq!(
            unpack_body(text, BodyEncoding::Base64).expect("decodes"),
            bin
        );

        let big: Vec<u8> = (0..300_000).map(|i| b"abcdefghij{}\":,"[i % 15]).collect();
        let p = prepare(&incoming(big.clone()), "webhook", "i", "t", "s").expect("compresses");
        assert_eq!(p.body_encoding, Some("gzip+base64"));
        assert!(p.dispatch_body.len() < crate::github::MAX_REQUEST_BYTES);
        let v = payload(&p);
        assert_eq!(
            unpack_body(v["body"].as_str().expect("s"), BodyEncoding::GzipBase64).expect("unpacks"),
            big
        );
    }

    #[test]
    fn incompressible_bodies_are_refused_with_sizes() {
        // Pseudo-random bytes do not compress.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x & 0xff) as u8
            })
            .collect();
        let err = prepare(&incoming(noise), "webhook", "i", "t", "s").unwrap_err();
        assert!(
            matches!(err, PayloadError::TooLarge { body: 100_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("100000 bytes"), "{err}");
    }

    #[test]
    fn empty_bodies_are_omitted() {
        let v = payload(&prepare(&incoming(Vec::new()), "webhook", "i", "t", "s").expect("fits"));
        assert_eq!(v.get("body"), None);
        assert_eq!(v.as_object().map(|m| m.len()), Some(6));
    }
}
