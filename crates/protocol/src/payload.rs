//! The `client_payload` of a dispatched webhook (DESIGN §2): one definition, written by the relay
//! and read by the runtime.
//!
//! Fields: `path`, `method`, `headers`, `body` (always a string, so actionsflow still reads it),
//! `body_encoding` when the body is not plain text (`base64` for bytes that are not UTF-8,
//! `gzip+base64` when the dispatch would otherwise reach GitHub's 64 KB limit), and hookflow's
//! `id`, `received_at`, `source`. [`ClientPayload::encode_request`] builds it from the exact bytes a
//! relay received; [`ClientPayload::decode`] reads any sender's payload back, and
//! [`PayloadBody::unpack`] gives the exact bytes again.
//!
//! What the runtime then makes of the request (actionsflow's decoding rules) is not this
//! module's concern.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::dispatch::{check_event_type, check_limits, LimitError, MAX_REQUEST_BYTES};

/// The names of the payload's fields, in the order the relay writes them.
pub mod field {
    /// The request path with its query string.
    pub const PATH: &str = "path";
    /// The HTTP method as sent.
    pub const METHOD: &str = "method";
    /// The request headers.
    pub const HEADERS: &str = "headers";
    /// The body, as a string.
    pub const BODY: &str = "body";
    /// How `body` is carried when it is not plain text.
    pub const BODY_ENCODING: &str = "body_encoding";
    /// The relay's event id.
    pub const ID: &str = "id";
    /// When the relay received the request (RFC 3339).
    pub const RECEIVED_AT: &str = "received_at";
    /// The relay route or endpoint slug that received it.
    pub const SOURCE: &str = "source";
}

/// Headers that carry a sender's own id for one delivery, repeated when the sender retries, in
/// the order they are looked for: the relay de-duplicates by it, the runtime hands it on as
/// `delivery_id`.
pub const DELIVERY_ID_HEADERS: [&str; 6] = [
    "idempotency-key",
    "x-github-delivery",
    "webhook-id",
    "svix-id",
    "x-gitlab-event-uuid",
    "x-shopify-webhook-id",
];

/// The first [`DELIVERY_ID_HEADERS`] value `get` finds (names lowercase), as `(header, value)`;
/// empty values and values over 200 bytes do not count.
pub fn sender_delivery_id<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Option<(&'static str, &'a str)> {
    DELIVERY_ID_HEADERS.iter().find_map(|h| {
        let v = get(h)?.trim();
        (!v.is_empty() && v.len() <= 200).then_some((*h, v))
    })
}

/// How `client_payload.body` is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// The body string is the body.
    Text,
    /// The body string is base64 of the bytes.
    Base64,
    /// The body string is base64 of the gzip-compressed bytes.
    GzipBase64,
}

impl BodyEncoding {
    /// Reads a `body_encoding` value; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "text" | "utf-8" | "utf8" => Some(BodyEncoding::Text),
            "base64" => Some(BodyEncoding::Base64),
            "gzip+base64" => Some(BodyEncoding::GzipBase64),
            _ => None,
        }
    }

    /// The `body_encoding` value; `None` for plain text, which is written without one.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            BodyEncoding::Text => None,
            BodyEncoding::Base64 => Some("base64"),
            BodyEncoding::GzipBase64 => Some("gzip+base64"),
        }
    }
}

/// Why a body could not be unpacked from its `body_encoding`.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The base64 text is not valid.
    #[error("client_payload.body is not valid base64 ({0}); body_encoding says it should be")]
    Base64(base64::DecodeError),
    /// The gzip stream is corrupt.
    #[error("client_payload.body is not a valid gzip stream after base64 decoding ({0})")]
    Gzip(std::io::Error),
    /// The gzip stream unpacks to more than the reader accepts.
    #[error(
        "client_payload.body unpacks to more than {limit} bytes; a gzip bomb, or raise the limit (--max-body-bytes; the action's max-body-bytes input)"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The body is at a URL (`body_ref`) and must be fetched first.
    #[error("client_payload.body_ref names {0}: the body must be fetched from there")]
    Referenced(String),
}

