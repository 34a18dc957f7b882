//! Delivery workers: claim due events from the store, dispatch them to GitHub with bounded
//! concurrency, and record each outcome: delivered (deleted), retry later (exponential backoff
//! with jitter, or GitHub's own `Retry-After` / rate-limit reset), or dead letter (a 4xx that
//! retrying cannot fix, or attempts exhausted).
//!
//! HTTP handlers live in [`crate::http`]; this module never sees a request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use crate::backoff::backoff;
use crate::batching::{self, BatchContext, Batches, Leader};
use crate::bodies::Bodies;
use crate::config::DeliveryConfig;
use crate::destinations::{self, DestinationConfig, Target};
use crate::forward::{Forwarder, HttpDestination, Message};
use crate::github::{Client, Outcome};
use crate::github_app::AppError;
use crate::metrics::{DeadReason, DestinationResult, Metrics, StoreOp};
use crate::rate_limit::RateLimiter;
use crate::refused_tokens::RefusedTokens;
use crate::reload::{Current, Live};
use crate::store::postgres::HandedOff;
use crate::store::{
    ClaimRef, Claimed, Destination, Payload, Recorded, Store, StoreHandle, TokenSource, Tried,
};
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::{credentials, Environment};

/// The dispatch rate limit per lane (repository and credential): the relay's own on SQLite
/// (one relay per store), the database's on PostgreSQL, so that the limit holds for the whole
/// cluster and N relays do not send N times as much.
/// The rate (`delivery.rate_limit_per_minute`) changes on a configuration reload.
pub struct Limiter {
    local: RateLimiter,
    cluster: Option<crate::store::postgres::PgStore>,
}

impl Limiter {
    /// The limiter of a store's relays, `per_minute` dispatches per lane (0: none).
    pub fn for_store(store: &StoreHandle, per_minute: u32) -> Limiter {
        Limiter {
            local: RateLimiter::new(per_minute),
            cluster: match store {
                StoreHandle::Postgres(pg) => Some(pg.clone()),
                StoreHandle::Sqlite(_) => None,
            },
        }
    }

    /// Changes the rate (a configuration reload).
    pub fn set_per_minute(&self, per_minute: u32) {
        self.local.set_per_minute(per_minute);
    }

