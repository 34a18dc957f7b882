//! The operator's side of the relay, as the `hookflow relay` subcommands show it: opening the
//! store of a relay that may be running, the dead-letter list as a table or JSON, and the report
//! of `--check-config`. Printing is the caller's; this module only makes the text.

use serde_json::{json, Value};

use crate::config::RelayConfig;
use crate::config::StoreLocation;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    DeadLetter, DeliveryStatus, EventFilter, EventSummary, LoggedDelivery, LoggedEvent, Opening,
    Payload, StoreError, StoreHandle, MAX_PAGE,
};
use hookflow_protocol::options::parse_time;
use hookflow_protocol::Environment;

/// Why an operator's command cannot reach the store.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No store in the data directory.
    #[error("no event store in {0} (pass --data DIR or --config FILE)")]
    NoStore(std::path::PathBuf),
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the store of the relay `config` describes, without creating or migrating it (the relay
/// may be running: SQLite's WAL lets both work at once, and PostgreSQL is shared anyway).
/// `clock` gives the times a SQLite store records.
pub async fn open_store(
    config: &RelayConfig,
    clock: std::sync::Arc<dyn hookflow_protocol::Clock>,
) -> Result<StoreHandle, AdminError> {
    let postgres = match &config.store {
        StoreLocation::Sqlite => {
            if !config.data.join(crate::store::sqlite::DB_FILE).exists() {
                return Err(AdminError::NoStore(config.data.clone()));
            }
            None
        }
        StoreLocation::Postgres(location) => Some(&**location),
    };
    let opened = StoreHandle::open(postgres, &config.data, Opening::Existing, clock).await?;
    Ok(opened.store)
}

/// Brings the store of the relay `config` describes to this hookflow's schema (creating it when
/// there is none): where it is, and the schema version before and after.
pub async fn migrate_store(config: &RelayConfig) -> Result<(String, i64, i64), AdminError> {
    match &config.store {
        StoreLocation::Sqlite => {
            let before = crate::store::sqlite::schema_version(&config.data)?;
            SqliteStore::open_with(&config.data, None, true)?;
            Ok((
                config.data.display().to_string(),
                before,
                crate::store::sqlite::SCHEMA_VERSION,
            ))
        }
        StoreLocation::Postgres(location) => {
            let (before, after) = PgStore::migrate(location).await?;
            Ok((location.to_string(), before.into(), after.into()))
        }
    }
}

/// What [`move_store`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Pending deliveries copied.
    pub pending: u64,
    /// Dead letters copied.
    pub dead: u64,
    /// Events the database already had (a move run again), left as they were.
    pub already_there: u64,
    /// De-duplication keys copied.
    pub keys: u64,
    /// Where the SQLite file went, out of the way of a relay started on the folder again.
    pub set_aside: std::path::PathBuf,
}

/// Events copied per transaction.
const MOVE_PAGE: usize = 500;

/// Moves a stopped relay's SQLite store in `from` into the PostgreSQL database at `to`
/// (migrating both first): pending deliveries, dead letters and the de-duplication keys of the
/// last day. Refuses while a relay holds the folder. Afterwards the SQLite file is renamed
/// (`events.db.moved-…`) so that a relay started on the folder by mistake delivers nothing twice.
/// Safe to run again after a failure part way: events already copied are left alone.
pub async fn move_store(
    from: &std::path::Path,
    to: &crate::store::postgres::PgLocation,
    now_ms: i64,
) -> Result<Moved, AdminError> {
    use crate::store::sqlite::{lock_data_dir, DB_FILE};
    if !from.join(DB_FILE).exists() {
        return Err(AdminError::NoStore(from.to_path_buf()));
    }
    let _lock = lock_data_dir(from)?;
    let mut sqlite = SqliteStore::open_with(from, None, true)?;
    let pg = PgStore::open(to, true).await?;
    let mut moved = Moved {
        pending: 0,
        dead: 0,
        already_there: 0,
        keys: 0,
        set_aside: std::path::PathBuf::new(),
    };
    let keys = sqlite.export_seen(now_ms - crate::store::DEDUPE_WINDOW_MS)?;
    moved.keys = keys.len() as u64;
    pg.import(&[], &keys).await?;
    let mut after = String::new();
    loop {
        let page = sqlite.export_events(&after, MOVE_PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.event.event.id.clone();
        let added = pg.import(&page, &[]).await?;
        for d in page.iter().flat_map(|e| &e.deliveries) {
            if d.dead {
                moved.dead += 1;
            } else {
                moved.pending += 1;
            }
        }
        moved.already_there += page.len() as u64 - added;
    }
    sqlite.close()?;
    let stamp = chrono::DateTime::from_timestamp_millis(now_ms).map_or_else(
        || now_ms.to_string(),
        |t| t.format("%Y%m%dT%H%M%SZ").to_string(),
    );
    moved.set_aside = from.join(format!("{DB_FILE}.moved-{stamp}"));
    std::fs::rename(from.join(DB_FILE), &moved.set_aside).map_err(|e| {
        StoreError::Unavailable(format!(
            "copied, but cannot rename {}: {e}; rename or delete it before starting a relay on {}",
            from.join(DB_FILE).display(),
            from.display()
        ))
    })?;
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(from.join(format!("{DB_FILE}{side}")));
    }
    Ok(moved)
}

