//! Bodies by reference (`body_ref`): a body too large for a dispatch even gzip-compressed is
//! kept in the store and dispatched as a signed URL on the relay's `public_url`, which any relay
//! sharing the store (and the secret) serves at `GET /bodies/<id>?expires=…&sig=…` until the
//! body's time is over; then a background task prunes it.
//!
//! A body is kept when its first dispatch is built, for `body_ref.retention` from then: the
//! URL's expiry and the body's time are the same instant, so a genuine URL never outlives its
//! body. The event keeps its own copy until it is delivered, as every event does.
//!
//! What a stranger can do here: ask for bodies with made-up URLs (refused by the HMAC check in
//! constant time, before the store is read), or hold many slow downloads (bounded by
//! `body_ref.concurrency`, then 503; the connection limits and idle timeout of the public
//! listener apply as to webhooks).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RelayConfig;
use crate::metrics::Metrics;
use crate::store::{Event, Payload, Request, Store, StoreError, StoreHandle};
use hookflow_protocol::body_ref::{check_url, BodyRef, Referrer, UrlError};
use hookflow_protocol::Environment;

/// How many expired bodies one prune statement deletes: small, so it never holds the store
/// long (each row may be megabytes).
const PRUNE_BATCH: usize = 32;

/// How often expired bodies are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Bodies by reference as configured: how URLs are made and checked, how long bodies are kept,
/// where, and how many are served at once.
pub struct Bodies {
    referrer: Referrer,
    retention: Duration,
    serving: Arc<Semaphore>,
    store: StoreHandle,
    metrics: Arc<Metrics>,
}

/// A body to keep before its dispatch is sent: under `id`, until `keep_until` (milliseconds
/// since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// The id in the URL.
    pub id: String,
    /// When it may be pruned (the URL's expiry).
    pub keep_until: i64,
}

impl Bodies {
    /// Bodies by reference for `config`, when it has `body_ref` (and its secret is set: the
    /// relay checks that before it starts).
    pub fn of(
        config: &RelayConfig,
        env: &Environment,
        store: StoreHandle,
        metrics: Arc<Metrics>,
    ) -> Option<Bodies> {
        let b = config.body_ref.as_ref()?;
        let public_url = config.public_url.clone()?;
        let secret = env.var(&b.secret_env)?;
        Some(Bodies {
            referrer: Referrer {
                public_url,
                secret: secret.into_bytes(),
            },
            retention: b.retention,
            serving: Arc::new(Semaphore::new(b.concurrency)),
            store,
            metrics,
        })
    }

    /// The id the body of `request` (what a destination of `event` is sent) is kept under: the
    /// event id for the body as received, with a digest suffix for another body (a
    /// destination's transform), so two destinations never share an id for different bytes.
    pub fn id(event: &Event, request: &Request) -> String {
        let same = match &event.payload {
            Payload::Request(r) => {
                std::ptr::eq(r.body.as_slice(), request.body.as_slice()) || r.body == request.body
            }
            Payload::Dispatch(_) => false,
        };
        if same {
            return event.id.clone();
        }
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(&request.body));
        format!("{}-{}", event.id, &digest[..16])
    }

    /// The reference to `body` kept under `id` from `now_ms`, and the keeping it needs.
    pub fn reference(&self, id: &str, body: &[u8], now_ms: i64) -> (BodyRef, Keep) {
        let keep_until = now_ms.saturating_add(self.retention.as_millis() as i64);
        // Whole seconds, rounded down: the URL ends no later than the body's time.
        let expires = keep_until.div_euclid(1000);
        let reference = self.referrer.reference(id, body, expires);
        (
            reference,
            Keep {
                id: id.to_string(),
                keep_until: expires * 1000,
            },
        )
    }

    /// A reference of the right size to measure a dispatch with, without hashing the body
    /// (the accept path, which must answer at once).
    pub fn stand_in(&self, id: &str, size: usize, now_ms: i64) -> BodyRef {
        let expires = now_ms.saturating_add(self.retention.as_millis() as i64) / 1000;
        self.referrer
            .reference_to(id, size as u64, "0".repeat(64), expires)
    }

    /// Keeps `bytes` as `keep` says, before a dispatch names it.
    pub async fn keep(&self, keep: Keep, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.store
            .keep_body(keep.id, bytes, keep.keep_until)
            .await?;
        self.metrics.body_kept();
        Ok(())
    }

    /// Checks a body URL's query (`expires=…&sig=…`) for `id` at `now_s`, in constant time,
    /// before anything is read.
    pub fn check(&self, id: &str, query: &str, now_s: i64) -> Result<(), UrlError> {
        check_url(&self.referrer.secret, id, query, now_s)
    }

    /// A place among the bodies being served now, if one is free (`body_ref.concurrency`).
    pub fn try_serve(&self) -> Option<OwnedSemaphorePermit> {
        self.serving.clone().try_acquire_owned().ok()
    }
}

/// Prunes bodies whose time is over, a few at a time, every minute until `stop` turns true.
pub async fn prune(store: StoreHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let mut pruned = 0u64;
        loop {
            match store.prune_bodies(PRUNE_BATCH).await {
                Ok(n) => {
                    pruned += n;
                    if n < PRUNE_BATCH as u64 || *stop.borrow() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune kept bodies; trying again later");
                    break;
                }
            }
        }
        if pruned > 0 {
            tracing::info!(bodies = pruned, "pruned bodies past body_ref.retention");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
