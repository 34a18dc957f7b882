//! Several events in one dispatch: `client_payload.batch`, for a relay that batches events
//! waiting behind GitHub's dispatch rate limit (docs/design/store.md, "Batching").
//!
//! ```json
//! {"event_type": "invoice.paid",
//!  "client_payload": {"batch": [{"event_type": "invoice.paid", "path": "…", "method": "POST",
//!                                "headers": {…}, "body": "…", "id": "…", "received_at": "…",
//!                                "source": "stripe"}, …],
//!                     "batch_id": "…", "batch_size": 2}}
//! ```
//!
//! Each element is what [`ClientPayload`] makes of one event (plus its `event_type`), so each
//! keeps its own id, headers and exact bytes, and [`ClientPayload::decode`] reads it back: a
//! signature verifies per event. Three properties whatever the count, inside GitHub's ten.

use serde_json::{Map, Value};

use crate::dispatch::{check_event_type, check_limits, LimitError, MAX_REQUEST_BYTES};
use crate::payload::{ClientPayload, Incoming, Origin, PayloadBody, PayloadError, ShapeError};

/// The payload field holding the events.
pub const BATCH: &str = "batch";
/// The payload field naming the batch.
pub const BATCH_ID: &str = "batch_id";
/// The payload field counting its events.
pub const BATCH_SIZE: &str = "batch_size";
/// Each element's own event type.
pub const EVENT_TYPE: &str = "event_type";
/// The dispatch's `event_type` when the events' types differ.
pub const MIXED_EVENT_TYPE: &str = "batch";

/// One event to pack.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The request.
    pub request: &'a Incoming,
    /// Its event type.
    pub event_type: &'a str,
    /// Its id, receive time and source.
    pub origin: Origin<'a>,
}

/// A packed dispatch.
#[derive(Debug, Clone)]
pub struct Packed {
    /// The JSON body of `POST /repos/{o}/{r}/dispatches`.
    pub dispatch_body: Vec<u8>,
    /// How many of the items, from the first, it carries (at least one).
    pub count: usize,
}

