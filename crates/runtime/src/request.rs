//! The HTTP request a relay carried inside `client_payload`, decoded the way actionsflow 1.12
//! decodes it (DESIGN §2): lowercase method and header names, the path split into
//! `path`/`query`/`querystring`/`search` as a WHATWG URL parser does, and the body parsed by
//! content type.
//!
//! This module knows nothing of GitHub events or workflows: [`crate::event`] unwraps the event
//! and hands the payload fields here.

use base64::Engine as _;
use hookflow_protocol::payload::BodyEncoding;
use serde_json::{Map, Value};

/// The base actionsflow resolves request paths against; only its path and query are used.
const URL_BASE: &str = "https://webhook.actionsflow.io";

/// Media types whose bodies are parsed as JSON.
const JSON_TYPES: [&str; 4] = [
    "application/json",
    "application/json-patch+json",
    "application/vnd.api+json",
    "application/csp-report",
];
/// Media type whose bodies are parsed as an HTML form.
const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// A decoded webhook request.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// The path as sent, with its query string (`/ci/webhook/x?a=1`), always starting with `/`.
    pub origin_path: String,
    /// The URL path alone, normalised as a URL parser does (`/ci/webhook/x`).
    pub path: String,
    /// Lowercase HTTP method (`post`).
    pub method: String,
    /// Request headers, names lowercased, values as given.
    pub headers: Map<String, Value>,
    /// The decoded body: a JSON value, a form as an object, or the text. `None` when empty.
    pub body: Option<Value>,
    /// The exact body bytes as forwarded, when the body was carried as text or encoded bytes.
    pub raw_body: Option<Vec<u8>>,
    /// The body is JSON text of at least [`crate::body::LARGE_BODY_BYTES`], left unparsed in
    /// `raw_body` (and `body` is `None`): each trigger parses the parts its rules read.
    pub body_deferred: bool,
    /// [`BodyEncoding::Base64`] when the body is not UTF-8 and `body` holds its base64 text.
    pub body_encoding: Option<BodyEncoding>,
    /// The query string parsed like Node's `querystring.parse` (repeated keys become arrays).
    pub query: Map<String, Value>,
    /// The query string without `?`.
    pub querystring: String,
    /// The query string with `?`, or empty.
    pub search: String,
    /// The hookflow relay's event id, when a hookflow relay sent the event.
    pub relay_event_id: Option<String>,
}

/// What a relay put in the payload, before decoding. Missing fields are `None`.
#[derive(Debug, Clone, Default)]
pub struct RawRequest {
    /// `client_payload.path`.
    pub path: Option<String>,
    /// `client_payload.method`.
    pub method: Option<String>,
    /// `client_payload.headers`.
    pub headers: Map<String, Value>,
    /// The body: text (already unpacked from its encoding) as bytes, or a JSON value sent as-is.
    pub body: RawBody,
    /// `client_payload.id`: the hookflow relay's event id, when a hookflow relay sent it.
    pub relay_event_id: Option<String>,
}

/// A body as found in the payload.
#[derive(Debug, Clone, Default)]
pub enum RawBody {
    /// No body, or an empty/false one (actionsflow drops those).
    #[default]
    None,
    /// Bytes carried as text or encoded text.
    Bytes(Vec<u8>),
    /// A JSON value that is not a string (some senders put the object in directly).
    Json(Value),
}

impl WebhookRequest {
    /// Decodes a raw request with actionsflow's defaults and rules (DESIGN §2).
    pub fn decode(raw: RawRequest) -> WebhookRequest {
        let has_body = !matches!(raw.body, RawBody::None);
        let method = match raw.method.filter(|m| !m.is_empty()) {
            Some(m) => m.to_lowercase(),
            None if has_body => "post".to_string(),
            None => "get".to_string(),
        };
        let mut origin_path = raw
            .path
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        if !origin_path.starts_with('/') {
            origin_path.insert(0, '/');
        }
        let headers: Map<String, Value> = raw
            .headers
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        let media_type = headers
            .get("content-type")
            .and_then(Value::as_str)
            .map(media_type);

        let mut body_deferred = false;
        let (body, raw_body, body_encoding) = match raw.body {
            RawBody::None => (None, None, None),
            RawBody::Json(v) => (Some(v), None, None),
            RawBody::Bytes(bytes) => match String::from_utf8(bytes) {
                Ok(text) if defers_parsing(&text, media_type.as_deref()) => {
                    body_deferred = true;
                    (None, Some(text.into_bytes()), None)
                }
                Ok(text) => (
                    Some(parse_body_text(&text, media_type.as_deref())),
                    Some(text.into_bytes()),
                    None,
                ),
                Err(not_utf8) => {
                    let bytes = not_utf8.into_bytes();
                    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    (
                        Some(Value::String(b64)),
                        Some(bytes),
                        Some(BodyEncoding::Base64),
                    )
                }
            },
        };

        let parts = split_url(&origin_path);
        WebhookRequest {
            origin_path,
            path: parts.path,
            method,
            headers,
            body,
            raw_body,
            body_deferred,
            body_encoding,
            query: parse_querystring(&parts.querystring),
            querystring: parts.querystring,
            search: parts.search,
            relay_event_id: raw.relay_event_id,
        }
    }

