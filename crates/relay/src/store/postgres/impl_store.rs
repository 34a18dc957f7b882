use super::db::db_error;
use super::db::millis;
use super::db::CHANNEL;
use super::db::LANE_PRUNE_EVERY_REAPS;
use super::db::REAP_EVERY;
use super::insert::deliveries_of;
use super::open::PgStore;
use super::rows::claimed_rows;
use super::rows::event_at;
use super::rows::CLAIM_RETURNING;
use crate::store::contract::Store;
use crate::store::delivery::ClaimRef;
use crate::store::delivery::Claimed;
use crate::store::delivery::Counts;
use crate::store::delivery::DeadLetter;
use crate::store::delivery::Recorded;
use crate::store::delivery::Room;
use crate::store::error::StoreError;
use crate::store::event::Inserted;
use crate::store::event::NewEvent;
use crate::store::log::split_replay_ids;
use crate::store::log::ulid_floor;
use crate::store::log::EventFilter;
use crate::store::log::EventSummary;
use crate::store::log::LogPart;
use crate::store::log::LoggedAttempt;
use crate::store::log::LoggedEvent;
use crate::store::log::MAX_PAGE;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

impl Store for PgStore {
    async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.inner
            .inserts
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        let inserted = wait.await.map_err(|_| StoreError::Closed)?;
        inserted
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Vec<Claimed>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot claim deliveries", e);
        // Leases that ran out: due again, and their claims void. Any relay may do this; each
        // does it now and then, not at every claim.
        let reap = {
            let mut last = self
                .inner
                .last_reap
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let due = last.elapsed() >= REAP_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if reap {
            client
                .execute(
                    &client.prepare_cached("UPDATE hookflow.deliveries SET state = 'pending', claim = NULL, owner = NULL,
                     next_at = least(next_at, now()), updated_at = now()
                 WHERE state = 'inflight' AND lease_until < now()").await.map_err(fail)?,
                    &[],
                )
                .await
                .map_err(fail)?;
            // About once a minute: forget full rate-limit buckets.
            let reaps = self
                .inner
                .reaps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if reaps.is_multiple_of(LANE_PRUNE_EVERY_REAPS) {
                Self::prune_lanes(&client).await.map_err(fail)?;
            }
        }
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "UPDATE hookflow.deliveries d
                 SET state = 'inflight', owner = $1, claim = gen_random_uuid(),
                     lease_until = now() + $3 * interval '1 millisecond', updated_at = now()
                 FROM (SELECT id FROM hookflow.deliveries
                       WHERE state = 'pending' AND next_at <= now()
                       ORDER BY next_at, id
                       FOR UPDATE SKIP LOCKED
                       LIMIT $2) c, hookflow.events e
                 {CLAIM_RETURNING}"
                    ))
                    .await
                    .map_err(fail)?,
                &[&self.inner.relay_id, &(limit as i64), &millis(lease)],
            )
            .await
            .map_err(fail)?;
        Ok(claimed_rows(rows))
    }

    async fn claim_lane(
        &self,
        leader: &Claimed,
        members: Vec<ClaimRef>,
        batch_id: String,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Claimed>, StoreError> {
        let mut client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot claim a batch", e);
        let tx = client.transaction().await.map_err(fail)?;
        let rows = if limit == 0 {
            Vec::new()
        } else {
            let claim = tx
                .prepare_cached(&format!(
                    "UPDATE hookflow.deliveries d
                     SET state = 'inflight', owner = $1, claim = gen_random_uuid(),
                         lease_until = now() + $3 * interval '1 millisecond', updated_at = now(),
                         batch_id = $6
                     FROM (SELECT p.id FROM hookflow.deliveries p
                           JOIN hookflow.events pe ON pe.id = p.event_id
                           WHERE p.lane = $4 AND p.state = 'pending' AND pe.source = $5
                             AND (p.next_at <= now() OR p.deferred_for = 'rate')
                           ORDER BY p.id
                           FOR UPDATE OF p SKIP LOCKED
                           LIMIT $2) c, hookflow.events e
                 {CLAIM_RETURNING}"
                ))
                .await
                .map_err(fail)?;
            tx.query(
                &claim,
                &[
                    &self.inner.relay_id,
                    &(limit as i64),
                    &millis(lease),
                    &leader.destination.lane(),
                    &leader.event.source,
                    &batch_id,
                ],
            )
            .await
            .map_err(fail)?
        };
        let ids: Vec<i64> = members.iter().filter_map(|m| m.id.parse().ok()).collect();
        let claims: Vec<&str> = members
            .iter()
            .filter(|m| m.id.parse::<i64>().is_ok())
            .map(|m| m.claim.as_str())
            .collect();
        tx.execute(
            "UPDATE hookflow.deliveries d SET batch_id = $3
             FROM unnest($1::int8[], $2::text[]) AS m(id, claim)
             WHERE d.id = m.id AND d.claim::text = m.claim AND d.state = 'inflight'",
            &[&ids, &claims, &batch_id],
        )
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let mut more = claimed_rows(rows);
        more.sort_by_key(|c| c.id.parse::<i64>().unwrap_or(i64::MAX));
        Ok(more)
    }

    async fn record(&self, results: Vec<(ClaimRef, Recorded)>) -> Result<usize, StoreError> {
        let (reply, wait) = oneshot::channel();
        self.inner
            .records
            .send((results, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        let n = wait.await.map_err(|_| StoreError::Closed)?;
        n
    }

    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                // Pending deliveries only: a lease that runs out is found by the reaper in
                // `claim`, which the worker's idle poll reaches. (The oldest leases are mostly
                // of deliveries long done, whose dead index entries a min() would wade through.)
                "SELECT (extract(epoch FROM (
                     (SELECT min(next_at) FROM hookflow.deliveries WHERE state = 'pending')
                 - now())) * 1000)::float8",
                &[],
            )
            .await
            .map_err(|e| db_error("cannot read the queue", e))?;
        let ms: Option<f64> = row.get(0);
        Ok(ms.map(|ms| Duration::from_millis(ms.max(0.0).ceil() as u64)))
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot count the queue", e);
        let mut c = Counts::default();
        for row in client
            .query(
                // Each from its partial index: delivered rows (the event log) are not counted.
                "SELECT (SELECT count(*) FROM hookflow.deliveries WHERE state = 'pending'),
                        (SELECT count(*) FROM hookflow.deliveries WHERE state = 'inflight'),
                        (SELECT count(*) FROM hookflow.deliveries WHERE state = 'dead')",
                &[],
            )
            .await
            .map_err(fail)?
        {
            let n = |i: usize| row.get::<_, i64>(i).max(0) as u64;
            c.pending = n(0);
            c.inflight = n(1);
            c.dead = n(2);
        }
        c.oldest_pending = client
            .query_opt(
                "SELECT (extract(epoch FROM e.received_at) * 1000)::int8
                 FROM hookflow.deliveries d JOIN hookflow.events e ON e.id = d.event_id
                 WHERE d.state = 'pending' ORDER BY d.next_at, d.id LIMIT 1",
                &[],
            )
            .await
            .map_err(fail)?
            .map(|r| r.get(0));
        Ok(c)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT d.id, e.id, d.destination, e.source, e.event_type, d.attempts,
                        coalesce(d.last_error, ''),
                        (extract(epoch FROM e.received_at) * 1000)::int8
                 FROM hookflow.deliveries d JOIN hookflow.events e ON e.id = d.event_id
                 WHERE d.state = 'dead' ORDER BY e.received_at, e.id, d.id LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot read dead letters", e))?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                id: r.get::<_, i64>(0).to_string(),
                event_id: r.get(1),
                destination: r.get(2),
                source: r.get(3),
                event_type: r.get(4),
                attempts: r.get::<_, i32>(5).max(0) as u32,
                error: r.get(6),
                received_at: r.get(7),
            })
            .collect())
    }

    async fn replay_dead(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let (deliveries, events) = split_replay_ids(&ids);
        client
            .execute(
                "UPDATE hookflow.deliveries SET state = 'pending', attempts = 0, next_at = now(),
                     claim = NULL, owner = NULL, updated_at = now(), chain = chain + 1
                 WHERE state = 'dead'
                   AND ($3 OR id = ANY($1) OR event_id = ANY($2))",
                &[&deliveries, &events, &ids.is_empty()],
            )
            .await
            .map_err(|e| db_error("cannot replay dead letters", e))
    }

    async fn purge_dead(&self, older_than: Duration) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH letters AS (
                     DELETE FROM hookflow.deliveries d USING hookflow.events e
                     WHERE d.state = 'dead' AND e.id = d.event_id
                       AND e.received_at <= now() - $1 * interval '1 millisecond'
                     RETURNING d.id, d.event_id
                 ), tries AS (
                     DELETE FROM hookflow.attempts a WHERE a.delivery_id IN (SELECT id FROM letters)
                 ), gone AS (
                     DELETE FROM hookflow.events e
                     WHERE e.id IN (SELECT event_id FROM letters)
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = e.id
                                         AND d.id NOT IN (SELECT id FROM letters))
                 )
                 SELECT count(*) FROM letters",
                &[&millis(older_than)],
            )
            .await
            .map_err(|e| db_error("cannot purge dead letters", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn ping(&self) -> Result<Room, StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| db_error("the database does not answer", e))?;
        // The database's size is its operator's to manage; the relay sets no cap of its own.
        Ok(Room::default())
    }

    async fn keep_body(
        &self,
        id: String,
        bytes: Vec<u8>,
        keep_until: i64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO hookflow.bodies (id, bytes, keep_until)
                 VALUES ($1, $2, to_timestamp($3::float8 / 1000))
                 ON CONFLICT (id) DO UPDATE
                     SET keep_until = greatest(hookflow.bodies.keep_until, excluded.keep_until)",
                &[&id, &bytes, &(keep_until as f64)],
            )
            .await
            .map_err(|e| db_error("cannot keep a body", e))?;
        Ok(())
    }

    async fn body(&self, id: String) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT bytes FROM hookflow.bodies WHERE id = $1 AND keep_until > now()",
                &[&id],
            )
            .await
            .map_err(|e| db_error("cannot read a body", e))?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn list_events(
        &self,
        filter: EventFilter,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot list events", e);
        let limit = limit.clamp(1, MAX_PAGE) as i64;
        let f = crate::store::log::filter_sql(&filter, "e.id", |n| format!("${n}"), "strpos");
        let mut conds = f.events.clone();
        if !f.deliveries.is_empty() {
            conds.push(format!(
                "EXISTS (SELECT 1 FROM hookflow.deliveries d WHERE d.event_id = e.id AND {})",
                f.deliveries.join(" AND ")
            ));
        }
        let filters = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let limit_at = format!("${}", f.params.len() + 1);
        let sql = format!(
            "SELECT e.id, (extract(epoch FROM e.received_at) * 1000)::int8, e.source,
                    e.event_type, coalesce(e.method, ''), coalesce(e.path, ''), e.delivery_key
             FROM hookflow.events e {filters} ORDER BY e.id DESC LIMIT {limit_at}"
        );
        let mut params: Vec<&(dyn ToSql + Sync)> =
            f.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        params.push(&limit);
        let rows = client.query(&sql, &params).await.map_err(fail)?;
        let mut out: Vec<EventSummary> = rows
            .iter()
            .map(|r| EventSummary {
                id: r.get(0),
                received_at: r.get(1),
                source: r.get(2),
                event_type: r.get(3),
                method: r.get(4),
                path: r.get(5),
                delivery_key: r.get(6),
                deliveries: Vec::new(),
            })
            .collect();
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        let mut deliveries = deliveries_of(&client, &ids).await?;
        for e in &mut out {
            e.deliveries = deliveries.remove(&e.id).unwrap_or_default();
        }
        Ok(out)
    }

    async fn logged_event(&self, id: String) -> Result<Option<LoggedEvent>, StoreError> {
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot read an event", e);
        let Some(row) = client
            .query_opt(
                "SELECT id, (extract(epoch FROM received_at) * 1000)::int8, source, event_type,
                        payload, payload_kind, method, path, headers, delivery_key, body_pruned
                 FROM hookflow.events WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(fail)?
        else {
            return Ok(None);
        };
        let event = event_at(&row, 0);
        let delivery_key: Option<String> = row.get(9);
        let body_pruned: bool = row.get(10);
        let mut deliveries = deliveries_of(&client, &[id.as_str()])
            .await?
            .remove(&id)
            .unwrap_or_default();
        for r in client
            .query(
                "SELECT delivery_id, chain, (extract(epoch FROM at) * 1000)::int8, took_ms,
                        status, outcome, message, relay, batch_id
                 FROM hookflow.attempts WHERE event_id = $1 ORDER BY id",
                &[&id],
            )
            .await
            .map_err(fail)?
        {
            let delivery = r.get::<_, i64>(0).to_string();
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery) {
                d.tries.push(LoggedAttempt {
                    chain: r.get::<_, i32>(1).max(0) as u32,
                    at: r.get(2),
                    took_ms: r.get::<_, Option<i32>>(3).map(|t| t.max(0) as u32),
                    status: r
                        .get::<_, Option<i32>>(4)
                        .and_then(|s| u16::try_from(s).ok()),
                    outcome: r.get(5),
                    message: r.get(6),
                    relay: r.get(7),
                    batch_id: r.get(8),
                });
            }
        }
        Ok(Some(crate::store::log::logged(
            event,
            delivery_key,
            body_pruned,
            deliveries,
        )))
    }

    async fn replay(
        &self,
        ids: Vec<String>,
        filter: EventFilter,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let listed: Vec<String> = if ids.is_empty() {
            self.list_events(filter, limit)
                .await?
                .into_iter()
                .map(|e| e.id)
                .collect()
        } else {
            Vec::new()
        };
        let (deliveries, mut events) = split_replay_ids(&ids);
        events.extend(listed);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE hookflow.deliveries SET state = 'pending', attempts = 0, next_at = now(),
                     claim = NULL, owner = NULL, updated_at = now(), chain = chain + 1,
                     deferred_for = NULL
                 WHERE state IN ('delivered', 'dead')
                   AND (id = ANY($1) OR event_id = ANY($2))
                   AND NOT EXISTS (SELECT 1 FROM hookflow.events e
                                   WHERE e.id = hookflow.deliveries.event_id AND e.body_pruned)",
                &[&deliveries, &events],
            )
            .await
            .map_err(|e| db_error("cannot replay events", e))?;
        if n > 0 {
            client
                .execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(|e| db_error("cannot announce replayed events", e))?;
        }
        Ok(n)
    }

    async fn prune_events(
        &self,
        part: LogPart,
        older_than: Duration,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let before = ulid_floor(
            chrono::Utc::now().timestamp_millis()
                - older_than.as_millis().min(i64::MAX as u128) as i64,
        );
        if part == LogPart::Bodies {
            // Through the partial index of events that still have their body.
            let n = client
                .execute(
                    "UPDATE hookflow.events SET payload = ''::bytea, body_bytes = 0,
                         body_pruned = true
                     WHERE id IN (SELECT e.id FROM hookflow.events e
                                  WHERE NOT e.body_pruned AND e.id < $1
                                    AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                                    WHERE d.event_id = e.id
                                                      AND d.state <> 'delivered')
                                  ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    &[&before, &(limit as i64)],
                )
                .await
                .map_err(|e| db_error("cannot prune the event log's bodies", e))?;
            return Ok(n);
        }
        let row = client
            .query_one(
                "WITH old AS (
                     SELECT e.id FROM hookflow.events e
                     WHERE e.id < $1
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = e.id AND d.state <> 'delivered')
                     ORDER BY e.id LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), tries AS (
                     DELETE FROM hookflow.attempts a USING old WHERE a.event_id = old.id
                 ), deliveries AS (
                     DELETE FROM hookflow.deliveries d USING old WHERE d.event_id = old.id
                 ), gone AS (
                     DELETE FROM hookflow.events e USING old WHERE e.id = old.id RETURNING e.id
                 )
                 SELECT count(*) FROM gone",
                &[&before, &(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot prune the event log", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn prune_bodies(&self, limit: usize) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let n = client
            .execute(
                // Past their time; or kept for an event whose every delivery is dead (no run
                // will fetch it, and a replay keeps it again).
                "DELETE FROM hookflow.bodies WHERE id IN
                     (SELECT b.id FROM hookflow.bodies b
                      WHERE b.keep_until <= now()
                         OR (EXISTS (SELECT 1 FROM hookflow.deliveries d
                                     WHERE d.event_id = substr(b.id, 1, 26))
                             AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                             WHERE d.event_id = substr(b.id, 1, 26)
                                               AND d.state <> 'dead'))
                      ORDER BY b.keep_until LIMIT $1 FOR UPDATE SKIP LOCKED)",
                &[&(limit as i64)],
            )
            .await
            .map_err(|e| db_error("cannot prune bodies", e))?;
        Ok(n)
    }
}