/// Dead letters as a JSON array: the delivery's id, the event's, the destination (and `repo`
/// for a repository), endpoint, event type, attempts, last error, age in seconds.
pub fn dead_letters_json(letters: &[DeadLetter], now_ms: i64) -> Value {
    Value::Array(
        letters
            .iter()
            .map(|l| {
                json!({"id": l.id, "event_id": l.event_id, "destination": l.destination,
                       "repo": l.destination.strip_prefix("repo:"), "source": l.source,
                       "event_type": l.event_type, "attempts": l.attempts,
                       "last_error": l.error, "age_seconds": (now_ms - l.received_at) / 1000})
            })
            .collect(),
    )
}

/// Dead letters as a table with a count line: one row per failed destination; its delivery
/// id replays that destination alone, its event id every dead destination of the event.
pub fn dead_letters_table(letters: &[DeadLetter], now_ms: i64) -> String {
    let mut text = format!(
        "{:<8}  {:<26}  {:<36}  {:<16}  {:>8}  {:>8}  last error\n",
        "delivery", "event", "destination", "event type", "attempts", "age"
    );
    for l in letters {
        text.push_str(&format!(
            "{:<8}  {:<26}  {:<36}  {:<16}  {:>8}  {:>8}  {}\n",
            l.id,
            l.event_id,
            l.destination,
            l.event_type,
            l.attempts,
            human_age(now_ms - l.received_at),
            l.error
        ));
    }
    text.push_str(&format!("{} dead letter(s)\n", letters.len()));
    text
}

/// An age as `42s`, `5m`, `3h`, `2d`.
pub fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// What `--check-config` says of a configuration that parsed: one summary line, and a warning
/// for each variable an endpoint names that `env` does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    /// `NAME: ok: listen …, data …, compatible route on|off, N endpoint(s)`.
    pub summary: String,
    /// `endpoint `slug`: token_env names VAR, which is not set here`.
    pub warnings: Vec<String>,
    /// What stops the relay from starting (a GitHub App key that cannot be used).
    pub errors: Vec<String>,
    /// `listen = 0.0.0.0:8080 (environment HOOKFLOW_LISTEN, overriding relay.yml:2)`: each
    /// effective value and where it came from.
    pub settings: Vec<String>,
}

