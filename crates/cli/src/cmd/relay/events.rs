//! `hookflow relay events …`: the event log listed, shown and replayed, through a running
//! relay's admin API or on its store.

use anyhow::Context as _;
use clap::Subcommand;
use std::process::ExitCode;

use super::common::{relay_config, runtime, StoreArgs, StoreLocation};
use crate::cmd::{environment, print_out};

/// Where the event log is read: a running relay's admin API, or the store itself.
#[derive(clap::Args, Clone)]
pub(crate) struct EventLogSource {
    #[command(flatten)]
    store: StoreLocation,
    /// A running relay's admin API (http://127.0.0.1:8081); its token comes from
    /// HOOKFLOW_ADMIN_TOKEN. Without it the store is read directly.
    #[arg(long, env = "HOOKFLOW_ADMIN_URL", value_name = "URL")]
    admin_url: Option<String>,
}

/// The event log's filters.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct EventFilters {
    /// Events with a delivery in this state: pending, inflight, delivered, dead.
    #[arg(long)]
    status: Option<String>,
    /// Events with a delivery to this repository (OWNER/NAME).
    #[arg(long)]
    repository: Option<String>,
    /// Events with a delivery to this destination (repo:OWNER/NAME or http:URL).
    #[arg(long)]
    destination: Option<String>,
    /// The endpoint slug, or compat.
    #[arg(long)]
    source: Option<String>,
    /// Received at or after (RFC 3339 or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Received before (RFC 3339 or Unix seconds).
    #[arg(long)]
    until: Option<String>,
    /// The sender's delivery id (X-GitHub-Delivery and the like).
    #[arg(long)]
    delivery: Option<String>,
    /// Text in the request path.
    #[arg(long = "path-contains", value_name = "TEXT")]
    q: Option<String>,
}

impl EventFilters {
    /// As the admin API's query names and values.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("status", &self.status),
            ("repository", &self.repository),
            ("destination", &self.destination),
            ("source", &self.source),
            ("since", &self.since),
            ("until", &self.until),
            ("delivery", &self.delivery),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }

    /// The filters of one page of the list: with its size and where it starts.
    fn page(&self, limit: usize, before: Option<String>) -> Vec<(&'static str, String)> {
        let mut pairs = self.pairs();
        pairs.push(("limit", limit.to_string()));
        pairs.extend(before.map(|b| ("before", b)));
        pairs
    }
}