    /// The id that names this delivery in the sender's log: its delivery header
    /// (`X-GitHub-Delivery`, `webhook-id`, `svix-id`, …), else the relay's event id, else empty.
    pub fn delivery_id(&self) -> String {
        hookflow_protocol::payload::sender_delivery_id(|h| self.headers.get(h)?.as_str())
            .map(|(_, v)| v.to_string())
            .or_else(|| self.relay_event_id.clone())
            .unwrap_or_default()
    }
}

/// Where a request went: its path and query, split as a URL parser splits them.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    /// The URL path, normalised (`/x/y`).
    pub path: String,
    /// The query string parsed like Node's `querystring.parse`.
    pub query: Map<String, Value>,
    /// The query string without `?`.
    pub querystring: String,
    /// The query string with `?`, or empty.
    pub search: String,
}

impl Location {
    /// Splits a path with its query (`/x?a=1`); a leading `/` is added when missing.
    /// actionsflow re-parses what follows a trigger's base this way to get the trigger's query.
    pub fn parse(origin: &str) -> Location {
        let mut origin = origin.to_string();
        if !origin.starts_with('/') {
            origin.insert(0, '/');
        }
        let parts = split_url(&origin);
        Location {
            path: parts.path,
            query: parse_querystring(&parts.querystring),
            querystring: parts.querystring,
            search: parts.search,
        }
    }
}

/// The lowercase media type of a `Content-Type` value, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a body is large JSON text (an object or an array) better parsed in part
/// ([`crate::body`]) than whole.
fn defers_parsing(text: &str, media_type: Option<&str>) -> bool {
    text.len() >= crate::body::LARGE_BODY_BYTES
        && media_type != Some(FORM_TYPE)
        && text.trim_start().starts_with(['{', '['])
}

/// The body a trigger's rules see for a body left unparsed ([`WebhookRequest::body_deferred`]):
/// the parts `need` names, or the text when those would take more memory than
/// [`crate::body::budget`] allows (with a notice saying so) or when it is not JSON after all.
pub fn deferred_body(text: &str, need: &crate::body::Need) -> (Value, Option<String>) {
    use crate::body::{budget, project, ProjectError};
    match project(text, need, budget(text.len())) {
        Ok(v) => (v, None),
        Err(ProjectError::NotJson) => (Value::String(text.to_string()), None),
        Err(ProjectError::TooBig) => (
            Value::String(text.to_string()),
            Some(format!(
                "the body ({} bytes) is too large to parse as far as the trigger's rules read it (its whole, or a large part of it) within the runner's memory budget, so they see it as text; point config.filter and outputs at the fields they need (`body.ref`, `$.body.pull_request.number`) rather than at the whole body",
                text.len()
            )),
        ),
    }
}

/// actionsflow's body rules: JSON types are parsed as JSON, forms as forms; then any text that is
/// still a string is parsed as JSON if it parses. Unlike actionsflow, an invalid JSON body sent
/// with a JSON content type stays text instead of failing the run.
///
/// A large body whose values would take far more memory parsed than as text (a gzip bomb of
/// `[0,0,0,…]` is 32 MiB of text and 16 million values) stays text: see [`parses_too_big`].
fn parse_body_text(text: &str, media_type: Option<&str>) -> Value {
    let json = |s: &str| {
        if parses_too_big(text, Syntax::Json) {
            return None;
        }
        serde_json::from_str::<Value>(s).ok()
    };
    match media_type {
        Some(FORM_TYPE) if parses_too_big(text, Syntax::Form) => Value::String(text.to_string()),
        Some(FORM_TYPE) => Value::Object(parse_querystring(text)),
        // A JSON body that is itself a JSON string is parsed once more, as actionsflow does.
        Some(mt) if JSON_TYPES.contains(&mt) => match json(text) {
            Some(Value::String(inner)) => json(&inner).unwrap_or(Value::String(inner)),
            Some(v) => v,
            None => Value::String(text.to_string()),
        },
        _ => json(text).unwrap_or_else(|| Value::String(text.to_string())),
    }
}

