//! The GitHub event a workflow run was started by, and the webhook request inside its
//! `client_payload` (DESIGN §2).
//!
//! Four shapes are read, so the same loader serves `run` and `replay`:
//! a full event as in `$GITHUB_EVENT_PATH` (`{"action", "client_payload", ...}`), the dispatch
//! request a relay sends (`{"event_type", "client_payload"}`), actionsflow's test wrapper
//! `{"event_name", "event"}`, and a bare `client_payload` (`{"path", "method", "headers", "body"}`). Turning the payload into a request is
//! [`crate::request`]'s job.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use hookflow_protocol::payload::{
    json_type_name, BodyError, ClientPayload, PayloadBody, ShapeError, MAX_DECODED_BODY,
};

use crate::request::{RawBody, RawRequest, WebhookRequest};

pub use hookflow_protocol::dispatch::{REPOSITORY_DISPATCH, WEBHOOK_EVENT_TYPE};

/// A problem with an event file or its payload.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The file could not be read.
    #[error("cannot read event file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}:{line}:{column}: event file is not valid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A field has the wrong type.
    #[error("{path}: `{json_path}` must be {expected}, found {found}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// Where in the JSON (`$.client_payload.headers`).
        json_path: String,
        /// What was expected.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// `body_encoding` names an encoding the runtime does not know.
    #[error("{path}: `{json_path}` is {found:?}; expected \"base64\" or \"gzip+base64\"")]
    UnknownEncoding {
        /// The file.
        path: PathBuf,
        /// Where in the JSON (`$.client_payload.body_encoding`).
        json_path: String,
        /// The value found.
        found: String,
    },
    /// `body_ref` is malformed, or cannot be followed here.
    #[error("{path}: `{json_path}`: {cause}")]
    BodyRef {
        /// The file.
        path: PathBuf,
        /// Where in the JSON.
        json_path: String,
        /// Why.
        cause: String,
    },
    /// The body by reference could not be fetched or is not the one named.
    #[error("{path}: {cause}")]
    Fetch {
        /// The file.
        path: PathBuf,
        /// Why (names the URL without its signature).
        cause: crate::remote::FetchError,
    },
    /// The body could not be unpacked.
    #[error("{path}: {cause}")]
    Body {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: BodyError,
    },
}

/// A GitHub event, reduced to what the runtime needs.
#[derive(Debug, Clone)]
pub struct Event {
    /// `$GITHUB_EVENT_NAME` (`repository_dispatch`, `push`, …).
    pub name: String,
    /// For `repository_dispatch`, the `action` (the dispatch's `event_type`).
    pub event_type: Option<String>,
    /// The decoded request, for a `repository_dispatch` whose payload carries one.
    pub request: Option<WebhookRequest>,
    /// Why a payload of another event type was not read as a request (a notice, not an error).
    pub payload_notice: Option<String>,
    /// The events of a batched dispatch (`client_payload.batch`), when the payload is one; then
    /// `request` is `None`.
    pub batch: Option<Batch>,
}

/// The events a relay sent together in one dispatch ([`hookflow_protocol::batch`]).
#[derive(Debug, Clone)]
pub struct Batch {
    /// `client_payload.batch_id`.
    pub id: Option<String>,
    /// The events, in the order the relay received them.
    pub events: Vec<BatchEvent>,
}

/// One event of a batch.
#[derive(Debug, Clone)]
pub struct BatchEvent {
    /// Its own event type (the element's `event_type`, else the dispatch's).
    pub event_type: String,
    /// The hookflow relay's id of the event (the element's `id`).
    pub relay_event_id: Option<String>,
    /// The decoded request, or why the element is not one: a malformed element is that event's
    /// failure, not its neighbours'.
    pub request: Result<WebhookRequest, String>,
}

impl Event {
    /// Whether this is a dispatched event at all.
    pub fn is_dispatch(&self) -> bool {
        self.name == REPOSITORY_DISPATCH
    }
}

/// How an event's bodies are read.
#[derive(Clone, Copy)]
pub struct Reading<'a> {
    /// The largest decoded body (after base64 and gzip), for a batch all its bodies together
    /// (`--max-body-bytes`).
    pub max_body_bytes: u64,
    /// Fetches a body the relay keeps (`body_ref`); without one such a body is an error.
    pub fetcher: Option<&'a crate::remote::Fetcher>,
}

