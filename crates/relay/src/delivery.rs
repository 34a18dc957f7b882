//! Delivery workers: claim due events from the store, dispatch them to GitHub with bounded
//! concurrency, and record each outcome: delivered (deleted), retry later (exponential backoff
//! with jitter, or GitHub's own `Retry-After` / rate-limit reset), or dead letter (a 4xx that
//! retrying cannot fix, or attempts exhausted).
//!
//! HTTP handlers live in [`crate::http`]; this module never sees a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::backoff::backoff;
use crate::config::DeliveryConfig;
use crate::github::{Client, Outcome};
use crate::github_app::AppError;
use crate::metrics::{DeadReason, Metrics, StoreOp};
use crate::rate_limit::RateLimiter;
use crate::refused_tokens::RefusedTokens;
use crate::store::postgres::HandedOff;
use crate::store::{ClaimRef, Claimed, Recorded, Store, StoreHandle, TokenSource};
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::{credentials, Environment};

/// The dispatch rate limit per lane (repository and credential): the relay's own on SQLite
/// (one relay per store), the database's on PostgreSQL, so that the limit holds for the whole
/// cluster and N relays do not send N times as much.
enum Limiter {
    Local(RateLimiter),
    Cluster(crate::store::postgres::PgStore, u32),
}

impl Limiter {
    fn for_store(store: &StoreHandle, per_minute: u32) -> Limiter {
        match store {
            StoreHandle::Postgres(pg) if per_minute > 0 => Limiter::Cluster(pg.clone(), per_minute),
            _ => Limiter::Local(RateLimiter::new(per_minute)),
        }
    }

    /// A token now, or the wait until the slot booked for this delivery.
    async fn take(&self, lane: &str) -> Result<(), Duration> {
        match self {
            Limiter::Local(l) => l.take(lane),
            Limiter::Cluster(pg, per_minute) => match pg.take_slot(lane, *per_minute).await {
                Ok(taken) => taken,
                Err(e) => {
                    // The result cannot be recorded either while the database is away: try
                    // again shortly.
                    tracing::warn!(error = %e, "cannot take a dispatch slot; deferring the delivery");
                    Err(Duration::from_secs(1))
                }
            },
        }
    }
}

/// Longest idle wait between looks at the store (retries that came due).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Under a backlog, how long the worker waits for a quarter of its slots to free up so that one
/// claim takes several deliveries rather than one claim per finished delivery.
const CLAIM_GATHER: Duration = Duration::from_millis(2);

/// What the delivery worker works with.
pub struct Worker {
    /// The event store.
    pub store: StoreHandle,
    /// The GitHub client.
    pub client: Client,
    /// Concurrency, retries, rate limit.
    pub config: DeliveryConfig,
    /// Notified when an event is stored.
    pub wake: Arc<Notify>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The clock and the endpoints' tokens.
    pub env: Environment,
    /// Tokens GitHub refused lately.
    pub refused: Arc<RefusedTokens>,
    /// How long a shutdown waits for deliveries in flight before cancelling them.
    pub drain: Duration,
    /// Events this relay stored, handed over already claimed (PostgreSQL), if any.
    pub handoff: Option<mpsc::UnboundedReceiver<HandedOff>>,
}