/// Bodies smaller than this are always parsed.
const PARSE_GUARD_MIN_BYTES: usize = 1024 * 1024;
/// Parsed values may take at most this many times the body's bytes.
const PARSE_GUARD_FACTOR: usize = 8;

#[derive(Clone, Copy)]
enum Syntax {
    Json,
    Form,
}

/// Whether parsing `text` would take more than [`PARSE_GUARD_FACTOR`] times its size in memory,
/// estimated from the number of values it holds (commas, colons and brackets outside strings;
/// `&` in a form) without parsing it.
fn parses_too_big(text: &str, syntax: Syntax) -> bool {
    if text.len() < PARSE_GUARD_MIN_BYTES {
        return false;
    }
    let values = match syntax {
        Syntax::Form => text.bytes().filter(|b| *b == b'&').count() + 1,
        Syntax::Json => {
            let (mut n, mut in_string, mut escaped) = (1usize, false, false);
            for b in text.bytes() {
                match (in_string, escaped, b) {
                    (true, true, _) => escaped = false,
                    (true, false, b'\\') => escaped = true,
                    (true, false, b'"') => in_string = false,
                    (true, false, _) => {}
                    (false, _, b'"') => in_string = true,
                    (false, _, b',' | b':' | b'[' | b'{') => n += 1,
                    (false, _, _) => {}
                }
            }
            n
        }
    };
    let per_value = std::mem::size_of::<Value>() + 16;
    values.saturating_mul(per_value) > text.len().saturating_mul(PARSE_GUARD_FACTOR)
}

struct UrlParts {
    path: String,
    querystring: String,
    search: String,
}

/// Splits a request path the way `new URL(path, base)` does: dot segments resolved, unsafe
/// characters percent-encoded, fragment dropped.
fn split_url(origin_path: &str) -> UrlParts {
    // `//host/x` would be read as a host by a URL parser; keep it a path, as the relay meant.
    let mut input = origin_path.to_string();
    while input.starts_with("//") {
        input.remove(0);
    }
    let parsed = url::Url::parse(URL_BASE).and_then(|base| base.join(&input));
    match parsed {
        Ok(u) => {
            let q = u.query().unwrap_or_default().to_string();
            UrlParts {
                path: u.path().to_string(),
                search: if q.is_empty() {
                    String::new()
                } else {
                    format!("?{q}")
                },
                querystring: q,
            }
        }
        Err(_) => {
            let no_fragment = input.split('#').next().unwrap_or_default();
            let (path, q) = no_fragment.split_once('?').unwrap_or((no_fragment, ""));
            UrlParts {
                path: path.to_string(),
                search: if q.is_empty() {
                    String::new()
                } else {
                    format!("?{q}")
                },
                querystring: q.to_string(),
            }
        }
    }
}

