//! Sending a dispatch: the delivery's credential (a token from the environment, the request's
//! own, or the relay's GitHub App), tokens GitHub refused lately, and the dispatch body inline
//! or by reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bodies::Bodies;
use crate::destinations;
use crate::limits::refused_tokens::RefusedTokens;
use crate::metrics::{DeadReason, Metrics};
use crate::outbound::forward::Forwarder;
use crate::outbound::github::{Client, Outcome};
use crate::outbound::github_app::AppError;
use crate::store::{Recorded, TokenSource};
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::{credentials, Environment};

use super::attempt::Attempt;

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

/// Dispatches `body` to `repo` with the delivery's credential: GitHub's answer and how long it
/// took, or what to record when it could not be sent (no credential, a refused token).
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
            Err(r) => return Err(refusal(attempt, r)),
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
            Err(r) => return Err(refusal(attempt, r)),
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
pub(super) enum AppRefusal {
    /// Not installed there, or without the permission: a dead letter that says what to do.
    Dead(String),
    /// The relay has no app.
    Setup(String),
    /// GitHub refused the app itself: wait, without spending an attempt.
    Later(Duration),
    /// Worth another attempt.
    Retry(String),
}

/// What a delivery the app has no token for is recorded as.
fn refusal(attempt: &Attempt<'_>, r: AppRefusal) -> Recorded {
    match r {
        AppRefusal::Dead(e) => attempt.dead(e, None, DeadReason::Refused),
        AppRefusal::Setup(e) => attempt.dead(e, None, DeadReason::Setup),
        AppRefusal::Later(delay) => Recorded::Defer { delay },
        AppRefusal::Retry(e) => attempt.retry(e, None, None),
    }
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
