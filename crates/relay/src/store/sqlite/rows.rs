use crate::store::delivery::ClaimRef;
use crate::store::delivery::Claimed;
use crate::store::error::StoreError;
use crate::store::event::Destination;
use crate::store::event::Event;
use crate::store::event::Payload;
use rusqlite::params;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The event in a row's columns from `at`: id, received_at, source, event_type, payload,
/// payload_kind, method, path, headers.
pub(super) fn event_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Event> {
    Ok(Event {
        id: r.get(at)?,
        received_at: r.get(at + 1)?,
        source: r.get(at + 2)?,
        event_type: r.get(at + 3)?,
        payload: Payload::from_columns(
            &r.get::<_, String>(at + 5)?,
            r.get(at + 4)?,
            r.get(at + 6)?,
            r.get(at + 7)?,
            r.get::<_, Option<String>>(at + 8)?.as_deref(),
        ),
    })
}

/// What [`Store::claim_lane`] was asked.
pub(super) struct LaneClaim {
    pub(super) leader: Claimed,
    pub(super) members: Vec<ClaimRef>,
    pub(super) batch_id: String,
    pub(super) limit: usize,
    pub(super) lease: Duration,
    pub(super) reply: oneshot::Sender<Result<Vec<Claimed>, StoreError>>,
}

/// Most inserts committed together.
pub(super) const MAX_BATCH: usize = 512;

/// The columns a claim reads: the delivery, then its event from column 4 on ([`event_at`]).
pub(super) const CLAIM_SELECT: &str =
    "SELECT d.id, d.destination, d.token, d.attempts, e.id, e.received_at,
        e.source, e.event_type, e.payload, e.payload_kind, e.method, e.path, e.headers
    FROM deliveries d JOIN events e ON e.id = d.event_id";

/// The deliveries a [`CLAIM_SELECT`] query finds, each with a new claim token; the deliveries
/// of one event share it.
pub(super) fn claim_rows(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Claimed>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut events: HashMap<String, Arc<Event>> = HashMap::new();
    let mut rows = stmt.query(params)?;
    let mut due = Vec::new();
    while let Some(r) = rows.next()? {
        let event_id: String = r.get(4)?;
        let event = match events.get(&event_id) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(event_at(r, 4)?);
                events.insert(event_id, e.clone());
                e
            }
        };
        due.push(Claimed {
            id: r.get::<_, i64>(0)?.to_string(),
            destination: Destination::from_columns(
                &r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.as_deref(),
            ),
            attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX.into()) as u32,
            event,
            claim: ulid::Ulid::generate().to_string(),
        });
    }
    Ok(due)
}

/// Marks claimed deliveries in flight under their claim tokens until `now + lease_ms`, naming
/// their batch when they have one.
pub(super) fn mark_claimed(
    tx: &rusqlite::Transaction<'_>,
    claimed: &[Claimed],
    batch_id: Option<&str>,
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<()> {
    let mut mark = tx.prepare_cached(
        "UPDATE deliveries SET state = 'inflight', claim = ?2, lease_until = ?3, updated_at = ?4,
             batch_id = coalesce(?5, batch_id)
         WHERE id = ?1",
    )?;
    for d in claimed {
        mark.execute(params![
            d.id,
            d.claim,
            now.saturating_add(lease_ms),
            now,
            batch_id
        ])?;
    }
    Ok(())
}