#[derive(Subcommand)]
pub(crate) enum EventsAction {
    /// Events, newest first: id, age, status, source, request, deliveries.
    List {
        #[command(flatten)]
        from: EventLogSource,
        #[command(flatten)]
        filters: EventFilters,
        /// Most events (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The next page: the last id of the previous one.
        #[arg(long)]
        before: Option<String>,
        /// Print JSON (as the admin API's) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One event: its request's headers, a body preview, each delivery with its attempts.
    Show {
        #[command(flatten)]
        from: EventLogSource,
        /// The event id.
        id: String,
        /// Print JSON (as the admin API's).
        #[arg(long)]
        json: bool,
    },
    /// Replay events (their delivered and dead deliveries, each as a new attempt chain): by id,
    /// or those the filters find.
    Replay {
        #[command(flatten)]
        from: EventLogSource,
        /// Event ids, or delivery ids (that destination alone).
        ids: Vec<String>,
        #[command(flatten)]
        filters: EventFilters,
        /// Most events a filter replays.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

/// `hookflow relay events …`: the event log, through a running relay's admin API or on its
/// store; both give the same JSON, and the tables are made from it.
pub(crate) fn events(action: EventsAction) -> anyhow::Result<ExitCode> {
    let from = match &action {
        EventsAction::List { from, .. }
        | EventsAction::Show { from, .. }
        | EventsAction::Replay { from, .. } => from.clone(),
    };
    let env = environment()?;
    let now = env.now_ms();
    let rt = runtime()?;
    rt.block_on(async move {
        let log = match &from.admin_url {
            Some(url) => Log::Api(AdminApi::new(url, &env)?),
            None => {
                let config = relay_config(&StoreArgs::from(from.store), None, None, Vec::new())?;
                Log::Store(hookflow_relay::operator::open_store(&config, env.clock()).await?)
            }
        };
        match action {
            EventsAction::List {
                filters,
                limit,
                before,
                json,
                ..
            } => print_events(&log.page(&filters, limit, before).await?, json, now),
            EventsAction::Show { id, json, .. } => print_event(&log.event(&id).await?, json, now),
            EventsAction::Replay {
                ids,
                filters,
                limit,
                ..
            } => {
                let replayed = log.replay(ids, &filters, limit).await?;
                eprintln!("hookflow: {replayed} delivery(ies) queued again");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Where the event log is read: a running relay's admin API, or the store itself. Both give
/// the admin API's JSON.
enum Log {
    Api(AdminApi),
    Store(hookflow_relay::store::StoreHandle),
}

impl Log {
    /// One page of the log, newest first.
    async fn page(
        &self,
        filters: &EventFilters,
        limit: usize,
        before: Option<String>,
    ) -> anyhow::Result<serde_json::Value> {
        use hookflow_relay::operator;
        use hookflow_relay::store::Store as _;
        let pairs = filters.page(limit, before);
        match self {
            Log::Api(api) => api.get("/api/events", &pairs).await,
            Log::Store(store) => {
                let (filter, limit) =
                    operator::event_filter(pairs.iter().map(|(k, v)| (*k, v.as_str())))?;
                let events = store.list_events(filter, limit).await?;
                Ok(operator::event_page_json(&events, limit))
            }
        }
    }

    /// One event with its deliveries and attempts.
    async fn event(&self, id: &str) -> anyhow::Result<serde_json::Value> {
        use hookflow_relay::store::Store as _;
        match self {
            Log::Api(api) => api.get(&format!("/api/events/{id}"), &[]).await,
            Log::Store(store) => match store.logged_event(id.to_string()).await? {
                Some(e) => Ok(hookflow_relay::operator::logged_event_json(&e)),
                None => anyhow::bail!(
                    "no event {id} in the log (never received, or pruned after retention.events)"
                ),
            },
        }
    }

    /// Queues these events' deliveries again (or, without ids, those the filters match, at most
    /// `limit`); how many.
    async fn replay(
        &self,
        ids: Vec<String>,
        filters: &EventFilters,
        limit: usize,
    ) -> anyhow::Result<u64> {
        use hookflow_relay::operator;
        use hookflow_relay::store::Store as _;
        match self {
            Log::Api(api) => {
                let mut replayed = 0;
                for id in &ids {
                    let answer = api
                        .post(&format!("/api/events/{id}/replay"), serde_json::json!({}))
                        .await?;
                    replayed += answer["replayed"].as_u64().unwrap_or_default();
                }
                if ids.is_empty() {
                    let mut body: serde_json::Map<String, serde_json::Value> = filters
                        .pairs()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.into()))
                        .collect();
                    body.insert("limit".into(), limit.into());
                    let answer = api.post("/api/replay", body.into()).await?;
                    replayed += answer["replayed"].as_u64().unwrap_or_default();
                }
                Ok(replayed)
            }
            Log::Store(store) => {
                let pairs = filters.pairs();
                if ids.is_empty() && pairs.is_empty() {
                    anyhow::bail!("give event ids, or at least one filter (such as --status dead)");
                }
                let (filter, _) =
                    operator::event_filter(pairs.iter().map(|(k, v)| (*k, v.as_str())))?;
                let n = store
                    .replay(ids, filter, limit.clamp(1, operator::MAX_REPLAY))
                    .await?;
                Ok(n as u64)
            }
        }
    }
}

/// A running relay's admin API, with the token from `HOOKFLOW_ADMIN_TOKEN`.
pub(crate) struct AdminApi {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl AdminApi {
    fn new(url: &str, env: &hookflow_protocol::Environment) -> anyhow::Result<AdminApi> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .with_context(|| {
                format!("--admin-url {url:?} is not an http(s) URL such as http://127.0.0.1:8081")
            })?;
        let token = env.var("HOOKFLOW_ADMIN_TOKEN").context(
            "HOOKFLOW_ADMIN_TOKEN is not set: give one of the relay's admin tokens (admin.tokens_env)",
        )?;
        Ok(AdminApi {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            token,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .context("cannot build the HTTP client")?,
        })
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(&self.token);
        self.answer(request).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .bearer_auth(&self.token);
        self.answer(request).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if !status.is_success() {
            anyhow::bail!(
                "the admin API answered {}: {}",
                status.as_u16(),
                answer["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(answer)
    }
}

/// A page of events as a table (or its JSON).
pub(crate) fn print_events(
    page: &serde_json::Value,
    json: bool,
    now_ms: i64,
) -> anyhow::Result<ExitCode> {
    if json {
        print_out(&format!("{page:#}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let events = page["events"].as_array().cloned().unwrap_or_default();
    let mut text = format!(
        "{:<26}  {:>5}  {:<9}  {:<12}  {:<40}  deliveries\n",
        "event", "age", "status", "source", "request"
    );
    for e in &events {
        let deliveries: Vec<String> = e["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d["destination"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["attempts"]
                )
            })
            .collect();
        text.push_str(&format!(
            "{:<26}  {:>5}  {:<9}  {:<12}  {:<40}  {}\n",
            e["id"].as_str().unwrap_or_default(),
            age_of(&e["received_at"], now_ms),
            e["status"].as_str().unwrap_or_default(),
            e["source"].as_str().unwrap_or_default(),
            ellipsis(
                &format!(
                    "{} {}",
                    e["method"].as_str().unwrap_or_default(),
                    e["path"].as_str().unwrap_or_default()
                ),
                40
            ),
            deliveries.join(", ")
        ));
    }
    text.push_str(&format!("{} event(s)", events.len()));
    if let Some(next) = page["next"].as_str() {
        text.push_str(&format!("; next page: --before {next}"));
    }
    text.push('\n');
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// One event as text (or its JSON): the request, then each delivery's attempts.
pub(crate) fn print_event(
    e: &serde_json::Value,
    json: bool,
    now_ms: i64,
) -> anyhow::Result<ExitCode> {
    if json {
        print_out(&format!("{e:#}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let mut text = format!(
        "event     {}\nreceived  {} ({} ago)\nsource    {}\ntype      {}\nrequest   {} {}\nstatus    {}\n",
        s(&e["id"]),
        s(&e["received_at"]),
        age_of(&e["received_at"], now_ms),
        s(&e["source"]),
        s(&e["event_type"]),
        s(&e["method"]),
        s(&e["path"]),
        s(&e["status"])
    );
    if let Some(d) = e["delivery"].as_str() {
        text.push_str(&format!("delivery  {d} (the sender's)\n"));
    }
    text.push_str("headers\n");
    for (k, v) in e["headers"].as_object().into_iter().flatten() {
        text.push_str(&format!("  {k}: {}\n", v.as_str().unwrap_or_default()));
    }
    text.push_str(&format!(
        "body      {} bytes{}\n",
        e["body"]["size"],
        if e["body"]["truncated"] == true {
            ", the first 4096 shown"
        } else {
            ""
        }
    ));
    for d in e["deliveries"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "delivery {} to {}: {} after {} attempt(s), chain {}\n",
            s(&d["id"]),
            s(&d["destination"]),
            s(&d["status"]),
            d["attempts"],
            d["chain"]
        ));
        for t in d["tries"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "  {}  chain {}  {:<9}  {:>4}  {:>6} ms  {}\n",
                s(&t["at"]),
                t["chain"],
                s(&t["outcome"]),
                t["status"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                t["took_ms"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or("-".into()),
                s(&t["message"])
            ));
        }
    }
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The age of an RFC 3339 time as `42s`, `5m`, `3h`, `2d`.
pub(crate) fn age_of(at: &serde_json::Value, now_ms: i64) -> String {
    at.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| hookflow_relay::operator::human_age(now_ms - t.timestamp_millis()))
        .unwrap_or_default()
}

/// `text` cut to `n` characters, with `…` when cut.
pub(crate) fn ellipsis(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(n.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
