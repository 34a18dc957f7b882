//! The admin page: server-rendered HTML on the admin address, no script, no font or CDN, a
//! strict Content-Security-Policy. The event list with status filters and an auto-refresh that
//! can be turned off, an event's detail with its attempt timeline and a replay button, the
//! queue's health at the top. Sign-in takes an admin token once and keeps a session cookie
//! (`HttpOnly`, `SameSite=Strict`): an HMAC of its expiry under a key made at start-up, so a
//! restart signs everyone out. Forms also check `Origin`.

use super::state::ConsoleState;
use crate::operator;
use crate::operator::event_filter;
use crate::store::Store;
use axum::extract::Form;
use axum::extract::Path;
use axum::extract::RawQuery;
use axum::extract::Request;
use axum::extract::State;
use axum::http::header;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Redirect;
use axum::response::Response;
use hookflow_protocol::credentials;
use serde_json::Value;

/// The log target operators filter on (`HOOKFLOW_LOG=hookflow_relay::console::page=…`), kept as it was before
/// the module moved.
const LOG_TARGET: &str = "hookflow_relay::console::page";

/// The session cookie's name.
const COOKIE: &str = "hookflow_admin";
/// How long a session lasts.
const SESSION_SECONDS: i64 = 12 * 3600;

/// The page's style sheet (the only thing besides HTML it loads).
pub const STYLE: &str = include_str!("style.css");

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Text for HTML (element content and quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A value for a URL's query.
fn q(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl ConsoleState {
    /// A session cookie's value, valid until `expires` (Unix seconds).
    fn session(&self, expires: i64) -> String {
        let mac = hookflow_protocol::signature::hmac(
            hookflow_protocol::signature::Algorithm::Sha256,
            &self.session_key,
            &[b"hookflow-admin-session\n", expires.to_string().as_bytes()],
        );
        format!("{expires}.{}", hex::encode(mac))
    }

    /// Whether the request carries a valid session cookie.
    fn signed_in(&self, headers: &HeaderMap) -> bool {
        let now = self.env.now_ms() / 1000;
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
            .any(|value| {
                let Some((expires, _)) = value.split_once('.') else {
                    return false;
                };
                let Ok(expires) = expires.parse::<i64>() else {
                    return false;
                };
                let want = self.session(expires);
                expires > now && credentials::same(want.as_bytes(), value.as_bytes())
            })
    }
}

/// Pages need a session (else the sign-in page); forms also a same-origin `Origin`.
pub async fn guard(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    if !state.signed_in(request.headers()) {
        return Redirect::to("/login").into_response();
    }
    if request.method() == axum::http::Method::POST && !same_origin(request.headers()) {
        return (StatusCode::FORBIDDEN, "a form from another site").into_response();
    }
    next.run(request).await
}

/// Whether a form's `Origin` (when the browser sends one) is this host.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

/// Every page: the frame around `body`, with an optional auto-refresh.
fn page(title: &str, body: &str, refresh: Option<u32>) -> Response {
    let refresh = refresh
        .map(|s| format!("<meta http-equiv=\"refresh\" content=\"{s}\">"))
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{} · hookflow relay</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\
         <body><header><a class=\"brand\" href=\"/\">hookflow relay</a></header><main>{body}</main></body></html>",
        esc(title)
    );
    html_response(html)
}

fn html_response(html: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    r
}

/// `GET /style.css`.
pub async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// `GET /login`.
pub async fn login_form() -> Response {
    page(
        "Sign in",
        "<h1>Sign in</h1><form method=\"post\" action=\"/login\" class=\"login\">\
         <label>Admin token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" required></label>\
         <button>Sign in</button></form><p class=\"hint\">One of the tokens in the relay's <code>admin.tokens_env</code>.</p>",
        None,
    )
}

/// The sign-in form's field.
#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
}

/// `POST /login`: a session cookie for a valid token.
pub async fn login(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !same_origin(&headers) || !state.admits(form.token.trim()) {
        tracing::warn!(target: LOG_TARGET, "admin page: sign-in refused");
        let mut r = page(
            "Sign in",
            "<h1>Sign in</h1><p class=\"error\">That is not an admin token.</p><p><a href=\"/login\">Try again</a></p>",
            None,
        );
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    }
    let expires = state.env.now_ms() / 1000 + SESSION_SECONDS;
    let secure = if state.loopback { "" } else { "; Secure" };
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}",
        state.session(expires)
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn badge(status: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", esc(status))
}

