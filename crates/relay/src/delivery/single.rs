//! One delivery sent on its own: to a repository (its dispatch) or to an HTTP destination
//! (Standard Webhooks signed), and what its answer comes to.

use std::time::Instant;

use crate::config::{DestinationConfig, Target};
use crate::live::Current;
use crate::metrics::{DeadReason, Metrics};
use crate::outbound::forward::{HttpDestination, Message};
use crate::store::{Claimed, Destination, Payload, Recorded};
use hookflow_protocol::Environment;

use super::attempt::Attempt;
use super::send::{dispatch, repo_dispatch_body, Senders};

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
