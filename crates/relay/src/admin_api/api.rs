use super::state::ConsoleState;
use super::state::LOG_TARGET;
use crate::live::ReloadError;
use crate::operator;
use crate::operator::event_filter;
use crate::operator::MAX_REPLAY;
use crate::store::Store;
use axum::extract::Path;
use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use serde_json::json;
use serde_json::Value;

pub(super) fn answer(status: StatusCode, message: &str) -> Response {
    crate::http::answer::refuse(status, message)
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    tracing::error!(target: LOG_TARGET, error = %e, "admin: the store cannot answer");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "the event store cannot answer right now; retry shortly",
    )
}

/// The pairs of a query string, decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(super) async fn list(State(state): State<ConsoleState>, RawQuery(query): RawQuery) -> Response {
    let pairs = query_pairs(query.as_deref());
    let (filter, limit) = match event_filter(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(f) => f,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match state.store.list_events(filter, limit).await {
        Ok(events) => axum::Json(operator::event_page_json(&events, limit)).into_response(),
        Err(e) => store_failed(e),
    }
}

pub(super) async fn show(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    match state.store.logged_event(id.clone()).await {
        Ok(Some(e)) => axum::Json(operator::logged_event_json(&e)).into_response(),
        Ok(None) => answer(
            StatusCode::NOT_FOUND,
            &format!("no event {id} in the log (never received, or pruned after retention.events)"),
        ),
        Err(e) => store_failed(e),
    }
}

pub(super) async fn replay_one(
    State(state): State<ConsoleState>,
    Path(id): Path<String>,
) -> Response {
    match state
        .store
        .replay(vec![id.clone()], Default::default(), 1)
        .await
    {
        Ok(0) => answer(
            StatusCode::NOT_FOUND,
            &format!("{id} has no delivered or dead delivery to replay (unknown, pruned, or still on its way)"),
        ),
        Ok(n) => {
            tracing::info!(target: LOG_TARGET, id = %id, deliveries = n, "admin: replayed");
            axum::Json(json!({"replayed": n})).into_response()
        }
        Err(e) => store_failed(e),
    }
}

pub(super) async fn replay_filtered(
    State(state): State<ConsoleState>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            "send the list's filters as a JSON object, e.g. {\"status\": \"dead\", \"repository\": \"octo/hooks\"}",
        );
    };
    let mut pairs = Vec::new();
    let mut limit = MAX_REPLAY;
    for (k, v) in &fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    &format!("filter `{k}` must be a string or a number"),
                )
            }
        };
        if k == "limit" {
            match text.parse::<usize>() {
                Ok(n) if (1..=MAX_REPLAY).contains(&n) => limit = n,
                _ => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        &format!("limit must be 1 to {MAX_REPLAY}"),
                    )
                }
            }
        } else {
            pairs.push((k.clone(), text));
        }
    }
    if pairs.is_empty() {
        return answer(
            StatusCode::BAD_REQUEST,
            "give at least one filter (such as {\"status\": \"dead\"}); replaying everything is not what a filter is for",
        );
    }
    let (filter, _) = match event_filter(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(f) => f,
        Err(e) => return answer(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Pages of the list, newest first, until `limit` events were taken.
    let mut replayed = 0;
    let mut events = 0;
    let mut page = filter;
    while events < limit {
        let size = (limit - events).min(crate::store::MAX_PAGE);
        let listed = match state.store.list_events(page.clone(), size).await {
            Ok(l) => l,
            Err(e) => return store_failed(e),
        };
        let ids: Vec<String> = listed.iter().map(|e| e.id.clone()).collect();
        if ids.is_empty() {
            break;
        }
        events += ids.len();
        page.before = ids.last().cloned();
        match state.store.replay(ids, Default::default(), size).await {
            Ok(n) => replayed += n,
            Err(e) => return store_failed(e),
        }
        if listed.len() < size {
            break;
        }
    }
    tracing::info!(target: LOG_TARGET, events, deliveries = replayed, "admin: replayed by filter");
    axum::Json(json!({"replayed": replayed, "events": events})).into_response()
}

pub(super) async fn health(State(state): State<ConsoleState>) -> Response {
    match state.store.counts().await {
        Ok(c) => {
            let now = state.env.now_ms();
            let hour = state.metrics.last_hour();
            axum::Json(json!({
                "pending": c.pending, "inflight": c.inflight, "dead": c.dead,
                "oldest_pending_seconds": c.oldest_pending.map(|t| (now - t).max(0) / 1000),
                "delivered_total": state.metrics.delivered_count(),
                "store_bytes": c.room.bytes_used, "store_cap_bytes": c.room.bytes_cap,
                "last_hour": {
                    "delivered": hour.iter().map(|(d, _)| d).collect::<Vec<_>>(),
                    "failed": hour.iter().map(|(_, f)| f).collect::<Vec<_>>(),
                },
            }))
            .into_response()
        }
        Err(e) => store_failed(e),
    }
}

/// `POST /api/reload`: the configuration file read again and applied, or refused with what is
/// wrong in it (the running configuration stays).
pub(super) async fn reload(State(state): State<ConsoleState>) -> Response {
    let live = state.live.clone();
    let result = match tokio::task::spawn_blocking(move || live.reload()).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(target: LOG_TARGET, error = %e, "admin: the reload did not finish");
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the reload did not finish; see the relay's log",
            );
        }
    };
    match result {
        Ok(r) => axum::Json(json!({
            "reloaded": true,
            "file": r.file,
            "changed": r.changed,
            "restart_needed": r.kept,
        }))
        .into_response(),
        Err(e) => {
            let status = match e {
                ReloadError::NoFile => StatusCode::CONFLICT,
                ReloadError::Invalid(_) | ReloadError::Refused { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
            };
            (
                status,
                axum::Json(json!({"success": false, "reloaded": false, "message": e.to_string()})),
            )
                .into_response()
        }
    }
}
