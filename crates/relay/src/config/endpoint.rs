use super::destinations::Batching;
use super::destinations::DestinationConfig;
use super::destinations::EndpointAuth;
use super::destinations::Target;
use super::destinations::Transform;
use super::raw::RawBatching;
use super::raw::RawDestination;
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::dispatch::MAX_REQUEST_BYTES;
use serde_json::Value;

/// A repository's credential: `token_env: VAR`, or `auth: app` (the default when the relay has
/// a `github_app` and no token is named).
pub(super) fn parse_auth(
    token_env: Option<String>,
    auth: Option<&str>,
    has_app: bool,
) -> Result<EndpointAuth, String> {
    match (token_env, auth, has_app) {
        (Some(_), Some("app"), _) => Err("use either token_env or auth: app, not both".into()),
        (None, Some("app"), false) => Err(
            "auth: app needs a github_app section (app_id and private_key_file or private_key_env)"
                .into(),
        ),
        (None, Some("app"), true) | (None, None, true) => Ok(EndpointAuth::App),
        (Some(t), None | Some("token"), _) => Ok(EndpointAuth::TokenEnv(t)),
        (None, None | Some("token"), false) => Err(
            "give the GitHub credential: token_env: VAR (a token), or auth: app with a github_app section".into(),
        ),
        (None, Some("token"), true) => Err("auth: token needs token_env: VAR".into()),
        (_, Some(other), _) => Err(format!(
            "auth: {other} is not known; use auth: app or token_env: VAR"
        )),
    }
}

/// An endpoint's `destinations:` list: each a repository or an HTTP endpoint, with its own
/// event-type filter and transform; no two with the same repository or URL.
///
/// `batching` is the endpoint's, which its repository destinations take unless they set their
/// own.
pub(super) fn parse_destinations(
    list: Value,
    has_app: bool,
    batching: Option<Batching>,
) -> Result<Vec<DestinationConfig>, String> {
    let items = match list {
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err("destinations: must be a list of at least one destination, each {repo: OWNER/NAME, token_env: VAR} or {url: https://…}".into()),
    };
    let mut out: Vec<DestinationConfig> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let n = i + 1;
        let raw: RawDestination =
            serde_json::from_value(item).map_err(|e| format!("destination {n}: {e}"))?;
        let http_only =
            raw.secret_env.is_some() || !raw.headers.is_empty() || raw.header_prefix.is_some();
        let target = match (raw.repo, raw.url) {
            (Some(repo), None) => {
                if http_only {
                    return Err(format!("destination {n} ({repo}): secret_env, headers and header_prefix are for url: destinations"));
                }
                Target::Repo {
                    repo: Repo::parse(&repo).map_err(|e| format!("destination {n}: {e}"))?,
                    auth: parse_auth(raw.token_env, raw.auth.as_deref(), has_app)
                        .map_err(|e| format!("destination {n} ({repo}): {e}"))?,
                }
            }
            (None, Some(url)) => {
                if raw.token_env.is_some() || raw.auth.is_some() {
                    return Err(format!("destination {n} ({url}): token_env and auth are for repo: destinations; an HTTP destination signs with secret_env"));
                }
                let headers: Vec<(String, String)> = raw.headers.into_iter().collect();
                crate::outbound::forward::HttpDestination::new(
                    &url,
                    None,
                    &headers,
                    raw.header_prefix.as_deref(),
                )
                .map_err(|e| format!("destination {n}: {e}"))?;
                if let Some(p) = &raw.header_prefix {
                    if p.is_empty() {
                        return Err(format!("destination {n} ({url}): header_prefix must not be empty (omit it for X-Hookflow-)"));
                    }
                }
                Target::Http {
                    url,
                    secret_env: raw.secret_env,
                    headers,
                    header_prefix: raw.header_prefix,
                }
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "destination {n}: give either repo: or url:, not both"
                ))
            }
            (None, None) => {
                return Err(format!(
                    "destination {n}: give repo: OWNER/NAME or url: https://…"
                ))
            }
        };
        if let Some(p) = raw.event_types.iter().find(|p| p.is_empty()) {
            return Err(format!(
                "destination {n}: event_types has an empty pattern {p:?}; use * for every event"
            ));
        }
        let transform = if raw.transform.is_empty() {
            None
        } else {
            let fields: Vec<(String, String)> = raw.transform.into_iter().collect();
            Some(Transform::parse(&fields).map_err(|e| format!("destination {n}: {e}"))?)
        };
        let own = parse_batching(raw.batching).map_err(|e| format!("destination {n}: {e}"))?;
        let batching = match (&target, own) {
            (Target::Http { url, .. }, Some(Some(_))) => {
                return Err(format!("destination {n} ({url}): batching: is for repository destinations (GitHub's dispatch rate limit); an HTTP destination gets each event on its own"))
            }
            (Target::Http { .. }, _) => None,
            (Target::Repo { .. }, Some(own)) => own,
            (Target::Repo { .. }, None) => batching,
        };
        let d = DestinationConfig {
            target,
            event_types: raw.event_types,
            transform,
            batching,
        };
        if out.iter().any(|o| o.key() == d.key()) {
            return Err(format!(
                "destination {n}: {} is listed twice; list it once (event_types takes several patterns)",
                d.key()
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// The most events one batched dispatch may carry (`batching.max_events`).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// A `batching:` section: `None` when not given, `Some(None)` for `mode: off`.
pub(super) fn parse_batching(value: Option<Value>) -> Result<Option<Option<Batching>>, String> {
    let value = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(v @ Value::Object(_)) => v,
        Some(_) => {
            return Err(
                "batching must be a mapping such as {mode: adaptive, max_events: 100}".into(),
            )
        }
    };
    let raw: RawBatching = serde_json::from_value(value).map_err(|e| format!("batching: {e}"))?;
    match raw.mode.as_deref() {
        None | Some("adaptive") => {}
        Some("off") => return Ok(Some(None)),
        Some(other) => {
            return Err(format!(
                "batching: mode {other:?} is not known; use adaptive or off"
            ))
        }
    }
    let max_events = raw.max_events.unwrap_or(Batching::DEFAULT_EVENTS);
    if !(1..=MAX_BATCH_EVENTS).contains(&max_events) {
        return Err(format!(
            "batching: max_events must be 1 to {MAX_BATCH_EVENTS} (got {max_events})"
        ));
    }
    let max_bytes = raw.max_bytes.unwrap_or(MAX_REQUEST_BYTES);
    if !(1024..=MAX_REQUEST_BYTES).contains(&max_bytes) {
        return Err(format!(
            "batching: max_bytes must be 1024 to {MAX_REQUEST_BYTES} (GitHub refuses a larger dispatch; got {max_bytes})"
        ));
    }
    Ok(Some(Some(Batching {
        max_events,
        max_bytes,
    })))
}
