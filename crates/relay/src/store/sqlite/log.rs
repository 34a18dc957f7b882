use super::dir::unavailable;
use super::open::SqliteStore;
use super::rows::event_at;
use crate::store::delivery::DeliveryStatus;
use crate::store::error::StoreError;
use crate::store::log::split_replay_ids;
use crate::store::log::EventFilter;
use crate::store::log::EventSummary;
use crate::store::log::LoggedAttempt;
use crate::store::log::LoggedDelivery;
use crate::store::log::LoggedEvent;
use crate::store::log::MAX_PAGE;
use rusqlite::params;
use rusqlite::OptionalExtension;

/// The event log (docs/design/event-log.md): lists, one event whole, replays.
impl SqliteStore {
    /// The newest events that pass `filter` (see [`Store::list_events`]). A filter on the
    /// deliveries (status, destination) reads them through their index in event order; any
    /// other reads the events by id, newest first; either stops at `limit` events.
    pub fn list_events(
        &mut self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let limit = limit.clamp(1, MAX_PAGE);
        let by_delivery = filter.status.is_some() || filter.destination.is_some();
        let id = if by_delivery { "d.event_id" } else { "e.id" };
        let f = crate::store::log::filter_sql(filter, id, |n| format!("?{n}"), "instr");
        let conds: Vec<String> = f.events.iter().chain(&f.deliveries).cloned().collect();
        let filters = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let from = if by_delivery {
            "deliveries d JOIN events e ON e.id = d.event_id"
        } else {
            "events e"
        };
        let sql = format!(
            "SELECT e.id, e.received_at, e.source, e.event_type, coalesce(e.method, ''),
                    coalesce(e.path, ''), e.delivery_key
             FROM {from} {filters} ORDER BY {id} DESC"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(fail)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(&f.params))
            .map_err(fail)?;
        let mut out: Vec<EventSummary> = Vec::new();
        // Rows come in event order: an event with several matching deliveries repeats.
        while let Some(r) = rows.next().map_err(fail)? {
            let id: String = r.get(0).map_err(fail)?;
            if out.last().is_some_and(|e| e.id == id) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(EventSummary {
                id,
                received_at: r.get(1).map_err(fail)?,
                source: r.get(2).map_err(fail)?,
                event_type: r.get(3).map_err(fail)?,
                method: r.get(4).map_err(fail)?,
                path: r.get(5).map_err(fail)?,
                delivery_key: r.get(6).map_err(fail)?,
                deliveries: Vec::new(),
            });
        }
        drop(rows);
        drop(stmt);
        for e in &mut out {
            e.deliveries = self.deliveries_of(&e.id)?;
        }
        Ok(out)
    }

    /// The deliveries of an event, in the order they were made (without their attempts).
    fn deliveries_of(&mut self, event_id: &str) -> Result<Vec<LoggedDelivery>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, destination, state, attempts, chain, last_status, last_error,
                        CASE WHEN state = 'pending' THEN next_at ELSE updated_at END
                 FROM deliveries WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(fail)?;
        let rows = stmt
            .query_map(params![event_id], |r| {
                Ok(LoggedDelivery {
                    id: r.get::<_, i64>(0)?.to_string(),
                    destination: r.get(1)?,
                    status: DeliveryStatus::parse(&r.get::<_, String>(2)?)
                        .unwrap_or(DeliveryStatus::Pending),
                    attempts: r.get::<_, i64>(3)?.clamp(0, u32::MAX.into()) as u32,
                    chain: r.get::<_, i64>(4)?.clamp(0, u32::MAX.into()) as u32,
                    last_status: r
                        .get::<_, Option<i64>>(5)?
                        .and_then(|s| u16::try_from(s).ok()),
                    last_error: r.get(6)?,
                    next_at: r.get(7)?,
                    tries: Vec::new(),
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)
    }

    /// One event of the log, whole (see [`Store::logged_event`]).
    pub fn logged_event(&mut self, id: &str) -> Result<Option<LoggedEvent>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let found = self
            .conn
            .query_row(
                "SELECT id, received_at, source, event_type, payload, payload_kind, method, path,
                        headers, delivery_key, body_pruned
                 FROM events WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        event_at(r, 0)?,
                        r.get::<_, Option<String>>(9)?,
                        r.get::<_, bool>(10)?,
                    ))
                },
            )
            .optional()
            .map_err(fail)?;
        let Some((event, delivery_key, body_pruned)) = found else {
            return Ok(None);
        };
        let mut deliveries = self.deliveries_of(id)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT delivery_id, chain, at, took_ms, status, outcome, message, relay, batch_id
                 FROM attempts WHERE event_id = ?1 ORDER BY id",
            )
            .map_err(fail)?;
        let tries = stmt
            .query_map(params![id], |r| {
                Ok((
                    r.get::<_, i64>(0)?.to_string(),
                    LoggedAttempt {
                        chain: r.get::<_, i64>(1)?.clamp(0, u32::MAX.into()) as u32,
                        at: r.get(2)?,
                        took_ms: r
                            .get::<_, Option<i64>>(3)?
                            .map(|t| t.clamp(0, u32::MAX.into()) as u32),
                        status: r
                            .get::<_, Option<i64>>(4)?
                            .and_then(|s| u16::try_from(s).ok()),
                        outcome: r.get(5)?,
                        message: r.get(6)?,
                        relay: r.get(7)?,
                        batch_id: r.get(8)?,
                    },
                ))
            })
            .map_err(fail)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        for (delivery, attempt) in tries {
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery) {
                d.tries.push(attempt);
            }
        }
        Ok(Some(crate::store::log::logged(
            event,
            delivery_key,
            body_pruned,
            deliveries,
        )))
    }

    /// Replays delivered and dead deliveries as new attempt chains (see [`Store::replay`]).
    pub fn replay(
        &mut self,
        ids: &[String],
        filter: &EventFilter,
        limit: usize,
        now: i64,
    ) -> Result<u64, StoreError> {
        let listed: Vec<String> = if ids.is_empty() {
            self.list_events(filter, limit)?
                .into_iter()
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, chain = chain + 1,
                       next_at = ?1, updated_at = ?1, claim = NULL, deferred_for = NULL
                   WHERE state IN ('delivered', 'dead')
                     AND NOT EXISTS (SELECT 1 FROM events e
                                     WHERE e.id = deliveries.event_id AND e.body_pruned = 1)";
        let (by_delivery, by_event) = split_replay_ids(ids);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        for id in by_delivery {
            n += tx
                .execute(&format!("{sql} AND id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        for id in by_event.iter().chain(&listed) {
            n += tx
                .execute(&format!("{sql} AND event_id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }
}
