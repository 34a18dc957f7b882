use super::db::claim_token;
use super::db::db_error;
use super::db::millis;
use super::db::pool_error;
use super::db::BATCHES_IN_FLIGHT;
use super::db::MAX_BATCH;
use super::inner::HandedOff;
use super::inner::Inner;
use super::inner::InsertJob;
use super::rows::DeliveryColumns;
use super::rows::EventColumns;
use crate::store::delivery::Claimed;
use crate::store::delivery::DeliveryStatus;
use crate::store::error::StoreError;
use crate::store::event::Destination;
use crate::store::event::Event;
use crate::store::event::Inserted;
use crate::store::event::NewEvent;
use crate::store::event::DEDUPE_WINDOW_MS;
use crate::store::log::LoggedDelivery;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;

/// Collects concurrent inserts into batches, each committed in one transaction
/// ([`BATCHES_IN_FLIGHT`] at once).
pub(super) async fn batcher(inner: std::sync::Weak<Inner>, mut rx: mpsc::Receiver<InsertJob>) {
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
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
        let prune = last_prune.elapsed() > Duration::from_secs(600);
        if prune {
            last_prune = Instant::now();
        }
        tokio::spawn(async move {
            let events: Vec<NewEvent> = jobs.iter().map(|(e, _)| e.clone()).collect();
            let result = insert_batch(&inner, &events, prune).await;
            match result {
                Ok(results) => {
                    for ((_, reply), r) in jobs.into_iter().zip(results) {
                        let _ = reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    for (_, reply) in jobs {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// The deliveries of events, by event id, each in the order they were made (without their
/// attempts).
pub(super) async fn deliveries_of(
    client: &deadpool_postgres::Client,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<LoggedDelivery>>, StoreError> {
    let mut out: std::collections::HashMap<String, Vec<LoggedDelivery>> = Default::default();
    if ids.is_empty() {
        return Ok(out);
    }
    for r in client
        .query(
            "SELECT id, event_id, destination, state, attempts, chain, last_status, last_error,
                    (extract(epoch FROM CASE WHEN state = 'pending' THEN next_at ELSE updated_at END)
                     * 1000)::int8
             FROM hookflow.deliveries WHERE event_id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .map_err(|e| db_error("cannot read deliveries", e))?
    {
        out.entry(r.get(1)).or_default().push(LoggedDelivery {
            id: r.get::<_, i64>(0).to_string(),
            destination: r.get(2),
            status: DeliveryStatus::parse(r.get(3)).unwrap_or(DeliveryStatus::Pending),
            attempts: r.get::<_, i32>(4).max(0) as u32,
            chain: r.get::<_, i32>(5).max(0) as u32,
            last_status: r
                .get::<_, Option<i32>>(6)
                .and_then(|s| u16::try_from(s).ok()),
            last_error: r.get(7),
            next_at: r.get(8),
            tries: Vec::new(),
        });
    }
    Ok(out)
}

/// Stores a batch in one transaction: de-duplication keys, events, deliveries, then a NOTIFY.
/// Without de-duplication keys, one statement.
async fn insert_batch(
    inner: &Inner,
    events: &[NewEvent],
    prune: bool,
) -> Result<Vec<Inserted>, StoreError> {
    let mut client = inner.pool.get().await.map_err(pool_error)?;
    if !prune && events.iter().all(|e| e.dedupe_key.is_none()) {
        let all: Vec<&NewEvent> = events.iter().collect();
        let claimed = write_new(inner, &client, &all).await?;
        claimed.send();
        return Ok(vec![Inserted::New; events.len()]);
    }
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_error("cannot start a transaction", e))?;
    let fail = |e: tokio_postgres::Error| db_error("cannot store events", e);
    if prune {
        tx.execute(
            &tx.prepare_cached(
                "DELETE FROM hookflow.seen WHERE at < now() - $1 * interval '1 millisecond'",
            )
            .await
            .map_err(fail)?,
            &[&(DEDUPE_WINDOW_MS as f64)],
        )
        .await
        .map_err(fail)?;
    }
    let mut results: Vec<Option<Inserted>> = vec![None; events.len()];
    // The first event of each key in the batch tries to take the key; later ones in the batch
    // repeat it (or whatever holds the key).
    let mut first_of_key: std::collections::HashMap<&str, usize> = Default::default();
    let mut repeats_in_batch = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(key) = &e.dedupe_key {
            match first_of_key.get(key.as_str()) {
                Some(&first) => repeats_in_batch.push((i, first)),
                None => {
                    first_of_key.insert(key, i);
                }
            }
        }
    }
    if !first_of_key.is_empty() {
        let keys: Vec<&str> = first_of_key.keys().copied().collect();
        let ids: Vec<&str> = keys
            .iter()
            .map(|k| events[first_of_key[k]].event.id.as_str())
            .collect();
        let taken: std::collections::HashSet<String> = tx
            .query(
                &tx.prepare_cached(
                    "INSERT INTO hookflow.seen (key, event_id, at)
                 SELECT k, e, now() FROM unnest($1::text[], $2::text[]) AS t(k, e)
                 ON CONFLICT (key) DO NOTHING RETURNING key",
                )
                .await
                .map_err(fail)?,
                &[&keys, &ids],
            )
            .await
            .map_err(fail)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let (held_keys, held_ids): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .zip(&ids)
            .filter(|(k, _)| !taken.contains(**k))
            .map(|(k, i)| (*k, *i))
            .unzip();
        if !held_keys.is_empty() {
            // A key whose first event is a dead letter (every delivery dead) is taken over:
            // a sender's retry of a failed delivery is a new chance, not a repeat.
            let taken_over: std::collections::HashSet<String> = tx.query(
            &tx.prepare_cached("UPDATE hookflow.seen s SET event_id = t.e, at = now()
                     FROM unnest($1::text[], $2::text[]) AS t(k, e)
                     WHERE s.key = t.k
                       AND EXISTS (SELECT 1 FROM hookflow.deliveries d WHERE d.event_id = s.event_id)
                       AND NOT EXISTS (SELECT 1 FROM hookflow.deliveries d
                                       WHERE d.event_id = s.event_id AND d.state <> 'dead')
                     RETURNING s.key").await.map_err(fail)?,
                    &[&held_keys, &held_ids],
                )
                .await
                .map_err(fail)?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            let still_held: Vec<&str> = held_keys
                .iter()
                .copied()
                .filter(|k| !taken_over.contains(*k))
                .collect();
            if !still_held.is_empty() {
                for row in tx
                    .query(
                        &tx.prepare_cached(
                            "SELECT key, event_id FROM hookflow.seen WHERE key = ANY($1)",
                        )
                        .await
                        .map_err(fail)?,
                        &[&still_held],
                    )
                    .await
                    .map_err(fail)?
                {
                    let key: String = row.get(0);
                    let holder: String = row.get(1);
                    if let Some(&i) = first_of_key.get(key.as_str()) {
                        results[i] = Some(Inserted::Duplicate(holder));
                    }
                }
            }
        }
    }
    for (i, first) in repeats_in_batch {
        results[i] = Some(match &results[first] {
            Some(Inserted::Duplicate(holder)) => Inserted::Duplicate(holder.clone()),
            _ => Inserted::Duplicate(events[first].event.id.clone()),
        });
    }
    let new: Vec<&NewEvent> = events
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_none())
        .map(|(e, _)| e)
        .collect();
    let claimed = write_new(inner, &tx, &new).await?;
    tx.commit()
        .await
        .map_err(|e| db_error("cannot commit events", e))?;
    claimed.send();
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Inserted::New))
        .collect())
}

/// Events stored claimed for this relay's worker, with the worker's channel whose room they
/// took: handed over once committed.
#[derive(Default)]
struct ToHandOff {
    pub(super) to: Option<mpsc::UnboundedSender<HandedOff>>,
    pub(super) claimed: Vec<HandedOff>,
}

impl ToHandOff {
    /// Gives the worker its events (after their commit). A worker that stopped meanwhile:
    /// their claims run out and any relay delivers them.
    pub(super) fn send(self) {
        if let Some(to) = self.to {
            for h in self.claimed {
                let _ = to.send(h);
            }
        }
    }
}

/// Writes new events and their deliveries in one statement (so without de-duplication keys a
/// batch is one round trip and one commit): as many as the worker has room for stored claimed by
/// this relay, to be handed over after the commit, the rest pending and announced.
async fn write_new(
    inner: &Inner,
    client: &impl deadpool_postgres::GenericClient,
    new: &[&NewEvent],
) -> Result<ToHandOff, StoreError> {
    if new.is_empty() {
        return Ok(ToHandOff::default());
    }
    let fail = |e: tokio_postgres::Error| db_error("cannot store events", e);
    let handoff = inner
        .handoff
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .filter(|h| !h.tx.is_closed());
    let deliveries: Vec<(&str, &Destination)> = new
        .iter()
        .flat_map(|e| e.destinations.iter().map(|d| (e.event.id.as_str(), d)))
        .collect();
    let sources = new
        .iter()
        .flat_map(|e| e.destinations.iter().map(|_| e.event.source.as_str()));
    // A place in the worker's queue for each delivery handed over, as long as there is room.
    let mut room_left = handoff.is_some();
    let permits: Vec<Option<tokio::sync::OwnedSemaphorePermit>> = deliveries
        .iter()
        .zip(sources)
        .map(|((_, d), source)| {
            let h = handoff
                .as_ref()
                .filter(|h| room_left && !(h.keep)(source, d))?;
            let permit = h.room.clone().try_acquire_owned().ok();
            room_left = permit.is_some();
            permit
        })
        .collect();
    let lease_ms = handoff.as_ref().map_or(0.0, |h| millis(h.lease));
    let claims: Vec<Option<String>> = permits
        .iter()
        .map(|p| p.as_ref().map(|_| claim_token()))
        .collect();
    let cols = EventColumns::of(new.iter().map(|e| &e.event));
    let dcols = DeliveryColumns::of(deliveries.iter().copied());
    let announce = permits.iter().any(Option::is_none);
    let delivery_keys: Vec<Option<&str>> = new
        .iter()
        .map(|e| {
            e.dedupe_key
                .as_deref()
                .and_then(crate::store::event::sender_delivery_id)
        })
        .collect();
    let mut params = cols.params();
    params.extend(dcols.params());
    params.extend::<[&(dyn ToSql + Sync); 5]>([
        &claims,
        &inner.relay_id,
        &lease_ms,
        &announce,
        &delivery_keys,
    ]);
    let statement = client
        .prepare_cached(
            "WITH e AS (
                 INSERT INTO hookflow.events (id, received_at, source, event_type, payload,
                     body_bytes, payload_kind, method, path, headers, delivery_key)
                 SELECT i, now(), s, t, p, b, k, m, pa, h, dk
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::int8[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $18::text[])
                     AS x(i, s, t, p, b, k, m, pa, h, dk)
             ), d AS (
                 INSERT INTO hookflow.deliveries (event_id, destination, lane, token, state,
                     next_at, updated_at, owner, claim, lease_until)
                 SELECT i, d, l, k, CASE WHEN c IS NULL THEN 'pending' ELSE 'inflight' END,
                     now(), now(), CASE WHEN c IS NULL THEN NULL ELSE $15::text END, c::uuid,
                     CASE WHEN c IS NULL THEN NULL
                          ELSE now() + $16::float8 * interval '1 millisecond' END
                 FROM unnest($10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
                     AS x(i, d, l, k, c)
                 RETURNING id, claim
             )
             SELECT (SELECT array_agg(id) FROM d WHERE claim IS NOT NULL),
                    (SELECT array_agg(claim::text) FROM d WHERE claim IS NOT NULL),
                    CASE WHEN $17::bool THEN pg_notify('hookflow_new', '') END", // CHANNEL
        )
        .await
        .map_err(fail)?;
    let row = client.query_one(&statement, &params).await.map_err(fail)?;
    let delivery_ids: Vec<i64> = row.get::<_, Option<Vec<i64>>>(0).unwrap_or_default();
    let claim_texts: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
    let by_claim: std::collections::HashMap<&str, i64> = claim_texts
        .iter()
        .map(String::as_str)
        .zip(delivery_ids)
        .collect();
    let mut out = ToHandOff {
        to: handoff.map(|h| h.tx),
        claimed: Vec::with_capacity(permits.len()),
    };
    let mut shared: std::collections::HashMap<&str, Arc<Event>> = Default::default();
    let events: std::collections::HashMap<&str, &Event> = new
        .iter()
        .map(|e| (e.event.id.as_str(), &e.event))
        .collect();
    for (((event_id, destination), claim), room) in deliveries.iter().zip(claims).zip(permits) {
        let (Some(claim), Some(room), Some(event)) = (claim, room, events.get(event_id)) else {
            continue;
        };
        let Some(id) = by_claim.get(claim.as_str()) else {
            continue;
        };
        let event = shared
            .entry(event_id)
            .or_insert_with(|| Arc::new((*event).clone()))
            .clone();
        out.claimed.push(HandedOff {
            claimed: Claimed {
                id: id.to_string(),
                destination: (*destination).clone(),
                event,
                attempts: 0,
                claim,
            },
            room,
        });
    }
    Ok(out)
}
