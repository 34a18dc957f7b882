//! The webhook2github-compatible route `ANY /<owner>/<repo>[/<rest>]`: the GitHub token from
//! `__token`, `X-Github-Authorization` or `Authorization`, and the answer shaped by `__response_*`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::net::SocketAddr;

use axum::extract::ConnectInfo;

use crate::live::Current;

use crate::store::{self, Destination, TokenSource};
use hookflow_protocol::credentials;
use hookflow_protocol::dispatch::{Repo, WEBHOOK_EVENT_TYPE};

use super::accept::{delivery_id, forwarded_headers, read_body, store_request, Accepted};
use super::answer::not_found;
use super::answer::refuse;
use super::auth::bearer;
use super::query::RelayParams;
use super::state::AppState;

/// `ANY /<owner>/<repo>/<path…>`: the webhook2github-compatible route.
pub(super) async fn compat(
    State(state): State<AppState>,
    axum::Extension(now): axum::Extension<Arc<Current>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !now.config.compat_route {
        return not_found(uri).await;
    }
    // Anyone may call this route (only GitHub can tell a real token), so each address gets a
    // share of it: strangers cannot fill the store at the speed of the relay.
    if let Some(axum::Extension(ConnectInfo(peer))) = peer {
        if let Err(wait) = state
            .live
            .bounds
            .compat_rate
            .try_take(&peer.ip().to_string())
        {
            let mut r = refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests from your address to this route (limits.compat_requests_per_minute); retry later",
            );
            let secs = wait.as_secs().max(1).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
    }
    let raw_path = uri.path();
    let mut segments = raw_path.trim_start_matches('/').splitn(3, '/');
    let owner = segments.next().unwrap_or_default();
    let name = segments.next().unwrap_or_default();
    let rest = segments
        .next()
        .map(|r| format!("/{r}"))
        .unwrap_or_else(|| "/".into());
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let repo = match Repo::parse(&format!("{}/{}", decode(owner), decode(name))) {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::NOT_FOUND, e.to_string()),
    };
    if !now.config.compat_allows(&repo) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("this relay does not dispatch to {repo} (compat_repos)"),
        );
    }

    let (mut relay, kept) = RelayParams::split(uri.query());
    let token = relay
        .token
        .take()
        .filter(|t| !t.is_empty())
        .or_else(|| headers.get("x-github-authorization").and_then(bearer))
        .or_else(|| headers.get(header::AUTHORIZATION).and_then(bearer));
    let Some(token) = token else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no GitHub token: pass ?__token=…, an X-Github-Authorization header, or an Authorization header",
        );
    };
    if !credentials::is_token_text(&token) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the GitHub token holds characters no token has (spaces, line breaks, control characters)",
        );
    }
    if state
        .refused
        .refused(&credentials::fingerprint(&token), state.env.now_ms())
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "GitHub refused this token (401) within the last hour; nothing was stored",
        );
    }
    let body = match read_body(body, &now.config.limits).await {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let path = if kept.is_empty() {
        rest
    } else {
        format!("{rest}?{}", kept.join("&"))
    };
    // The credential is part of the key: a stranger repeating a victim's delivery id with
    // another token must not make the victim's own request look like a repeat.
    let dedupe_key = delivery_id(&headers)
        .map(|d| format!("compat:{repo}:{}:{d}", credentials::fingerprint(&token)));
    let request = Accepted {
        request: store::Request {
            method: method.as_str().to_string(),
            path,
            headers: forwarded_headers(&headers),
            body,
        },
        event_type: WEBHOOK_EVENT_TYPE.into(),
        source: "compat",
        destinations: vec![(
            Destination::Repo {
                repo: repo.to_string(),
                token: TokenSource::Inline(token),
            },
            None,
        )],
        dedupe_key,
    };
    let (id, duplicate) = match store_request(&state, &now, request).await {
        Ok(stored) => stored,
        Err(r) => return r,
    };

    let status = relay
        .response_code
        .as_deref()
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200)
        .unwrap_or(StatusCode::OK);
    let content_type = relay
        .response_content_type
        .unwrap_or_else(|| "application/json".to_string());
    let body = match relay.response_body {
        Some(b) => b,
        None if duplicate => {
            json!({"success": true, "event_id": id, "duplicate": true}).to_string()
        }
        None => json!({"success": true, "event_id": id}).to_string(),
    };
    let mut response = (status, body).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}