/// Checks a parsed configuration against the variables it names; `name` is the file (or "the
/// defaults").
pub fn check_config(config: &RelayConfig, name: &str, env: &Environment) -> ConfigReport {
    let by_reference = match (&config.body_ref, &config.public_url) {
        (Some(b), Some(url)) => format!(
            ", bodies over a dispatch by reference at {url}/bodies/ (kept {})",
            human_age(b.retention.as_millis() as i64)
        ),
        _ => String::new(),
    };
    let summary = format!(
        "{name}: ok: listen {}, data {}, compatible route {}, {} endpoint(s), {} destination(s), bodies up to {} bytes{by_reference}",
        config.listen,
        config.data.display(),
        if config.compat_route { "on" } else { "off" },
        config.endpoints.len(),
        config
            .endpoints
            .iter()
            .map(|e| e.destinations.len())
            .sum::<usize>(),
        config.limits.max_body_bytes
    );
    let mut warnings: Vec<String> = config
        .unset_variables(env)
        .into_iter()
        .map(|u| format!("{u} here"))
        .collect();
    let mut errors = config.unusable_secrets(env);
    if let Some(app) = &config.github_app {
        match app.load(env) {
            Ok(_) => {}
            // Set where the relay runs, perhaps.
            Err(e @ crate::outbound::github_app::KeyError::Unset(_)) => {
                warnings.push(format!("{e} here"))
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let settings = config
        .settings
        .iter()
        .map(|s| {
            let over = s
                .overrides
                .as_ref()
                .map(|f| format!(", overriding {f}"))
                .unwrap_or_default();
            format!("{:<8} = {} ({}{over})", s.key, s.value, s.source)
        })
        .collect();
    ConfigReport {
        summary,
        warnings,
        errors,
        settings,
    }
}

/// The most deliveries one replay by filter takes.
pub const MAX_REPLAY: usize = 10_000;

/// How much of a body an event's view shows.
pub const BODY_PREVIEW_BYTES: usize = 4096;

/// Why a list's filters cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// The filters of a list (`status`, `repository`, `destination`, `source`, `since`, `until`,
/// `delivery`, `q`, `before`) and its `limit` (default 50, at most [`MAX_PAGE`]), from
/// name-value pairs: a query string's, or the CLI's flags. Times are RFC 3339 or Unix seconds.
pub fn event_filter<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(EventFilter, usize), FilterError> {
    let mut f = EventFilter::default();
    let mut limit = 50;
    for (name, value) in pairs {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let time = |v: &str| {
            parse_time(v).map(|s| s.saturating_mul(1000)).ok_or_else(|| {
                FilterError(format!(
                    "{name}={v:?} is not a time: give RFC 3339 (2026-11-29T10:00:00Z) or Unix seconds"
                ))
            })
        };
        match name {
            "status" => {
                f.status = Some(DeliveryStatus::parse(value).ok_or_else(|| {
                    FilterError(format!(
                        "status={value:?}: expected pending, inflight, delivered or dead"
                    ))
                })?)
            }
            "repository" | "repo" => f.destination = Some(format!("repo:{value}")),
            "destination" => f.destination = Some(value.to_string()),
            "source" | "endpoint" => f.source = Some(value.to_string()),
            "since" => f.since = Some(time(value)?),
            "until" => f.until = Some(time(value)?),
            "delivery" => f.delivery_key = Some(value.to_string()),
            "q" => f.path_contains = Some(value.to_string()),
            "before" => f.before = Some(value.to_string()),
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        FilterError(format!("limit={value:?}: expected 1 to {MAX_PAGE}"))
                    })?
            }
            other => {
                return Err(FilterError(format!(
                    "unknown filter `{other}`; known: status, repository, destination, source, since, until, delivery, q, before, limit"
                )))
            }
        }
    }
    Ok((f, limit))
}

/// RFC 3339 with milliseconds, UTC, of milliseconds since the epoch.
fn rfc3339(ms: i64) -> String {
    crate::destinations::rfc3339(ms)
}

fn delivery_json(d: &LoggedDelivery, with_tries: bool) -> Value {
    let mut v = json!({
        "id": d.id, "destination": d.destination, "status": d.status.as_str(),
        "attempts": d.attempts, "chain": d.chain, "last_status": d.last_status,
        "last_error": d.last_error,
        "next_at": rfc3339(d.next_at),
    });
    if with_tries {
        v["tries"] = Value::Array(
            d.tries
                .iter()
                .map(|t| {
                    json!({"chain": t.chain, "at": rfc3339(t.at), "took_ms": t.took_ms,
                           "status": t.status, "outcome": t.outcome, "message": t.message,
                           "relay": t.relay, "batch_id": t.batch_id})
                })
                .collect(),
        );
    }
    v
}

/// The status of an event as a whole: `dead` if a delivery is, else `pending` while one waits
/// or is in flight, else `delivered`.
pub fn event_status(deliveries: &[LoggedDelivery]) -> &'static str {
    let any = |s: DeliveryStatus| deliveries.iter().any(|d| d.status == s);
    if any(DeliveryStatus::Dead) {
        "dead"
    } else if any(DeliveryStatus::Pending) || any(DeliveryStatus::Inflight) {
        "pending"
    } else {
        "delivered"
    }
}

/// An event of a list as JSON.
pub fn event_summary_json(e: &EventSummary) -> Value {
    json!({
        "id": e.id, "received_at": rfc3339(e.received_at), "source": e.source,
        "event_type": e.event_type, "method": e.method, "path": e.path,
        "delivery": e.delivery_key, "status": event_status(&e.deliveries),
        "deliveries": e.deliveries.iter().map(|d| delivery_json(d, false)).collect::<Vec<_>>(),
    })
}

