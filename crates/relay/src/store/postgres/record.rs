use super::impl_store::uuid_text;
use super::insert::event_at;
use super::open::db_error;
use super::open::millis;
use super::open::pool_error;
use super::open::took_ms;
use super::open::Inner;
use super::open::MAX_BATCH;
use crate::store::{ClaimRef, Claimed, Destination, Event, Recorded, StoreError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;

/// A new claim token in a UUID's form: a ULID's 128 bits (80 of them random), unique across
/// relays as `gen_random_uuid()`'s are.
pub(super) fn claim_token() -> String {
    let h = format!("{:032x}", ulid::Ulid::generate().0);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What a claim returns: the delivery's columns, its `next_at` at 5, its event from 6 on
/// ([`claimed_rows`] reads them).
pub(super) const CLAIM_RETURNING: &str = "WHERE d.id = c.id AND e.id = d.event_id
    RETURNING d.id, d.destination, d.token, d.attempts, d.claim::text, d.next_at,
        e.id, (extract(epoch FROM e.received_at) * 1000)::int8, e.source,
        e.event_type, e.payload, e.payload_kind, e.method, e.path, e.headers";

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

/// Writes results in one transaction (one commit for every delivery that finished meanwhile);
/// for each, whether its claim was current. When every result is a delivery done (the common
/// case under load), one statement.
async fn record_batch(
    inner: &Inner,
    results: &[(ClaimRef, Recorded)],
) -> Result<Vec<bool>, StoreError> {
    let mut client = inner.pool.get().await.map_err(pool_error)?;
    let fail = |e: tokio_postgres::Error| db_error("cannot record results", e);
    let mut recorded = vec![false; results.len()];
    // A malformed reference names no delivery: it is not recorded.
    let valid: Vec<(usize, i64, &str, &Recorded)> = results
        .iter()
        .enumerate()
        .filter_map(
            |(i, (c, r))| match (c.id.parse::<i64>(), uuid_text(&c.claim)) {
                (Ok(id), Ok(claim)) => Some((i, id, claim, r)),
                _ => None,
            },
        )
        .collect();
    let (done, other): (Vec<_>, Vec<_>) = valid
        .into_iter()
        .partition(|(_, _, _, r)| matches!(r, Recorded::Delivered { .. }));
    if other.is_empty() {
        write_results(
            &Db::Client(&client),
            &inner.relay_id,
            &done,
            &[],
            &mut recorded,
        )
        .await?;
    } else {
        let tx = client.transaction().await.map_err(fail)?;
        write_results(&Db::Tx(&tx), &inner.relay_id, &done, &other, &mut recorded).await?;
        tx.commit().await.map_err(fail)?;
    }
    Ok(recorded)
}

type ResultRow<'a> = (usize, i64, &'a str, &'a Recorded);

async fn write_results(
    db: &Db<'_>,
    relay: &str,
    done: &[ResultRow<'_>],
    other: &[ResultRow<'_>],
    recorded: &mut [bool],
) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| db_error("cannot record results", e);
    if !done.is_empty() {
        let ids: Vec<i64> = done.iter().map(|d| d.1).collect();
        let claims: Vec<&str> = done.iter().map(|d| d.2).collect();
        let tried: Vec<Option<&crate::store::Tried>> = done.iter().map(|d| d.3.tried()).collect();
        let took: Vec<Option<i32>> = tried.iter().map(|t| t.map(|t| took_ms(t.took))).collect();
        let statuses: Vec<Option<i32>> = tried
            .iter()
            .map(|t| t.and_then(|t| t.status).map(i32::from))
            .collect();
        let batches: Vec<Option<&str>> = tried
            .iter()
            .map(|t| t.and_then(|t| t.batch_id.as_deref()))
            .collect();
        let at: std::collections::HashMap<i64, usize> = done.iter().map(|d| (d.1, d.0)).collect();
        // Kept as the event log's record, with the attempt, in one statement. A claim token
        // is set only while a delivery is in flight. (No `state` test: it would invite the
        // planner to read the whole lease index, dead entries and all, instead of finding
        // each delivery by its key.)
        let rows = db
            .query(
                "WITH done AS (
                     UPDATE hookflow.deliveries d SET state = 'delivered', claim = NULL,
                         owner = NULL, lease_until = NULL, attempts = d.attempts + 1,
                         last_status = t.status, last_error = NULL, updated_at = now(),
                         deferred_for = NULL,
                         token = CASE WHEN d.token LIKE 'inline:%' THEN 'inline:' ELSE d.token END
                     FROM unnest($1::int8[], $2::text[], $3::int4[], $4::int4[], $5::text[])
                         AS t(id, claim, took, status, batch)
                     WHERE d.id = t.id AND d.claim = t.claim::uuid
                     RETURNING d.id, d.event_id, d.chain, t.took, t.status, t.batch
                 ), logged AS (
                     INSERT INTO hookflow.attempts (delivery_id, event_id, chain, at, took_ms,
                         status, outcome, relay, batch_id)
                     SELECT id, event_id, chain,
                         now() - took * interval '1 millisecond', took, status, 'delivered',
                         $6, batch
                     FROM done WHERE took IS NOT NULL
                 )
                 SELECT id FROM done",
                &[&ids, &claims, &took, &statuses, &batches, &relay],
            )
            .await
            .map_err(fail)?;
        for row in rows {
            if let Some(&i) = at.get(&row.get::<_, i64>(0)) {
                recorded[i] = true;
            }
        }
    }
    for (i, id, claim, result) in other {
        // The attempt (when a request was made) goes in with the result.
        let tried = result.tried();
        let took = tried.map(|t| took_ms(t.took));
        let status = tried.and_then(|t| t.status).map(i32::from);
        let batch = tried.and_then(|t| t.batch_id.as_deref());
        let outcome = crate::store::attempt_outcome(result);
        let log = "logged AS (
                 INSERT INTO hookflow.attempts (delivery_id, event_id, chain, at, took_ms,
                     status, outcome, message, relay, batch_id)
                 SELECT id, event_id, chain, now() - $5::int4 * interval '1 millisecond', $5,
                     $6, $7, $8, $9, $10
                 FROM u WHERE $5::int4 IS NOT NULL
             )
             SELECT count(*) FROM u";
        let changed = match *result {
            Recorded::Delivered { .. } => continue,
            Recorded::RetryAfter {
                delay, ref error, ..
            } => {
                db.query_one(
                    &format!(
                        "WITH u AS (
                             UPDATE hookflow.deliveries SET state = 'pending', claim = NULL,
                                 owner = NULL, attempts = attempts + 1,
                                 next_at = now() + $3 * interval '1 millisecond',
                                 last_error = $4, updated_at = now(), deferred_for = NULL
                             WHERE id = $1 AND claim = $2::text::uuid
                             RETURNING id, event_id, chain
                         ), {log}"
                    ),
                    &[
                        &id,
                        &claim,
                        &millis(*delay),
                        error,
                        &took,
                        &status,
                        &outcome,
                        error,
                        &relay,
                        &batch,
                    ],
                )
                .await
            }
            Recorded::Defer { delay } | Recorded::RateLimited { delay } => {
                let rate = matches!(result, Recorded::RateLimited { .. }).then_some("rate");
                db.execute(
                    "UPDATE hookflow.deliveries SET state = 'pending', claim = NULL, owner = NULL,
                         next_at = now() + $3 * interval '1 millisecond', updated_at = now(),
                         deferred_for = $4
                     WHERE id = $1 AND claim = $2::text::uuid",
                    &[&id, &claim, &millis(*delay), &rate],
                )
                .await
                .map(|n| {
                    recorded[*i] = n > 0;
                })
                .map_err(fail)?;
                continue;
            }
            Recorded::Dead {
                ref error,
                status: dead_status,
                ..
            } => {
                db.query_one(
                    &format!(
                        "WITH u AS (
                             UPDATE hookflow.deliveries SET state = 'dead', claim = NULL,
                                 owner = NULL, attempts = attempts + 1, last_error = $3,
                                 last_status = $4, updated_at = now(), deferred_for = NULL
                             WHERE id = $1 AND claim = $2::text::uuid
                             RETURNING id, event_id, chain
                         ), {log}"
                    ),
                    &[
                        &id,
                        &claim,
                        error,
                        &dead_status.map(i32::from),
                        &took,
                        &status,
                        &outcome,
                        error,
                        &relay,
                        &batch,
                    ],
                )
                .await
            }
        }
        .map_err(fail)?;
        recorded[*i] = changed.get::<_, i64>(0) > 0;
    }
    Ok(())
}