/// Node's `querystring.parse`: `+` is a space, escapes decoded, repeated keys become arrays.
pub fn parse_querystring(qs: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(qs.as_bytes()) {
        let k = k.into_owned();
        let v = Value::String(v.into_owned());
        match out.get_mut(&k) {
            None => {
                out.insert(k, v);
            }
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(path: &str, ct: Option<&str>, body: Option<&str>) -> WebhookRequest {
        let mut headers = Map::new();
        if let Some(ct) = ct {
            headers.insert("Content-Type".into(), json!(ct));
        }
        WebhookRequest::decode(RawRequest {
            path: Some(path.into()),
            method: None,
            headers,
            body: body.map_or(RawBody::None, |b| {
                if b.is_empty() {
                    RawBody::None
                } else {
                    RawBody::Bytes(b.as_bytes().to_vec())
                }
            }),
            relay_event_id: None,
        })
    }

    #[test]
    fn defaults_follow_actionsflow() {
        let r = WebhookRequest::decode(RawRequest::default());
        assert_eq!(r.origin_path, "/");
        assert_eq!(r.method, "get");
        assert_eq!(r.body, None);
        let r = req("ci/webhook", None, Some("hi"));
        assert_eq!(r.origin_path, "/ci/webhook");
        assert_eq!(r.method, "post");
        assert_eq!(r.body, Some(json!("hi")));
    }

    #[test]
    fn query_string_is_split_like_node() {
        let r = req("/a/webhook?x=1&x=2&y=a+b&z=%C3%A9&flag", None, None);
        assert_eq!(r.path, "/a/webhook");
        assert_eq!(r.querystring, "x=1&x=2&y=a+b&z=%C3%A9&flag");
        assert_eq!(r.search, "?x=1&x=2&y=a+b&z=%C3%A9&flag");
        assert_eq!(
            Value::Object(r.query),
            json!({"x": ["1", "2"], "y": "a b", "z": "é", "flag": ""})
        );
        let r = req("/a/webhook?", None, None);
        assert_eq!((r.search.as_str(), r.querystring.as_str()), ("", ""));
    }

    #[test]
    fn url_normalisation() {
        assert_eq!(req("/a/./b/../c", None, None).path, "/a/c");
        assert_eq!(req("/a b", None, None).path, "/a%20b");
        assert_eq!(req("/a#frag", None, None).path, "/a");
        assert_eq!(req("//evil.example/x", None, None).path, "/evil.example/x");
    }

    #[test]
    fn bodies_by_content_type() {
        assert_eq!(
            req(
                "/",
                Some("application/json; charset=utf-8"),
                Some(r#"{"a":1}"#)
            )
            .body,
            Some(json!({"a": 1}))
        );
        assert_eq!(
            req(
                "/",
                Some("application/x-www-form-urlencoded"),
                Some("a=1&a=2&b=x+y")
            )
            .body,
            Some(json!({"a": ["1", "2"], "b": "x y"}))
        );
        // a form body that looks like a number stays a form
        assert_eq!(
            req("/", Some("application/x-www-form-urlencoded"), Some("123")).body,
            Some(json!({"123": ""}))
        );
        assert_eq!(
            req("/", Some("text/plain"), Some("42")).body,
            Some(json!(42))
        );
        assert_eq!(
            req("/", Some("text/plain"), Some("hello")).body,
            Some(json!("hello"))
        );
        assert_eq!(
            req("/", Some("application/json"), Some("{oops")).body,
            Some(json!("{oops"))
        );
        // JSON inside a JSON string is parsed twice, as actionsflow does
        assert_eq!(
            req("/", Some("application/json"), Some(r#""12""#)).body,
            Some(json!(12))
        );
    }

    #[test]
    fn non_utf8_bodies_are_kept_as_base64() {
        let r = WebhookRequest::decode(RawRequest {
            body: RawBody::Bytes(vec![0xff, 0x00, 0x80]),
            ..RawRequest::default()
        });
        assert_eq!(r.body, Some(json!("/wCA")));
        assert_eq!(r.body_encoding, Some(BodyEncoding::Base64));
        assert_eq!(r.raw_body, Some(vec![0xff, 0x00, 0x80]));
    }

    #[test]
    fn bodies_that_would_blow_up_in_memory_stay_text() {
        let zeros = format!("[{}0]", "0,".repeat(800_000));
        let r = req("/", Some("application/json"), Some(&zeros));
        assert!(r.body_deferred && r.body.is_none(), "parsed later, in part");
        let (body, notice) = deferred_body(&zeros, &crate::body::Need::everything());
        assert_eq!(body, Value::String(zeros.clone()), "kept as text");
        assert!(notice.is_some_and(|n| n.contains("too large")));
        let form = "a=&".repeat(400_000);
        let r = req("/", Some("application/x-www-form-urlencoded"), Some(&form));
        assert!(matches!(r.body, Some(Value::String(_))));
        // A large body of ordinary JSON is parsed.
        let items: Vec<String> = (0..20_000)
            .map(|i| format!("{{\"id\":{i},\"message\":\"Commit {i}: tidy the build scripts\"}}"))
            .collect();
        let commits = format!("{{\"commits\":[{}]}}", items.join(","));
        assert!(commits.len() > PARSE_GUARD_MIN_BYTES);
        let r = req("/", Some("application/json"), Some(&commits));
        assert!(r.body_deferred);
        let (body, notice) = deferred_body(&commits, &crate::body::Need::everything());
        assert!(matches!(body, Value::Object(_)), "parsed whole");
        assert_eq!(notice, None);
        // Small bodies are always parsed.
        let r = req("/", Some("application/json"), Some("[0,0,0,0]"));
        assert_eq!(r.body, Some(serde_json::json!([0, 0, 0, 0])));
    }

    #[test]
    fn delivery_ids_come_from_the_sender_else_the_relay() {
        let mut headers = Map::new();
        headers.insert("X-GitHub-Delivery".into(), json!("gh-123"));
        let r = WebhookRequest::decode(RawRequest {
            headers: headers.clone(),
            relay_event_id: Some("01RELAY".into()),
            ..RawRequest::default()
        });
        assert_eq!(r.delivery_id(), "gh-123");
        let r = WebhookRequest::decode(RawRequest {
            relay_event_id: Some("01RELAY".into()),
            ..RawRequest::default()
        });
        assert_eq!(r.delivery_id(), "01RELAY");
        assert_eq!(
            WebhookRequest::decode(RawRequest::default()).delivery_id(),
            ""
        );
    }
}
