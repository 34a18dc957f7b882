use crate::store::delivery::Claimed;
use crate::store::event::Destination;
use crate::store::event::Event;
use crate::store::event::Payload;
use std::sync::Arc;
use tokio_postgres::types::ToSql;

/// The event in a row's columns from `at`: id, received_at (ms), source, event_type, payload,
/// payload_kind, method, path, headers.
pub(super) fn event_at(r: &tokio_postgres::Row, at: usize) -> Event {
    Event {
        id: r.get(at),
        received_at: r.get(at + 1),
        source: r.get(at + 2),
        event_type: r.get(at + 3),
        payload: Payload::from_columns(
            r.get(at + 5),
            r.get(at + 4),
            r.get(at + 6),
            r.get(at + 7),
            r.get(at + 8),
        ),
    }
}

/// Events as the column arrays of one `unnest`: id, source, event type, payload, its size, its
/// kind, and the request's method, path and headers.
pub(super) struct EventColumns<'a> {
    pub(super) ids: Vec<&'a str>,
    sources: Vec<&'a str>,
    types: Vec<&'a str>,
    payloads: Vec<&'a [u8]>,
    sizes: Vec<i64>,
    kinds: Vec<&'static str>,
    methods: Vec<Option<&'a str>>,
    paths: Vec<Option<&'a str>>,
    pub(super) headers: Vec<Option<String>>,
}

impl<'a> EventColumns<'a> {
    /// The arrays as statement parameters, in field order ($1 … $9 when first).
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.ids,
            &self.sources,
            &self.types,
            &self.payloads,
            &self.sizes,
            &self.kinds,
            &self.methods,
            &self.paths,
            &self.headers,
        ]
    }

    pub(super) fn of(events: impl Iterator<Item = &'a Event>) -> EventColumns<'a> {
        let mut c = EventColumns {
            ids: Vec::new(),
            sources: Vec::new(),
            types: Vec::new(),
            payloads: Vec::new(),
            sizes: Vec::new(),
            kinds: Vec::new(),
            methods: Vec::new(),
            paths: Vec::new(),
            headers: Vec::new(),
        };
        for e in events {
            let (kind, bytes, method, path, headers) = e.payload.columns();
            c.ids.push(&e.id);
            c.sources.push(&e.source);
            c.types.push(&e.event_type);
            c.payloads.push(bytes);
            c.sizes.push(bytes.len() as i64);
            c.kinds.push(kind);
            c.methods.push(method);
            c.paths.push(path);
            c.headers.push(headers);
        }
        c
    }
}

/// Deliveries as the column arrays of one `unnest`: event id, destination, lane, credential.
pub(super) struct DeliveryColumns<'a> {
    event_ids: Vec<&'a str>,
    pub(super) destinations: Vec<String>,
    pub(super) lanes: Vec<String>,
    pub(super) tokens: Vec<Option<String>>,
}

impl<'a> DeliveryColumns<'a> {
    /// The arrays as statement parameters: event ids, destinations, lanes, credentials.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [
            &self.event_ids,
            &self.destinations,
            &self.lanes,
            &self.tokens,
        ]
    }

    pub(super) fn of(
        deliveries: impl Iterator<Item = (&'a str, &'a Destination)>,
    ) -> DeliveryColumns<'a> {
        let mut c = DeliveryColumns {
            event_ids: Vec::new(),
            destinations: Vec::new(),
            lanes: Vec::new(),
            tokens: Vec::new(),
        };
        for (id, d) in deliveries {
            c.event_ids.push(id);
            c.destinations.push(d.key());
            c.lanes.push(d.lane());
            c.tokens.push(d.token_column());
        }
        c
    }
}

/// Claimed deliveries from the rows a claim returns (the delivery's columns, its `next_at` at
/// 5, its event from 6 on), in the order they were due; the deliveries of one event share it.
pub(super) fn claimed_rows(rows: Vec<tokio_postgres::Row>) -> Vec<Claimed> {
    let mut events: std::collections::HashMap<String, Arc<Event>> = Default::default();
    let mut claimed: Vec<(std::time::SystemTime, i64, Claimed)> = rows
        .into_iter()
        .map(|r| {
            let id: i64 = r.get(0);
            let event_id: String = r.get(6);
            let event = events
                .entry(event_id)
                .or_insert_with(|| Arc::new(event_at(&r, 6)))
                .clone();
            (
                r.get::<_, std::time::SystemTime>(5),
                id,
                Claimed {
                    id: id.to_string(),
                    destination: Destination::from_columns(r.get(1), r.get(2)),
                    event,
                    attempts: r.get::<_, i32>(3).max(0) as u32,
                    claim: r.get(4),
                },
            )
        })
        .collect();
    claimed.sort_by_key(|c| (c.0, c.1));
    claimed.into_iter().map(|(_, _, c)| c).collect()
}

/// What a claim returns: the delivery's columns, its `next_at` at 5, its event from 6 on
/// ([`claimed_rows`] reads them).
pub(super) const CLAIM_RETURNING: &str = "WHERE d.id = c.id AND e.id = d.event_id
    RETURNING d.id, d.destination, d.token, d.attempts, d.claim::text, d.next_at,
        e.id, (extract(epoch FROM e.received_at) * 1000)::int8, e.source,
        e.event_type, e.payload, e.payload_kind, e.method, e.path, e.headers";
