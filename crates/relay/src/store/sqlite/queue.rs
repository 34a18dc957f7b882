use super::dir::unavailable;
use super::open::now_unix_ms;
use super::open::SqliteStore;
use super::open::REAP_EVERY_MS;
use super::rows::claim_rows;
use super::rows::event_at;
use super::rows::mark_claimed;
use super::rows::CLAIM_SELECT;
use crate::store::delivery::ClaimRef;
use crate::store::delivery::Claimed;
use crate::store::delivery::Counts;
use crate::store::delivery::DeadLetter;
use crate::store::delivery::DeliveryState;
use crate::store::delivery::Recorded;
use crate::store::delivery::Room;
use crate::store::delivery::SeenKey;
use crate::store::delivery::StoredEvent;
use crate::store::error::StoreError;
use crate::store::event::Destination;
use crate::store::event::Inserted;
use crate::store::event::NewEvent;
use crate::store::event::DEDUPE_WINDOW_MS;
use crate::store::log::split_replay_ids;
use crate::store::log::ulid_floor;
use crate::store::log::LogPart;
use rusqlite::params;
use rusqlite::OptionalExtension;
use std::time::Duration;

/// The engine itself: synchronous, one connection, used from one thread ([`SqliteHandle`]) or
/// by a command that reads the store directly. Times are milliseconds since the epoch.
impl SqliteStore {
    /// Stores events in one transaction; all or none (see [`Store::insert`]).
    pub fn insert(&mut self, events: &[NewEvent], now: i64) -> Result<Vec<Inserted>, StoreError> {
        if let Some(cap) = self.cap_pages {
            let used = self.make_room(cap, now)?;
            if used >= cap {
                return Err(StoreError::Full {
                    used: (used * self.page_size) as u64,
                    cap: (cap * self.page_size) as u64,
                });
            }
        }
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let prune = now - self.last_prune > 600_000;
        let tx = self.conn.transaction().map_err(fail)?;
        let mut results = Vec::with_capacity(events.len());
        {
            if prune {
                tx.execute(
                    "DELETE FROM seen WHERE at < ?1",
                    params![now - DEDUPE_WINDOW_MS],
                )
                .map_err(fail)?;
            }
            let mut remember = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen (key, event_id, at) VALUES (?1, ?2, ?3)",
                )
                .map_err(fail)?;
            // The first event of a key, and whether it failed for good: a dead letter's
            // redelivery (how senders retry) is a new event, not a repeat.
            let mut first = tx
                .prepare_cached(
                    "SELECT s.event_id,
                         EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = s.event_id)
                         AND NOT EXISTS (SELECT 1 FROM deliveries d
                                         WHERE d.event_id = s.event_id AND d.state <> 'dead')
                     FROM seen s WHERE s.key = ?1",
                )
                .map_err(fail)?;
            let mut take_over = tx
                .prepare_cached("UPDATE seen SET event_id = ?2, at = ?3 WHERE key = ?1")
                .map_err(fail)?;
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (id, received_at, source, event_type, payload,
                         payload_kind, method, path, headers, delivery_key)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(fail)?;
            let mut delivery = tx
                .prepare_cached(
                    "INSERT INTO deliveries (event_id, destination, token, state, next_at, updated_at)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                )
                .map_err(fail)?;
            for NewEvent {
                event: e,
                destinations,
                dedupe_key,
            } in events
            {
                if let Some(key) = dedupe_key {
                    if remember
                        .execute(params![key, e.id, e.received_at])
                        .map_err(fail)?
                        == 0
                    {
                        let (id, dead): (String, Option<bool>) = first
                            .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                            .map_err(fail)?;
                        if dead == Some(true) {
                            take_over
                                .execute(params![key, e.id, e.received_at])
                                .map_err(fail)?;
                        } else {
                            results.push(Inserted::Duplicate(id));
                            continue;
                        }
                    }
                }
                let (kind, bytes, method, request_path, headers) = e.payload.columns();
                stmt.execute(params![
                    e.id,
                    e.received_at,
                    e.source,
                    e.event_type,
                    bytes,
                    kind,
                    method,
                    request_path,
                    headers,
                    dedupe_key
                        .as_deref()
                        .and_then(crate::store::event::sender_delivery_id)
                ])
                .map_err(fail)?;
                for d in destinations {
                    delivery
                        .execute(params![e.id, d.key(), d.token_column(), e.received_at])
                        .map_err(fail)?;
                }
                results.push(Inserted::New);
            }
        }
        tx.commit().map_err(fail)?;
        if prune {
            self.last_prune = now;
        }
        Ok(results)
    }

    /// Claims up to `limit` due events, leased until `now + lease_ms` (see [`Store::claim`]).
    pub fn claim(
        &mut self,
        now: i64,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let reap = now.saturating_sub(self.last_reap) >= REAP_EVERY_MS || now < self.last_reap;
        let tx = self.conn.transaction().map_err(fail)?;
        if reap {
            // Leases that ran out: the delivery is due again, and its old claim is void. Now
            // and then, not at every claim.
            tx.prepare_cached(
                "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = min(next_at, ?1)
                 WHERE state = 'inflight' AND lease_until < ?1",
            )
            .and_then(|mut s| s.execute(params![now]))
            .map_err(fail)?;
        }
        let due = claim_rows(
            &tx,
            &format!(
                "{CLAIM_SELECT} WHERE d.state = 'pending' AND d.next_at <= ?1
                 ORDER BY d.next_at, d.id LIMIT ?2"
            ),
            params![now, limit as i64],
        )
        .map_err(fail)?;
        mark_claimed(&tx, &due, None, now, lease_ms).map_err(fail)?;
        tx.commit().map_err(fail)?;
        if reap {
            self.last_reap = now;
        }
        Ok(due)
    }

    /// Claims more of a batch's lane (see [`Store::claim_lane`]).
    pub fn claim_lane(
        &mut self,
        now: i64,
        leader: &Claimed,
        members: &[ClaimRef],
        batch_id: &str,
        limit: usize,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let more = if limit == 0 {
            Vec::new()
        } else {
            claim_rows(
                &tx,
                &format!(
                    "{CLAIM_SELECT} WHERE d.destination = ?1 AND d.token IS ?2 AND e.source = ?3
                     AND d.state = 'pending' AND (d.next_at <= ?4 OR d.deferred_for = 'rate')
                     ORDER BY d.id LIMIT ?5"
                ),
                params![
                    leader.destination.key(),
                    leader.destination.token_column(),
                    leader.event.source,
                    now,
                    limit as i64
                ],
            )
            .map_err(fail)?
        };
        mark_claimed(&tx, &more, Some(batch_id), now, lease_ms).map_err(fail)?;
        {
            let mut name = tx
                .prepare_cached(
                    "UPDATE deliveries SET batch_id = ?3 WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                )
                .map_err(fail)?;
            for m in members {
                name.execute(params![m.id, m.claim, batch_id])
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(more)
    }

    /// Records results in one transaction; those whose claim is not current change nothing.
    /// Returns, for each result, whether it was recorded.
    pub fn record(
        &mut self,
        results: &[(ClaimRef, Recorded)],
        now: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let at = |d: &Duration| now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut recorded = Vec::with_capacity(results.len());
        for (c, result) in results {
            // A reference that names no delivery is not recorded.
            let Ok(id) = c.id.parse::<i64>() else {
                recorded.push(false);
                continue;
            };
            let changed = match result {
                // Kept, as the event log's record of it; a token that came with the request
                // is not kept past its use.
                Recorded::Delivered { tried } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'delivered', claim = NULL, attempts = attempts + 1,
                         last_status = ?3, last_error = NULL, updated_at = ?4, deferred_for = NULL,
                         token = CASE WHEN token LIKE 'inline:%' THEN 'inline:' ELSE token END
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        let status = tried.as_ref().and_then(|t| t.status).map(i64::from);
                        s.execute(params![id, c.claim, status, now])
                    }),
                Recorded::RetryAfter { delay, error, .. } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', claim = NULL, attempts = attempts + 1, next_at = ?3,
                         last_error = ?4, updated_at = ?5, deferred_for = NULL
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| s.execute(params![id, c.claim, at(delay), error, now])),
                Recorded::Defer { delay } | Recorded::RateLimited { delay } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = ?3, updated_at = ?4,
                             deferred_for = ?5
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        let rate = matches!(result, Recorded::RateLimited { .. }).then_some("rate");
                        s.execute(params![id, c.claim, at(delay), now, rate])
                    }),
                // The token stays, so the letter can be replayed; purging deletes it.
                Recorded::Dead { error, status, .. } => tx
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'dead', claim = NULL, attempts = attempts + 1, last_error = ?3,
                         last_status = ?4, updated_at = ?5, deferred_for = NULL
                         WHERE id = ?1 AND claim = ?2 AND state = 'inflight'",
                    )
                    .and_then(|mut s| {
                        s.execute(params![id, c.claim, error, status.map(i64::from), now])
                    }),
            }
            .and_then(|changed| {
                // The try itself, in the same transaction: the log never disagrees with the state.
                if let (1.., Some(t)) = (changed, result.tried()) {
                    let message = match result {
                        Recorded::RetryAfter { error, .. } | Recorded::Dead { error, .. } => {
                            Some(error.as_str())
                        }
                        _ => None,
                    };
                    tx.prepare_cached(
                        "INSERT INTO attempts (delivery_id, event_id, chain, at, took_ms, status,
                             outcome, message, batch_id)
                         SELECT id, event_id, chain, ?2, ?3, ?4, ?5, ?6, ?7 FROM deliveries WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        now - t.took.as_millis() as i64,
                        t.took.as_millis().min(i64::MAX as u128) as i64,
                        t.status.map(i64::from),
                        crate::store::delivery::attempt_outcome(result),
                        message,
                        t.batch_id
                    ])?;
                }
                Ok(changed)
            })
            .map_err(fail)?;
            recorded.push(changed > 0);
        }
        tx.commit().map_err(fail)?;
        Ok(recorded)
    }

    /// Returns events left in flight by a crash to pending; returns how many. Only for the one
    /// relay that holds the data directory's lock: on a shared store it would take others' work.
    pub fn recover(&mut self, now: i64) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = 'pending', claim = NULL, next_at = min(next_at, ?1), updated_at = ?1 WHERE state = 'inflight'",
                params![now],
            )
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }

    /// When the next pending event is due (ms), if any.
    pub fn next_due(&mut self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_at) FROM deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.fail(e))
    }

    /// Counts by state.
    pub fn counts(&mut self) -> Result<Counts, StoreError> {
        let mut c = Counts::default();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.state, count(*), min(e.received_at)
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state IN ('pending', 'inflight', 'dead') GROUP BY d.state",
            )
            .map_err(|e| unavailable(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| unavailable(&self.path, e))?;
        for row in rows {
            let (state, n, oldest) = row.map_err(|e| unavailable(&self.path, e))?;
            match state.as_str() {
                "pending" => {
                    c.pending = n as u64;
                    c.oldest_pending = oldest;
                }
                "inflight" => c.inflight = n as u64,
                _ => c.dead = n as u64,
            }
        }
        c.room = self.room()?;
        Ok(c)
    }

    /// Dead letters, oldest first.
    pub fn dead_letters(&mut self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.id, e.id, d.destination, e.source, e.event_type, d.attempts,
                        coalesce(d.last_error, ''), e.received_at
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state = 'dead' ORDER BY e.received_at, e.id, d.id LIMIT ?1",
            )
            .map_err(|e| unavailable(&self.path, e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(DeadLetter {
                    id: r.get::<_, i64>(0)?.to_string(),
                    event_id: r.get(1)?,
                    destination: r.get(2)?,
                    source: r.get(3)?,
                    event_type: r.get(4)?,
                    attempts: r.get::<_, i64>(5)? as u32,
                    error: r.get(6)?,
                    received_at: r.get(7)?,
                })
            })
            .map_err(|e| unavailable(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| unavailable(&self.path, e))
    }

    /// Up to `limit` waiting events (some delivery pending, in flight or dead) with ids after
    /// `after`, in id order, each whole with its deliveries: a page of a move to another store.
    /// In flight counts as pending: the relay that held this store is stopped, so no delivery
    /// is running.
    pub fn export_events(
        &mut self,
        after: &str,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT e.id, e.received_at, e.source, e.event_type, e.payload, e.payload_kind,
                        e.method, e.path, e.headers,
                        d.destination, d.token, d.state, d.attempts, d.next_at, d.last_error,
                        d.last_status
                 FROM (SELECT * FROM events WHERE id > ?1
                       AND EXISTS (SELECT 1 FROM deliveries w
                                   WHERE w.event_id = events.id AND w.state <> 'delivered')
                       ORDER BY id LIMIT ?2) e
                 JOIN deliveries d ON d.event_id = e.id AND d.state <> 'delivered'
                 ORDER BY e.id, d.id",
            )
            .map_err(fail)?;
        let mut rows = stmt.query(params![after, limit as i64]).map_err(fail)?;
        let mut out: Vec<StoredEvent> = Vec::new();
        while let Some(r) = rows.next().map_err(fail)? {
            let id: String = r.get(0).map_err(fail)?;
            if out.last().map(|s| &s.event.event.id) != Some(&id) {
                out.push(StoredEvent {
                    event: NewEvent {
                        event: event_at(r, 0).map_err(fail)?,
                        destinations: Vec::new(),
                        dedupe_key: None,
                    },
                    deliveries: Vec::new(),
                });
            }
            let Some(last) = out.last_mut() else { break };
            last.event.destinations.push(Destination::from_columns(
                &r.get::<_, String>(9).map_err(fail)?,
                r.get::<_, Option<String>>(10).map_err(fail)?.as_deref(),
            ));
            last.deliveries.push(DeliveryState {
                dead: r.get::<_, String>(11).map_err(fail)? == "dead",
                attempts: r.get::<_, i64>(12).map_err(fail)?.clamp(0, u32::MAX.into()) as u32,
                next_attempt_at: r.get(13).map_err(fail)?,
                last_error: r.get(14).map_err(fail)?,
                last_status: r
                    .get::<_, Option<i64>>(15)
                    .map_err(fail)?
                    .and_then(|s| u16::try_from(s).ok()),
            });
        }
        Ok(out)
    }

    /// The de-duplication keys remembered since `since` (milliseconds since the epoch).
    pub fn export_seen(&mut self, since: i64) -> Result<Vec<SeenKey>, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, event_id, at FROM seen WHERE at >= ?1 ORDER BY at")
            .map_err(fail)?;
        let rows = stmt
            .query_map(params![since], |r| {
                Ok(SeenKey {
                    key: r.get(0)?,
                    event_id: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .map_err(fail)?;
        rows.collect::<Result<_, _>>().map_err(fail)
    }

    /// Closes the store after writing everything into the main file (no `-wal` left beside
    /// it), so the file can be moved.
    pub fn close(self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| unavailable(&self.path, e))?;
        self.conn
            .close()
            .map_err(|(_, e)| unavailable(&self.path, e))
    }

    /// Makes dead letters pending again: by delivery or event id, all when `ids` is empty
    /// (see [`Store::replay_dead`]); returns how many.
    pub fn replay_dead(&mut self, ids: &[String], now: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let sql = "UPDATE deliveries SET state = 'pending', attempts = 0, chain = chain + 1, next_at = ?1, updated_at = ?1 WHERE state = 'dead'";
        if ids.is_empty() {
            return self
                .conn
                .execute(sql, params![now])
                .map(|n| n as u64)
                .map_err(fail);
        }
        let (deliveries, events) = split_replay_ids(ids);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        for id in deliveries {
            n += tx
                .execute(&format!("{sql} AND id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        for id in events {
            n += tx
                .execute(&format!("{sql} AND event_id = ?2"), params![now, id])
                .map_err(fail)? as u64;
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }

    /// Checks that a write can start now, and how full the store is.
    pub fn ping(&mut self) -> Result<Room, StoreError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(|e| self.fail(e))?;
        if let Some(cap) = self.cap_pages {
            self.make_room(cap, now_unix_ms())?;
        }
        self.room()
    }

    /// The pages in use; at the cap, the oldest finished events of the event log go first,
    /// whatever their age (new events matter more than old log lines), until the store is
    /// under its cap or none is left.
    fn make_room(&mut self, cap: i64, now: i64) -> Result<i64, StoreError> {
        let mut used = self.used_pages()?;
        let before = ulid_floor(now);
        while used >= cap {
            let pruned =
                self.prune_bodies(now, 64)? + self.prune_events(LogPart::Events, &before, 64)?;
            if pruned == 0 {
                break;
            }
            tracing::warn!(
                events = pruned,
                "the store is at its size cap: the oldest delivered events left the event log early"
            );
            used = self.used_pages()?;
        }
        Ok(used)
    }

    /// Keeps a body until `keep_until` (see [`Store::keep_body`]).
    pub fn keep_body(&mut self, id: &str, bytes: &[u8], keep_until: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO bodies (id, bytes, keep_until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET keep_until = max(keep_until, excluded.keep_until)",
                params![id, bytes, keep_until],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// A kept body whose time is not over at `now` (see [`Store::body`]).
    pub fn body(&mut self, id: &str, now: i64) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT bytes FROM bodies WHERE id = ?1 AND keep_until > ?2",
                params![id, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Deletes up to `limit` bodies whose time is over at `now`.
    pub fn prune_bodies(&mut self, now: i64, limit: usize) -> Result<u64, StoreError> {
        let n = self
            .conn
            .execute(
                // Past their time; or kept for an event whose every delivery is dead (no run
                // will fetch it, and a replay keeps it again): a stranger's junk cannot hold
                // the store for a week.
                "DELETE FROM bodies WHERE id IN
                     (SELECT b.id FROM bodies b
                      WHERE b.keep_until <= ?1
                         OR (EXISTS (SELECT 1 FROM deliveries d
                                     WHERE d.event_id = substr(b.id, 1, 26))
                             AND NOT EXISTS (SELECT 1 FROM deliveries d
                                             WHERE d.event_id = substr(b.id, 1, 26)
                                               AND d.state <> 'dead'))
                      ORDER BY b.keep_until LIMIT ?2)",
                params![now, limit as i64],
            )
            .map_err(|e| self.fail(e))?;
        Ok(n as u64)
    }

    /// Deletes dead letters received before `before` (ms), and their events once they have no
    /// other delivery; returns how many letters.
    pub fn purge_dead(&mut self, before: i64) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        let tx = self.conn.transaction().map_err(fail)?;
        let letters: Vec<(i64, String)> = tx
            .prepare(
                "DELETE FROM deliveries WHERE state = 'dead'
                 AND event_id IN (SELECT id FROM events WHERE received_at < ?1)
                 RETURNING id, event_id",
            )
            .and_then(|mut s| {
                s.query_map(params![before], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(fail)?;
        for (delivery, event) in &letters {
            tx.execute(
                "DELETE FROM attempts WHERE delivery_id = ?1",
                params![delivery],
            )
            .map_err(fail)?;
            tx.execute(
                "DELETE FROM events WHERE id = ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ?1)",
                params![event],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)?;
        Ok(letters.len() as u64)
    }

    /// Deletes up to `limit` events with ids before `before` (received before its time) whose
    /// deliveries are all delivered, with their deliveries and attempts: the event log's
    /// retention. Dead letters stay until replayed or purged. Returns how many events.
    pub fn prune_events(
        &mut self,
        part: LogPart,
        before: &str,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let fail = |e: rusqlite::Error| unavailable(&path, e);
        if part == LogPart::Bodies {
            // Through the partial index of events that still have their body.
            return self
                .conn
                .prepare_cached(
                    "UPDATE events SET payload = x'', body_pruned = 1 WHERE id IN
                         (SELECT e.id FROM events e WHERE e.body_pruned = 0 AND e.id < ?1
                          AND NOT EXISTS (SELECT 1 FROM deliveries d
                                          WHERE d.event_id = e.id AND d.state <> 'delivered')
                          ORDER BY e.id LIMIT ?2)",
                )
                .and_then(|mut s| s.execute(params![before, limit as i64]))
                .map(|n| n as u64)
                .map_err(fail);
        }
        let tx = self.conn.transaction().map_err(fail)?;
        let ids: Vec<String> = tx
            .prepare_cached(
                "SELECT e.id FROM events e WHERE e.id < ?1
                 AND NOT EXISTS (SELECT 1 FROM deliveries d
                                 WHERE d.event_id = e.id AND d.state <> 'delivered')
                 ORDER BY e.id LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![before, limit as i64], |r| r.get(0))?
                    .collect()
            })
            .map_err(fail)?;
        for id in &ids {
            for sql in [
                "DELETE FROM attempts WHERE event_id = ?1",
                "DELETE FROM deliveries WHERE event_id = ?1",
                "DELETE FROM events WHERE id = ?1",
            ] {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute(params![id]))
                    .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(ids.len() as u64)
    }
}