impl Default for Reading<'_> {
    fn default() -> Self {
        Reading {
            max_body_bytes: MAX_DECODED_BODY,
            fetcher: None,
        }
    }
}

/// Reads an event file. `event_name` is `$GITHUB_EVENT_NAME`; when `None` the name comes from an
/// actionsflow wrapper, else `repository_dispatch` is assumed (fixtures, bare payloads).
pub fn load_event(path: &Path, event_name: Option<&str>) -> Result<Event, EventError> {
    load_event_limited(path, event_name, &Reading::default())
}

/// [`load_event`] with a limit on the decoded body's bytes and a way to fetch bodies by
/// reference.
pub fn load_event_limited(
    path: &Path,
    event_name: Option<&str>,
    reading: &Reading<'_>,
) -> Result<Event, EventError> {
    let text = std::fs::read(path).map_err(|cause| EventError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let value: Value = serde_json::from_slice(&text).map_err(|e| EventError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    decode_event_limited(value, event_name, path, reading)
}

/// Decodes an event already parsed as JSON; `path` is only used in messages.
pub fn decode_event(
    value: Value,
    event_name: Option<&str>,
    path: &Path,
) -> Result<Event, EventError> {
    decode_event_limited(value, event_name, path, &Reading::default())
}

/// [`decode_event`] with [`Reading`] settings.
pub fn decode_event_limited(
    value: Value,
    event_name: Option<&str>,
    path: &Path,
    reading: &Reading<'_>,
) -> Result<Event, EventError> {
    let shape = |json_path: &str, expected: &'static str, found: &Value| EventError::Shape {
        path: path.to_path_buf(),
        json_path: json_path.to_string(),
        expected,
        found: json_type_name(found),
    };
    let Value::Object(mut root) = value else {
        return Err(shape(
            "$",
            "a JSON object (a GitHub event or a client_payload)",
            &value,
        ));
    };

    // actionsflow's `{"event_name": ..., "event": {...}}`.
    let mut prefix = "$";
    let mut name = event_name.map(str::to_string);
    if root.contains_key("event") && root.get("event_name").is_some_and(Value::is_string) {
        let wrapped_name = root
            .get("event_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        name = name.or(wrapped_name);
        match root.remove("event") {
            Some(Value::Object(inner)) => root = inner,
            Some(other) => return Err(shape("$.event", "an object", &other)),
            None => {}
        }
        prefix = "$.event";
    }
    let name = name.unwrap_or_else(|| REPOSITORY_DISPATCH.to_string());

    // A bare client_payload: no `client_payload` key but request fields at the top.
    let is_bare = !root.contains_key("client_payload")
        && !root.contains_key("action")
        && ["path", "method", "headers", "body"]
            .iter()
            .any(|k| root.contains_key(*k));

    if name != REPOSITORY_DISPATCH {
        return Ok(Event {
            name,
            event_type: None,
            request: None,
            payload_notice: None,
            batch: None,
        });
    }

    let (event_type, payload, payload_path) = if is_bare {
        (
            WEBHOOK_EVENT_TYPE.to_string(),
            Some(Value::Object(root)),
            prefix.to_string(),
        )
    } else {
        // A full event names its type `action`; the dispatch request a relay sends (what people
        // capture from a relay's log or the dispatches API) names it `event_type`.
        let type_key = if !root.contains_key("action") && root.contains_key("event_type") {
            "event_type"
        } else {
            "action"
        };
        let event_type = match root.get(type_key) {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(other) => return Err(shape(&format!("{prefix}.{type_key}"), "a string", other)),
        };
        (
            event_type,
            root.remove("client_payload"),
            format!("{prefix}.client_payload"),
        )
    };

    let decoded = match payload {
        Some(Value::Object(map)) if map.contains_key(hookflow_protocol::batch::BATCH) => {
            let batch = decode_batch(map, &event_type, &payload_path, path, reading)?;
            return Ok(Event {
                name,
                event_type: Some(event_type),
                request: None,
                payload_notice: None,
                batch: Some(batch),
            });
        }
        None | Some(Value::Null) => Ok(RawRequest::default()),
        Some(Value::Object(map)) => raw_request(map, &payload_path, path, reading),
        Some(other) => Err(shape(&payload_path, "an object", &other)),
    };
    let (request, payload_notice) = match decoded {
        Ok(raw) => (Some(WebhookRequest::decode(raw)), None),
        // Other senders use their own payloads; only a webhook's payload must be a request.
        Err(e) if event_type != WEBHOOK_EVENT_TYPE => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(Event {
        name,
        event_type: Some(event_type),
        request,
        payload_notice,
        batch: None,
    })
}

/// The events of a batched payload. `max_body_bytes` bounds the decoded bodies of all the
/// events together, so a batch of compressed bodies cannot take more memory than one event may.
fn decode_batch(
    mut map: Map<String, Value>,
    dispatch_type: &str,
    at: &str,
    file: &Path,
    reading: &Reading<'_>,
) -> Result<Batch, EventError> {
    let max_body_bytes = reading.max_body_bytes;
    use hookflow_protocol::batch::{BATCH, BATCH_ID, EVENT_TYPE};
    let id = match map.remove(BATCH_ID) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let list = match map.remove(BATCH) {
        Some(Value::Array(list)) => list,
        other => {
            return Err(EventError::Shape {
                path: file.to_path_buf(),
                json_path: format!("{at}.{BATCH}"),
                expected: "a list of event objects",
                found: json_type_name(other.as_ref().unwrap_or(&Value::Null)),
            })
        }
    };
    let mut budget = max_body_bytes;
    let events = list
        .into_iter()
        .enumerate()
        .map(|(i, element)| {
            let at = format!("{at}.{BATCH}[{i}]");
            let Value::Object(mut element) = element else {
                return BatchEvent {
                    event_type: dispatch_type.to_string(),
                    relay_event_id: None,
                    request: Err(format!(
                        "{}: `{at}` must be an event object, found {}",
                        file.display(),
                        json_type_name(&element)
                    )),
                };
            };
            let event_type = match element.remove(EVENT_TYPE) {
                Some(Value::String(t)) if !t.is_empty() => t,
                _ => dispatch_type.to_string(),
            };
            let relay_event_id = element.get("id").and_then(Value::as_str).map(str::to_string);
            let limited = Reading {
                max_body_bytes: budget,
                ..*reading
            };
            let request = raw_request(element, &at, file, &limited)
                .map(|raw| {
                    if let RawBody::Bytes(b) = &raw.body {
                        budget = budget.saturating_sub(b.len() as u64);
                    }
                    WebhookRequest::decode(raw)
                })
                .map_err(|e| match e {
                    EventError::Body {
                        cause: BodyError::TooLarge { .. },
                        ..
                    } => format!(
                        "{}: `{at}.body` is larger than what is left of the batch's {max_body_bytes}-byte body limit (--max-body-bytes bounds all the events of a batch together)",
                        file.display()
                    ),
                    EventError::Body { cause, .. } => {
                        format!("{}: in `{at}`: {cause}", file.display())
                    }
                    other => other.to_string(),
                });
            BatchEvent {
                event_type,
                relay_event_id,
                request,
            }
        })
        .collect();
    Ok(Batch { id, events })
}

fn raw_request(
    map: Map<String, Value>,
    at: &str,
    file: &Path,
    reading: &Reading<'_>,
) -> Result<RawRequest, EventError> {
    let max_body_bytes = reading.max_body_bytes;
    let payload = ClientPayload::decode(map).map_err(|e| match e {
        ShapeError::Field {
            field,
            expected,
            found,
        } => EventError::Shape {
            path: file.to_path_buf(),
            json_path: format!("{at}.{field}"),
            expected,
            found,
        },
        ShapeError::UnknownEncoding(found) => EventError::UnknownEncoding {
            path: file.to_path_buf(),
            json_path: format!("{at}.body_encoding"),
            found,
        },
        ShapeError::Ref(cause) => EventError::BodyRef {
            path: file.to_path_buf(),
            json_path: format!("{at}.body_ref"),
            cause: cause.to_string(),
        },
    })?;
    let body = match payload.body {
        // actionsflow drops falsy bodies: absent, null, "", false, 0.
        PayloadBody::None | PayloadBody::Json(Value::Bool(false)) => RawBody::None,
        PayloadBody::Text { ref text, .. } if text.is_empty() => RawBody::None,
        PayloadBody::Json(Value::Number(n)) if n.as_f64() == Some(0.0) => RawBody::None,
        PayloadBody::Json(other) => RawBody::Json(other),
        PayloadBody::Ref(r) => {
            let Some(fetcher) = reading.fetcher else {
                return Err(EventError::BodyRef {
                    path: file.to_path_buf(),
                    json_path: format!("{at}.body_ref"),
                    cause: format!(
                        "the body is at {}, and this command does not fetch bodies; run `hookflow run`",
                        r.display_url()
                    ),
                });
            };
            match fetcher.fetch(&r, max_body_bytes) {
                Ok(bytes) if bytes.is_empty() => RawBody::None,
                Ok(bytes) => RawBody::Bytes(bytes),
                Err(cause) => {
                    return Err(EventError::Fetch {
                        path: file.to_path_buf(),
                        cause,
                    })
                }
            }
        }
        text @ PayloadBody::Text { .. } => match text.unpack_limited(max_body_bytes) {
            Ok(Some(bytes)) if !bytes.is_empty() => RawBody::Bytes(bytes),
            Ok(_) => RawBody::None,
            Err(cause) => {
                return Err(EventError::Body {
                    path: file.to_path_buf(),
                    cause,
                })
            }
        },
    };
    Ok(RawRequest {
        path: payload.path,
        method: payload.method,
        headers: payload.headers,
        body,
        relay_event_id: payload.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(v: Value, name: Option<&str>) -> Result<Event, EventError> {
        decode_event(v, name, Path::new("event.json"))
    }

    #[test]
    fn full_event() {
        let e = decode(
            json!({"action": "webhook", "client_payload": {"path": "/a/webhook", "method": "POST", "headers": {"X-A": "1"}, "body": "{\"k\":1}"}}),
            Some("repository_dispatch"),
        )
        .expect("decodes");
        let r = e.request.expect("request");
        assert_eq!(e.event_type.as_deref(), Some("webhook"));
        assert_eq!(r.method, "post");
        assert_eq!(r.headers.get("x-a"), Some(&json!("1")));
        assert_eq!(r.body, Some(json!({"k": 1})));
        assert_eq!(r.raw_body.as_deref(), Some(&b"{\"k\":1}"[..]));
    }

    #[test]
    fn wrapper_and_bare_payload() {
        let e = decode(
            json!({"event_name": "push", "event": {"ref": "main"}}),
            None,
        )
        .expect("decodes");
        assert_eq!(e.name, "push");
        assert!(e.request.is_none());
        let e = decode(json!({"path": "/x/webhook", "body": {"a": 1}}), None).expect("decodes");
        assert_eq!(e.event_type.as_deref(), Some("webhook"));
        assert_eq!(e.request.expect("request").body, Some(json!({"a": 1})));
    }

    #[test]
    fn wrong_shapes_name_the_field() {
        let err = decode(
            json!({"action": "webhook", "client_payload": {"headers": ["a"]}}),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event.json: `$.client_payload.headers` must be an object of header names to values, found an array"
        );
        let err = decode(json!({"action": "webhook", "client_payload": "x"}), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("`$.client_payload` must be an object"),
            "{err}"
        );
        let err = decode(json!([1]), None).unwrap_err();
        assert!(
            err.to_string().contains("`$` must be a JSON object"),
            "{err}"
        );
        let err = decode(
            json!({"action": "webhook", "client_payload": {"body": "x", "body_encoding": "rot13"}}),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("rot13"), "{err}");
    }

    #[test]
    fn other_event_types_tolerate_foreign_payloads() {
        let e = decode(
            json!({"action": "deploy", "client_payload": {"headers": 3}}),
            None,
        )
        .expect("decodes");
        assert_eq!(e.event_type.as_deref(), Some("deploy"));
        assert!(e.request.is_none());
        assert!(e.payload_notice.is_some());
    }

    #[test]
    fn a_captured_dispatch_request_is_an_event() {
        let e = decode(
            json!({"event_type": "order.paid", "client_payload": {"path": "/shop/webhook", "body": "{}"}}),
            None,
        )
        .expect("decodes");
        assert_eq!(e.event_type.as_deref(), Some("order.paid"));
        assert_eq!(e.request.expect("request").origin_path, "/shop/webhook");
    }
}