/// Packs, in order, as many of `items` as fit one dispatch: at most `max_events`, and under
/// both GitHub's 64 KB and `max_bytes`. A body is carried as text (base64 when not UTF-8), or
/// gzip-compressed when only that fits. The first item must fit, or this fails as
/// [`ClientPayload::encode_request`] would for it alone.
pub fn pack(
    items: &[Item<'_>],
    batch_id: &str,
    max_events: usize,
    max_bytes: usize,
) -> Result<Packed, PayloadError> {
    let limit = max_bytes.min(MAX_REQUEST_BYTES);
    let mut elements: Vec<Value> = Vec::new();
    // Bytes of the elements, commas included.
    let mut used = 0usize;
    for item in items.iter().take(max_events.max(1)) {
        check_event_type(item.event_type).map_err(PayloadError::Limit)?;
        let overhead = envelope_bytes(items, batch_id, elements.len() + 1);
        let room = limit.saturating_sub(overhead + used + 1);
        let Some((value, bytes)) = element(item, room) else {
            break;
        };
        used += bytes + usize::from(!elements.is_empty());
        elements.push(value);
    }
    if elements.is_empty() {
        // Not even the first: the single event's own encoder says why.
        let first = items
            .first()
            .ok_or(PayloadError::Limit(LimitError::NotObject))?;
        ClientPayload::encode_request(first.request, first.event_type, first.origin)?;
        return Err(PayloadError::Limit(LimitError::TooLarge(limit)));
    }
    let count = elements.len();
    let event_type = common_type(&items[..count]);
    let mut payload = Map::new();
    payload.insert(BATCH.into(), Value::Array(elements));
    payload.insert(BATCH_ID.into(), Value::String(batch_id.into()));
    payload.insert(BATCH_SIZE.into(), Value::from(count));
    let dispatch_body =
        check_limits(event_type, &Value::Object(payload)).map_err(PayloadError::Limit)?;
    Ok(Packed {
        dispatch_body,
        count,
    })
}

/// The events of a payload that is a batch, each read as [`ClientPayload::decode`] reads one
/// event, with its own event type; `None` when the payload is not a batch.
pub fn unpack(
    payload: &Map<String, Value>,
) -> Option<Result<Vec<(String, ClientPayload)>, ShapeError>> {
    let Value::Array(list) = payload.get(BATCH)? else {
        return None;
    };
    Some(
        list.iter()
            .map(|v| {
                let Value::Object(mut m) = v.clone() else {
                    return Err(ShapeError::Field {
                        field: BATCH,
                        expected: "a list of event objects",
                        found: crate::payload::json_type_name(v),
                    });
                };
                let event_type = match m.remove(EVENT_TYPE) {
                    Some(Value::String(t)) => t,
                    _ => String::new(),
                };
                ClientPayload::decode(m).map(|p| (event_type, p))
            })
            .collect(),
    )
}

/// One event as a batch element, and its size: the body as text when it fits `room`, else
/// gzip-compressed when that fits; `None` when neither does.
fn element(item: &Item<'_>, room: usize) -> Option<(Value, usize)> {
    let mut payload = ClientPayload {
        path: Some(item.request.path.clone()),
        method: Some(item.request.method.clone()),
        headers: item.request.headers.clone(),
        body: if item.request.body.len() <= room {
            PayloadBody::carry(&item.request.body)
        } else {
            PayloadBody::None
        },
        id: Some(item.origin.id.into()),
        received_at: Some(item.origin.received_at.into()),
        source: Some(item.origin.source.into()),
    };
    let sized = |p: &ClientPayload| {
        let mut v = p.to_value();
        if let Value::Object(m) = &mut v {
            m.insert(EVENT_TYPE.into(), Value::String(item.event_type.into()));
        }
        let bytes = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
        (v, bytes)
    };
    // A body longer than the room cannot fit as it is; nor compressed past what base64 of the
    // room holds (compression stops there: a body of megabytes costs its first kilobytes).
    if item.request.body.len() <= room {
        let (value, bytes) = sized(&payload);
        if bytes <= room {
            return Some((value, bytes));
        }
    }
    let compressed = crate::payload::gzip_within(&item.request.body, room / 4 * 3).ok()?;
    payload.body = PayloadBody::gzipped(&compressed);
    let (value, bytes) = sized(&payload);
    (bytes <= room).then_some((value, bytes))
}

/// The dispatch's event type: the events' own when they share it, else [`MIXED_EVENT_TYPE`].
fn common_type<'a>(items: &[Item<'a>]) -> &'a str {
    match items.first() {
        Some(first) if items.iter().all(|i| i.event_type == first.event_type) => first.event_type,
        _ => MIXED_EVENT_TYPE,
    }
}

