//! One attempt of one delivery and what its outcome is recorded as: delivered, retried later
//! (backoff, or GitHub's own wait), or a dead letter; counted and logged once.

use std::time::Duration;

use super::backoff::backoff;
use crate::config::DeliveryConfig;
use crate::metrics::{DeadReason, DestinationResult, Metrics};
use crate::outbound::github::Outcome;
use crate::store::{Claimed, Recorded, Tried};

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