/// Largest body, after decompression, that [`PayloadBody::unpack`] accepts by default (a guard
/// against gzip bombs): 32 MiB, above GitHub's own 25 MB webhook limit.
pub const MAX_DECODED_BODY: u64 = 32 * 1024 * 1024;

/// A body as found in a payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum PayloadBody {
    /// No `body` field, or `null`.
    #[default]
    None,
    /// A string, carried as its `body_encoding` says.
    Text {
        /// The string as it stands in the payload.
        text: String,
        /// How it is carried.
        encoding: BodyEncoding,
    },
    /// A JSON value that is not a string (some senders put the object in directly).
    Json(Value),
    /// A body the relay serves at a URL (`body_ref`): too large for a dispatch even compressed.
    Ref(crate::body_ref::BodyRef),
}

impl PayloadBody {
    /// The body of `bytes`: plain text when they are UTF-8, else base64. Empty bytes are no body.
    pub fn carry(bytes: &[u8]) -> PayloadBody {
        if bytes.is_empty() {
            return PayloadBody::None;
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => PayloadBody::Text {
                text: text.to_string(),
                encoding: BodyEncoding::Text,
            },
            Err(_) => PayloadBody::Text {
                text: base64_encode(bytes),
                encoding: BodyEncoding::Base64,
            },
        }
    }

    /// `bytes` gzip-compressed, then base64.
    pub fn compressed(bytes: &[u8]) -> PayloadBody {
        PayloadBody::gzipped(&gzip(bytes))
    }

    /// A body already gzip-compressed, carried as base64.
    pub(crate) fn gzipped(gz: &[u8]) -> PayloadBody {
        PayloadBody::Text {
            text: base64_encode(gz),
            encoding: BodyEncoding::GzipBase64,
        }
    }

    /// The exact bytes of a text body (a plain body is moved, not copied); `None` for no body
    /// or a JSON value.
    pub fn unpack(self) -> Result<Option<Vec<u8>>, BodyError> {
        self.unpack_limited(MAX_DECODED_BODY)
    }

    /// [`PayloadBody::unpack`] with another limit on the unpacked bytes.
    pub fn unpack_limited(self, limit: u64) -> Result<Option<Vec<u8>>, BodyError> {
        match self {
            PayloadBody::None | PayloadBody::Json(_) => Ok(None),
            PayloadBody::Text { text, encoding } => {
                unpack_text_limited(text, encoding, limit).map(Some)
            }
            PayloadBody::Ref(r) => Err(BodyError::Referenced(r.display_url().to_string())),
        }
    }
}

/// Unpacks a carried body string into its exact bytes.
pub fn unpack_text(text: String, encoding: BodyEncoding) -> Result<Vec<u8>, BodyError> {
    unpack_text_limited(text, encoding, MAX_DECODED_BODY)
}

/// [`unpack_text`] with a limit on the unpacked bytes (plain text is already in memory and is
/// not limited here).
pub fn unpack_text_limited(
    text: String,
    encoding: BodyEncoding,
    limit: u64,
) -> Result<Vec<u8>, BodyError> {
    match encoding {
        BodyEncoding::Text => Ok(text.into_bytes()),
        BodyEncoding::Base64 => decode_base64(&text),
        BodyEncoding::GzipBase64 => {
            let compressed = decode_base64(&text)?;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(compressed.as_slice())
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(BodyError::Gzip)?;
            if out.len() as u64 > limit {
                return Err(BodyError::TooLarge { limit });
            }
            // The vector grew by doubling: give back what the body does not use.
            out.shrink_to_fit();
            Ok(out)
        }
    }
}

