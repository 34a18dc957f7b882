//! What each destination is sent: the request as received, or a `transform`'s JSON projection
//! of its body; for a repository, the dispatch body (inline, gzip-compressed, or by reference).
//! The destinations themselves, as configured, are [`crate::config`]'s.
//!
//! The accept path uses this to pick an event's destinations (and to refuse, before storing, a
//! dispatch GitHub would refuse); the delivery workers use it to build what they send, from the
//! stored event, with the same code.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::bodies::{Bodies, Keep};
use crate::config::{DestinationConfig, RelayConfig, Transform, TransformError};
use crate::store::{Event, Payload, Request};
use hookflow_protocol::payload::{ClientPayload, Origin, PayloadError};
use hookflow_protocol::signature::{Scheme, SIGNATURE_HEADERS};

/// What one destination is sent of a request: the request itself, or with a transform, its
/// projection as `application/json` without the sender's signature headers (they signed other
/// bytes). `verify_header` is the endpoint's own signature header, when it has a custom one.
pub fn outgoing<'a>(
    request: &'a Request,
    transform: Option<&Transform>,
    verify_header: Option<&str>,
) -> Result<Cow<'a, Request>, TransformError> {
    let Some(t) = transform else {
        return Ok(Cow::Borrowed(request));
    };
    let body = t.apply(&request.body)?;
    let mut headers: Map<String, Value> = request
        .headers
        .iter()
        .filter(|(k, _)| {
            !SIGNATURE_HEADERS.contains(&k.as_str())
                && verify_header.is_none_or(|h| !h.eq_ignore_ascii_case(k))
                && k.as_str() != "content-length"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.insert("content-type".into(), "application/json".into());
    Ok(Cow::Owned(Request {
        method: request.method.clone(),
        path: request.path.clone(),
        headers,
        body,
    }))
}

/// What a repository destination is sent: the dispatch body, and the body to keep before it
/// is sent when it names the body by reference.
#[derive(Debug, Clone)]
pub struct Dispatch {
    /// The JSON body of `POST /repos/{o}/{r}/dispatches`.
    pub body: Vec<u8>,
    /// Set when the request's body goes by reference: keep it first.
    pub keep: Option<Keep>,
}

/// The dispatch GitHub receives for `request` of `event` at `now_ms`: the body inline (as it
/// is, or gzip-compressed) when that fits GitHub's limits, else by reference when `bodies` is
/// configured; refused when neither fits (the accept path refuses those with 413 and never
/// stores them).
pub fn dispatch_body(
    event: &Event,
    request: &Request,
    bodies: Option<&Bodies>,
    now_ms: i64,
) -> Result<Dispatch, PayloadError> {
    let received_at = rfc3339(event.received_at);
    let origin = Origin {
        id: &event.id,
        received_at: &received_at,
        source: &event.source,
    };
    match (
        ClientPayload::encode_request(request, &event.event_type, origin),
        bodies,
    ) {
        (Ok(p), _) => Ok(Dispatch {
            body: p.dispatch_body,
            keep: None,
        }),
        (Err(PayloadError::TooLarge { .. }), Some(bodies)) => {
            let id = Bodies::id(event, request);
            let (reference, keep) = bodies.reference(&id, &request.body, now_ms);
            let body =
                ClientPayload::encode_referenced(request, &event.event_type, origin, &reference)?;
            Ok(Dispatch {
                body,
                keep: Some(keep),
            })
        }
        (Err(e), _) => Err(e),
    }
}

/// Checks that the dispatch of `request` of `event` fits GitHub's limits (by reference when
/// `bodies` is configured), building it only when the cheap bound
/// ([`ClientPayload::surely_fits`]) cannot tell: the accept path's 413. A body that will go by
/// reference is measured with a stand-in reference, not hashed.
pub fn check_dispatch(
    event: &Event,
    request: &Request,
    bodies: Option<&Bodies>,
) -> Result<(), PayloadError> {
    let received_at = rfc3339(event.received_at);
    let origin = Origin {
        id: &event.id,
        received_at: &received_at,
        source: &event.source,
    };
    if ClientPayload::surely_fits(request, &event.event_type, origin) {
        return Ok(());
    }
    match (
        ClientPayload::encode_request(request, &event.event_type, origin),
        bodies,
    ) {
        (Ok(_), _) => Ok(()),
        (Err(PayloadError::TooLarge { .. }), Some(bodies)) => {
            let id = Bodies::id(event, request);
            let stand_in = bodies.stand_in(&id, request.body.len(), event.received_at);
            ClientPayload::encode_referenced(request, &event.event_type, origin, &stand_in)
                .map(|_| ())
        }
        (Err(e), _) => Err(e),
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The configured destinations, by endpoint and key: what a delivery worker looks up to send
/// a stored event (an HTTP destination's secret and headers, a transform).
#[derive(Debug, Default)]
pub struct Destinations {
    by_key: HashMap<(String, String), DestinationConfig>,
    verify_headers: HashMap<String, String>,
}

impl Destinations {
    /// The table of a configuration.
    pub fn of(config: &RelayConfig) -> Destinations {
        let mut table = Destinations::default();
        for ep in &config.endpoints {
            for d in &ep.destinations {
                table.by_key.insert((ep.slug.clone(), d.key()), d.clone());
            }
            if let Some(Scheme::Custom(c)) = ep.verify.as_ref().map(|v| &v.scheme) {
                table
                    .verify_headers
                    .insert(ep.slug.clone(), c.header.clone());
            }
        }
        table
    }

    /// The destination `key` of endpoint `slug`, if configured.
    pub fn get(&self, slug: &str, key: &str) -> Option<&DestinationConfig> {
        self.by_key.get(&(slug.to_string(), key.to_string()))
    }

    /// What `destination` is sent of `event`: for a repository, the dispatch body; for HTTP,
    /// the request. `None` config: sent as stored (the compatible route, or an endpoint no
    /// longer configured for a repository).
    pub fn build<'a>(
        &self,
        event: &'a Event,
        config: Option<&DestinationConfig>,
    ) -> Result<Cow<'a, Request>, TransformError> {
        match &event.payload {
            Payload::Request(r) => outgoing(
                r,
                config.and_then(|c| c.transform.as_ref()),
                self.verify_headers.get(&event.source).map(String::as_str),
            ),
            // An old event's dispatch body stands for itself.
            Payload::Dispatch(b) => Ok(Cow::Owned(Request {
                method: String::new(),
                path: String::new(),
                headers: Map::new(),
                body: b.clone(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_project_and_drop_signatures() {
        let t = Transform::parse(&[
            ("id".into(), "$.id".into()),
            ("amount".into(), "$.data.object.amount".into()),
            ("lines".into(), "$.data.lines[*].id".into()),
            ("absent".into(), "$.nope".into()),
        ])
        .expect("parses");
        let mut headers = Map::new();
        for (k, v) in [
            ("content-type", "application/json; charset=utf-8"),
            ("stripe-signature", "t=1,v1=abc"),
            ("x-custom-sig", "zzz"),
            ("user-agent", "Stripe/1.0"),
        ] {
            headers.insert(k.into(), v.into());
        }
        let request = Request {
            method: "POST".into(),
            path: "/stripe/webhook".into(),
            headers,
            body: br#"{"id":"evt_1","data":{"object":{"amount":42},"lines":[{"id":"l1"},{"id":"l2"}]}}"#.to_vec(),
        };
        let out = outgoing(&request, Some(&t), Some("X-Custom-Sig")).expect("applies");
        let body: Value = serde_json::from_slice(&out.body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"id": "evt_1", "amount": 42, "lines": ["l1", "l2"], "absent": null})
        );
        assert_eq!(out.headers["content-type"], "application/json");
        assert!(!out.headers.contains_key("stripe-signature"));
        assert!(!out.headers.contains_key("x-custom-sig"));
        assert_eq!(out.headers["user-agent"], "Stripe/1.0");
        // Without a transform, the request goes as received.
        assert_eq!(*outgoing(&request, None, None).expect("as is"), request);
        let not_json = Request {
            body: b"a=1&b=2".to_vec(),
            ..request
        };
        let e = outgoing(&not_json, Some(&t), None).unwrap_err();
        assert!(e.to_string().contains("not JSON"), "{e}");
        let e = Transform::parse(&[("x".into(), "$.[".into())]).unwrap_err();
        assert!(e.to_string().contains("transform field `x`"), "{e}");
        assert_eq!(Transform::parse(&[]).unwrap_err(), TransformError::Empty);
    }
}