    /// A token now, or the wait: until the slot booked for this delivery (`book`), or until
    /// the next token (a batching lane: its next batch takes every delivery waiting).
    pub(crate) async fn take(&self, lane: &str, book: bool) -> Result<(), Duration> {
        let per_minute = self.local.per_minute();
        match &self.cluster {
            _ if per_minute == 0 => Ok(()),
            None if book => self.local.take(lane),
            None => self.local.try_take(lane),
            Some(pg) => match pg.take_slot(lane, per_minute, book).await {
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
    /// The client of HTTP destinations.
    pub forwarder: Forwarder,
    /// The configuration in effect (destinations, delivery settings) and the bounds it sets
    /// (deliveries in flight, dispatches per lane).
    pub live: Arc<Live>,
    /// Notified when an event is stored.
    pub wake: Arc<Notify>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The clock and the endpoints' tokens.
    pub env: Environment,
    /// Tokens GitHub refused lately.
    pub refused: Arc<RefusedTokens>,
    /// Bodies by reference, when configured.
    pub bodies: Option<Arc<Bodies>>,
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
        forwarder,
        live,
        wake,
        metrics,
        env,
        refused,
        bodies,
        drain,
        mut handoff,
    } = worker;
    let mut tasks = tokio::task::JoinSet::new();
    // Claims in flight, by delivery id: what a shutdown puts back.
    let in_flight: Arc<Mutex<HashMap<String, ClaimRef>>> = Arc::default();
    let slots = live.bounds.delivery_slots.clone();
    let limiter = live.bounds.dispatch_rate.clone();
    // A delivery cannot stay in flight longer than its request timeout; past this lease its
    // result was lost (this relay died, or the store refused the write) and any relay may
    // claim it again. (Both change only at a restart.)
    let lease = live.current().config.delivery.lease();
    let gather = (live.current().config.delivery.concurrency / 4).max(1);
    let senders = Arc::new(Senders {
        client,
        forwarder,
        refused,
        bodies,
    });
    let batches = Arc::new(Batches::default());
    // Each job works with the configuration its claim was placed under (`now`: one read of the
    // cell per claim, or per event handed over).
    let spawn =
        |job: Job, permit: OwnedSemaphorePermit, tasks: &mut JoinSet<()>, now: &Arc<Current>| {
            let now = now.clone();
            let (store, senders) = (store.clone(), senders.clone());
            let (limiter, metrics, env) = (limiter.clone(), metrics.clone(), env.clone());
            let (in_flight, batches) = (in_flight.clone(), batches.clone());
            while tasks.try_join_next().is_some() {}
            tasks.spawn(async move {
                let done = match job {
                    Job::Lead(leader) => {
                        let ctx = BatchContext {
                            store: &store,
                            senders: &senders,
                            now: &now,
                            metrics: &metrics,
                            env: &env,
                            limiter: &limiter,
                            batches: &batches,
                            in_flight: &in_flight,
                            lease,
                        };
                        batching::deliver_batches(&ctx, leader).await
                    }
                    Job::Alone(event) => {
                        let claim = ClaimRef::from(&event);
                        // GitHub's rate limit, per repository and credential (events carrying
                        // strangers' tokens never spend the slots of an authenticated sender's);
                        // HTTP destinations have none.
                        let limited = match &event.destination {
                            Destination::Repo { .. } => {
                                limiter.take(&event.destination.lane(), true).await
                            }
                            Destination::Http { .. } => Ok(()),
                        };
                        let result = match limited {
                            Ok(()) => deliver(&senders, &now, &metrics, &env, event).await,
                            Err(wait) => Recorded::RateLimited {
                                delay: wait + Duration::from_millis(1),
                            },
                        };
                        record(&store, &metrics, vec![(claim, result)]).await
                    }
                };
                let mut set = lock(&in_flight);
                for c in done {
                    set.remove(&c.id);
                }
                drop(set);
                drop(permit);
            });
        };
    // Claimed deliveries go to a task of their own, or to their batching lane's leader (in
    // claim order: this loop is the one place that claims).
    let place = |group: Vec<Claimed>, now: &Current| -> Vec<Job> {
        track(&in_flight, &group);
        match batching::lead(&batches, &now.destinations, group, &slots) {
            Err(alone) => alone.into_iter().map(Job::Alone).collect(),
            Ok(leader) => leader.map(Job::Lead).into_iter().collect(),
        }
    };
    let start = |claimed: Claimed, permit: OwnedSemaphorePermit, tasks: &mut JoinSet<()>| {
        let now = live.current();
        match place(vec![claimed], &now).pop() {
            Some(job) => spawn(job, permit, tasks, &now),
            None => drop(permit),
        }
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
        let ticket = batches.claim_begun();
        let claimed = store.claim(free, lease).await;
        metrics.store_took(StoreOp::Claim, started.elapsed());
        let due = match claimed {
            Ok(d) => d,
            Err(e) => {
                batches.placed(ticket);
                tracing::error!(error = %e, "cannot read due events; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        backlog = due.len() == free;
        if due.is_empty() {
            batches.placed(ticket);
            let wait = match store.next_due().await {
                Ok(Some(wait)) => wait.min(IDLE_POLL),
                _ => IDLE_POLL,
            };
            look = false;
            poll_at = Instant::now() + wait;
            continue;
        }
        // Every group placed (given to its lane's leader, or made a job) before any wait.
        let now = live.current();
        let jobs: Vec<Job> = batching::groups(due, &now.destinations, &batches)
            .into_iter()
            .flat_map(|group| place(group, &now))
            .collect();
        batches.placed(ticket);
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                // Closed: the jobs not started are put back by the shutdown below.
                drop(jobs);
                break;
            };
            spawn(job, permit, &mut tasks, &now);
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
    // then cancel the rest. What is left in flight (cancelled, or claimed and never started: a
    // job waiting for a slot, or given to a lane's leader that had finished) goes back to the
    // queue at once.
    let concurrency = live.current().config.delivery.concurrency as u32;
    let timed_out = tokio::time::timeout(drain, slots.acquire_many(concurrency))
        .await
        .is_err();
    if timed_out {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let left: Vec<ClaimRef> = lock(&in_flight).drain().map(|(_, c)| c).collect();
    if timed_out {
        tracing::warn!(
            events = left.len(),
            "deliveries still in flight at the shutdown timeout; cancelled and requeued"
        );
    }
    requeue(&store, left).await;
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

/// What a delivery task does.
enum Job {
    /// Sends this delivery on its own.
    Alone(Claimed),
    /// Leads a batching lane.
    Lead(Leader),
}

/// Records results; returns their claims, no longer in flight at this relay.
pub(crate) async fn record(
    store: &StoreHandle,
    metrics: &Metrics,
    results: Vec<(ClaimRef, Recorded)>,
) -> Vec<ClaimRef> {
    if results.is_empty() {
        return Vec::new();
    }
    let claims: Vec<ClaimRef> = results.iter().map(|(c, _)| c.clone()).collect();
    let started = Instant::now();
    let recorded = store.record(results).await;
    metrics.store_took(StoreOp::Record, started.elapsed());
    match recorded {
        Ok(n) if n == claims.len() => {}
        Ok(n) => tracing::warn!(
            deliveries = claims.len() - n,
            "a delivery's lease ran out before its result was recorded; another claim owns it now"
        ),
        // The deliveries stay in flight and are claimed again when their lease runs out.
        Err(e) => {
            tracing::error!(deliveries = claims.len(), error = %e, "cannot record delivery results")
        }
    }
    claims
}

/// Notes claimed deliveries in flight (a shutdown puts them back).
pub(crate) fn track(in_flight: &InFlight, claimed: &[Claimed]) {
    let mut set = lock(in_flight);
    for c in claimed {
        set.insert(c.id.clone(), ClaimRef::from(c));
    }
}

/// The claims in flight, by delivery id.
pub(crate) type InFlight = Mutex<HashMap<String, ClaimRef>>;

/// The claims in flight; a panic elsewhere does not make it unusable.
fn lock(
    set: &Mutex<HashMap<String, ClaimRef>>,
) -> std::sync::MutexGuard<'_, HashMap<String, ClaimRef>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// What deliveries are sent with.
pub struct Senders {
    /// The GitHub client.
    pub client: Client,
    /// The client of HTTP destinations.
    pub forwarder: Forwarder,
    /// Tokens GitHub refused lately.
    pub refused: Arc<RefusedTokens>,
    /// Bodies by reference, when configured.
    pub bodies: Option<Arc<Bodies>>,
}

/// One attempt of one delivery: what its outcomes are recorded as.
pub(crate) struct Attempt<'a> {
    pub(crate) delivery: &'a Claimed,
    /// The destination's key (`repo:…`, `http:…`), made once.
    pub(crate) key: &'a str,
    pub(crate) config: &'a DeliveryConfig,
    pub(crate) metrics: &'a Metrics,
    pub(crate) number: u32,
}

impl Attempt<'_> {
    pub(crate) fn count(&self, result: DestinationResult, took: Option<Duration>) {
        self.metrics
            .destination(&self.delivery.event.source, self.key, result, took);
    }

    /// A dead letter for a delivery that could not be sent at all (nothing was tried).
    pub(crate) fn dead(&self, error: String, status: Option<u16>, reason: DeadReason) -> Recorded {
        self.dead_after(error, status, reason, None)
    }

    /// A dead letter; `tried`: the attempt the destination refused, when one was made.
    fn dead_after(
        &self,
        error: String,
        status: Option<u16>,
        reason: DeadReason,
        tried: Option<Tried>,
    ) -> Recorded {
        tracing::warn!(event_id = %self.delivery.event.id, delivery = %self.delivery.id,
            destination = %self.key, attempt = self.number, %error, "dead letter");
        self.metrics.dead(reason);
        self.count(DestinationResult::Dead, tried.as_ref().map(|t| t.took));
        Recorded::Dead {
            error,
            status,
            tried,
        }
    }

    /// Another attempt later (or a dead letter once they run out); `tried`: the attempt that
    /// failed, when one was made.
    pub(crate) fn retry(
        &self,
        reason: String,
        after: Option<Duration>,
        tried: Option<Tried>,
    ) -> Recorded {
        if self.number >= self.config.max_attempts {
            let status = tried.as_ref().and_then(|t| t.status);
            return self.dead_after(
                format!("{reason} (gave up after {} attempts)", self.number),
                status,
                DeadReason::Exhausted,
                tried,
            );
        }
        let wait = after.unwrap_or_else(|| {
            backoff(
                self.number,
                self.config.initial_backoff,
                self.config.max_backoff,
            )
        });
        tracing::info!(event_id = %self.delivery.event.id, delivery = %self.delivery.id,
            destination = %self.key, attempt = self.number,
            retry_in_ms = wait.as_millis() as u64, %reason, "retry");
        Recorded::RetryAfter {
            delay: wait,
            error: reason,
            tried,
        }
    }

    fn refusal(&self, r: AppRefusal) -> Recorded {
        match r {
            AppRefusal::Dead(e) => self.dead(e, None, DeadReason::Refused),
            AppRefusal::Setup(e) => self.dead(e, None, DeadReason::Setup),
            AppRefusal::Later(delay) => Recorded::Defer { delay },
            AppRefusal::Retry(e) => self.retry(e, None, None),
        }
    }

    /// What a destination's answer comes to; `batch_id`: the batch that carried it, if any.
    pub(crate) fn outcome(
        &self,
        outcome: Outcome,
        took: Duration,
        batch_id: Option<&str>,
    ) -> Recorded {
        let tried = |status: Option<u16>| {
            Some(Tried {
                took,
                status,
                batch_id: batch_id.map(str::to_string),
            })
        };
        match outcome {
            Outcome::Delivered => {
                self.metrics.delivered(took);
                self.count(DestinationResult::Delivered, Some(took));
                tracing::info!(event_id = %self.delivery.event.id, delivery = %self.delivery.id,
                    destination = %self.key, attempt = self.number,
                    ms = took.as_millis() as u64, "delivered");
                Recorded::Delivered { tried: tried(None) }
            }
            Outcome::Failed { status, reason } => self.dead_after(
                reason,
                Some(status),
                DeadReason::Refused,
                tried(Some(status)),
            ),
            Outcome::Retry {
                reason,
                after,
                status,
            } => {
                if self.number < self.config.max_attempts {
                    self.metrics.retried(took);
                    self.count(DestinationResult::Retried, Some(took));
                }
                self.retry(reason, after, tried(status))
            }
        }
    }
}

/// Delivers one delivery to its destination and decides what to record.
pub async fn deliver(
    senders: &Senders,
    now: &Current,
    metrics: &Metrics,
    env: &Environment,
    delivery: Claimed,
) -> Recorded {
    let key = delivery.destination.key();
    let attempt = Attempt {
        delivery: &delivery,
        key: &key,
        config: &now.config.delivery,
        metrics,
        number: delivery.attempts + 1,
    };
    let event = &delivery.event;
    let configured = now.destinations.get(&event.source, &key);
    let request = match now.destinations.build(event, configured) {
        Ok(r) => r,
        Err(e) => return attempt.dead(e.to_string(), None, DeadReason::Setup),
    };
    match &delivery.destination {
        Destination::Repo { repo, token } => {
            let body = match &event.payload {
                Payload::Dispatch(b) => b.clone(),
                Payload::Request(_) => {
                    match repo_dispatch_body(senders, env, &attempt, &request).await {
                        Ok(b) => b,
                        Err(recorded) => return recorded,
                    }
                }
            };
            match dispatch(senders, metrics, env, &attempt, repo, token, body).await {
                Ok((outcome, took)) => attempt.outcome(outcome, took, None),
                Err(recorded) => recorded,
            }
        }
        Destination::Http { url } => {
            let Some(DestinationConfig {
                target:
                    Target::Http {
                        secret_env,
                        headers,
                        header_prefix,
                        ..
                    },
                ..
            }) = configured
            else {
                return attempt.dead(
                    format!("endpoint `{}` no longer has the destination {key}; replay it after configuring it again", event.source),
                    None,
                    DeadReason::Setup,
                );
            };
            let secret = match secret_env {
                Some(name) => match env.var(name) {
                    Some(s) => Some(s),
                    None => {
                        return attempt.dead(
                            format!("the secret variable {name} of {key} is not set in the relay's environment"),
                            None,
                            DeadReason::Setup,
                        )
                    }
                },
                None => None,
            };
            let to = match HttpDestination::new(url, secret, headers, header_prefix.as_deref()) {
                Ok(d) => d,
                Err(e) => return attempt.dead(e.to_string(), None, DeadReason::Setup),
            };
            let message = Message {
                event_id: &event.id,
                endpoint: &event.source,
                event_type: &event.event_type,
                content_type: request.content_type(),
                body: &request.body,
                now_s: env.now_ms() / 1000,
            };
            let started = Instant::now();
            let outcome = senders.forwarder.send(&to, &message).await;
            attempt.outcome(outcome, started.elapsed(), None)
        }
    }
}

/// Dispatches `body` to `repo` with the delivery's credential: GitHub's answer and how long it
/// took, or what to record when it could not be sent (no credential, a refused token).
/// The dispatch body of a repository delivery of `request`: inline when it fits, else by
/// reference once its body is kept (`body_ref`). A body that cannot be sent either way is a dead
/// letter; a body the store cannot keep right now, a retry.
pub(crate) async fn repo_dispatch_body(
    senders: &Senders,
    env: &Environment,
    attempt: &Attempt<'_>,
    request: &crate::store::Request,
) -> Result<Vec<u8>, Recorded> {
    let event = &attempt.delivery.event;
    let bodies = senders.bodies.as_deref();
    let d = destinations::dispatch_body(event, request, bodies, env.now_ms())
        .map_err(|e| attempt.dead(e.to_string(), None, DeadReason::Setup))?;
    if let (Some(keep), Some(bodies)) = (d.keep, bodies) {
        bodies.keep(keep, request.body.clone()).await.map_err(|e| {
            attempt.retry(
                format!("cannot keep the body to send by reference: {e}"),
                None,
                None,
            )
        })?;
    }
    Ok(d.body)
}

pub(crate) async fn dispatch(
    senders: &Senders,
    metrics: &Metrics,
    env: &Environment,
    attempt: &Attempt<'_>,
    repo: &str,
    token_source: &TokenSource,
    body: Vec<u8>,
) -> Result<(Outcome, Duration), Recorded> {
    let client = &senders.client;
    let event_id = &attempt.delivery.event.id;
    let repo = match Repo::parse(repo) {
        Ok(r) => r,
        Err(e) => return Err(attempt.dead(e.to_string(), None, DeadReason::Setup)),
    };
    let token = match token_source {
        TokenSource::Inline(t) if !t.is_empty() => t.clone(),
        TokenSource::Inline(_) => {
            return Err(attempt.dead(
                "the event has no GitHub token".into(),
                None,
                DeadReason::Setup,
            ))
        }
        TokenSource::Env(name) => match env.var(name) {
            Some(t) => t,
            None => {
                return Err(attempt.dead(
                    format!("the token variable {name} is not set in the relay's environment"),
                    None,
                    DeadReason::Setup,
                ))
            }
        },
        TokenSource::App => match app_token(client, metrics, &repo, event_id).await {
            Ok(t) => t,
            Err(r) => return Err(attempt.refusal(r)),
        },
    };
    if !credentials::is_token_text(&token) {
        // A header cannot carry it: no retry can succeed.
        return Err(attempt.dead(
            "the GitHub token holds characters no token has (spaces, line breaks, control characters)".into(),
            None,
            DeadReason::Setup,
        ));
    }
    // A token from a request that GitHub refused lately is not sent again.
    let inline_fingerprint = match token_source {
        TokenSource::Inline(t) => Some(credentials::fingerprint(t)),
        TokenSource::Env(_) | TokenSource::App => None,
    };
    if let Some(fp) = &inline_fingerprint {
        if senders.refused.refused(fp, env.now_ms()) {
            return Err(attempt.dead(
                "GitHub refused this event's token (401) within the last hour; not sent again"
                    .into(),
                Some(401),
                DeadReason::Refused,
            ));
        }
    }
    let started = Instant::now();
    let mut outcome = client.dispatch(&repo, &token, body.clone()).await;
    if let (TokenSource::App, Outcome::Failed { status: 401, .. }, Some(app)) =
        (token_source, &outcome, client.app())
    {
        // Revoked, or the installation changed: a new token, once.
        app.forget(&repo, &token).await;
        match app_token(client, metrics, &repo, event_id).await {
            Ok(fresh) => outcome = client.dispatch(&repo, &fresh, body).await,
            Err(r) => return Err(attempt.refusal(r)),
        }
    }
    if let (Outcome::Failed { status: 401, .. }, Some(fp)) = (&outcome, inline_fingerprint) {
        senders.refused.remember(fp, env.now_ms());
    }
    Ok((outcome, started.elapsed()))
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