/// A payload field with the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// A field has the wrong type.
    #[error("`{field}` must be {expected}, found {found}")]
    Field {
        /// The field's name (see [`field`]).
        field: &'static str,
        /// What was expected.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// `body_encoding` names an encoding no reader knows.
    #[error("`body_encoding` is {0:?}; expected \"base64\" or \"gzip+base64\"")]
    UnknownEncoding(String),
    /// `body_ref` is not a reference a reader can use.
    #[error("{0}")]
    Ref(#[from] crate::body_ref::RefShapeError),
}

/// A `client_payload`, typed. Missing fields are `None`; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientPayload {
    /// The request path with the query string to keep (`/ci/webhook?x=1`).
    pub path: Option<String>,
    /// The HTTP method as sent (`POST`).
    pub method: Option<String>,
    /// Header names to values.
    pub headers: Map<String, Value>,
    /// The body.
    pub body: PayloadBody,
    /// The relay's event id.
    pub id: Option<String>,
    /// When the relay received the request (RFC 3339).
    pub received_at: Option<String>,
    /// The relay route or endpoint slug.
    pub source: Option<String>,
}

impl ClientPayload {
    /// Reads a payload object, checking the type of each request field.
    pub fn decode(mut map: Map<String, Value>) -> Result<ClientPayload, ShapeError> {
        let shape =
            |field: &'static str, expected: &'static str, found: &Value| ShapeError::Field {
                field,
                expected,
                found: json_type_name(found),
            };
        let mut text = |field: &'static str| -> Result<Option<String>, ShapeError> {
            match map.remove(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(shape(field, "a string", &other)),
            }
        };
        let path = text(field::PATH)?;
        let method = text(field::METHOD)?;
        let encoding_name = text(field::BODY_ENCODING)?;
        // hookflow's own optional fields: another sender may use these names for something
        // else, so they are read when they are strings and otherwise left alone.
        let own = |field: &'static str| match map.get(field) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let id = own(field::ID);
        let received_at = own(field::RECEIVED_AT);
        let source = own(field::SOURCE);
        let headers = match map.remove(field::HEADERS) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(h)) => h,
            Some(other) => {
                return Err(shape(
                    field::HEADERS,
                    "an object of header names to values",
                    &other,
                ))
            }
        };
        let encoding = match encoding_name.as_deref() {
            None => BodyEncoding::Text,
            Some(e) => {
                BodyEncoding::parse(e).ok_or_else(|| ShapeError::UnknownEncoding(e.to_string()))?
            }
        };
        let body_ref = match map.remove(crate::body_ref::BODY_REF) {
            None | Some(Value::Null) => None,
            Some(v) => Some(crate::body_ref::BodyRef::from_value(&v)?),
        };
        // An inline body wins over a reference beside it.
        let body = match (map.remove(field::BODY), body_ref) {
            (None | Some(Value::Null), Some(r)) => PayloadBody::Ref(r),
            (None | Some(Value::Null), None) => PayloadBody::None,
            (Some(Value::String(text)), _) => PayloadBody::Text { text, encoding },
            (Some(other), _) => PayloadBody::Json(other),
        };
        Ok(ClientPayload {
            path,
            method,
            headers,
            body,
            id,
            received_at,
            source,
        })
    }

    /// The payload as JSON, fields in [`field`] order, absent ones left out.
    pub fn to_value(&self) -> Value {
        let mut p = Map::new();
        let mut put = |name: &str, v: Option<&String>| {
            if let Some(v) = v {
                p.insert(name.into(), Value::String(v.clone()));
            }
        };
        put(field::PATH, self.path.as_ref());
        put(field::METHOD, self.method.as_ref());
        p.insert(field::HEADERS.into(), Value::Object(self.headers.clone()));
        match &self.body {
            PayloadBody::None => {}
            PayloadBody::Text { text, encoding } => {
                p.insert(field::BODY.into(), Value::String(text.clone()));
                if let Some(e) = encoding.as_str() {
                    p.insert(field::BODY_ENCODING.into(), Value::String(e.into()));
                }
            }
            PayloadBody::Json(v) => {
                p.insert(field::BODY.into(), v.clone());
            }
            PayloadBody::Ref(r) => {
                p.insert(crate::body_ref::BODY_REF.into(), r.to_value());
            }
        }
        let mut put = |name: &str, v: Option<&String>| {
            if let Some(v) = v {
                p.insert(name.into(), Value::String(v.clone()));
            }
        };
        put(field::ID, self.id.as_ref());
        put(field::RECEIVED_AT, self.received_at.as_ref());
        put(field::SOURCE, self.source.as_ref());
        Value::Object(p)
    }
}