/// `GET /`: the queue's health, then the event list with its filters.
pub async fn index(State(state): State<ConsoleState>, RawQuery(query): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = super::api::query_pairs(query.as_deref());
    let refresh_off = pairs.iter().any(|(k, v)| k == "refresh" && v == "off");
    let filters: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "refresh")
        .cloned()
        .collect();
    let (filter, limit) = match event_filter(filters.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        Ok(f) => f,
        Err(e) => {
            return page(
                "Events",
                &format!(
                    "<p class=\"error\">{}</p><p><a href=\"/\">All events</a></p>",
                    esc(&e.to_string())
                ),
                None,
            )
        }
    };
    let (events, counts) = match (
        state.store.list_events(filter.clone(), limit).await,
        state.store.counts().await,
    ) {
        (Ok(e), Ok(c)) => (e, c),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(target: LOG_TARGET, error = %e, "admin page: the store cannot answer");
            return page(
                "Events",
                "<p class=\"error\">The event store cannot answer right now.</p>",
                Some(10),
            );
        }
    };
    let now = state.env.now_ms();
    let oldest = counts
        .oldest_pending
        .map(|t| operator::human_age(now - t))
        .unwrap_or_else(|| "—".into());
    let mut body = format!(
        "<section class=\"health\"><div><b>{}</b> pending</div><div><b>{}</b> in flight</div>\
         <div class=\"{}\"><b>{}</b> dead letters</div><div><b>{oldest}</b> oldest pending</div>\
         <div><b>{}</b> delivered since start</div>{}</section>",
        counts.pending,
        counts.inflight,
        if counts.dead > 0 { "warn" } else { "" },
        counts.dead,
        state.metrics.delivered_count(),
        chart(&state.metrics.last_hour()),
    );
    let current = filter.status.map(|s| s.as_str()).unwrap_or("all");
    body.push_str("<nav class=\"filters\">");
    for s in ["all", "pending", "delivered", "dead"] {
        let href = if s == "all" {
            "/".to_string()
        } else {
            format!("/?status={s}")
        };
        let class = if s == current { " class=\"on\"" } else { "" };
        body.push_str(&format!("<a href=\"{href}\"{class}>{s}</a>"));
    }
    let keep: String = filters
        .iter()
        .map(|(k, v)| format!("{}={}&", q(k), q(v)))
        .collect();
    if refresh_off {
        body.push_str(&format!(
            "<a href=\"/?{}\">auto-refresh on</a>",
            esc(keep.trim_end_matches('&'))
        ));
    } else {
        body.push_str(&format!(
            "<a href=\"/?{}refresh=off\">auto-refresh off</a>",
            esc(&keep)
        ));
    }
    body.push_str("</nav><table class=\"events\"><thead><tr><th>event</th><th>age</th><th>status</th><th>source</th><th>request</th><th>deliveries</th></tr></thead><tbody>");
    for e in &events {
        let v = operator::event_summary_json(e);
        let deliveries: Vec<String> = e
            .deliveries
            .iter()
            .map(|d| format!("{} {}", esc(&d.destination), badge(d.status.as_str())))
            .collect();
        body.push_str(&format!(
            "<tr><td><a href=\"/events/{id}\"><code>{id}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            operator::human_age(now - e.received_at),
            badge(v["status"].as_str().unwrap_or_default()),
            esc(&e.source),
            esc(&e.method),
            esc(&e.path),
            deliveries.join("<br>"),
            id = esc(&e.id),
        ));
    }
    body.push_str("</tbody></table>");
    if events.is_empty() {
        body.push_str("<p class=\"hint\">No events here yet.</p>");
    }
    if let (true, Some(last)) = (events.len() == limit, events.last()) {
        let keep: String = filters
            .iter()
            .filter(|(k, _)| k != "before")
            .map(|(k, v)| format!("{}={}&", q(k), q(v)))
            .collect();
        body.push_str(&format!(
            "<p><a href=\"/?{}before={}\">older events</a></p>",
            esc(&keep),
            q(&last.id)
        ));
    }
    page("Events", &body, (!refresh_off).then_some(10))
}

