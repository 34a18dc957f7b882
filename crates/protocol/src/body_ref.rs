//! Bodies too large for a dispatch even compressed travel by reference: `client_payload.body_ref`
//! names a URL on the relay that serves the exact bytes, with their size and SHA-256, until the
//! relay prunes them.
//!
//! ```json
//! "body_ref": {"url": "https://relay.example.com/bodies/01J…?expires=1767000000&sig=9f…",
//!              "size": 5242880, "sha256": "…", "content_encoding": "identity",
//!              "expires_at": "2026-12-06T08:00:00Z"}
//! ```
//!
//! The URL carries an HMAC-SHA256, under a secret only the relays know, over the event id and the
//! expiry: it cannot be guessed for another event nor extended, and any relay sharing the store
//! (and the secret) can serve it. The reader checks the size and the digest of what it fetched,
//! so a body changed on the way (or served by something else) is refused.

use serde_json::{Map, Value};

use crate::signature::{hmac, Algorithm};

/// The payload field holding the reference.
pub const BODY_REF: &str = "body_ref";
/// The path under a relay's `public_url` that serves bodies: `/bodies/<event id>`.
pub const BODIES_PATH: &str = "/bodies/";
/// The only `content_encoding` written today: the bytes served are the body itself (a server
/// may still compress the transfer when the client accepts it).
pub const IDENTITY: &str = "identity";

/// A reference to a body the relay serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRef {
    /// The signed URL.
    pub url: String,
    /// The body's length in bytes.
    pub size: u64,
    /// The body's SHA-256, lowercase hex.
    pub sha256: String,
    /// How the served bytes are encoded ([`IDENTITY`]).
    pub content_encoding: String,
    /// When the URL stops working (RFC 3339).
    pub expires_at: String,
}

/// Why a `body_ref` object cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefShapeError {
    /// A field is missing or has the wrong type.
    #[error("`body_ref.{field}` must be {expected}")]
    Field {
        /// The field.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// The encoding is not one a reader knows.
    #[error("`body_ref.content_encoding` is {0:?}; expected \"identity\"")]
    UnknownEncoding(String),
}

impl BodyRef {
    /// The reference as a `body_ref` JSON object.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("url".into(), Value::String(self.url.clone()));
        m.insert("size".into(), Value::from(self.size));
        m.insert("sha256".into(), Value::String(self.sha256.clone()));
        m.insert(
            "content_encoding".into(),
            Value::String(self.content_encoding.clone()),
        );
        m.insert("expires_at".into(), Value::String(self.expires_at.clone()));
        Value::Object(m)
    }

    /// Reads a `body_ref` object.
    pub fn from_value(v: &Value) -> Result<BodyRef, RefShapeError> {
        let text = |field: &'static str, expected: &'static str| {
            v.get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(RefShapeError::Field { field, expected })
        };
        let url = text("url", "a URL string")?;
        let sha256 = text("sha256", "the body's SHA-256 as 64 hex digits")?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RefShapeError::Field {
                field: "sha256",
                expected: "the body's SHA-256 as 64 hex digits",
            });
        }
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or(RefShapeError::Field {
                field: "size",
                expected: "the body's length in bytes",
            })?;
        let content_encoding = match v.get("content_encoding") {
            None | Some(Value::Null) => IDENTITY.to_string(),
            Some(Value::String(e)) if e == IDENTITY => e.clone(),
            Some(Value::String(e)) => return Err(RefShapeError::UnknownEncoding(e.clone())),
            Some(_) => {
                return Err(RefShapeError::Field {
                    field: "content_encoding",
                    expected: "a string",
                })
            }
        };
        let expires_at = text("expires_at", "an RFC 3339 time").unwrap_or_default();
        Ok(BodyRef {
            url,
            size,
            sha256: sha256.to_ascii_lowercase(),
            content_encoding,
            expires_at,
        })
    }

    /// The URL without its query (the signature), for messages and logs.
    pub fn display_url(&self) -> &str {
        without_query(&self.url)
    }
}

/// `url` without its query string and fragment.
pub fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// What makes references: the relay's public address, its secret and how long bodies are kept.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// `https://relay.example.com` (a path prefix is kept: `https://example.com/hooks`).
    pub public_url: String,
    /// The HMAC key of the URLs.
    pub secret: Vec<u8>,
}

impl Referrer {
    /// A reference to `body` of event `event_id`, valid until `expires` (seconds since the
    /// epoch).
    pub fn reference(&self, event_id: &str, body: &[u8], expires: i64) -> BodyRef {
        use sha2::Digest as _;
        let sha256 = hex::encode(sha2::Sha256::digest(body));
        self.reference_to(event_id, body.len() as u64, sha256, expires)
    }