/// A request as a relay received it (and keeps it, in its store).
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Incoming {
    /// The sender's `Content-Type`, if it sent one.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("content-type").and_then(Value::as_str)
    }
}

/// Why a request cannot be dispatched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Too large for GitHub, even compressed.
    #[error("the webhook is too large to dispatch: the body is {body} bytes and does not fit a dispatch even gzip-compressed (the compressed body passed {compressed} bytes); GitHub accepts dispatches under {MAX_REQUEST_BYTES} bytes")]
    TooLarge {
        /// Body bytes received.
        body: usize,
        /// Body bytes after gzip (compression stops once they cannot fit).
        compressed: usize,
    },
    /// Even with the body by reference, the rest (headers, path) does not fit.
    #[error("the webhook cannot be dispatched even with its body by reference: its headers and path make a dispatch of {0} bytes; GitHub accepts dispatches under {MAX_REQUEST_BYTES} bytes")]
    RefTooLarge(usize),
    /// Another GitHub limit (event type length).
    #[error("{0}")]
    Limit(LimitError),
}

/// A dispatch ready to store: the request body GitHub will receive.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The JSON body of `POST /repos/{o}/{r}/dispatches`.
    pub dispatch_body: Vec<u8>,
    /// How the body was carried.
    pub body_encoding: BodyEncoding,
}

/// Where a relay event came from: its id, when, and which route or endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The relay's event id.
    pub id: &'a str,
    /// RFC 3339 receive time.
    pub received_at: &'a str,
    /// Route or endpoint slug.
    pub source: &'a str,
}

impl ClientPayload {
    /// Builds the dispatch of a received request and checks it against GitHub's limits:
    /// the exact body as text, base64 when not UTF-8, gzip+base64 when it would not fit
    /// otherwise, and refused when it does not fit even then.
    pub fn encode_request(
        incoming: &Incoming,
        event_type: &str,
        origin: Origin<'_>,
    ) -> Result<Prepared, PayloadError> {
        check_event_type(event_type).map_err(PayloadError::Limit)?;
        // A body as large as the whole request cannot fit as it is: straight to gzip.
        if incoming.body.len() < MAX_REQUEST_BYTES {
            let body = PayloadBody::carry(&incoming.body);
            let body_encoding = match &body {
                PayloadBody::Text { encoding, .. } => *encoding,
                _ => BodyEncoding::Text,
            };
            match check_limits(
                event_type,
                &Self::of_request(incoming, origin, body).to_value(),
            ) {
                Ok(dispatch_body) => {
                    return Ok(Prepared {
                        dispatch_body,
                        body_encoding,
                    })
                }
                Err(LimitError::TooLarge(_)) => {}
                Err(other) => return Err(PayloadError::Limit(other)),
            }
        }
        // Base64 makes four bytes of three: more compressed bytes than this cannot fit.
        let room = MAX_REQUEST_BYTES / 4 * 3;
        let too_large = |compressed| PayloadError::TooLarge {
            body: incoming.body.len(),
            compressed,
        };
        let compressed = gzip_within(&incoming.body, room).map_err(too_large)?;
        let payload = Self::of_request(incoming, origin, PayloadBody::gzipped(&compressed));
        match check_limits(event_type, &payload.to_value()) {
            Ok(dispatch_body) => Ok(Prepared {
                dispatch_body,
                body_encoding: BodyEncoding::GzipBase64,
            }),
            Err(LimitError::TooLarge(_)) => Err(too_large(compressed.len())),
            Err(other) => Err(PayloadError::Limit(other)),
        }
    }