/// `GET /events/{id}`: the request, then each delivery with its attempt timeline and a replay
/// button.
pub async fn event(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    let e = match state.store.logged_event(id.clone()).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let mut r = page(
                "Not found",
                &format!("<p class=\"error\">No event {} in the log (never received, or pruned after retention.events).</p><p><a href=\"/\">All events</a></p>", esc(&id)),
                None,
            );
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
        Err(err) => {
            tracing::error!(target: LOG_TARGET, error = %err, "admin page: the store cannot answer");
            return page(
                "Event",
                "<p class=\"error\">The event store cannot answer right now.</p>",
                None,
            );
        }
    };
    let v = operator::logged_event_json(&e);
    let s = |x: &Value| esc(x.as_str().unwrap_or_default());
    let mut body = format!(
        "<p><a href=\"/\">← all events</a></p><h1><code>{}</code> {}</h1>\
         <dl><dt>received</dt><dd>{}</dd><dt>source</dt><dd>{}</dd><dt>event type</dt><dd>{}</dd>\
         <dt>request</dt><dd>{} {}</dd><dt>sender's delivery id</dt><dd>{}</dd></dl>",
        s(&v["id"]),
        badge(v["status"].as_str().unwrap_or_default()),
        s(&v["received_at"]),
        s(&v["source"]),
        s(&v["event_type"]),
        s(&v["method"]),
        s(&v["path"]),
        v["delivery"]
            .as_str()
            .map(esc)
            .unwrap_or_else(|| "—".into()),
    );
    body.push_str(&format!(
        "<form method=\"post\" action=\"/events/{}/replay\"><button>Replay</button> <span class=\"hint\">its delivered and dead deliveries, as a new attempt chain</span></form>",
        s(&v["id"])
    ));
    for d in v["deliveries"].as_array().into_iter().flatten() {
        body.push_str(&format!(
            "<section class=\"delivery\"><h2>{} {}</h2><p>{} attempt(s) in chain {}</p><ol class=\"timeline\">",
            s(&d["destination"]),
            badge(d["status"].as_str().unwrap_or_default()),
            d["attempts"],
            d["chain"]
        ));
        for t in d["tries"].as_array().into_iter().flatten() {
            body.push_str(&format!(
                "<li class=\"{}\"><time>{}</time> chain {} · {} · {} · {} ms{}<br><span class=\"msg\">{}</span></li>",
                s(&t["outcome"]),
                s(&t["at"]),
                t["chain"],
                s(&t["outcome"]),
                match (t["status"].as_u64(), t["outcome"].as_str()) {
                    (Some(c), _) => c.to_string(),
                    (None, Some("delivered")) => "accepted".into(),
                    (None, _) => "no answer".into(),
                },
                t["took_ms"].as_u64().map(|c| c.to_string()).unwrap_or_else(|| "—".into()),
                t["batch_id"].as_str().map(|b| format!(" · batch {}", esc(b))).unwrap_or_default(),
                s(&t["message"]),
            ));
        }
        if d["tries"].as_array().is_none_or(Vec::is_empty) {
            body.push_str("<li>no attempt yet</li>");
        }
        body.push_str("</ol></section>");
    }
    body.push_str("<h2>Headers</h2><table class=\"headers\">");
    for (k, h) in v["headers"].as_object().into_iter().flatten() {
        body.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", esc(k), s(h)));
    }
    if v["body"]["pruned"] == true {
        body.push_str("</table><h2>Body</h2><p class=\"hint\">Dropped after retention.bodies: the log keeps the rest of this event, and it cannot be replayed.</p>");
        return page(&format!("Event {id}"), &body, None);
    }
    body.push_str(&format!(
        "</table><h2>Body</h2><p class=\"hint\">{} bytes{}{}</p><pre>{}</pre>",
        v["body"]["size"],
        if v["body"]["truncated"] == true {
            ", the first 4096 shown"
        } else {
            ""
        },
        if v["body"]["encoding"] == "base64" {
            ", not UTF-8: shown as base64"
        } else {
            ""
        },
        s(&v["body"]["preview"])
    ));
    page(&format!("Event {id}"), &body, None)
}

/// The last hour's deliveries (green) and failed attempts (red) per minute, as a small inline
/// SVG bar chart (no script; styled by the page's stylesheet), newest on the right.
fn chart(minutes: &[(u64, u64)]) -> String {
    const W: usize = 4;
    const H: u64 = 40;
    let top = minutes.iter().map(|(d, f)| d + f).max().unwrap_or(0).max(1);
    let (delivered, failed): (u64, u64) =
        minutes.iter().fold((0, 0), |(a, b), (d, f)| (a + d, b + f));
    let mut bars = String::new();
    for (i, (d, f)) in minutes.iter().enumerate() {
        // At least a pixel for any minute that had something.
        let height = |n: u64| if n == 0 { 0 } else { (n * H / top).max(1) };
        let (hd, hf) = (height(*d), height(*f));
        let x = i * W;
        if hd > 0 {
            bars.push_str(&format!(
                "<rect class=\"ok\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{hd}\"/>",
                H - hd,
                W - 1
            ));
        }
        if hf > 0 {
            bars.push_str(&format!(
                "<rect class=\"bad\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{hf}\"/>",
                H.saturating_sub(hd + hf),
                W - 1
            ));
        }
    }
    format!(
        "<div class=\"chart\"><svg role=\"img\" viewBox=\"0 0 {} {H}\" width=\"{}\" height=\"{H}\">\
         <title>The last hour, per minute: {delivered} delivered, {failed} failed attempts</title>\
         <rect class=\"frame\" x=\"0\" y=\"0\" width=\"{}\" height=\"{H}\"/>{bars}</svg>\
         <span><b>{delivered}</b> delivered · <b>{failed}</b> failed, last hour</span></div>",
        minutes.len() * W,
        minutes.len() * W,
        minutes.len() * W,
    )
}

/// `POST /events/{id}/replay`: back to the event.
pub async fn replay(State(state): State<ConsoleState>, Path(id): Path<String>) -> Response {
    match state
        .store
        .replay(vec![id.clone()], Default::default(), 1)
        .await
    {
        Ok(n) => {
            tracing::info!(target: LOG_TARGET, id = %id, deliveries = n, "admin page: replayed");
            Redirect::to(&format!("/events/{}", q(&id))).into_response()
        }
        Err(e) => {
            tracing::error!(target: LOG_TARGET, error = %e, "admin page: cannot replay");
            page(
                "Replay",
                "<p class=\"error\">The event store cannot take the replay right now.</p>",
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_never_becomes_markup() {
        assert_eq!(
            esc(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(esc("a\u{1b}[31mb\nc"), "a\u{fffd}[31mb\nc");
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8081"));
        assert!(same_origin(&h), "no Origin: a same-site form");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8081"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8081.evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }
}
