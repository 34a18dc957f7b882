//! Adaptive batching: when deliveries of a repository queue behind GitHub's dispatch rate limit,
//! the next slot carries as many of them as fit in one dispatch (`client_payload.batch`, see
//! [`hookflow_protocol::batch`]), in arrival order. A quiet lane sends each event on its own,
//! as without batching. Opt-in per endpoint or repository destination (`batching:`).
//!
//! A batch is one attempt for all its deliveries: delivered, retried and dead-lettered
//! together. When GitHub refuses a batch of several with 422, the lane's batch size halves and
//! the events go again in smaller batches, so one bad event cannot sink its neighbours: alone,
//! it is a dead letter of its own. The size doubles back after each batch GitHub takes.
//!
//! The design and its reasons: docs/design/store.md, "Batching".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use hookflow_protocol::batch::{pack, Item};
use hookflow_protocol::payload::Origin;

use super::attempt::Attempt;
use super::claims::{record, track, InFlight};
use super::send::{dispatch, Senders};
use crate::config::Batching;
use crate::destinations::{self, Destinations};
use crate::limits::dispatch_rate::Limiter;
use crate::live::Current;
use crate::metrics::{DeadReason, DestinationResult, Metrics};
use crate::outbound::github::Outcome;
use crate::store::{ClaimRef, Claimed, Destination, Payload, Recorded, Store, StoreHandle};
use hookflow_protocol::Environment;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::batching=…`), kept as it was before
/// the module moved.
const LOG_TARGET: &str = "hookflow_relay::batching";

/// This relay's batching state per lane: the lanes with a leader sending their batches (one
/// at a time per lane, so batches keep arrival order) and the deliveries claimed meanwhile,
/// which the leader's next batch takes; and the batch size GitHub takes now. The keys are
/// configured endpoints' lanes only (the compatible route never batches), so strangers cannot
/// grow it.
#[derive(Default)]
pub struct Batches {
    state: Mutex<State>,
    /// Claims the worker began, and those whose deliveries it has since given to their
    /// leaders: a leader waits for the claims begun before its own look at the store.
    claims_begun: AtomicU64,
    claims_placed: AtomicU64,
    placed: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Lanes with a leader, and what waits for its next batch.
    led: HashMap<String, Vec<Claimed>>,
    /// The delivery slots the waiting deliveries hold: the worker claims no more than it has
    /// slots for, so a backlog waits in the store, not in this relay's memory.
    held: HashMap<String, Vec<OwnedSemaphorePermit>>,
    /// Lanes whose batches GitHub refused lately: the size to try now.
    caps: HashMap<String, usize>,
}

impl Batches {
    /// The worker begins a claim; returns its ticket for [`Batches::placed`].
    pub fn claim_begun(&self) -> u64 {
        self.claims_begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The worker gave every delivery of the claim `ticket` to its leader or task.
    pub fn placed(&self, ticket: u64) {
        self.claims_placed.fetch_max(ticket, Ordering::SeqCst);
        self.placed.notify_waiters();
    }

    /// Waits until every claim begun by now has been placed: a delivery the worker claimed
    /// before a leader's look at the store is then in the leader's hands.
    async fn claims_settled(&self) {
        let target = self.claims_begun.load(Ordering::SeqCst);
        while self.claims_placed.load(Ordering::SeqCst) < target {
            let notified = self.placed.notified();
            if self.claims_placed.load(Ordering::SeqCst) >= target {
                break;
            }
            // Bounded: a claim that failed is placed at once, and no wait is worth a stall.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }

    /// Takes what was given to `lane`'s leader so far, keeping the leadership.
    fn take_given(&self, lane: &str) -> Vec<Claimed> {
        let mut state = self.state();
        state.held.remove(lane);
        state
            .led
            .get_mut(lane)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most events a batch of `lane` carries now.
    fn cap(&self, lane: &str, batching: Batching) -> usize {
        self.state()
            .caps
            .get(lane)
            .copied()
            .unwrap_or(batching.max_events)
            .clamp(1, batching.max_events)
    }

    /// Makes the caller `lane`'s leader, with `group` to send; or, when the lane has a leader
    /// already, gives `group` to it for its next batch (`None`).
    fn lead(
        self: &Arc<Self>,
        lane: &str,
        group: Vec<Claimed>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Option<(LaneGuard, Vec<Claimed>)> {
        let mut state = self.state();
        if let Some(waiting) = state.led.get_mut(lane) {
            waiting.extend(group);
            state.held.entry(lane.to_string()).or_default().extend(slot);
            return None;
        }
        state.led.insert(lane.to_string(), Vec::new());
        Some((
            LaneGuard {
                batches: self.clone(),
                lane: lane.to_string(),
            },
            group,
        ))
    }

    /// What was given to `lane`'s leader since its last batch; when nothing, the lane has no
    /// leader any more (`None`).
    fn next(&self, lane: &str) -> Option<Vec<Claimed>> {
        let mut state = self.state();
        state.held.remove(lane);
        let waiting = state.led.get_mut(lane)?;
        if waiting.is_empty() {
            state.led.remove(lane);
            return None;
        }
        Some(std::mem::take(waiting))
    }

    /// GitHub refused a batch of `sent`: the next ones carry half as many.
    fn halve(&self, lane: &str, sent: usize) {
        self.state()
            .caps
            .insert(lane.to_string(), (sent / 2).max(1));
    }

    /// GitHub took a batch: the size doubles back towards `max_events`.
    fn grow(&self, lane: &str, batching: Batching) {
        let mut state = self.state();
        if let Some(cap) = state.caps.get(lane).copied() {
            if cap * 2 >= batching.max_events {
                state.caps.remove(lane);
            } else {
                state.caps.insert(lane.to_string(), cap * 2);
            }
        }
    }
}

/// A lane's leadership; the lane has no leader once it drops (a cancelled task too: what was
/// given to it stays claimed until a shutdown requeues it or its lease runs out).
struct LaneGuard {
    batches: Arc<Batches>,
    lane: String,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        let mut state = self.batches.state();
        state.led.remove(&self.lane);
        state.held.remove(&self.lane);
    }
}

/// The batch lane of a delivery: its endpoint and rate-limit lane.
fn lane_of(d: &Claimed) -> String {
    format!("{} {}", d.event.source, d.destination.lane())
}

/// The batching of a delivery's destination, when it batches: a repository destination of a
/// configured endpoint with `batching:`, and an event that keeps its request (events stored
/// before schema 4 carry a finished dispatch and go alone).
pub fn batching_of(destinations: &Destinations, d: &Claimed) -> Option<Batching> {
    if !matches!(d.destination, Destination::Repo { .. })
        || !matches!(d.event.payload, Payload::Request(_))
    {
        return None;
    }
    destinations
        .get(&d.event.source, &d.destination.key())
        .and_then(|c| c.batching)
}

/// Claimed deliveries in groups that go together: those of one batching lane (in claim order,
/// at most the lane's batch size each), every other delivery alone.
pub fn groups(
    claimed: Vec<Claimed>,
    destinations: &Destinations,
    batches: &Batches,
) -> Vec<Vec<Claimed>> {
    let mut groups: Vec<Vec<Claimed>> = Vec::new();
    // The open group of each lane, and its cap.
    let mut open: HashMap<String, (usize, usize)> = HashMap::new();
    for d in claimed {
        let Some(batching) = batching_of(destinations, &d) else {
            groups.push(vec![d]);
            continue;
        };
        let lane = lane_of(&d);
        match open.get(&lane) {
            Some(&(at, cap)) if groups[at].len() < cap => groups[at].push(d),
            _ => {
                let cap = batches.cap(&lane, batching);
                open.insert(lane, (groups.len(), cap));
                groups.push(vec![d]);
            }
        }
    }
    groups
}

/// What a batch is sent with.
pub struct BatchContext<'a> {
    pub(crate) store: &'a StoreHandle,
    pub(crate) senders: &'a Senders,
    /// The configuration this run of batches began with.
    pub(crate) now: &'a Current,
    pub(crate) metrics: &'a Metrics,
    pub(crate) env: &'a Environment,
    pub(crate) limiter: &'a Limiter,
    pub(crate) batches: &'a Batches,
    pub(crate) in_flight: &'a Arc<InFlight>,
    pub(crate) lease: Duration,
}

/// Every delivery with the same result.
fn all(group: &[Claimed], result: &Recorded) -> Vec<(ClaimRef, Recorded)> {
    group
        .iter()
        .map(|d| (ClaimRef::from(d), result.clone()))
        .collect()
}

/// A lane's leader: it sends the lane's batches, one at a time, while deliveries of the lane
/// are claimed for it.
pub struct Leader {
    guard: LaneGuard,
    group: Vec<Claimed>,
    batching: Batching,
}

/// What becomes of a group of claimed deliveries: sent on their own (`Err`, not a batching
/// lane), given to their lane's leader (`Ok(None)`), or leading their lane (`Ok(Some)`).
/// Called in claim order, by the one task that claims, so a leader's batches keep that order.
///
/// A group given to a leader holds one of the worker's delivery `slots` (when one is free)
/// until the leader takes it.
pub fn lead(
    batches: &Arc<Batches>,
    destinations: &Destinations,
    group: Vec<Claimed>,
    slots: &Arc<Semaphore>,
) -> Result<Option<Leader>, Vec<Claimed>> {
    let Some((first, batching)) = group
        .first()
        .and_then(|d| Some((d, batching_of(destinations, d)?)))
    else {
        return Err(group);
    };
    let lane = lane_of(first);
    let slot = slots.clone().try_acquire_owned().ok();
    Ok(batches
        .lead(&lane, group, slot)
        .map(|(guard, group)| Leader {
            guard,
            group,
            batching,
        }))
}

/// Sends the leader's group with as many more of the lane's waiting deliveries as fit, once the
/// lane's rate limit gives a slot, and records the results; then, while deliveries of the lane
/// were given to it meanwhile, the next batch. Returns the claims recorded.
pub async fn deliver_batches(ctx: &BatchContext<'_>, leader: Leader) -> Vec<ClaimRef> {
    let Leader {
        guard,
        mut group,
        batching,
    } = leader;
    let mut done = Vec::new();
    loop {
        let results = deliver_batch(ctx, group, batching, &guard.lane).await;
        // Recorded while this relay still leads the lane: the next batch's look at the store
        // finds every delivery of this one where it belongs.
        done.extend(record(ctx.store, ctx.metrics, results).await);
        match ctx.batches.next(&guard.lane) {
            Some(more) => group = more,
            None => return done,
        }
    }
}

/// One batch: the group and the lane's oldest waiting deliveries; what to record for each.
async fn deliver_batch(
    ctx: &BatchContext<'_>,
    mut group: Vec<Claimed>,
    batching: Batching,
    lane: &str,
) -> Vec<(ClaimRef, Recorded)> {
    group.sort_by_key(|d| d.id.parse::<i64>().unwrap_or(i64::MAX));
    let Some(leader) = group.first() else {
        return Vec::new();
    };
    if let Err(wait) = ctx.limiter.take(&leader.destination.lane(), false).await {
        // No slot yet: the lane's next slot takes these and whatever else is waiting.
        return all(
            &group,
            &Recorded::RateLimited {
                delay: wait + Duration::from_millis(1),
            },
        );
    }
    let cap = ctx.batches.cap(lane, batching);
    let batch_id = ulid::Ulid::generate().to_string();
    // The lane's oldest waiting deliveries, up to a full batch: with the group, the batch is
    // the oldest `cap` of them all, so batches keep arrival order.
    let members: Vec<ClaimRef> = group.iter().map(ClaimRef::from).collect();
    let more = match ctx
        .store
        .claim_lane(leader, members, batch_id.clone(), cap, ctx.lease)
        .await
    {
        Ok(more) => more,
        Err(e) => {
            tracing::warn!(target: LOG_TARGET, error = %e, "cannot claim more of a batch's lane; sending what was claimed");
            Vec::new()
        }
    };
    track(ctx.in_flight, &more);
    // Deliveries of the lane the worker claimed before that look are in this batch's hands
    // once placed: with them, the batch is the lane's oldest.
    ctx.batches.claims_settled().await;
    let given = ctx.batches.take_given(lane);
    let mut waiting: Vec<Claimed> = group.into_iter().chain(more).chain(given).collect();
    waiting.sort_by_key(|d| d.id.parse::<i64>().unwrap_or(i64::MAX));
    let mut results: Vec<(ClaimRef, Recorded)> = Vec::with_capacity(waiting.len());
    // Beyond the batch size: back in line for the next slot.
    let later = waiting.split_off(cap.min(waiting.len()));
    results.extend(all(
        &later,
        &Recorded::RateLimited {
            delay: Duration::ZERO,
        },
    ));
    // What each sends (a transform applies per event); one that cannot be built is a dead
    // letter of its own, as it would be alone.
    let mut batch = Vec::with_capacity(waiting.len());
    for d in waiting {
        let key = d.destination.key();
        let configured = ctx.now.destinations.get(&d.event.source, &key);
        match (
            &d.event.payload,
            ctx.now.destinations.build(&d.event, configured),
        ) {
            (Payload::Request(_), Ok(request)) => {
                let request = request.into_owned();
                batch.push((d, request));
            }
            // An event from before schema 4 carries its own dispatch: it goes alone.
            (Payload::Dispatch(_), _) => results.push((
                ClaimRef::from(&d),
                Recorded::Defer {
                    delay: Duration::ZERO,
                },
            )),
            (_, Err(e)) => {
                let attempt = attempt_of(ctx, &d, &key);
                let dead = attempt.dead(e.to_string(), None, DeadReason::Setup);
                results.push((ClaimRef::from(&d), dead));
            }
        }
    }
    if batch.is_empty() {
        return results;
    }
    let received: Vec<String> = batch
        .iter()
        .map(|(d, _)| destinations::rfc3339(d.event.received_at))
        .collect();
    let items: Vec<Item<'_>> = batch
        .iter()
        .zip(&received)
        .map(|((d, request), received_at)| Item {
            request,
            event_type: &d.event.event_type,
            origin: Origin {
                id: &d.event.id,
                received_at,
                source: &d.event.source,
            },
        })
        .collect();
    let packed = pack(&items, &batch_id, cap, batching.max_bytes);
    drop(items);
    let (body, count) = match packed {
        Ok(p) if p.count > 1 => (p.dispatch_body, p.count),
        // One event: sent as an ordinary dispatch, as without batching.
        _ => {
            let (d, request) = &batch[0];
            let key = d.destination.key();
            let attempt = attempt_of(ctx, d, &key);
            match super::send::repo_dispatch_body(ctx.senders, ctx.env, &attempt, request).await {
                Ok(body) => (body, 1),
                Err(recorded) => {
                    results.push((ClaimRef::from(d), recorded));
                    let rest: Vec<Claimed> = batch.drain(1..).map(|(d, _)| d).collect();
                    results.extend(all(
                        &rest,
                        &Recorded::RateLimited {
                            delay: Duration::ZERO,
                        },
                    ));
                    return results;
                }
            }
        }
    };
    let rest: Vec<Claimed> = batch.drain(count..).map(|(d, _)| d).collect();
    results.extend(all(
        &rest,
        &Recorded::RateLimited {
            delay: Duration::ZERO,
        },
    ));
    let sent: Vec<Claimed> = batch.into_iter().map(|(d, _)| d).collect();
    results.extend(send(ctx, &sent, body, &batch_id, lane, batching).await);
    results
}

/// The attempt a delivery makes now.
fn attempt_of<'a>(ctx: &BatchContext<'a>, d: &'a Claimed, key: &'a str) -> Attempt<'a> {
    Attempt {
        delivery: d,
        key,
        config: &ctx.now.config.delivery,
        metrics: ctx.metrics,
        number: d.attempts + 1,
    }
}

/// Dispatches one batch (or one event) and gives each delivery the batch's result.
async fn send(
    ctx: &BatchContext<'_>,
    sent: &[Claimed],
    body: Vec<u8>,
    batch_id: &str,
    lane: &str,
    batching: Batching,
) -> Vec<(ClaimRef, Recorded)> {
    let Some(first) = sent.first() else {
        return Vec::new();
    };
    let Destination::Repo { repo, token } = &first.destination else {
        return Vec::new();
    };
    let key = first.destination.key();
    let bytes = body.len();
    let attempt = attempt_of(ctx, first, &key);
    let (outcome, took) = match dispatch(
        ctx.senders,
        ctx.metrics,
        ctx.env,
        &attempt,
        repo,
        token,
        body,
    )
    .await
    {
        Ok(answer) => answer,
        // Not sent (no credential, a refused app): the same for every event of the lane.
        Err(recorded) => return all(sent, &recorded),
    };
    if sent.len() > 1 {
        tracing::info!(target: LOG_TARGET, batch_id, events = sent.len(), bytes, destination = %key,
            ms = took.as_millis() as u64, answer = ?outcome, "batch dispatched");
    }
    if let (
        Outcome::Failed {
            status: 422,
            reason,
        },
        true,
    ) = (&outcome, sent.len() > 1)
    {
        // GitHub refused the batch as a whole: smaller batches find the event it refuses.
        ctx.batches.halve(lane, sent.len());
        tracing::warn!(target: LOG_TARGET, batch_id, events = sent.len(), destination = %key, %reason,
            "GitHub refused a batch (422); its events go again in smaller batches");
        attempt.count(DestinationResult::Retried, Some(took));
        return all(
            sent,
            &Recorded::RateLimited {
                delay: Duration::ZERO,
            },
        );
    }
    if matches!(outcome, Outcome::Delivered) {
        ctx.batches.grow(lane, batching);
    }
    // Each event's own record of the attempt; a retry waits as long for all of them.
    let mut delay = None;
    sent.iter()
        .map(|d| {
            let carried = (sent.len() > 1).then_some(batch_id);
            let mut recorded = attempt_of(ctx, d, &key).outcome(outcome.clone(), took, carried);
            if let Recorded::RetryAfter { delay: wait, .. } = &mut recorded {
                *wait = *delay.get_or_insert(*wait);
            }
            (ClaimRef::from(d), recorded)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Batching = Batching {
        max_events: 100,
        max_bytes: 65536,
    };

    #[test]
    fn a_refused_batch_halves_the_lane_and_success_doubles_it_back() {
        let batches = Batches::default();
        assert_eq!(batches.cap("l", B), 100);
        batches.halve("l", 100);
        assert_eq!(batches.cap("l", B), 50);
        batches.halve("l", 50);
        batches.halve("l", 25);
        assert_eq!(batches.cap("l", B), 12);
        batches.halve("l", 1);
        assert_eq!(batches.cap("l", B), 1, "never below one");
        assert_eq!(batches.cap("other", B), 100, "lanes are apart");
        for expected in [2, 4, 8, 16, 32, 64, 100, 100] {
            batches.grow("l", B);
            assert_eq!(batches.cap("l", B), expected);
        }
        assert!(batches.state().caps.is_empty(), "a full lane is forgotten");
    }

    #[test]
    fn one_leader_per_lane_takes_what_is_claimed_meanwhile() {
        let batches = Arc::new(Batches::default());
        let (leader, _) = batches.lead("l", Vec::new(), None).expect("no leader yet");
        let slots = Arc::new(Semaphore::new(2));
        let slot = slots.clone().try_acquire_owned().ok();
        assert!(
            batches.lead("l", Vec::new(), slot).is_none(),
            "given to the leader"
        );
        assert_eq!(slots.available_permits(), 1, "holding a slot");
        assert!(
            batches.lead("m", Vec::new(), None).is_some(),
            "another lane"
        );
        assert!(
            batches.next("l").is_none(),
            "nothing given: the lane is free"
        );
        assert_eq!(slots.available_permits(), 2, "the slot is free once taken");
        drop(leader);
        let (_again, _) = batches.lead("l", Vec::new(), None).expect("free again");
    }
}