    /// Builds the dispatch of a received request whose body travels by reference (`body_ref`,
    /// see [`crate::body_ref`]), checked against GitHub's limits: what is left (method, path,
    /// headers, the reference) must fit.
    pub fn encode_referenced(
        incoming: &Incoming,
        event_type: &str,
        origin: Origin<'_>,
        reference: &crate::body_ref::BodyRef,
    ) -> Result<Vec<u8>, PayloadError> {
        let payload = Self::of_request(incoming, origin, PayloadBody::Ref(reference.clone()));
        check_limits(event_type, &payload.to_value()).map_err(|e| match e {
            LimitError::TooLarge(dispatch) => PayloadError::RefTooLarge(dispatch),
            other => PayloadError::Limit(other),
        })
    }

    /// The payload of a received request with `body`.
    fn of_request(incoming: &Incoming, origin: Origin<'_>, body: PayloadBody) -> ClientPayload {
        ClientPayload {
            path: Some(incoming.path.clone()),
            method: Some(incoming.method.clone()),
            headers: incoming.headers.clone(),
            body,
            id: Some(origin.id.into()),
            received_at: Some(origin.received_at.into()),
            source: Some(origin.source.into()),
        }
    }
}

impl ClientPayload {
    /// Whether the dispatch of `incoming` surely fits GitHub's limits, found without building
    /// it: its event type is valid, and even with every byte of every text escaped six-fold
    /// (`\u00XX`, JSON's worst) the request stays under [`MAX_REQUEST_BYTES`]. A relay that
    /// builds the dispatch later (at delivery) checks small requests this way at the door;
    /// `false` means "build it to know", not "too large".
    pub fn surely_fits(incoming: &Incoming, event_type: &str, origin: Origin<'_>) -> bool {
        if check_event_type(event_type).is_err() {
            return false;
        }
        let headers: usize = incoming
            .headers
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        Value::String(s) => s.len(),
                        other => other.to_string().len(),
                    }
            })
            .sum();
        let texts = incoming.method.len()
            + incoming.path.len()
            + incoming.body.len()
            + headers
            + origin.id.len()
            + origin.received_at.len()
            + origin.source.len()
            + event_type.len();
        // Keys, quotes, separators and `body_encoding`: under 256 bytes, plus six per header.
        let bound = 6usize
            .saturating_mul(texts)
            .saturating_add(256 + 6 * incoming.headers.len());
        bound < MAX_REQUEST_BYTES
    }
}

/// `n` pseudo-random bytes (xorshift64) that gzip cannot shrink, for tests of size limits.
#[cfg(test)]
pub(crate) fn incompressible(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        })
        .collect()
}

/// A JSON type's name for messages ("an object", "a string").
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_base64(text: &str) -> Result<Vec<u8>, BodyError> {
    let cleaned: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(BodyError::Base64)
}