/// A page of a list as JSON: the events, and the `before` of the next page (when this one is
/// full).
pub fn event_page_json(events: &[EventSummary], limit: usize) -> Value {
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    json!({"events": events.iter().map(event_summary_json).collect::<Vec<_>>(), "next": next})
}

/// One event whole as JSON: the request's headers (credentials were never stored), a preview of
/// its body (text, or base64 when not UTF-8), and each delivery with its attempts.
pub fn logged_event_json(e: &LoggedEvent) -> Value {
    let mut v = event_summary_json(&e.summary);
    v["deliveries"] = Value::Array(
        e.summary
            .deliveries
            .iter()
            .map(|d| delivery_json(d, true))
            .collect(),
    );
    let (headers, body) = match &e.payload {
        Payload::Request(r) => (Value::Object(r.headers.clone()), &r.body),
        Payload::Dispatch(b) => (Value::Object(Default::default()), b),
    };
    let shown = &body[..body.len().min(BODY_PREVIEW_BYTES)];
    let (text, encoding) = match std::str::from_utf8(shown) {
        Ok(t) => (t.to_string(), "text"),
        // A cut in the middle of a character is still text.
        Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => (
            String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned(),
            "text",
        ),
        Err(_) => {
            use base64::Engine as _;
            (
                base64::engine::general_purpose::STANDARD.encode(shown),
                "base64",
            )
        }
    };
    v["headers"] = headers;
    v["body"] = json!({"size": body.len(), "preview": text, "encoding": encoding,
                       "truncated": body.len() > shown.len(), "pruned": e.body_pruned});
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(age_ms: i64) -> DeadLetter {
        DeadLetter {
            id: "17".into(),
            event_id: "01J".into(),
            destination: "repo:octo/hooks".into(),
            source: "gh".into(),
            event_type: "webhook".into(),
            attempts: 7,
            error: "404".into(),
            received_at: 1_000_000 - age_ms,
        }
    }

    #[test]
    fn ages_and_tables() {
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(59_999), "59s");
        assert_eq!(human_age(3_600_000), "1h");
        assert_eq!(human_age(2 * 86_400_000), "2d");
        let table = dead_letters_table(&[letter(90_000)], 1_000_000);
        assert!(table.contains("octo/hooks"), "{table}");
        assert!(table.contains(" 1m "), "{table}");
        assert!(table.ends_with("1 dead letter(s)\n"), "{table}");
        let json = dead_letters_json(&[letter(90_000)], 1_000_000);
        assert_eq!(json[0]["age_seconds"], 90);
        assert_eq!(json[0]["last_error"], "404");
        assert_eq!(json[0]["repo"], "octo/hooks");
        assert_eq!(json[0]["event_id"], "01J");
    }

    #[test]
    fn the_report_names_unset_variables() {
        let text = "endpoints:\n  - slug: gh\n    repo: octo/hooks\n    token_env: GH_TOKEN\n    verify: {preset: github, secret_env: GH_SECRET}\n";
        let config = RelayConfig::parse(text, "relay.yml", &Default::default()).expect("parses");
        let env = Environment::fixed(0, vec![("GH_TOKEN".into(), "t".into())]);
        let report = check_config(&config, "relay.yml", &env);
        assert!(report.summary.starts_with("relay.yml: ok:"), "{report:?}");
        assert!(
            report
                .summary
                .ends_with("1 endpoint(s), 1 destination(s), bodies up to 1048576 bytes"),
            "{report:?}"
        );
        assert_eq!(
            report.warnings,
            vec!["endpoint `gh`: verify.secret_env names GH_SECRET, which is not set here"]
        );
        let text = format!(
            "public_url: https://relay.example.com\nbody_ref:\n  secret_env: BODY_KEY\n{text}"
        );
        let config = RelayConfig::parse(&text, "relay.yml", &Default::default()).expect("parses");
        let report = check_config(&config, "relay.yml", &env);
        assert!(
            report.summary.ends_with(
                "bodies up to 26214400 bytes, bodies over a dispatch by reference at https://relay.example.com/bodies/ (kept 7d)"
            ),
            "{report:?}"
        );
        assert!(report
            .warnings
            .contains(&"body_ref: secret_env names BODY_KEY, which is not set here".to_string()));
        let env = Environment::fixed(0, vec![("BODY_KEY".into(), "short".into())]);
        let report = check_config(&config, "relay.yml", &env);
        assert_eq!(
            report.errors,
            vec!["body_ref: the secret in BODY_KEY is 5 bytes; use at least 16 random bytes (openssl rand -hex 32)"]
        );
    }
}
