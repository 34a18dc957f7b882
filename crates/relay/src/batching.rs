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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookflow_protocol::batch::{pack, Item};
use hookflow_protocol::payload::Origin;

use crate::config::DeliveryConfig;
use crate::delivery::{dispatch, track, Attempt, InFlight, Limiter, Senders};
use crate::destinations::{self, Batching, Destinations};
use crate::github::Outcome;
use crate::metrics::{DeadReason, DestinationResult, Metrics};
use crate::store::{ClaimRef, Claimed, Destination, Payload, Recorded, Store, StoreHandle};
use hookflow_protocol::Environment;

/// How long deliveries wait when their lane already has a batch in flight at this relay (the
/// next batch takes them once it has gone).
const LANE_BUSY_WAIT: Duration = Duration::from_millis(200);

/// This relay's batching state per lane: whether a batch is in flight (one at a time per lane,
/// so batches keep arrival order), and the batch size GitHub takes now. The keys are
/// configured endpoints' lanes only (the compatible route never batches), so strangers cannot
/// grow it.
#[derive(Default)]
pub struct Batches {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    busy: HashSet<String>,
    /// Lanes whose batches GitHub refused lately: the size to try now.
    caps: HashMap<String, usize>,
}

impl Batches {
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

    /// Marks `lane` busy; `None` when a batch of it is in flight already.
    fn begin(&self, lane: &str) -> Option<LaneGuard<'_>> {
        self.state().busy.insert(lane.to_string()).then(|| LaneGuard {
            batches: self,
            lane: lane.to_string(),
        })
    }

    /// GitHub refused a batch of `sent`: the next ones carry half as many.
    fn halve(&self, lane: &str, sent: usize) {
        self.state().caps.insert(lane.to_string(), (sent / 2).max(1));
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

/// A lane's batch in flight; the lane is free again when it drops (a cancelled task too).
struct LaneGuard<'a> {
    batches: &'a Batches,
    lane: String,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.batches.state().busy.remove(&self.lane);
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
    pub(crate) config: &'a DeliveryConfig,
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

/// Sends a group of one batching lane (claimed together, in order) with as many more of the
/// lane's waiting deliveries as fit, once the lane's rate limit gives a slot; returns what to
/// record for each delivery it holds (the group and those it claimed).
pub async fn deliver_batch(
    ctx: &BatchContext<'_>,
    group: Vec<Claimed>,
    batching: Batching,
) -> Vec<(ClaimRef, Recorded)> {
    let Some(leader) = group.first() else {
        return Vec::new();
    };
    let lane = lane_of(leader);
    let Some(_busy) = ctx.batches.begin(&lane) else {
        // The lane's batch in flight went without these; the next one takes them.
        return all(
            &group,
            &Recorded::RateLimited {
                delay: LANE_BUSY_WAIT,
            },
        );
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
    let cap = ctx.batches.cap(&lane, batching);
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
            tracing::warn!(error = %e, "cannot claim more of a batch's lane; sending what was claimed");
            Vec::new()
        }
    };
    track(ctx.in_flight, &more);
    let mut waiting: Vec<Claimed> = group.into_iter().chain(more).collect();
    waiting.sort_by_key(|d| d.id.parse::<i64>().unwrap_or(i64::MAX));
    let mut results: Vec<(ClaimRef, Recorded)> = Vec::with_capacity(waiting.len());
    // Beyond the batch size: back in line for the next slot.
    let later = waiting.split_off(cap.min(waiting.len()));
    results.extend(all(&later, &Recorded::RateLimited { delay: Duration::ZERO }));
    // What each sends (a transform applies per event); one that cannot be built is a dead
    // letter of its own, as it would be alone.
    let mut batch = Vec::with_capacity(waiting.len());
    for d in waiting {
        let key = d.destination.key();
        let configured = ctx.senders.destinations.get(&d.event.source, &key);
        match (&d.event.payload, ctx.senders.destinations.build(&d.event, configured)) {
            (Payload::Request(_), Ok(request)) => {
                let request = request.into_owned();
                batch.push((d, request));
            }
            // An event from before schema 4 carries its own dispatch: it goes alone.
            (Payload::Dispatch(_), _) => {
                results.push((ClaimRef::from(&d), Recorded::Defer { delay: Duration::ZERO }))
            }
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
            match destinations::dispatch_body(&d.event, request) {
                Ok(p) => (p.dispatch_body, 1),
                Err(e) => {
                    let key = d.destination.key();
                    let dead = attempt_of(ctx, d, &key).dead(
                        e.to_string(),
                        None,
                        DeadReason::Setup,
                    );
                    results.push((ClaimRef::from(d), dead));
                    let rest: Vec<Claimed> = batch.drain(1..).map(|(d, _)| d).collect();
                    results.extend(all(&rest, &Recorded::RateLimited { delay: Duration::ZERO }));
                    return results;
                }
            }
        }
    };
    let rest: Vec<Claimed> = batch.drain(count..).map(|(d, _)| d).collect();
    results.extend(all(&rest, &Recorded::RateLimited { delay: Duration::ZERO }));
    let sent: Vec<Claimed> = batch.into_iter().map(|(d, _)| d).collect();
    results.extend(send(ctx, &sent, body, &batch_id, &lane, batching).await);
    results
}

/// The attempt a delivery makes now.
fn attempt_of<'a>(ctx: &BatchContext<'a>, d: &'a Claimed, key: &'a str) -> Attempt<'a> {
    Attempt {
        delivery: d,
        key,
        config: ctx.config,
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
        tracing::info!(batch_id, events = sent.len(), bytes, destination = %key,
            ms = took.as_millis() as u64, answer = ?outcome, "batch dispatched");
    }
    if let (Outcome::Failed { status: 422, reason }, true) = (&outcome, sent.len() > 1) {
        // GitHub refused the batch as a whole: smaller batches find the event it refuses.
        ctx.batches.halve(lane, sent.len());
        tracing::warn!(batch_id, events = sent.len(), destination = %key, %reason,
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
            let mut recorded = attempt_of(ctx, d, &key).outcome(outcome.clone(), took);
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
    fn one_batch_in_flight_per_lane() {
        let batches = Batches::default();
        let first = batches.begin("l").expect("free");
        assert!(batches.begin("l").is_none(), "busy");
        assert!(batches.begin("m").is_some(), "another lane");
        drop(first);
        assert!(batches.begin("l").is_some(), "free again");
    }
}