/// `bytes` gzip-compressed (best), or, once the output passes `limit` bytes, how many it had
/// reached: a body that cannot fit is not compressed to its end (a 25 MiB body costs what its
/// first compressed `limit` bytes cost).
pub(crate) fn gzip_within(bytes: &[u8], limit: usize) -> Result<Vec<u8>, usize> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(limit.min(bytes.len() / 4 + 64)),
        flate2::Compression::best(),
    );
    for chunk in bytes.chunks(64 * 1024) {
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(chunk);
        if enc.get_ref().len() > limit {
            return Err(enc.get_ref().len());
        }
    }
    let out = enc.finish().unwrap_or_default();
    if out.len() > limit {
        return Err(out.len());
    }
    Ok(out)
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
    use proptest::prelude::*;

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

    const ORIGIN: Origin<'static> = Origin {
        id: "i",
        received_at: "t",
        source: "s",
    };

    fn payload(p: &Prepared) -> Value {
        let v: Value = serde_json::from_slice(&p.dispatch_body).expect("json");
        v["client_payload"].clone()
    }

    /// What a reader gets back from a prepared dispatch.
    fn read_back(p: &Prepared) -> Vec<u8> {
        let Value::Object(map) = payload(p) else {
            panic!("payload is an object")
        };
        ClientPayload::decode(map)
            .expect("decodes")
            .body
            .unpack()
            .expect("unpacks")
            .unwrap_or_default()
    }

    #[test]
    fn text_binary_and_compressed_bodies_round_trip() {
        let raw = b"{ \"pretty\": true }".to_vec();
        let origin = Origin {
            id: "01J",
            received_at: "2026-11-28T00:00:00Z",
            source: "compat",
        };
        let p =
            ClientPayload::encode_request(&incoming(raw.clone()), "webhook", origin).expect("fits");
        let v = payload(&p);
        assert_eq!(
            v["body"],
            Value::String("{ \"pretty\": true }".into()),
            "exact bytes, not re-serialised"
        );
        assert_eq!(v.get("body_encoding"), None);
        assert_eq!(v["id"], "01J");
        assert_eq!(read_back(&p), raw);

        let bin = vec![0xff, 0xfe, 0x00, 0x01];
        let p =
            ClientPayload::encode_request(&incoming(bin.clone()), "webhook", ORIGIN).expect("fits");
        assert_eq!(payload(&p)["body_encoding"], "base64");
        assert_eq!(read_back(&p), bin);

        let big: Vec<u8> = (0..300_000).map(|i| b"abcdefghij{}\":,"[i % 15]).collect();
        let p = ClientPayload::encode_request(&incoming(big.clone()), "webhook", ORIGIN)
            .expect("compresses");
        assert_eq!(p.body_encoding, BodyEncoding::GzipBase64);
        assert!(p.dispatch_body.len() < MAX_REQUEST_BYTES);
        assert_eq!(read_back(&p), big);
    }

    #[test]
    fn incompressible_bodies_are_refused_with_sizes() {
        let noise = incompressible(100_000);
        let err = ClientPayload::encode_request(&incoming(noise), "webhook", ORIGIN).unwrap_err();
        assert!(
            matches!(err, PayloadError::TooLarge { body: 100_000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("100000 bytes"), "{err}");
    }

    #[test]
    fn large_bodies_stop_compressing_once_they_cannot_fit_and_go_by_reference() {
        // 20 MiB of noise: compression gives up after its first ~48 KiB of output.
        let noise = incompressible(20 * 1024 * 1024);
        let started = std::time::Instant::now();
        let err =
            ClientPayload::encode_request(&incoming(noise.clone()), "webhook", ORIGIN).unwrap_err();
        let PayloadError::TooLarge { body, compressed } = err else {
            panic!("{err}");
        };
        assert_eq!(body, noise.len());
        assert!(
            compressed > MAX_REQUEST_BYTES / 4 * 3 && compressed < 200_000,
            "{compressed}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let referrer = crate::body_ref::Referrer {
            public_url: "https://relay.example.com".into(),
            secret: b"k".to_vec(),
        };
        let r = referrer.reference(ORIGIN.id, &noise, 2_000_000_000);
        let d = ClientPayload::encode_referenced(&incoming(noise), "webhook", ORIGIN, &r)
            .expect("the rest fits");
        let sent: Value = serde_json::from_slice(&d).expect("json");
        let p = &sent["client_payload"];
        assert_eq!(p.get("body"), None);
        assert_eq!(p.get("body_encoding"), None);
        assert_eq!(p["body_ref"]["size"], 20 * 1024 * 1024);
        assert_eq!(p["body_ref"]["url"].as_str(), Some(r.url.as_str()));
        let decoded =
            ClientPayload::decode(p.as_object().cloned().unwrap_or_default()).expect("decodes");
        assert_eq!(decoded.body, PayloadBody::Ref(r.clone()));
        // Headers too large for any dispatch: refused even by reference.
        let mut huge = incoming(Vec::new());
        huge.headers
            .insert("x-big".into(), Value::String("h".repeat(70_000)));
        assert!(matches!(
            ClientPayload::encode_referenced(&huge, "webhook", ORIGIN, &r),
            Err(PayloadError::RefTooLarge(_))
        ));
    }

    #[test]
    fn empty_bodies_are_omitted() {
        let p =
            ClientPayload::encode_request(&incoming(Vec::new()), "webhook", ORIGIN).expect("fits");
        let v = payload(&p);
        assert_eq!(v.get("body"), None);
        assert_eq!(v.as_object().map(|m| m.len()), Some(6));
    }

    #[test]
    fn decoding_names_the_field() {
        let map = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            ClientPayload::decode(map(serde_json::json!({"headers": ["a"]}))),
            Err(ShapeError::Field {
                field: "headers",
                expected: "an object of header names to values",
                found: "an array"
            })
        );
        assert_eq!(
            ClientPayload::decode(map(
                serde_json::json!({"body": "x", "body_encoding": "rot13"})
            )),
            Err(ShapeError::UnknownEncoding("rot13".into()))
        );
        assert!(matches!(
            PayloadBody::Text {
                text: "!!".into(),
                encoding: BodyEncoding::Base64
            }
            .unpack(),
            Err(BodyError::Base64(_))
        ));
        assert!(matches!(
            PayloadBody::Text {
                text: "aGVsbG8=".into(),
                encoding: BodyEncoding::GzipBase64
            }
            .unpack(),
            Err(BodyError::Gzip(_))
        ));
    }

    #[test]
    fn gzip_bombs_are_refused() {
        let zeros = vec![0u8; (MAX_DECODED_BODY + 1) as usize];
        let bomb = PayloadBody::compressed(&zeros);
        assert!(matches!(bomb.unpack(), Err(BodyError::TooLarge { .. })));
    }

    #[test]
    fn small_requests_surely_fit_and_bad_event_types_do_not() {
        let small = incoming(vec![b'a'; 8_000]);
        assert!(ClientPayload::surely_fits(&small, "webhook", ORIGIN));
        assert!(!ClientPayload::surely_fits(
            &incoming(vec![b'a'; 11_000]),
            "webhook",
            ORIGIN
        ));
        assert!(!ClientPayload::surely_fits(&small, "", ORIGIN));
        assert!(!ClientPayload::surely_fits(&small, "a\nb", ORIGIN));
    }

    proptest! {
        /// Relay encode, then reader decode, gives the exact bytes back: text, binary, and
        /// (with a repetitive tail that pushes it past 64 KB) gzip.
        #[test]
        fn encode_then_decode_gives_the_exact_bytes(
            head in proptest::collection::vec(any::<u8>(), 0..2048),
            text in "[ -~\\n\\té€😀]{0,512}",
            repeat in 0usize..200,
        ) {
            let mut body = head;
            body.extend_from_slice(text.as_bytes());
            for _ in 0..repeat {
                body.extend_from_slice(b"{\"padding\":\"0123456789abcdef0123456789abcdef\"},");
            }
            if let Ok(p) = ClientPayload::encode_request(&incoming(body.clone()), "webhook", ORIGIN) {
                prop_assert_eq!(read_back(&p), body);
            }
        }

        /// A request the cheap test passes always encodes within GitHub's limits, whatever its
        /// bytes (control characters escape to six bytes each, the worst JSON has).
        #[test]
        fn what_surely_fits_does_fit(
            body in proptest::collection::vec(prop_oneof![Just(1u8), Just(b'"'), any::<u8>()], 0..12_000),
            headers in proptest::collection::vec(("[a-z-]{1,20}", "[\\x00-\\x1f\"a-z]{0,200}"), 0..20),
            event_type in "[a-z.]{1,100}",
        ) {
            let mut request = incoming(body);
            for (k, v) in headers {
                request.headers.insert(k, Value::String(v));
            }
            if ClientPayload::surely_fits(&request, &event_type, ORIGIN) {
                prop_assert!(ClientPayload::encode_request(&request, &event_type, ORIGIN).is_ok());
            }
        }

        #[test]
        fn text_bodies_are_never_reencoded(text in "[ -~\\n\\té€😀]{1,2048}") {
            let p = ClientPayload::encode_request(&incoming(text.clone().into_bytes()), "webhook", ORIGIN)
                .expect("small text fits");
            prop_assert_eq!(p.body_encoding, BodyEncoding::Text);
            let v = payload(&p);
            prop_assert_eq!(v["body"].as_str(), Some(text.as_str()));
        }
    }
}