    /// A reference to a body of `size` bytes with digest `sha256` (lowercase hex): what
    /// [`Referrer::reference`] makes once it has hashed the body, and what a relay measures a
    /// dispatch with before it has (any 64 hex digits stand in).
    pub fn reference_to(&self, event_id: &str, size: u64, sha256: String, expires: i64) -> BodyRef {
        let base = self.public_url.trim_end_matches('/');
        let sig = url_signature(&self.secret, event_id, expires);
        BodyRef {
            url: format!("{base}{BODIES_PATH}{event_id}?expires={expires}&sig={sig}"),
            size,
            sha256,
            content_encoding: IDENTITY.into(),
            expires_at: chrono::DateTime::from_timestamp(expires, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        }
    }
}

/// Why a body URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// `expires` or `sig` is missing or malformed.
    #[error("the body URL needs its expires and sig parameters")]
    Malformed,
    /// The signature does not match.
    #[error("the body URL's signature is not valid")]
    BadSignature,
    /// The URL has expired.
    #[error("the body URL has expired")]
    Expired,
}

/// The signature of a body URL: HMAC-SHA256 over a domain tag, the event id and the expiry.
pub fn url_signature(secret: &[u8], event_id: &str, expires: i64) -> String {
    let expires = expires.to_string();
    hex::encode(hmac(
        Algorithm::Sha256,
        secret,
        &[
            b"hookflow-body\n",
            event_id.as_bytes(),
            b"\n",
            expires.as_bytes(),
        ],
    ))
}

/// Checks a body URL's query (`expires=…&sig=…`) for `event_id` at `now` (seconds): the
/// signature first, in constant time, so an expired URL is only reported as such when it is
/// genuine.
pub fn check_url(secret: &[u8], event_id: &str, query: &str, now: i64) -> Result<(), UrlError> {
    let mut expires = None;
    let mut sig = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = v.parse::<i64>().ok(),
            Some(("sig", v)) => sig = Some(v),
            _ => {}
        }
    }
    let (Some(expires), Some(sig)) = (expires, sig) else {
        return Err(UrlError::Malformed);
    };
    let expected = url_signature(secret, event_id, expires);
    if !crate::credentials::same(expected.as_bytes(), sig.as_bytes()) {
        return Err(UrlError::BadSignature);
    }
    if now >= expires {
        return Err(UrlError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referrer() -> Referrer {
        Referrer {
            public_url: "https://relay.example.com/".into(),
            secret: b"k".to_vec(),
        }
    }

    #[test]
    fn references_round_trip_and_urls_are_checked() {
        let r = referrer().reference("01JEVENT", b"hello", 2_000_000_000);
        assert!(r
            .url
            .starts_with("https://relay.example.com/bodies/01JEVENT?expires=2000000000&sig="));
        assert_eq!(r.display_url(), "https://relay.example.com/bodies/01JEVENT");
        assert_eq!(r.size, 5);
        assert_eq!(r.expires_at, "2033-05-18T03:33:20Z");
        assert_eq!(BodyRef::from_value(&r.to_value()), Ok(r.clone()));
        let query = r.url.split_once('?').expect("query").1;
        assert_eq!(check_url(b"k", "01JEVENT", query, 1_999_999_999), Ok(()));
        assert_eq!(
            check_url(b"k", "01JEVENT", query, 2_000_000_000),
            Err(UrlError::Expired)
        );
        // Another event, another secret, a later expiry, a changed signature: refused.
        assert_eq!(
            check_url(b"k", "01JOTHER", query, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            check_url(b"x", "01JEVENT", query, 0),
            Err(UrlError::BadSignature)
        );
        let extended = query.replace("expires=2000000000", "expires=2100000000");
        assert_eq!(
            check_url(b"k", "01JEVENT", &extended, 0),
            Err(UrlError::BadSignature)
        );
        assert_eq!(
            check_url(b"k", "01JEVENT", "expires=1", 0),
            Err(UrlError::Malformed)
        );
    }

    #[test]
    fn bad_references_say_which_field() {
        let mut v = referrer().reference("e", b"", 1).to_value();
        v["sha256"] = Value::String("zz".into());
        assert_eq!(
            BodyRef::from_value(&v).unwrap_err().to_string(),
            "`body_ref.sha256` must be the body's SHA-256 as 64 hex digits"
        );
        let mut v = referrer().reference("e", b"", 1).to_value();
        v["content_encoding"] = Value::String("br".into());
        assert!(matches!(
            BodyRef::from_value(&v),
            Err(RefShapeError::UnknownEncoding(_))
        ));
        let mut v = referrer().reference("e", b"", 1).to_value();
        v["size"] = Value::from(-1);
        assert!(BodyRef::from_value(&v).is_err());
    }
}
