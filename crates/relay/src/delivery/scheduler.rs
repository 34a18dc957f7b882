//! The delivery scheduler: the one task that claims due deliveries from the store, places each
//! (alone, or with its batching lane's leader), runs them within `delivery.concurrency`, and on
//! shutdown lets them finish or puts them back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit};
use tokio::task::JoinSet;

use super::batch::{self, BatchContext, Batches, Leader};
use crate::bodies::Bodies;
use crate::limits::refused_tokens::RefusedTokens;
use crate::live::{Current, Live};
use crate::metrics::{Metrics, StoreOp};
use crate::outbound::forward::Forwarder;
use crate::outbound::github::Client;
use crate::store::HandedOff;
use crate::store::{ClaimRef, Claimed, Destination, Recorded, Store, StoreHandle};
use hookflow_protocol::Environment;

use super::claims::{lock, record, track};
use super::send::Senders;
use super::single::deliver;

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
                        batch::deliver_batches(&ctx, leader).await
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
        match batch::lead(&batches, &now.destinations, group, &slots) {
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
        let jobs: Vec<Job> = batch::groups(due, &now.destinations, &batches)
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
