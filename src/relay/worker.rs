//! Delivery workers: claim due events from the store, dispatch them to GitHub with bounded
//! concurrency, and record each outcome: delivered (deleted), retry later (exponential backoff
//! with jitter, or GitHub's own `Retry-After` / rate-limit reset), or dead letter (a 4xx that
//! retrying cannot fix, or attempts exhausted).
//!
//! HTTP handlers live in [`super::server`]; this module never sees a request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};

use super::config::DeliveryConfig;
use super::store::{backoff, now_ms, DueEvent, Recorded, StoreHandle, TokenSource};
use crate::github::{Client, Outcome, Repo};

/// Longest idle wait between looks at the store (retries that came due).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Runs until `shutdown` turns true, then waits for deliveries in flight.
pub async fn run(
    store: StoreHandle,
    client: Client,
    config: DeliveryConfig,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency));
    let config = Arc::new(config);
    loop {
        if *shutdown.borrow() {
            break;
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
        let due = match store.claim_due(free).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read due events; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_empty() {
            let wait = match store.next_due().await {
                Ok(Some(at)) => Duration::from_millis(
                    (at - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64,
                ),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for event in due {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (store, client, config) = (store.clone(), client.clone(), config.clone());
            tokio::spawn(async move {
                let id = event.id.clone();
                let result = deliver(&client, &config, event).await;
                if let Err(e) = store.record(vec![(id.clone(), result)]).await {
                    // The event stays in flight and is delivered again after a restart.
                    tracing::error!(event_id = %id, error = %e, "cannot record a delivery result");
                }
                drop(permit);
            });
        }
    }
    // Let deliveries in flight finish and record their results.
    let _ = slots.acquire_many(config.concurrency as u32).await;
}

/// Delivers one event and decides what to record.
pub async fn deliver(client: &Client, config: &DeliveryConfig, event: DueEvent) -> Recorded {
    let attempt = event.attempts + 1;
    let dead = |error: String, status: Option<u16>| {
        tracing::warn!(event_id = %event.id, attempt, %error, "dead letter");
        Recorded::Dead { error, status }
    };
    let repo = match Repo::parse(&event.repo) {
        Ok(r) => r,
        Err(e) => return dead(e, None),
    };
    let token = match &event.token {
        TokenSource::Inline(t) if !t.is_empty() => t.clone(),
        TokenSource::Inline(_) => return dead("the event has no GitHub token".into(), None),
        TokenSource::Env(name) => match std::env::var(name) {
            Ok(t) if !t.is_empty() => t,
            _ => {
                return dead(
                    format!("the token variable {name} is not set in the relay's environment"),
                    None,
                )
            }
        },
    };
    match client.dispatch(&repo, &token, event.body).await {
        Outcome::Delivered => {
            tracing::info!(event_id = %event.id, %repo, attempt, "delivered");
            Recorded::Delivered
        }
        Outcome::Failed { status, reason } => dead(reason, Some(status)),
        Outcome::Retry { reason, after } => {
            if attempt >= config.max_attempts {
                return dead(format!("{reason} (gave up after {attempt} attempts)"), None);
            }
            let wait = after
                .unwrap_or_else(|| backoff(attempt, config.initial_backoff, config.max_backoff));
            tracing::info!(event_id = %event.id, attempt, retry_in_ms = wait.as_millis() as u64, %reason, "retry");
            Recorded::RetryAt {
                at: now_ms() + wait.as_millis() as i64,
                error: reason,
            }
        }
    }
}