/// Runs until `shutdown` turns true, then waits for deliveries in flight.
pub async fn run(worker: Worker, mut shutdown: watch::Receiver<bool>) {
    let Worker {
        store,
        client,
        config,
        wake,
        metrics,
        env,
        refused,
        drain,
        mut handoff,
    } = worker;
    let mut tasks = tokio::task::JoinSet::new();
    // Claims in flight, by delivery id: what a shutdown puts back.
    let in_flight: Arc<Mutex<HashMap<String, ClaimRef>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let limiter = Arc::new(Limiter::for_store(&store, config.rate_limit_per_minute));
    let config = Arc::new(config);
    // A delivery cannot stay in flight longer than its request timeout; past this lease its
    // result was lost (this relay died, or the store refused the write) and any relay may
    // claim it again.
    let lease = config.lease();
    let gather = (config.concurrency / 4).max(1);
    let start = |event: Claimed, permit: OwnedSemaphorePermit, tasks: &mut JoinSet<()>| {
        let (store, client, config) = (store.clone(), client.clone(), config.clone());
        let (limiter, metrics, env) = (limiter.clone(), metrics.clone(), env.clone());
        let refused = refused.clone();
        let in_flight = in_flight.clone();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let claim = ClaimRef::from(&event);
            let id = event.event_id.clone();
            lock(&in_flight).insert(claim.id.clone(), claim.clone());
            // Buckets per repository and credential: events carrying strangers' tokens
            // never spend the slots of an authenticated sender's.
            let bucket = format!("{} {}", event.repo, event.token.lane_key());
            let result = match limiter.take(&bucket).await {
                Ok(()) => deliver(&client, &config, &metrics, &env, &refused, event).await,
                Err(wait) => Recorded::Defer {
                    delay: wait + Duration::from_millis(1),
                },
            };
            let started = Instant::now();
            let recorded = store.record(vec![(claim.clone(), result)]).await;
            metrics.store_took(StoreOp::Record, started.elapsed());
            match recorded {
                Ok(1) => {}
                Ok(_) => tracing::warn!(
                    event_id = %id,
                    "the delivery's lease ran out before its result was recorded; another claim owns it now"
                ),
                // The delivery stays in flight and is claimed again when its lease runs out.
                Err(e) => tracing::error!(event_id = %id, error = %e, "cannot record a delivery result"),
            }
            lock(&in_flight).remove(&claim.id);
            drop(permit);
        });
    };
    // Whether to look at the store: at start, when woken (an event was stored or announced),
    // when the poll comes due, and while the last claim took all it asked for (a backlog).
    // Events this relay stored itself may come handed over instead, without a look.
    let mut look = true;
    let mut backlog = false;
    let mut poll_at = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Some(rx) = handoff.as_mut() {
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                match rx.try_recv() {
                    Ok(h) => {
                        drop(h.room);
                        start(h.claimed, permit, &mut tasks);
                    }
                    Err(_) => break,
                }
            }
        }
        if !look && Instant::now() >= poll_at {
            look = true;
        }
        if !look {
            tokio::select! {
                _ = wake.notified() => look = true,
                _ = tokio::time::sleep_until(poll_at.into()) => look = true,
                h = next_handed_off(&mut handoff) => match h {
                    Some(h) => tokio::select! {
                        permit = slots.clone().acquire_owned() => {
                            if let Ok(permit) = permit {
                                drop(h.room);
                                start(h.claimed, permit, &mut tasks);
                            }
                        }
                        _ = shutdown.changed() => requeue(&store, vec![ClaimRef::from(&h.claimed)]).await,
                    },
                    // The store stopped handing over.
                    None => handoff = None,
                },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if backlog && slots.available_permits() < gather {
            tokio::select! {
                permits = tokio::time::timeout(CLAIM_GATHER, slots.clone().acquire_many_owned(gather as u32)) => drop(permits),
                _ = shutdown.changed() => {}
            }
        }
        let free = slots.available_permits();
        if free == 0 {
            // Wait for a delivery to finish.
            tokio::select! {
                permit = slots.clone().acquire_owned() => drop(permit),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let started = Instant::now();
        let claimed = store.claim(free, lease).await;
        metrics.store_took(StoreOp::Claim, started.elapsed());
        let due = match claimed {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read due events; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        backlog = due.len() == free;
        if due.is_empty() {
            let wait = match store.next_due().await {
                Ok(Some(wait)) => wait.min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            look = false;
            poll_at = Instant::now() + wait;
            continue;
        }
        for event in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            start(event, permit, &mut tasks);
        }
    }
    // Events handed over but not started: back to the queue at once.
    if let Some(mut rx) = handoff.take() {
        rx.close();
        let mut left = Vec::new();
        while let Ok(h) = rx.try_recv() {
            left.push(ClaimRef::from(&h.claimed));
        }
        requeue(&store, left).await;
    }
    // Let deliveries in flight finish and record their results, up to the shutdown timeout;
    // then cancel the rest and put their events back in the queue.
    if tokio::time::timeout(drain, slots.acquire_many(config.concurrency as u32))
        .await
        .is_err()
    {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<ClaimRef> = lock(&in_flight).drain().map(|(_, c)| c).collect();
        tracing::warn!(
            events = left.len(),
            "deliveries still in flight at the shutdown timeout; cancelled and requeued"
        );
        requeue(&store, left).await;
    }
}

/// The next event handed over, or never when this store hands none over.
async fn next_handed_off(
    handoff: &mut Option<mpsc::UnboundedReceiver<HandedOff>>,
) -> Option<HandedOff> {
    match handoff {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Puts claimed deliveries this relay will not make back in the queue, due at once.
async fn requeue(store: &StoreHandle, claims: Vec<ClaimRef>) {
    if claims.is_empty() {
        return;
    }
    let results = claims
        .into_iter()
        .map(|c| {
            (
                c,
                Recorded::Defer {
                    delay: Duration::ZERO,
                },
            )
        })
        .collect();
    if let Err(e) = store.record(results).await {
        tracing::error!(error = %e, "cannot requeue deliveries; they are due again when their lease runs out");
    }
}

/// The claims in flight; a panic elsewhere does not make it unusable.
fn lock(
    set: &Mutex<HashMap<String, ClaimRef>>,
) -> std::sync::MutexGuard<'_, HashMap<String, ClaimRef>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delivers one event and decides what to record.
pub async fn deliver(
    client: &Client,
    config: &DeliveryConfig,
    metrics: &Metrics,
    env: &Environment,
    refused: &RefusedTokens,
    event: Claimed,
) -> Recorded {
    let attempt = event.attempts + 1;
    let dead = |error: String, status: Option<u16>, reason: DeadReason| {
        tracing::warn!(event_id = %event.event_id, attempt, %error, "dead letter");
        metrics.dead(reason);
        Recorded::Dead { error, status }
    };
    let repo = match Repo::parse(&event.repo) {
        Ok(r) => r,
        Err(e) => return dead(e.to_string(), None, DeadReason::Setup),
    };
    let retry = |reason: String, after: Option<Duration>| {
        if attempt >= config.max_attempts {
            return dead(
                format!("{reason} (gave up after {attempt} attempts)"),
                None,
                DeadReason::Exhausted,
            );
        }
        let wait =
            after.unwrap_or_else(|| backoff(attempt, config.initial_backoff, config.max_backoff));
        tracing::info!(event_id = %event.event_id, attempt, retry_in_ms = wait.as_millis() as u64, %reason, "retry");
        Recorded::RetryAfter {
            delay: wait,
            error: reason,
        }
    };
    let refusal = |r: AppRefusal| match r {
        AppRefusal::Dead(e) => dead(e, None, DeadReason::Refused),
        AppRefusal::Setup(e) => dead(e, None, DeadReason::Setup),
        AppRefusal::Later(delay) => Recorded::Defer { delay },
        AppRefusal::Retry(e) => retry(e, None),
    };
    let token = match &event.token {
        TokenSource::Inline(t) if !t.is_empty() => t.clone(),
        TokenSource::Inline(_) => {
            return dead(
                "the event has no GitHub token".into(),
                None,
                DeadReason::Setup,
            )
        }
        TokenSource::Env(name) => match env.var(name) {
            Some(t) => t,
            None => {
                return dead(
                    format!("the token variable {name} is not set in the relay's environment"),
                    None,
                    DeadReason::Setup,
                )
            }
        },
        TokenSource::App => match app_token(client, metrics, &repo, &event.event_id).await {
            Ok(t) => t,
            Err(r) => return refusal(r),
        },
    };
    if !credentials::is_token_text(&token) {
        // A header cannot carry it: no retry can succeed.
        return dead(
            "the GitHub token holds characters no token has (spaces, line breaks, control characters)".into(),
            None,
            DeadReason::Setup,
        );
    }
    // A token from a request that GitHub refused lately is not sent again.
    let inline_fingerprint = match &event.token {
        TokenSource::Inline(t) => Some(credentials::fingerprint(t)),
        TokenSource::Env(_) | TokenSource::App => None,
    };
    if let Some(fp) = &inline_fingerprint {
        if refused.refused(fp, env.now_ms()) {
            return dead(
                "GitHub refused this event's token (401) within the last hour; not sent again"
                    .into(),
                Some(401),
                DeadReason::Refused,
            );
        }
    }
    let started = Instant::now();
    let mut outcome = client.dispatch(&repo, &token, event.body.clone()).await;
    if let (TokenSource::App, Outcome::Failed { status: 401, .. }, Some(app)) =
        (&event.token, &outcome, client.app())
    {
        // Revoked, or the installation changed: a new token, once.
        app.forget(&repo, &token).await;
        match app_token(client, metrics, &repo, &event.event_id).await {
            Ok(fresh) => outcome = client.dispatch(&repo, &fresh, event.body).await,
            Err(r) => return refusal(r),
        }
    }
    let took = started.elapsed();
    match outcome {
        Outcome::Delivered => {
            metrics.delivered(took);
            tracing::info!(event_id = %event.event_id, %repo, attempt, ms = took.as_millis() as u64, "delivered");
            Recorded::Delivered
        }
        Outcome::Failed { status, reason } => {
            if let (401, Some(fp)) = (status, inline_fingerprint) {
                refused.remember(fp, env.now_ms());
            }
            dead(reason, Some(status), DeadReason::Refused)
        }
        Outcome::Retry { reason, after } => {
            if attempt < config.max_attempts {
                metrics.retried(took);
            }
            retry(reason, after)
        }
    }
}

/// How long deliveries wait when GitHub refuses the app's own credentials (a wrong app id or
/// key): an operator must fix the configuration, and retrying sooner only adds refusals.
const APP_CREDENTIALS_WAIT: Duration = Duration::from_secs(300);

/// Why the app has no token for a delivery, and what becomes of it.
enum AppRefusal {
    /// Not installed there, or without the permission: a dead letter that says what to do.
    Dead(String),
    /// The relay has no app.
    Setup(String),
    /// GitHub refused the app itself: wait, without spending an attempt.
    Later(Duration),
    /// Worth another attempt.
    Retry(String),
}

/// An installation token of the relay's GitHub App for `repo`.
async fn app_token(
    client: &Client,
    metrics: &Metrics,
    repo: &Repo,
    event_id: &str,
) -> Result<String, AppRefusal> {
    let Some(app) = client.app() else {
        return Err(AppRefusal::Setup(
            "the event is to be sent as the relay's GitHub App, and the relay has no github_app configured".into(),
        ));
    };
    match app.token(repo).await {
        Ok(t) => Ok(t),
        Err(e @ (AppError::NotInstalled { .. } | AppError::Permission { .. })) => {
            Err(AppRefusal::Dead(e.to_string()))
        }
        Err(e @ AppError::Credentials { .. }) => {
            metrics.app_auth_failed();
            tracing::error!(event_id, error = %e, "GitHub refused the relay's GitHub App credentials; deliveries by the app wait 5 minutes");
            Err(AppRefusal::Later(APP_CREDENTIALS_WAIT))
        }
        Err(AppError::Transient(e)) => Err(AppRefusal::Retry(e)),
    }
}
