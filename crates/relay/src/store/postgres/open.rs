use super::db::db_error;
use super::db::pool_error;
use super::db::CHANNEL;
use super::db::MAX_BATCH;
use super::db::POOL_SIZE;
use super::db::REAP_EVERY;
use super::inner::HandedOff;
use super::inner::Handoff;
use super::inner::Inner;
use super::inner::KeepPending;
use super::insert::batcher;
use super::location::PgLocation;
use super::record::record_batcher;
use super::rows::DeliveryColumns;
use super::rows::EventColumns;
use super::schema::apply_migrations;
use super::schema::read_version;
use super::schema::schema_state;
use super::schema::SchemaState;
use super::schema::SCHEMA_VERSION;
use crate::store::delivery::SeenKey;
use crate::store::delivery::StoredEvent;
use crate::store::error::StoreError;
use crate::store::event::Destination;
use deadpool_postgres::Manager;
use deadpool_postgres::ManagerConfig;
use deadpool_postgres::Pool;
use deadpool_postgres::RecyclingMethod;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::sync::Notify;
use tokio::sync::Semaphore;
use tokio_postgres::types::ToSql;

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .field("relay_id", &self.inner.relay_id)
            .finish()
    }
}

impl PgStore {
    /// Connects, checks (and with `migrate`, applies) the schema, and starts the insert batcher.
    pub async fn open(location: &PgLocation, migrate: bool) -> Result<PgStore, StoreError> {
        let tls = location.connector()?;
        let manager = Manager::from_config(
            location.config.clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| db_error("cannot make a connection pool", e))?;
        let state = schema_state(&pool, location).await?;
        if state.version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "{location}: made by a newer hookflow (schema {}, this one knows {SCHEMA_VERSION}); upgrade hookflow",
                state.version
            )));
        }
        if state.version < SCHEMA_VERSION {
            if !migrate {
                return Err(StoreError::Unavailable(format!(
                    "{location}: the store's schema is {} and this hookflow needs {SCHEMA_VERSION}; run `hookflow relay migrate --store URL` (or start the relay without --no-migrate)",
                    state.version
                )));
            }
            apply_migrations(&pool, location).await?;
        }
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let (records, records_rx) = mpsc::channel(MAX_BATCH * 4);
        let inner = Arc::new(Inner {
            pool,
            location: location.clone(),
            relay_id: format!("relay-{}", ulid::Ulid::generate()),
            inserts: tx,
            records,
            last_reap: Mutex::new(Instant::now() - REAP_EVERY),
            reaps: Default::default(),
            handoff: Mutex::new(None),
        });
        tokio::spawn(batcher(Arc::downgrade(&inner), rx));
        tokio::spawn(record_batcher(Arc::downgrade(&inner), records_rx));
        Ok(PgStore { inner })
    }

    /// The schema version of the database (without changing it).
    pub async fn schema(location: &PgLocation) -> Result<SchemaState, StoreError> {
        let (client, connection) = location
            .config
            .connect(location.connector()?)
            .await
            .map_err(|e| db_error(&format!("cannot connect to {location}"), e))?;
        tokio::spawn(connection);
        read_version(&client, location)
            .await
            .map(|version| SchemaState {
                version,
                current: SCHEMA_VERSION,
            })
    }

    /// Applies pending migrations; returns the versions before and after.
    pub async fn migrate(location: &PgLocation) -> Result<(i32, i32), StoreError> {
        let before = Self::schema(location).await?.version;
        if before > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "{location}: made by a newer hookflow (schema {before}, this one knows {SCHEMA_VERSION}); upgrade hookflow"
            )));
        }
        drop(Self::open(location, true).await?);
        Ok((before, SCHEMA_VERSION))
    }

    /// This relay's name in the `owner` column of the deliveries it claims.
    pub fn relay_id(&self) -> &str {
        &self.inner.relay_id
    }

    /// Wakes `wake` whenever any relay commits new events (`LISTEN hookflow_new`), until the
    /// store is dropped; reconnects after a lost connection.
    pub fn notify_new_events(&self, wake: Arc<Notify>) {
        let weak = Arc::downgrade(&self.inner);
        let location = self.inner.location.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                match listen(&location, &wake, &weak).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                        // Whatever was announced meanwhile is found by polling.
                        wake.notify_one();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// Adds events moved from another store, with their state, attempts and due times, and the
    /// de-duplication keys it remembered; one transaction per call. An event already here (a
    /// move run again after it failed part way) is left as it is. Returns how many were new.
    pub async fn import(
        &self,
        events: &[StoredEvent],
        seen: &[SeenKey],
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot import events", e);
        let tx = client.transaction().await.map_err(fail)?;
        let mut added = 0;
        if !events.is_empty() {
            let cols = EventColumns::of(events.iter().map(|x| &x.event.event));
            let received: Vec<f64> = events
                .iter()
                .map(|x| x.event.event.received_at as f64)
                .collect();
            let pairs: Vec<(&str, &Destination, &crate::store::delivery::DeliveryState)> = events
                .iter()
                .flat_map(|x| {
                    x.event
                        .destinations
                        .iter()
                        .zip(&x.deliveries)
                        .map(|(d, st)| (x.event.event.id.as_str(), d, st))
                })
                .collect();
            let dcols = DeliveryColumns::of(pairs.iter().map(|(i, d, _)| (*i, *d)));
            let states: Vec<&str> = pairs
                .iter()
                .map(|(_, _, st)| if st.dead { "dead" } else { "pending" })
                .collect();
            let attempts: Vec<i32> = pairs
                .iter()
                .map(|(_, _, st)| i32::try_from(st.attempts).unwrap_or(i32::MAX))
                .collect();
            let due: Vec<f64> = pairs
                .iter()
                .map(|(_, _, st)| st.next_attempt_at as f64)
                .collect();
            let errors: Vec<Option<&str>> = pairs
                .iter()
                .map(|(_, _, st)| st.last_error.as_deref())
                .collect();
            let statuses: Vec<Option<i32>> = pairs
                .iter()
                .map(|(_, _, st)| st.last_status.map(i32::from))
                .collect();
            let mut params = cols.params();
            params.push(&received);
            params.extend(dcols.params());
            params
                .extend::<[&(dyn ToSql + Sync); 5]>([&states, &attempts, &due, &errors, &statuses]);
            let imported = tx
                .query_one(
                    "WITH e AS (
                         INSERT INTO hookflow.events (id, received_at, source, event_type,
                             payload, body_bytes, payload_kind, method, path, headers)
                         SELECT i, to_timestamp(r / 1000), s, t, p, b, k, m, pa, h
                         FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[],
                             $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[],
                             $10::float8[]) AS x(i, s, t, p, b, k, m, pa, h, r)
                         ON CONFLICT (id) DO NOTHING
                         RETURNING id
                     ), d AS (
                         INSERT INTO hookflow.deliveries (event_id, destination, lane, token,
                             state, attempts, next_at, last_error, last_status, updated_at)
                         SELECT i, d, l, k, st, a, to_timestamp(n / 1000), err, status, now()
                         FROM unnest($11::text[], $12::text[], $13::text[], $14::text[],
                             $15::text[], $16::int4[], $17::float8[], $18::text[], $19::int4[])
                             AS x(i, d, l, k, st, a, n, err, status)
                         WHERE i IN (SELECT id FROM e)
                     )
                     SELECT count(*) FROM e",
                    &params,
                )
                .await
                .map_err(fail)?;
            added = imported.get::<_, i64>(0).max(0) as u64;
        }
        if !seen.is_empty() {
            let keys: Vec<&str> = seen.iter().map(|k| k.key.as_str()).collect();
            let ids: Vec<&str> = seen.iter().map(|k| k.event_id.as_str()).collect();
            let at: Vec<f64> = seen.iter().map(|k| k.at as f64).collect();
            tx.execute(
                "INSERT INTO hookflow.seen (key, event_id, at)
                 SELECT k, e, to_timestamp(a / 1000)
                 FROM unnest($1::text[], $2::text[], $3::float8[]) AS t(k, e, a)
                 ON CONFLICT (key) DO NOTHING",
                &[&keys, &ids, &at],
            )
            .await
            .map_err(fail)?;
        }
        if added > 0 {
            tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL])
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)?;
        Ok(added)
    }

    /// From now on, hands up to `room` of this relay's new events at a time straight to the
    /// caller (its delivery worker), stored claimed with a `lease`; the rest, and deliveries
    /// `keep` names, are stored pending. Dropping the receiver stops it.
    pub fn hand_off_new_events(
        &self,
        room: usize,
        lease: Duration,
        keep: KeepPending,
    ) -> mpsc::UnboundedReceiver<HandedOff> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.inner.handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(Handoff {
            tx,
            room: Arc::new(Semaphore::new(room)),
            lease,
            keep,
        });
        rx
    }

    /// Takes a dispatch token of `lane` (`per_minute`, a minute's worth of burst) for the whole
    /// cluster, or gives the wait for one: when `book`, the lane's next free slot, booked for
    /// this delivery; otherwise the next token's time, booking nothing (a batching lane, whose
    /// next batch takes every delivery waiting). The same rule as the relay's own
    /// [`crate::limits::rate_limit::RateLimiter`], kept in the database so that N relays do not send
    /// N times the limit.
    pub async fn take_slot(
        &self,
        lane: &str,
        per_minute: u32,
        book: bool,
    ) -> Result<Result<(), Duration>, StoreError> {
        if per_minute == 0 {
            return Ok(Ok(()));
        }
        let client = self.client().await?;
        let fail = |e: tokio_postgres::Error| db_error("cannot take a dispatch slot", e);
        let rate = f64::from(per_minute);
        let take = client
            .prepare_cached(
                "WITH cur AS (
                     SELECT lane, least($2::float8, tokens + extract(epoch FROM now() - at) * $2::float8 / 60.0) AS t
                     FROM hookflow.lanes WHERE lane = $1 FOR UPDATE
                 )
                 UPDATE hookflow.lanes l SET
                     tokens = CASE WHEN cur.t >= 1 THEN cur.t - 1 ELSE cur.t END,
                     at = now(),
                     last_slot = CASE WHEN cur.t >= 1 OR NOT $3 THEN l.last_slot ELSE greatest(
                         now() + (1 - cur.t) * 60.0 / $2::float8 * interval '1 second',
                         l.last_slot + 60.0 / $2::float8 * interval '1 second') END
                 FROM cur WHERE l.lane = cur.lane
                 RETURNING cur.t >= 1, CASE WHEN $3 THEN extract(epoch FROM l.last_slot - now())::float8
                     ELSE (1 - cur.t) * 60.0 / $2::float8 END",
            )
            .await
            .map_err(fail)?;
        let mut row = client
            .query_opt(&take, &[&lane, &rate, &book])
            .await
            .map_err(fail)?;
        if row.is_none() {
            // A lane's first delivery (or its first since its bucket was full and forgotten).
            client
                .execute(
                    "INSERT INTO hookflow.lanes (lane, tokens, at, last_slot)
                     VALUES ($1, $2::float8, now(), now()) ON CONFLICT (lane) DO NOTHING",
                    &[&lane, &rate],
                )
                .await
                .map_err(fail)?;
            row = client
                .query_opt(&take, &[&lane, &rate, &book])
                .await
                .map_err(fail)?;
        }
        let Some(row) = row else {
            return Err(StoreError::Unavailable(format!(
                "{}: the dispatch lane {lane} vanished",
                self.inner.location
            )));
        };
        if row.get::<_, bool>(0) {
            return Ok(Ok(()));
        }
        let wait: f64 = row.get(1);
        Ok(Err(Duration::from_secs_f64(wait.max(0.0))))
    }

    /// Forgets lanes whose buckets are full again and have no slot booked ahead (forgetting them
    /// changes nothing), so made-up repository names cannot grow the table without end.
    pub(super) async fn prune_lanes(
        client: &deadpool_postgres::Client,
    ) -> Result<u64, tokio_postgres::Error> {
        client
            .execute(
                "DELETE FROM hookflow.lanes
                 WHERE at < now() - interval '61 seconds' AND last_slot < now()",
                &[],
            )
            .await
    }

    /// The connection pool's figures.
    pub fn pool_status(&self) -> crate::store::delivery::PoolStatus {
        let s = self.inner.pool.status();
        crate::store::delivery::PoolStatus {
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
            max: s.max_size,
        }
    }
}

/// One LISTEN session: returns `Ok` when the store is gone, `Err` when the connection is.
async fn listen(
    location: &PgLocation,
    wake: &Notify,
    alive: &std::sync::Weak<Inner>,
) -> Result<(), StoreError> {
    let (client, mut connection) = location
        .config
        .connect(location.connector()?)
        .await
        .map_err(|e| db_error("cannot connect to LISTEN", e))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                    if tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| db_error("cannot LISTEN", e))?;
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some(()) => wake.notify_one(),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                if alive.strong_count() == 0 {
                    return Ok(());
                }
                // Keeps the session's liveness visible; a dead connection errors here.
                client.simple_query("SELECT 1").await.map_err(|e| db_error("LISTEN session", e))?;
            }
        }
        if alive.strong_count() == 0 {
            return Ok(());
        }
    }
    match driver.await {
        Ok(Err(e)) => Err(db_error("LISTEN session", e)),
        _ => Err(StoreError::Unavailable(
            "PostgreSQL: LISTEN session ended".into(),
        )),
    }
}