/// An upper bound of the bytes around the elements: the event type, the batch id and size.
fn envelope_bytes(items: &[Item<'_>], batch_id: &str, count: usize) -> usize {
    let longest_type = items
        .iter()
        .take(count)
        .map(|i| i.event_type.len() * 6)
        .max()
        .unwrap_or(0)
        .max(MIXED_EVENT_TYPE.len());
    // {"event_type":"…","client_payload":{"batch":[…],"batch_id":"…","batch_size":N}}
    64 + longest_type + batch_id.len() * 6 + 20
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ORIGIN: Origin<'static> = Origin {
        id: "01EVENT",
        received_at: "2026-11-29T00:00:00.000Z",
        source: "stripe",
    };

    fn request(body: &[u8]) -> Incoming {
        let mut headers = Map::new();
        headers.insert("content-type".into(), "application/json".into());
        Incoming {
            method: "POST".into(),
            path: "/stripe/webhook".into(),
            headers,
            body: body.to_vec(),
        }
    }

    /// An event read back: its type, exact body and id.
    type ReadBack = (String, Vec<u8>, Option<String>);

    fn read(packed: &Packed) -> (String, Vec<ReadBack>) {
        let v: Value = serde_json::from_slice(&packed.dispatch_body).expect("json");
        let Value::Object(payload) = v["client_payload"].clone() else {
            panic!("an object")
        };
        assert_eq!(payload[BATCH_SIZE], packed.count);
        let events = unpack(&payload).expect("a batch").expect("decodes");
        (
            v["event_type"].as_str().unwrap_or_default().to_string(),
            events
                .into_iter()
                .map(|(t, p)| {
                    let id = p.id.clone();
                    (t, p.body.unpack().expect("unpacks").unwrap_or_default(), id)
                })
                .collect(),
        )
    }

    #[test]
    fn packs_in_order_and_reads_back_each_event() {
        let bodies: Vec<Incoming> = [&b"{\"a\":1}"[..], &[0xff, 0x00, 0x01], b"x=1&y=2"]
            .iter()
            .map(|b| request(b))
            .collect();
        let ids = ["e1", "e2", "e3"];
        let items: Vec<Item<'_>> = bodies
            .iter()
            .zip(ids)
            .map(|(r, id)| Item {
                request: r,
                event_type: "invoice.paid",
                origin: Origin { id, ..ORIGIN },
            })
            .collect();
        let packed = pack(&items, "b1", 100, usize::MAX).expect("packs");
        assert_eq!(packed.count, 3);
        let (event_type, events) = read(&packed);
        assert_eq!(event_type, "invoice.paid");
        for ((t, body, id), (r, want)) in events.iter().zip(bodies.iter().zip(ids)) {
            assert_eq!(t, "invoice.paid");
            assert_eq!(body, &r.body, "exact bytes");
            assert_eq!(id.as_deref(), Some(want));
        }
        let two = pack(&items, "b1", 2, usize::MAX).expect("packs");
        assert_eq!(two.count, 2, "max_events");
        // Mixed types: the dispatch says `batch`, each event keeps its own.
        let mut mixed = items.clone();
        mixed[1].event_type = "customer.created";
        let (event_type, events) = read(&pack(&mixed, "b2", 100, usize::MAX).expect("packs"));
        assert_eq!(event_type, MIXED_EVENT_TYPE);
        assert_eq!(events[1].0, "customer.created");
        // A payload that is not a batch is not read as one.
        assert!(unpack(&Map::new()).is_none());
    }

    #[test]
    fn stops_before_githubs_limit_and_compresses_what_only_fits_so() {
        let big = request(&b"{\"padding\":\"0123456789abcdef\"},".repeat(1_000)); // 31 KB
        let items = vec![
            Item {
                request: &big,
                event_type: "push",
                origin: ORIGIN,
            };
            5
        ];
        let packed = pack(&items, "b", 100, usize::MAX).expect("packs");
        assert!(packed.dispatch_body.len() < MAX_REQUEST_BYTES);
        assert!(
            packed.count >= 2,
            "compressed, several fit: {}",
            packed.count
        );
        let (_, events) = read(&packed);
        assert!(events.iter().all(|(_, b, _)| *b == big.body));
        let small = pack(&items, "b", 100, 40_000).expect("packs");
        assert!(small.dispatch_body.len() < 40_000);
        // A first event that cannot fit even compressed is refused as it would be alone.
        let huge = request(&crate::payload::incompressible(200_000));
        let e = pack(
            &[Item {
                request: &huge,
                event_type: "push",
                origin: ORIGIN,
            }],
            "b",
            100,
            usize::MAX,
        )
        .map(|p| p.count)
        .unwrap_err();
        assert!(matches!(e, PayloadError::TooLarge { .. }), "{e}");
    }

    proptest! {
        // Each case gzips up to 240 KB: fewer cases than the default keep it to a few seconds.
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the bodies, a packed dispatch fits GitHub's limit and carries the first
        /// events in order, byte for byte.
        #[test]
        fn any_bodies_pack_within_the_limit_and_round_trip(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20_000), 1..12),
            max_events in 1usize..20,
        ) {
            let requests: Vec<Incoming> = bodies.iter().map(|b| request(b)).collect();
            let items: Vec<Item<'_>> = requests
                .iter()
                .map(|r| Item { request: r, event_type: "webhook", origin: ORIGIN })
                .collect();
            let packed = pack(&items, "b", max_events, usize::MAX).expect("the first fits");
            prop_assert!(packed.dispatch_body.len() < MAX_REQUEST_BYTES);
            prop_assert!(packed.count >= 1 && packed.count <= max_events.min(items.len()));
            let (_, events) = read(&packed);
            for ((_, body, _), r) in events.iter().zip(&requests) {
                prop_assert_eq!(body, &r.body);
            }
        }
    }
}
