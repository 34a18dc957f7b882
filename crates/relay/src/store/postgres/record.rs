use super::db::db_error;
use super::db::millis;
use super::db::pool_error;
use super::db::took_ms;
use super::db::uuid_text;
use super::db::MAX_BATCH;
use super::inner::Inner;
use super::inner::RecordJob;
use crate::store::delivery::ClaimRef;
use crate::store::delivery::Recorded;
use crate::store::error::StoreError;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

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
        let tried: Vec<Option<&crate::store::delivery::Tried>> =
            done.iter().map(|d| d.3.tried()).collect();
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
        let outcome = crate::store::delivery::attempt_outcome(result);
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