/// A pooled connection, or a transaction on one: statements come from the connection's cache.
enum Db<'a> {
    Client(&'a deadpool_postgres::Client),
    Tx(&'a deadpool_postgres::Transaction<'a>),
}

impl Db<'_> {
    pub(super) async fn statement(
        &self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        match self {
            Db::Client(c) => c.prepare_cached(sql).await,
            Db::Tx(t) => t.prepare_cached(sql).await,
        }
    }

    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.query(&statement, params).await,
            Db::Tx(t) => t.query(&statement, params).await,
        }
    }

    pub(super) async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.query_one(&statement, params).await,
            Db::Tx(t) => t.query_one(&statement, params).await,
        }
    }

    pub(super) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.statement(sql).await?;
        match self {
            Db::Client(c) => c.execute(&statement, params).await,
            Db::Tx(t) => t.execute(&statement, params).await,
        }
    }
}

pub(super) type RecordJob = (
    Vec<(ClaimRef, Recorded)>,
    oneshot::Sender<Result<usize, StoreError>>,
);

/// Collects the results of concurrent deliveries into one transaction each round.
pub(super) async fn record_batcher(
    inner: std::sync::Weak<Inner>,
    mut rx: mpsc::Receiver<RecordJob>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let all: Vec<(ClaimRef, Recorded)> =
            jobs.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        match record_batch(&inner, &all).await {
            Ok(done) => {
                let mut done = done.into_iter();
                for (results, reply) in jobs {
                    let n = done.by_ref().take(results.len()).filter(|d| *d).count();
                    let _ = reply.send(Ok(n));
                }
            }
            Err(e) => {
                for (_, reply) in jobs {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
