//! The relay's configuration: a YAML file (`hookflow relay --config FILE`) and flags that
//! override it. With no file at all the relay runs on the embedded default: the compatible route
//! on, SQLite in `--data`, `https://api.github.com`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use hookflow_protocol::dispatch::{
    Repo, MAX_EVENT_TYPE_CHARS, MAX_REQUEST_BYTES, WEBHOOK_EVENT_TYPE,
};
use hookflow_protocol::options::{locate, locate_anywhere, parse_duration_ms};
use hookflow_protocol::signature::{parse_verify, VerifyRule};

mod destinations;
pub use destinations::{glob, Batching, DestinationConfig, Target, Transform, TransformError};

/// A configuration problem, with where it is, and any further ones found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `flags`).
    pub file: String,
    /// 1-based line when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// Other problems found in the same pass.
    pub more: Vec<ConfigError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        for m in &self.more {
            write!(f, "\n{m}")?;
        }
        Ok(())
    }
}

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (the SQLite store).
    pub data: PathBuf,
    /// Where events are stored: SQLite in `data`, or a shared PostgreSQL database.
    pub store: StoreLocation,
    /// Whether start-up applies pending schema migrations (`--no-migrate` refuses instead).
    pub migrate: bool,
    /// GitHub API base.
    pub api_url: String,
    /// Whether the webhook2github-compatible route `/<owner>/<repo>/…` is on.
    pub compat_route: bool,
    /// Repositories the compatible route may dispatch to; empty means any.
    pub compat_repos: Vec<RepoPattern>,
    /// Request limits.
    pub limits: Limits,
    /// How long a graceful shutdown waits for requests and deliveries in flight.
    pub shutdown_timeout: Duration,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Configured endpoints (`/hooks/<slug>`).
    pub endpoints: Vec<Endpoint>,
    /// The relay's GitHub App (`github_app:`), when it dispatches as one.
    pub github_app: Option<GithubApp>,
    /// The address the relay is reached at from outside (`public_url:`), for the URLs it hands
    /// out: `https://relay.example.com` (a path prefix is kept).
    pub public_url: Option<String>,
    /// Bodies too large for a dispatch travel by reference (`body_ref:`), when configured.
    pub body_ref: Option<BodyRefConfig>,
    /// How long the event log keeps delivered events (`retention.events`).
    pub retention: Duration,
    /// How long delivered events keep their bodies (`retention.bodies`), when shorter than the
    /// events themselves; `None`: as long as the event.
    pub body_retention: Option<Duration>,
    /// The admin API and page (`admin:`), when configured.
    pub admin: Option<AdminConfig>,
    /// Where `listen`, `data` and `api_url` came from.
    pub settings: Vec<Setting>,
    /// The file and flags it was read from, to read it again on reload; `None` without a file.
    pub source: Option<ConfigSource>,
}

/// Where a configuration was read from: its file and the flags applied over it. A reload reads
/// the same file with the same flags.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The YAML file.
    pub file: PathBuf,
    /// The flags and environment variables that override it.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads the file again, with the same flags.
    pub fn read(&self) -> Result<RelayConfig, ConfigError> {
        RelayConfig::load(&self.file, &self.overrides)
    }
}

/// `body_ref:`: bodies too large for a dispatch even compressed are kept by the relay and
/// dispatched as a signed URL on `public_url` (`GET /bodies/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRefConfig {
    /// The variable holding the secret the URLs are signed with (shared by every relay of a
    /// store, at least 16 bytes).
    pub secret_env: String,
    /// How long a body is kept (and its URL works) after its dispatch.
    pub retention: Duration,
    /// Bodies served at once (each is held in memory while it is sent); more wait for 503.
    pub concurrency: usize,
}

impl BodyRefConfig {
    /// `retention` when not given: a week, as long as GitHub keeps a queued job waiting.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
    /// `concurrency` when not given.
    pub const DEFAULT_CONCURRENCY: usize = 8;
    /// The shortest secret accepted, in bytes.
    pub const MIN_SECRET_BYTES: usize = 16;
}

/// `admin:`: the admin API and its page, on an address of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where they listen (default `127.0.0.1:8081`: this machine only).
    pub listen: SocketAddr,
    /// The variable holding the admin tokens (comma-separated).
    pub tokens_env: String,
}

impl AdminConfig {
    /// `admin.listen` when not given.
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8081";
    /// The shortest admin token accepted, in bytes.
    pub const MIN_TOKEN_BYTES: usize = 16;
}

/// `retention.events` when not given: a week.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// `limits.max_body_bytes` when `body_ref` is configured and the limit is not: GitHub's own
/// cap on a webhook's payload.
pub const BODY_REF_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Which store a relay uses.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded SQLite file in the data directory.
    Sqlite,
    /// A PostgreSQL database several relays may share.
    Postgres(Box<crate::store::postgres::PgLocation>),
}

/// Limits that protect the relay from clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (413 above).
    pub max_body_bytes: usize,
    /// Most request headers (431 above).
    pub max_headers: usize,
    /// Largest total size of the request headers (431 above).
    pub max_header_bytes: usize,
    /// Time allowed to send the request headers (the connection is closed after).
    pub header_timeout: Duration,
    /// Time allowed to send the body (408 after).
    pub body_timeout: Duration,
    /// Requests handled at once (503 above).
    pub max_concurrent_requests: usize,
    /// Requests one client address may have in flight (429 above; 0: no limit).
    pub max_requests_per_client: usize,
    /// Requests a minute one client address may send to the compatible route, whose tokens
    /// only GitHub can check (429 above; 0: no limit).
    pub compat_requests_per_minute: u32,
    /// Open connections; more wait in the kernel's queue until one closes.
    pub max_connections: usize,
    /// How long a connection may go without a byte read or written, its first byte included.
    pub idle_timeout: Duration,
    /// Cap on the event store's size (503 for new events above); default: what the store
    /// holds plus half the free space at start-up.
    pub max_store_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
            max_requests_per_client: 64,
            compat_requests_per_minute: 6000,
            max_connections: 768,
            idle_timeout: Duration::from_secs(10),
            max_store_bytes: None,
        }
    }
}

/// How events are delivered to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Dispatches in flight at once.
    pub concurrency: usize,
    /// Attempts before an event becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeout of one dispatch request.
    pub timeout: Duration,
    /// Dispatches per minute to one repository (0: no limit). GitHub's secondary rate limits
    /// allow about 80 content-creating requests a minute.
    pub rate_limit_per_minute: u32,
    /// How long a relay holds a delivery it claimed; past it (the relay died or hung), any
    /// relay may claim it again. `None`: the timeout twice plus a minute.
    pub lease: Option<Duration>,
}

impl DeliveryConfig {
    /// The lease a claim takes.
    pub fn lease(&self) -> Duration {
        self.lease
            .unwrap_or(self.timeout * 2 + Duration::from_secs(60))
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 16,
            max_attempts: 7,
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            timeout: Duration::from_secs(30),
            rate_limit_per_minute: 80,
            lease: None,
        }
    }
}

/// The relay's GitHub App: its id and where its private key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubApp {
    /// The app's id (its settings page, "App ID").
    pub app_id: u64,
    /// The private key (PEM).
    pub private_key: KeySource,
}

/// Where the app's private key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file (`private_key_file`).
    File(PathBuf),
    /// An environment variable holding the PEM text (`private_key_env`).
    Env(String),
}

impl GithubApp {
    /// Loads the key; the error says where it came from and what is wrong with it.
    pub fn load(
        &self,
        env: &hookflow_protocol::Environment,
    ) -> Result<crate::outbound::github_app::AppKey, crate::outbound::github_app::KeyError> {
        use crate::outbound::github_app::{AppKey, KeyError};
        match &self.private_key {
            KeySource::File(path) => AppKey::from_file(self.app_id, path),
            KeySource::Env(name) => {
                let pem = env.var(name).ok_or_else(|| KeyError::Unset(name.clone()))?;
                AppKey::from_pem(self.app_id, &pem, &format!("the variable {name}"))
            }
        }
    }
}

/// How an endpoint's events authenticate to GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointAuth {
    /// A token in this environment variable (`token_env`).
    TokenEnv(String),
    /// The relay's GitHub App (`auth: app`).
    App,
}

/// Where a configured endpoint takes its event type from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeSource {
    /// Always this type.
    Fixed(String),
    /// The value at this dot path of the JSON body (`action`, `data.type`).
    BodyPath(String),
}

/// A configured endpoint, `POST /hooks/<slug>`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// URL slug.
    pub slug: String,
    /// Where its events go: one delivery each (a plain `repo:` endpoint has one).
    pub destinations: Vec<DestinationConfig>,
    /// The dispatch `event_type`.
    pub event_type: EventTypeSource,
    /// The `path` put in the payload (default `/<slug>/webhook`); what follows the slug in the
    /// request URL is appended.
    pub path: String,
    /// Signature check, with the runtime's presets.
    pub verify: Option<VerifyRule>,
    /// Environment variable holding accepted API keys (comma-separated) for
    /// `Authorization: Bearer <key>`.
    pub api_keys_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    store: Option<String>,
    api_url: Option<String>,
    compat_route: Option<bool>,
    #[serde(default)]
    compat_repos: Vec<String>,
    limits: Option<RawLimits>,
    github_app: Option<RawGithubApp>,
    public_url: Option<String>,
    body_ref: Option<RawBodyRef>,
    retention: Option<RawRetention>,
    admin: Option<RawAdmin>,
    shutdown_timeout: Option<Value>,
    delivery: Option<RawDelivery>,
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    max_headers: Option<usize>,
    max_header_bytes: Option<usize>,
    header_timeout: Option<Value>,
    body_timeout: Option<Value>,
    max_concurrent_requests: Option<usize>,
    max_requests_per_client: Option<usize>,
    compat_requests_per_minute: Option<u32>,
    max_connections: Option<usize>,
    idle_timeout: Option<Value>,
    max_store_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    tokens_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    events: Option<Value>,
    bodies: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBodyRef {
    secret_env: Option<String>,
    retention: Option<Value>,
    concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    rate_limit_per_minute: Option<u32>,
    concurrency: Option<usize>,
    max_attempts: Option<u32>,
    initial_backoff: Option<Value>,
    max_backoff: Option<Value>,
    timeout: Option<Value>,
    lease: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithubApp {
    app_id: u64,
    private_key_file: Option<PathBuf>,
    private_key_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    slug: String,
    repo: Option<String>,
    destinations: Option<Value>,
    token_env: Option<String>,
    auth: Option<String>,
    event_type: Option<String>,
    event_type_path: Option<String>,
    path: Option<String>,
    verify: Option<Value>,
    api_keys_env: Option<String>,
    batching: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatching {
    mode: Option<String>,
    max_events: Option<usize>,
    max_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    repo: Option<String>,
    token_env: Option<String>,
    auth: Option<String>,
    url: Option<String>,
    secret_env: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    header_prefix: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    transform: std::collections::BTreeMap<String, String>,
    batching: Option<Value>,
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data`.
    pub data: Option<PathBuf>,
    /// `--store` (a `postgres://` URL).
    pub store: Option<String>,
    /// `--api-url`.
    pub api_url: Option<String>,
    /// Where each override came from (`listen` → `flag --listen`, `environment HOOKFLOW_LISTEN`),
    /// for `--check-config`'s account of the effective values.
    pub sources: Vec<(String, String)>,
}

/// One effective setting and where it came from: `flag --listen`, `environment
/// HOOKFLOW_LISTEN`, `relay.yml:2`, or `default`. Precedence: flag, then environment, then the
/// file, then the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key (`listen`).
    pub key: &'static str,
    /// The value in effect.
    pub value: String,
    /// Where it came from.
    pub source: String,
    /// The file's value it overrides, with its line, if any.
    pub overrides: Option<String>,
}

/// An entry of `compat_repos`: `owner/name`, or `owner/*` for every repository of an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoPattern {
    /// One repository.
    Exact(Repo),
    /// Every repository of this owner.
    Owner(String),
}

impl RepoPattern {
    /// Reads `owner/name` or `owner/*`.
    pub fn parse(text: &str) -> Result<RepoPattern, hookflow_protocol::dispatch::RepoError> {
        match text.split_once('/') {
            Some((owner, "*")) => {
                Repo::parse(&format!("{owner}/x")).map(|r| RepoPattern::Owner(r.owner))
            }
            _ => Repo::parse(text).map(RepoPattern::Exact),
        }
    }

    /// Whether `repo` is one of the pattern's, ignoring case as GitHub does.
    pub fn matches(&self, repo: &Repo) -> bool {
        match self {
            RepoPattern::Owner(owner) => owner.eq_ignore_ascii_case(&repo.owner),
            RepoPattern::Exact(r) => {
                r.owner.eq_ignore_ascii_case(&repo.owner) && r.name.eq_ignore_ascii_case(&repo.name)
            }
        }
    }
}

impl RelayConfig {
    /// Whether the compatible route may dispatch to `repo` (`compat_repos`, case-insensitive).
    pub fn compat_allows(&self, repo: &Repo) -> bool {
        self.compat_repos.is_empty() || self.compat_repos.iter().any(|p| p.matches(repo))
    }

    /// Every variable an endpoint names that `env` does not have, as
    /// `endpoint `slug`: token_env names VAR, which is not set`.
    pub fn unset_variables(&self, env: &hookflow_protocol::Environment) -> Vec<String> {
        let mut unset = Vec::new();
        for ep in &self.endpoints {
            let mut vars = Vec::new();
            for d in &ep.destinations {
                match &d.target {
                    Target::Repo {
                        auth: EndpointAuth::TokenEnv(t),
                        ..
                    } => vars.push(("token_env", t.as_str())),
                    Target::Http {
                        secret_env: Some(s),
                        ..
                    } => vars.push(("secret_env", s.as_str())),
                    _ => {}
                }
            }
            if let Some(v) = &ep.verify {
                vars.push(("verify.secret_env", v.secret_env.as_str()));
            }
            if let Some(k) = &ep.api_keys_env {
                vars.push(("api_keys_env", k.as_str()));
            }
            for (key, var) in vars {
                if env.var(var).is_none() {
                    unset.push(format!(
                        "endpoint `{}`: {key} names {var}, which is not set",
                        ep.slug
                    ));
                }
            }
        }
        if let Some(a) = &self.admin {
            if env.var(&a.tokens_env).is_none() {
                unset.push(format!(
                    "admin: tokens_env names {}, which is not set",
                    a.tokens_env
                ));
            }
        }
        if let Some(b) = &self.body_ref {
            if env.var(&b.secret_env).is_none() {
                unset.push(format!(
                    "body_ref: secret_env names {}, which is not set",
                    b.secret_env
                ));
            }
        }
        unset
    }

    /// Every HTTP destination's secret that is set and cannot sign (not `whsec_<base64>`): each
    /// delivery to it would fail, so the relay does not start.
    pub fn unusable_secrets(&self, env: &hookflow_protocol::Environment) -> Vec<String> {
        let mut bad = Vec::new();
        for ep in &self.endpoints {
            for d in &ep.destinations {
                let Target::Http {
                    url,
                    secret_env: Some(var),
                    headers,
                    header_prefix,
                } = &d.target
                else {
                    continue;
                };
                let Some(secret) = env.var(var) else { continue };
                if let Err(e) = crate::outbound::forward::HttpDestination::new(
                    url,
                    Some(secret),
                    headers,
                    header_prefix.as_deref(),
                ) {
                    bad.push(format!(
                        "endpoint `{}`, destination {url}: secret_env {var}: {e}",
                        ep.slug
                    ));
                }
            }
        }
        if let Some(a) = &self.admin {
            if let Some(tokens) = env.var(&a.tokens_env) {
                let tokens = admin_tokens(&tokens);
                if tokens.is_empty()
                    || tokens
                        .iter()
                        .any(|t| t.len() < AdminConfig::MIN_TOKEN_BYTES)
                {
                    bad.push(format!(
                        "admin: every token in {} must be at least {} bytes (openssl rand -hex 32); tokens are separated by commas",
                        a.tokens_env,
                        AdminConfig::MIN_TOKEN_BYTES
                    ));
                }
            }
        }
        if let Some(b) = &self.body_ref {
            if let Some(secret) = env.var(&b.secret_env) {
                if secret.len() < BodyRefConfig::MIN_SECRET_BYTES {
                    bad.push(format!(
                        "body_ref: the secret in {} is {} bytes; use at least {} random bytes (openssl rand -hex 32)",
                        b.secret_env,
                        secret.len(),
                        BodyRefConfig::MIN_SECRET_BYTES
                    ));
                }
            }
        }
        bad
    }

    /// The embedded default plus flags.
    pub fn from_flags(o: &Overrides) -> Result<RelayConfig, ConfigError> {
        Self::build(None, "flags", None, o)
    }

    /// Reads a YAML file, then applies the flags.
    pub fn load(file: &Path, o: &Overrides) -> Result<RelayConfig, ConfigError> {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: name.clone(),
            line: None,
            message: format!("cannot read the relay configuration: {e}"),
            more: Vec::new(),
        })?;
        let mut config = Self::parse(&text, &name, o)?;
        config.source = Some(ConfigSource {
            file: file.to_path_buf(),
            overrides: o.clone(),
        });
        Ok(config)
    }

    /// Parses YAML text; `name` is used in messages.
    pub fn parse(text: &str, name: &str, o: &Overrides) -> Result<RelayConfig, ConfigError> {
        // Every problem in one run: unknown keys and values of the wrong type together.
        let mut problems = unknown_keys(text, name);
        let parsed: Result<RawConfig, _> = if text.trim().is_empty() {
            serde_yaml::from_str("{}")
        } else {
            serde_yaml::from_str(text)
        };
        let raw = match parsed {
            Ok(raw) if problems.is_empty() => raw,
            Ok(_) => return Err(combine(problems).unwrap_or_else(|| unreachable_error(name))),
            Err(e) => {
                problems.extend(type_problems(text, name));
                if problems.is_empty() {
                    problems.push(ConfigError {
                        file: name.to_string(),
                        line: e.location().map(|l| l.line()),
                        message: e
                            .to_string()
                            .split(" at line ")
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                        more: Vec::new(),
                    });
                }
                return Err(combine(problems).unwrap_or_else(|| unreachable_error(name)));
            }
        };
        Self::build(Some(raw), name, Some(text), o)
    }

    fn build(
        raw: Option<RawConfig>,
        name: &str,
        text: Option<&str>,
        o: &Overrides,
    ) -> Result<RelayConfig, ConfigError> {
        let err = |key: &[&str], message: String| ConfigError {
            file: name.to_string(),
            line: text.and_then(|t| locate(t, key)),
            message,
            more: Vec::new(),
        };
        let raw = raw.unwrap_or(RawConfig {
            listen: None,
            data: None,
            store: None,
            api_url: None,
            compat_route: None,
            compat_repos: Vec::new(),
            limits: None,
            github_app: None,
            public_url: None,
            body_ref: None,
            retention: None,
            admin: None,
            shutdown_timeout: None,
            delivery: None,
            endpoints: Vec::new(),
        });
        let compat_repos = raw
            .compat_repos
            .iter()
            .map(|text| {
                RepoPattern::parse(text).map_err(|_| {
                    err(
                        &["compat_repos"],
                        format!("compat_repos entry {text:?} is neither OWNER/REPO nor OWNER/*, e.g. octo-org/hooks or octo-org/*"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listen_text = o
            .listen
            .clone()
            .or_else(|| raw.listen.clone())
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            err(
                &["listen"],
                format!("listen address {listen_text:?} is not HOST:PORT such as 0.0.0.0:8080"),
            )
        })?;
        let api_url = o
            .api_url
            .clone()
            .or_else(|| raw.api_url.clone())
            .unwrap_or_else(|| crate::outbound::github::DEFAULT_API_URL.into());
        if url::Url::parse(&api_url).is_err() {
            return Err(err(
                &["api_url"],
                format!("api_url {api_url:?} is not a URL"),
            ));
        }
        let store = match o.store.clone().or_else(|| raw.store.clone()) {
            None => StoreLocation::Sqlite,
            Some(text) => StoreLocation::Postgres(Box::new(
                crate::store::postgres::PgLocation::parse(&text)
                    .map_err(|message| err(&["store"], message))?,
            )),
        };
        let dur = |section: &str,
                   key: &str,
                   v: Option<Value>,
                   default: Duration|
         -> Result<Duration, ConfigError> {
            match v {
                None => Ok(default),
                Some(v) => parse_duration_ms(&v)
                    .map(|ms| Duration::from_millis(ms as u64))
                    .ok_or_else(|| {
                        let dotted = if section.is_empty() {
                            key.to_string()
                        } else {
                            format!("{section}.{key}")
                        };
                        let keys: Vec<&str> = [section, key]
                            .into_iter()
                            .filter(|k| !k.is_empty())
                            .collect();
                        err(
                            &keys,
                            format!(
                                "{dotted} must be seconds or a duration such as 500ms, 10s, 5m"
                            ),
                        )
                    }),
            }
        };
        let public_url = match raw.public_url {
            None => None,
            Some(text) => Some(parse_public_url(&text).map_err(|m| err(&["public_url"], m))?),
        };
        let body_ref = match raw.body_ref {
            None => None,
            Some(b) => {
                if public_url.is_none() {
                    return Err(err(
                        &["body_ref"],
                        "body_ref needs public_url: the address runners fetch bodies from, such as https://relay.example.com".into(),
                    ));
                }
                let Some(secret_env) = b.secret_env.filter(|v| !v.is_empty()) else {
                    return Err(err(
                        &["body_ref"],
                        "body_ref needs secret_env: the variable holding the secret body URLs are signed with (at least 16 random bytes, the same on every relay of the store)".into(),
                    ));
                };
                let retention = dur(
                    "body_ref",
                    "retention",
                    b.retention,
                    BodyRefConfig::DEFAULT_RETENTION,
                )?;
                let concurrency = b.concurrency.unwrap_or(BodyRefConfig::DEFAULT_CONCURRENCY);
                if retention < Duration::from_secs(60) || concurrency == 0 {
                    return Err(err(
                        &["body_ref"],
                        "body_ref.retention must be at least a minute (60s) and body_ref.concurrency at least 1".into(),
                    ));
                }
                Some(BodyRefConfig {
                    secret_env,
                    retention,
                    concurrency,
                })
            }
        };
        let (events, bodies) = raw
            .retention
            .map(|r| (r.events, r.bodies))
            .unwrap_or_default();
        let retention = dur("retention", "events", events, DEFAULT_RETENTION)?;
        if retention < Duration::from_secs(60) {
            return Err(err(
                &["retention"],
                "retention.events must be at least a minute (60s)".into(),
            ));
        }
        let body_retention = match bodies {
            None => None,
            Some(v) => {
                let b = dur("retention", "bodies", Some(v), retention)?;
                if b < Duration::from_secs(60) || b > retention {
                    return Err(err(
                        &["retention"],
                        format!(
                            "retention.bodies must be at least a minute (60s) and at most retention.events ({}s)",
                            retention.as_secs()
                        ),
                    ));
                }
                (b < retention).then_some(b)
            }
        };
        let admin = match raw.admin {
            None => None,
            Some(a) => {
                let Some(tokens_env) = a.tokens_env.filter(|v| !v.is_empty()) else {
                    return Err(err(
                        &["admin"],
                        "admin needs tokens_env: the variable holding the admin tokens (comma-separated, each at least 16 random bytes: openssl rand -hex 32)".into(),
                    ));
                };
                let text = a
                    .listen
                    .unwrap_or_else(|| AdminConfig::DEFAULT_LISTEN.to_string());
                let admin_listen: SocketAddr = text.parse().map_err(|_| {
                    err(
                        &["admin", "listen"],
                        format!("admin.listen {text:?} is not HOST:PORT such as 127.0.0.1:8081"),
                    )
                })?;
                if admin_listen.port() != 0 && admin_listen.port() == listen.port() {
                    return Err(err(
                        &["admin", "listen"],
                        format!("admin.listen {admin_listen} has the webhook port too; give the admin API a port of its own, such as 127.0.0.1:8081"),
                    ));
                }
                Some(AdminConfig {
                    listen: admin_listen,
                    tokens_env,
                })
            }
        };
        let mut limits = Limits::default();
        if body_ref.is_some() {
            limits.max_body_bytes = BODY_REF_MAX_BODY_BYTES;
        }
        if let Some(l) = raw.limits {
            limits.max_body_bytes = l.max_body_bytes.unwrap_or(limits.max_body_bytes);
            limits.max_headers = l.max_headers.unwrap_or(limits.max_headers);
            limits.max_header_bytes = l.max_header_bytes.unwrap_or(limits.max_header_bytes);
            limits.header_timeout = dur(
                "limits",
                "header_timeout",
                l.header_timeout,
                limits.header_timeout,
            )?;
            limits.body_timeout = dur(
                "limits",
                "body_timeout",
                l.body_timeout,
                limits.body_timeout,
            )?;
            limits.max_concurrent_requests = l
                .max_concurrent_requests
                .unwrap_or(limits.max_concurrent_requests);
            limits.max_requests_per_client = l
                .max_requests_per_client
                .unwrap_or(limits.max_requests_per_client);
            limits.max_connections = l.max_connections.unwrap_or(limits.max_connections);
            limits.compat_requests_per_minute = l
                .compat_requests_per_minute
                .unwrap_or(limits.compat_requests_per_minute);
            limits.idle_timeout = dur(
                "limits",
                "idle_timeout",
                l.idle_timeout,
                limits.idle_timeout,
            )?;
            limits.max_store_bytes = l.max_store_bytes;
            if limits.max_body_bytes == 0
                || limits.max_headers == 0
                || limits.max_concurrent_requests == 0
                || limits.max_connections == 0
                || limits.idle_timeout.is_zero()
            {
                return Err(err(&["limits"], "limits must be at least 1".into()));
            }
        }
        let shutdown_timeout = dur(
            "",
            "shutdown_timeout",
            raw.shutdown_timeout,
            Duration::from_secs(30),
        )?;
        let mut delivery = DeliveryConfig::default();
        if let Some(d) = raw.delivery {
            delivery.initial_backoff = dur(
                "delivery",
                "initial_backoff",
                d.initial_backoff,
                delivery.initial_backoff,
            )?;
            delivery.max_backoff = dur(
                "delivery",
                "max_backoff",
                d.max_backoff,
                delivery.max_backoff,
            )?;
            delivery.timeout = dur("delivery", "timeout", d.timeout, delivery.timeout)?;
            if d.lease.is_some() {
                let lease = dur("delivery", "lease", d.lease, Duration::ZERO)?;
                if lease <= delivery.timeout {
                    return Err(err(
                        &["delivery", "lease"],
                        format!(
                            "delivery.lease ({}s) must be longer than delivery.timeout ({}s): a delivery still in flight would be taken over and sent twice",
                            lease.as_secs_f64(),
                            delivery.timeout.as_secs_f64()
                        ),
                    ));
                }
                delivery.lease = Some(lease);
            }
            delivery.rate_limit_per_minute = d
                .rate_limit_per_minute
                .unwrap_or(delivery.rate_limit_per_minute);
            delivery.concurrency = d.concurrency.unwrap_or(delivery.concurrency);
            delivery.max_attempts = d.max_attempts.unwrap_or(delivery.max_attempts);
            if delivery.concurrency == 0 || delivery.max_attempts == 0 {
                return Err(err(
                    &["delivery"],
                    "delivery.concurrency and delivery.max_attempts must be at least 1".into(),
                ));
            }
        }
        let github_app = match raw.github_app {
            None => None,
            Some(app) => {
                let at = |m: &str| ConfigError {
                    line: text.and_then(|t| locate(t, &["github_app"])),
                    ..err(&["github_app"], m.into())
                };
                let private_key = match (app.private_key_file, app.private_key_env) {
                    (Some(f), None) => KeySource::File(f),
                    (None, Some(v)) => KeySource::Env(v),
                    (Some(_), Some(_)) => {
                        return Err(at(
                            "github_app: use either private_key_file or private_key_env, not both",
                        ))
                    }
                    (None, None) => {
                        return Err(at(
                            "github_app: give the app's private key as private_key_file: PATH or private_key_env: VAR (PEM from the app's settings page)",
                        ))
                    }
                };
                Some(GithubApp {
                    app_id: app.app_id,
                    private_key,
                })
            }
        };
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let mut problems: Vec<ConfigError> = Vec::new();
        for e in raw.endpoints {
            let parsed = (|| -> Result<Endpoint, ConfigError> {
                // At the endpoint's own `slug:` line, not the `endpoints:` line.
                let slug_line = text.and_then(|t| endpoint_line(t, &e.slug));
                let at = |m: String| ConfigError {
                    line: slug_line.or_else(|| text.and_then(|t| locate(t, &["endpoints"]))),
                    ..err(&["endpoints"], format!("endpoint `{}`: {m}", e.slug))
                };
                if e.slug.is_empty()
                    || !e
                        .slug
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(at(
                        "the slug must be letters, digits, `-`, `_` or `.`".into()
                    ));
                }
                if e.slug == "compat" {
                    // The compatible route's events carry `compat` as their source.
                    return Err(at("the slug `compat` is reserved for the compatible route's events; choose another".into()));
                }
                if endpoints.iter().any(|x: &Endpoint| x.slug == e.slug) {
                    return Err(at("another endpoint has the same slug".into()));
                }
                let event_type = match (e.event_type, e.event_type_path) {
                    (Some(_), Some(_)) => {
                        return Err(at(
                            "use either event_type or event_type_path, not both".into()
                        ))
                    }
                    (Some(t), None) => EventTypeSource::Fixed(t),
                    (None, Some(p)) => EventTypeSource::BodyPath(p),
                    (None, None) => EventTypeSource::Fixed(WEBHOOK_EVENT_TYPE.into()),
                };
                if let EventTypeSource::Fixed(t) = &event_type {
                    if t.is_empty() || t.chars().count() > MAX_EVENT_TYPE_CHARS {
                        return Err(at(format!(
                            "event_type must be 1 to {} characters",
                            MAX_EVENT_TYPE_CHARS
                        )));
                    }
                }
                let verify = match e.verify {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(m)) => Some(parse_verify(&m).map_err(|p| at(p.message))?),
                    Some(_) => {
                        return Err(at(
                            "verify must be a mapping such as {preset: github, secret_env: SECRET}"
                                .into(),
                        ))
                    }
                };
                let batching = parse_batching(e.batching).map_err(at)?.flatten();
                let destinations = match (e.repo, e.destinations) {
                    (Some(repo), None) => vec![DestinationConfig {
                        target: Target::Repo {
                            repo: Repo::parse(&repo).map_err(|r| at(r.to_string()))?,
                            auth: parse_auth(e.token_env, e.auth.as_deref(), github_app.is_some())
                                .map_err(at)?,
                        },
                        event_types: Vec::new(),
                        transform: None,
                        batching,
                    }],
                    (None, Some(list)) => {
                        if e.token_env.is_some() || e.auth.is_some() {
                            return Err(at("with destinations:, give token_env or auth: app on each repository destination, not on the endpoint".into()));
                        }
                        let list = parse_destinations(list, github_app.is_some(), batching)
                            .map_err(at)?;
                        if batching.is_some()
                            && !list.iter().any(|d| matches!(d.target, Target::Repo { .. }))
                        {
                            return Err(at("batching: applies to repository destinations (GitHub's dispatch rate limit), and this endpoint has none".into()));
                        }
                        list
                    }
                    (Some(_), Some(_)) => {
                        return Err(at(
                            "use either repo: (one repository) or destinations: (a list), not both".into(),
                        ))
                    }
                    (None, None) => {
                        return Err(at(
                            "give where its events go: repo: OWNER/NAME, or destinations: [{repo: OWNER/NAME, token_env: VAR}, {url: https://…}]".into(),
                        ))
                    }
                };
                Ok(Endpoint {
                    path: e.path.unwrap_or_else(|| format!("/{}/webhook", e.slug)),
                    slug: e.slug,
                    destinations,
                    event_type,
                    verify,
                    api_keys_env: e.api_keys_env,
                })
            })();
            match parsed {
                Ok(ep) => endpoints.push(ep),
                Err(p) => problems.push(p),
            }
        }
        if let Some(first) = problems.first().cloned() {
            return Err(ConfigError {
                more: problems.split_off(1),
                ..first
            });
        }
        let data = o
            .data
            .clone()
            .or_else(|| raw.data.clone())
            .unwrap_or_else(|| PathBuf::from("hookflow-data"));
        let setting = |key: &'static str, value: String, overridden: bool, in_file: bool| {
            let file_at = || match text.and_then(|t| locate(t, &[key])) {
                Some(line) => format!("{name}:{line}"),
                None => name.to_string(),
            };
            let source = if overridden {
                o.sources
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or_else(|| "flag".to_string(), |(_, s)| s.clone())
            } else if in_file {
                file_at()
            } else {
                "default".to_string()
            };
            Setting {
                key,
                value,
                source,
                overrides: (overridden && in_file).then(file_at),
            }
        };
        let settings = vec![
            setting(
                "listen",
                listen.to_string(),
                o.listen.is_some(),
                raw.listen.is_some(),
            ),
            setting(
                "data",
                data.display().to_string(),
                o.data.is_some(),
                raw.data.is_some(),
            ),
            setting(
                "store",
                match &store {
                    StoreLocation::Sqlite => format!("sqlite ({})", data.display()),
                    StoreLocation::Postgres(l) => l.describe(),
                },
                o.store.is_some(),
                raw.store.is_some(),
            ),
            setting(
                "api_url",
                api_url.clone(),
                o.api_url.is_some(),
                raw.api_url.is_some(),
            ),
        ];
        Ok(RelayConfig {
            listen,
            data,
            store,
            settings,
            migrate: true,
            api_url,
            compat_route: raw.compat_route.unwrap_or(true),
            compat_repos,
            limits,
            shutdown_timeout,
            delivery,
            endpoints,
            github_app,
            public_url,
            body_ref,
            retention,
            body_retention,
            admin,
            source: None,
        })
    }
}

/// The admin tokens in a variable's value: comma-separated, blanks trimmed, empty ones left out.
pub fn admin_tokens(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// A `public_url`: an absolute `https://` (or `http://`, for a closed network) URL without
/// credentials, query or fragment; returned without its trailing `/`.
fn parse_public_url(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("public_url {text:?} {why}; give the address the relay is reached at, such as https://relay.example.com")
    };
    let url = url::Url::parse(text).map_err(|_| bad("is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(bad("must be an https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not hold credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The keys each section accepts (the `Raw*` structs refuse any other).
const TOP_KEYS: [&str; 15] = [
    "listen",
    "data",
    "store",
    "api_url",
    "compat_route",
    "compat_repos",
    "limits",
    "github_app",
    "public_url",
    "body_ref",
    "retention",
    "admin",
    "shutdown_timeout",
    "delivery",
    "endpoints",
];
const BODY_REF_KEYS: [&str; 3] = ["secret_env", "retention", "concurrency"];
const RETENTION_KEYS: [&str; 2] = ["events", "bodies"];
const ADMIN_KEYS: [&str; 2] = ["listen", "tokens_env"];
const LIMIT_KEYS: [&str; 11] = [
    "max_body_bytes",
    "max_headers",
    "max_header_bytes",
    "header_timeout",
    "body_timeout",
    "max_concurrent_requests",
    "max_requests_per_client",
    "compat_requests_per_minute",
    "max_connections",
    "idle_timeout",
    "max_store_bytes",
];
const DELIVERY_KEYS: [&str; 7] = [
    "concurrency",
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "timeout",
    "lease",
    "rate_limit_per_minute",
];
const GITHUB_APP_KEYS: [&str; 3] = ["app_id", "private_key_file", "private_key_env"];
const ENDPOINT_KEYS: [&str; 11] = [
    "slug",
    "repo",
    "destinations",
    "token_env",
    "auth",
    "event_type",
    "event_type_path",
    "path",
    "verify",
    "api_keys_env",
    "batching",
];

/// A repository's credential: `token_env: VAR`, or `auth: app` (the default when the relay has
/// a `github_app` and no token is named).
fn parse_auth(
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
fn parse_destinations(
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

const DESTINATION_KEYS: [&str; 10] = [
    "repo",
    "token_env",
    "auth",
    "url",
    "secret_env",
    "headers",
    "header_prefix",
    "event_types",
    "transform",
    "batching",
];

/// The most events one batched dispatch may carry (`batching.max_events`).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// A `batching:` section: `None` when not given, `Some(None)` for `mode: off`.
fn parse_batching(value: Option<Value>) -> Result<Option<Option<Batching>>, String> {
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

/// Every unknown key in the file at once (typed parsing would stop at the first), each with
/// its line. `None` when all keys are known or the text is not a YAML mapping (the typed parse
/// then says what is wrong).
fn unknown_keys(text: &str, name: &str) -> Vec<ConfigError> {
    let Ok(serde_yaml::Value::Mapping(top)) = serde_yaml::from_str::<serde_yaml::Value>(text)
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut check = |map: &serde_yaml::Mapping, known: &[&str], section: &str| {
        for key in map.keys().filter_map(|k| k.as_str()) {
            if !known.contains(&key) {
                let line = locate_anywhere(text, key);
                problems.push(ConfigError {
                    file: name.to_string(),
                    line,
                    message: format!(
                        "unknown key `{key}` in {section}; known keys: {}",
                        known.join(", ")
                    ),
                    more: Vec::new(),
                });
            }
        }
    };
    check(&top, &TOP_KEYS, "the relay configuration");
    for (section, known) in [
        ("limits", &LIMIT_KEYS[..]),
        ("delivery", &DELIVERY_KEYS[..]),
        ("github_app", &GITHUB_APP_KEYS[..]),
        ("body_ref", &BODY_REF_KEYS[..]),
        ("retention", &RETENTION_KEYS[..]),
        ("admin", &ADMIN_KEYS[..]),
    ] {
        if let Some(serde_yaml::Value::Mapping(m)) = top.get(section) {
            check(m, known, section);
        }
    }
    if let Some(serde_yaml::Value::Sequence(endpoints)) = top.get("endpoints") {
        for e in endpoints {
            if let serde_yaml::Value::Mapping(m) = e {
                let slug = m
                    .get("slug")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_string();
                check(m, &ENDPOINT_KEYS, &format!("endpoint `{slug}`"));
                if let Some(serde_yaml::Value::Sequence(list)) = m.get("destinations") {
                    for d in list {
                        if let serde_yaml::Value::Mapping(dm) = d {
                            check(
                                dm,
                                &DESTINATION_KEYS,
                                &format!("a destination of endpoint `{slug}`"),
                            );
                        }
                    }
                }
            }
        }
    }
    problems
}

/// Every value of the wrong type, each at its own line: the typed parse stops at the first, so
/// each key (each key of `limits` and `delivery`, each endpoint) is tried on its own.
fn type_problems(text: &str, name: &str) -> Vec<ConfigError> {
    use serde_yaml::{Mapping, Value as Yaml};
    let Ok(Yaml::Mapping(top)) = serde_yaml::from_str::<Yaml>(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut probe = |snippet: Mapping, keys: &[&str], line: Option<usize>| {
        if let Err(e) = serde_yaml::from_value::<RawConfig>(Yaml::Mapping(snippet)) {
            if e.to_string().contains("unknown field") {
                return; // reported by `unknown_keys`, with its line
            }
            let what = keys.join(".");
            problems.push(ConfigError {
                file: name.to_string(),
                line: line.or_else(|| locate(text, keys)),
                message: format!("`{what}`: {e}"),
                more: Vec::new(),
            });
        }
    };
    for (key, value) in &top {
        let Some(k) = key.as_str() else { continue };
        match (k, value) {
            ("limits" | "delivery", Yaml::Mapping(section)) => {
                for (sub, v) in section {
                    let Some(sk) = sub.as_str() else { continue };
                    let mut inner = Mapping::new();
                    inner.insert(sub.clone(), v.clone());
                    let mut outer = Mapping::new();
                    outer.insert(key.clone(), Yaml::Mapping(inner));
                    probe(outer, &[k, sk], None);
                }
            }
            ("endpoints", Yaml::Sequence(items)) => {
                for item in items {
                    let slug = item.get("slug").and_then(Yaml::as_str).unwrap_or("?");
                    let slug_line = endpoint_line(text, slug);
                    let endpoint = |fields: Mapping| {
                        let mut outer = Mapping::new();
                        outer.insert(key.clone(), Yaml::Sequence(vec![Yaml::Mapping(fields)]));
                        outer
                    };
                    let Yaml::Mapping(fields) = item else {
                        probe(endpoint(Mapping::new()), &[k, slug], slug_line);
                        continue;
                    };
                    // Missing required fields, at the endpoint's line.
                    let mut required = Mapping::new();
                    for f in fields.keys() {
                        required.insert(f.clone(), Yaml::String("x".into()));
                    }
                    probe(endpoint(required), &[k, slug], slug_line);
                    // Each field's type, at the field's own line.
                    for (f, v) in fields {
                        let Some(fk) = f.as_str() else { continue };
                        let mut one = Mapping::new();
                        for r in ["slug", "repo", "token_env"] {
                            one.insert(Yaml::String(r.into()), Yaml::String("x".into()));
                        }
                        one.insert(f.clone(), v.clone());
                        let line = slug_line.and_then(|from| {
                            text.lines()
                                .enumerate()
                                .skip(from - 1)
                                .find(|(_, l)| l.contains(&format!("{fk}:")))
                                .map(|(i, _)| i + 1)
                        });
                        probe(endpoint(one), &[k, slug, fk], line);
                    }
                }
            }
            (k, _) if !TOP_KEYS.contains(&k) => {}
            _ => {
                let mut outer = Mapping::new();
                outer.insert(key.clone(), value.clone());
                probe(outer, &[k], None);
            }
        }
    }
    problems
}

/// Never built: [`combine`] is only called with problems.
fn unreachable_error(name: &str) -> ConfigError {
    ConfigError {
        file: name.to_string(),
        line: None,
        message: "the configuration is invalid".into(),
        more: Vec::new(),
    }
}

/// The line (1-based) of the endpoint `slug` in a configuration's text: its `slug:` line, so a
/// problem with an endpoint points at that endpoint rather than at `endpoints:`.
pub fn endpoint_line(text: &str, slug: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.contains("slug:") && l.contains(slug))
        .map(|i| i + 1)
}

/// One error carrying the rest, or `None` for none.
fn combine(mut problems: Vec<ConfigError>) -> Option<ConfigError> {
    if problems.is_empty() {
        return None;
    }
    let rest = problems.split_off(1);
    let first = problems.remove(0);
    Some(ConfigError {
        more: rest,
        ..first
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let c = RelayConfig::from_flags(&Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.compat_route);
        assert_eq!(c.api_url, "https://api.github.com");
        assert_eq!(c.delivery.max_attempts, 7);
    }

    #[test]
    fn reads_endpoints_and_overrides() {
        let text = "listen: 0.0.0.0:9000\ndelivery:\n  initial_backoff: 250ms\n  concurrency: 4\nendpoints:\n  - slug: gh\n    repo: octo/hooks\n    token_env: GH_TOKEN\n    event_type_path: action\n    verify: {preset: github, secret_env: GH_SECRET}\n";
        let o = Overrides {
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let c = RelayConfig::parse(text, "relay.yml", &o).expect("parses");
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.delivery.initial_backoff, Duration::from_millis(250));
        assert_eq!(
            c.endpoints[0].event_type,
            EventTypeSource::BodyPath("action".into())
        );
        assert_eq!(c.endpoints[0].path, "/gh/webhook");
        assert!(c.endpoints[0].verify.is_some());
    }

    #[test]
    fn compat_repos_allow_list() {
        let open = RelayConfig::from_flags(&Overrides::default()).expect("defaults");
        let repo = |s: &str| Repo::parse(s).expect("repo");
        assert!(open.compat_allows(&repo("any/thing")));
        let c = RelayConfig::parse(
            "compat_repos: [octo-org/*, me/hooks]\n",
            "r.yml",
            &Overrides::default(),
        )
        .expect("parses");
        assert!(c.compat_allows(&repo("Octo-Org/anything")));
        assert!(c.compat_allows(&repo("me/hooks")));
        assert!(!c.compat_allows(&repo("me/other")));
        assert!(!c.compat_allows(&repo("stranger/hooks")));
        let e = RelayConfig::parse("compat_repos: [octo]\n", "r.yml", &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.yml:1:"), "{e}");
        assert!(e.contains("neither OWNER/REPO nor OWNER/*"), "{e}");
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = "listen: 127.0.0.1:1\nlisen: x\nlimits:\n  max_body: 5\ndelivery:\n  retries: 3\nendpoints:\n  - slug: gh\n    repo: o/r\n    token_env: T\n    secret: x\n";
        let e = RelayConfig::parse(text, "r.yml", &Overrides::default()).unwrap_err();
        let all = e.to_string();
        for expected in [
            "r.yml:2: unknown key `lisen` in the relay configuration",
            "r.yml:4: unknown key `max_body` in limits",
            "r.yml:6: unknown key `retries` in delivery",
            "r.yml:11: unknown key `secret` in endpoint `gh`",
        ] {
            assert!(all.contains(expected), "{expected:?} not in:\n{all}");
        }
    }

    #[test]
    fn every_endpoint_problem_is_reported() {
        let text = "endpoints:\n  - {slug: a, repo: nope, token_env: T}\n  - {slug: b, repo: o/r, token_env: T, verify: {preset: x, secret_env: S}}\n  - {slug: c, repo: o/r, token_env: T}\n";
        let e = RelayConfig::parse(text, "r.yml", &Overrides::default()).unwrap_err();
        assert_eq!(e.more.len(), 1);
        let all = e.to_string();
        assert!(
            all.contains("endpoint `a`")
                && all.contains("endpoint `b`")
                && !all.contains("endpoint `c`"),
            "{all}"
        );
    }

    #[test]
    fn batching_is_opt_in_per_endpoint_or_repository_destination() {
        let o = Overrides::default();
        let parse = |yaml: &str| RelayConfig::parse(yaml, "r.yml", &o);
        let batching_of = |c: &RelayConfig| -> Vec<Option<Batching>> {
            c.endpoints[0]
                .destinations
                .iter()
                .map(|d| d.batching)
                .collect()
        };
        let off = parse("endpoints:\n  - {slug: a, repo: o/r, token_env: T}\n").expect("parses");
        assert_eq!(batching_of(&off), [None], "off by default");
        let on = parse(
            "endpoints:\n  - {slug: a, repo: o/r, token_env: T, batching: {mode: adaptive}}\n",
        )
        .expect("parses");
        assert_eq!(
            batching_of(&on),
            [Some(Batching {
                max_events: 100,
                max_bytes: MAX_REQUEST_BYTES
            })]
        );
        let mixed = parse(
            "endpoints:
  - slug: a
    batching: {max_events: 20, max_bytes: 30000}
    destinations:
      - {repo: o/one, token_env: T}
      - {repo: o/two, token_env: T, batching: {mode: off}}
      - {repo: o/three, token_env: T, batching: {max_events: 5}}
      - {url: 'https://example.com/in'}
",
        )
        .expect("parses");
        let b = |max_events, max_bytes| {
            Some(Batching {
                max_events,
                max_bytes,
            })
        };
        assert_eq!(
            batching_of(&mixed),
            [b(20, 30000), None, b(5, MAX_REQUEST_BYTES), None],
            "the endpoint's for its repositories, unless one sets its own; never HTTP"
        );
        for (yaml, expected) in [
            (
                "{slug: a, repo: o/r, token_env: T, batching: {mode: fast}}",
                "mode \"fast\" is not known; use adaptive or off",
            ),
            (
                "{slug: a, repo: o/r, token_env: T, batching: {max_events: 0}}",
                "max_events must be 1 to 1000",
            ),
            (
                "{slug: a, repo: o/r, token_env: T, batching: {max_bytes: 100000}}",
                "max_bytes must be 1024 to 65536",
            ),
            (
                "{slug: a, repo: o/r, token_env: T, batching: {size: 3}}",
                "unknown field `size`",
            ),
            (
                "{slug: a, repo: o/r, token_env: T, batching: 5}",
                "batching must be a mapping",
            ),
            (
                "{slug: a, destinations: [{url: 'https://e.com/x', batching: {mode: adaptive}}]}",
                "batching: is for repository destinations",
            ),
            (
                "{slug: a, batching: {mode: adaptive}, destinations: [{url: 'https://e.com/x'}]}",
                "this endpoint has none",
            ),
        ] {
            let e = parse(&format!("endpoints:\n  - {yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(expected) && e.starts_with("r.yml:2:"),
                "{expected:?} not in {e}"
            );
        }
    }

    #[test]
    fn destinations_fan_out_and_every_one_is_checked() {
        let o = Overrides::default();
        let text = "endpoints:
  - slug: stripe
    event_type_path: type
    destinations:
      - repo: acme/billing
        token_env: BILLING
        event_types: ['invoice.*', 'customer.subscription.*']
      - repo: acme/analytics
        token_env: ANALYTICS
        transform: {id: $.id, kind: $.type}
      - url: https://in.example/hooks/stripe
        secret_env: WHSEC
        headers: {X-Team: billing}
        header_prefix: X-Relay-
";
        let c = RelayConfig::parse(text, "r.yml", &o).expect("parses");
        let d = &c.endpoints[0].destinations;
        let keys: Vec<String> = d.iter().map(DestinationConfig::key).collect();
        assert_eq!(
            keys,
            [
                "repo:acme/billing",
                "repo:acme/analytics",
                "http:https://in.example/hooks/stripe"
            ]
        );
        assert!(d[0].takes("invoice.paid") && !d[0].takes("charge.failed"));
        assert!(d[1].takes("charge.failed") && d[1].transform.is_some());
        assert_eq!(
            d[2].target,
            Target::Http {
                url: "https://in.example/hooks/stripe".into(),
                secret_env: Some("WHSEC".into()),
                headers: vec![("X-Team".into(), "billing".into())],
                header_prefix: Some("X-Relay-".into()),
            }
        );
        let env = hookflow_protocol::Environment::fixed(0, vec![]);
        assert_eq!(
            c.unset_variables(&env),
            [
                "endpoint `stripe`: token_env names BILLING, which is not set",
                "endpoint `stripe`: token_env names ANALYTICS, which is not set",
                "endpoint `stripe`: secret_env names WHSEC, which is not set",
            ]
        );
        let env = hookflow_protocol::Environment::fixed(0, vec![("WHSEC".into(), "plain".into())]);
        let bad = c.unusable_secrets(&env);
        assert!(bad[0].contains("not a Standard Webhooks secret"), "{bad:?}");

        let problem = |yaml: &str| {
            RelayConfig::parse(&format!("endpoints:\n  - slug: x\n{yaml}"), "r.yml", &o)
                .unwrap_err()
                .to_string()
        };
        for (yaml, says) in [
            (
                "    repo: a/b\n    token_env: T\n    destinations: [{url: https://h.example/}]\n",
                "not both",
            ),
            ("    token_env: T\n", "give where its events go"),
            ("    destinations: []\n", "at least one destination"),
            (
                "    token_env: T\n    destinations: [{url: https://h.example/}]\n",
                "on each repository destination",
            ),
            (
                "    destinations: [{url: https://h.example/, token_env: T}]\n",
                "an HTTP destination signs with secret_env",
            ),
            (
                "    destinations: [{repo: a/b, token_env: T, secret_env: S}]\n",
                "are for url: destinations",
            ),
            (
                "    destinations: [{repo: a/b, url: https://h.example/}]\n",
                "either repo: or url:",
            ),
            (
                "    destinations: [{token_env: T}]\n",
                "give repo: OWNER/NAME or url:",
            ),
            (
                "    destinations: [{url: ftp://h.example/}]\n",
                "not an http:// or https:// URL",
            ),
            (
                "    destinations: [{url: https://h.example/, headers: {\"bad name\": x}}]\n",
                "not a valid HTTP header",
            ),
            (
                "    destinations: [{repo: a/b, token_env: T}, {repo: a/b, token_env: U}]\n",
                "repo:a/b is listed twice",
            ),
            (
                "    destinations: [{repo: a/b, token_env: T, transform: {x: '$.['}}]\n",
                "transform field `x`",
            ),
            (
                "    destinations: [{repo: a/b, token_env: T, event_types: ['']}]\n",
                "empty pattern",
            ),
            ("    destinations: [{repo: nope}]\n", "destination 1"),
        ] {
            let e = problem(yaml);
            assert!(e.contains(says), "{yaml}: {e}");
            assert!(e.starts_with("r.yml:2: endpoint `x`"), "{yaml}: {e}");
        }
        let e = RelayConfig::parse(
            "endpoints:\n  - {slug: compat, repo: a/b, token_env: T}\n",
            "r.yml",
            &o,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`compat` is reserved"), "{e}");
        let e = problem("    destinations:\n      - url: https://h.example/\n        secret: S\n");
        assert!(
            e.contains("unknown key `secret` in a destination of endpoint `x`"),
            "{e}"
        );
        assert!(e.starts_with("r.yml:5:"), "{e}");
    }

    #[test]
    fn endpoints_authenticate_with_a_token_or_the_app() {
        let o = Overrides::default();
        let app = "github_app:\n  app_id: 12345\n  private_key_file: /etc/hookflow/app.pem\n";
        let c = RelayConfig::parse(
            &format!("{app}endpoints:\n  - {{slug: a, repo: o/r}}\n  - {{slug: b, repo: o/r, auth: app}}\n  - {{slug: c, repo: o/r, token_env: T}}\n"),
            "r.yml",
            &o,
        )
        .expect("parses");
        let auths: Vec<&EndpointAuth> = c
            .endpoints
            .iter()
            .map(|e| match &e.destinations[0].target {
                Target::Repo { auth, .. } => auth,
                Target::Http { .. } => panic!("a repository"),
            })
            .collect();
        assert_eq!(
            auths,
            [
                &EndpointAuth::App,
                &EndpointAuth::App,
                &EndpointAuth::TokenEnv("T".into())
            ],
            "the app is the default when there is one"
        );
        assert_eq!(
            c.github_app,
            Some(GithubApp {
                app_id: 12345,
                private_key: KeySource::File("/etc/hookflow/app.pem".into())
            })
        );
        for (text, expected) in [
            (
                "endpoints:\n  - {slug: a, repo: o/r}\n",
                "r.yml:2: endpoint `a`: give the GitHub credential",
            ),
            (
                "endpoints:\n  - {slug: a, repo: o/r, auth: app}\n",
                "auth: app needs a github_app section",
            ),
            (
                "endpoints:\n  - {slug: a, repo: o/r, auth: magic, token_env: T}\n",
                "auth: magic is not known",
            ),
            (
                &format!("{app}endpoints:\n  - {{slug: a, repo: o/r, auth: app, token_env: T}}\n"),
                "either token_env or auth: app",
            ),
            (
                "github_app:\n  app_id: 1\n",
                "r.yml:1: github_app: give the app's private key",
            ),
            (
                "github_app:\n  app_id: 1\n  private_key_env: K\n  private_key_file: f\n",
                "not both",
            ),
            (
                "github_app:\n  app_id: 1\n  key: f\n",
                "unknown key `key` in github_app",
            ),
        ] {
            let e = RelayConfig::parse(text, "r.yml", &o).unwrap_err();
            assert!(e.to_string().contains(expected), "{expected:?} in {e}");
        }
    }

    #[test]
    fn the_lease_defaults_from_the_timeout_and_must_outlast_it() {
        let o = Overrides::default();
        let c = RelayConfig::parse("delivery:\n  timeout: 10s\n", "r.yml", &o).expect("parses");
        assert_eq!(c.delivery.lease(), Duration::from_secs(80));
        let c = RelayConfig::parse("delivery:\n  timeout: 2s\n  lease: 5s\n", "r.yml", &o)
            .expect("parses");
        assert_eq!(c.delivery.lease(), Duration::from_secs(5));
        let e = RelayConfig::parse("delivery:\n  timeout: 10s\n  lease: 10s\n", "r.yml", &o)
            .unwrap_err();
        assert!(
            e.to_string().starts_with("r.yml:3: ")
                && e.to_string()
                    .contains("must be longer than delivery.timeout"),
            "{e}"
        );
    }

    #[test]
    fn bodies_by_reference_need_a_public_url_and_a_secret() {
        let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default());
        let c = parse("public_url: https://relay.example.com/hooks/\nbody_ref:\n  secret_env: K\n  retention: 2d\n")
            .expect("parses");
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://relay.example.com/hooks")
        );
        let b = c.body_ref.expect("on");
        assert_eq!(b.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(b.concurrency, BodyRefConfig::DEFAULT_CONCURRENCY);
        assert_eq!(c.limits.max_body_bytes, BODY_REF_MAX_BODY_BYTES);
        // An explicit limit stays; without body_ref the default stays 1 MiB.
        let c = parse("public_url: https://r.example\nbody_ref: {secret_env: K}\nlimits:\n  max_body_bytes: 5000000\n")
            .expect("parses");
        assert_eq!(c.limits.max_body_bytes, 5_000_000);
        assert_eq!(
            parse("").expect("parses").limits.max_body_bytes,
            1024 * 1024
        );
        for (text, want) in [
            (
                "body_ref: {secret_env: K}\n",
                "r.yml:1: body_ref needs public_url",
            ),
            (
                "public_url: https://r.example\nbody_ref: {retention: 1d}\n",
                "r.yml:2: body_ref needs secret_env",
            ),
            (
                "public_url: https://r.example\nbody_ref: {secret_env: K, retention: 5s}\n",
                "body_ref.retention must be at least a minute",
            ),
            (
                "public_url: ftp://r.example\n",
                "r.yml:1: public_url \"ftp://r.example\" must be an https:// URL",
            ),
            (
                "public_url: https://u:p@r.example\n",
                "must not hold credentials",
            ),
            (
                "public_url: https://r.example/?a=1\n",
                "must not have a query or fragment",
            ),
            ("public_url: relay\n", "is not a URL"),
            (
                "public_url: https://r.example\nbody_ref: {secret_env: K, ttl: 1d}\n",
                "unknown key `ttl` in body_ref",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn the_admin_api_needs_tokens_and_a_port_of_its_own() {
        let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default());
        let c = parse("admin:\n  tokens_env: ADMIN\n").expect("parses");
        let a = c.admin.expect("on");
        assert_eq!(a.listen.to_string(), AdminConfig::DEFAULT_LISTEN);
        assert!(parse("").expect("parses").admin.is_none(), "off by default");
        for (text, want) in [
            (
                "admin:\n  listen: 127.0.0.1:9000\n",
                "admin needs tokens_env",
            ),
            (
                "admin: {tokens_env: A, listen: nowhere}\n",
                "admin.listen \"nowhere\" is not HOST:PORT",
            ),
            (
                "listen: 0.0.0.0:8080\nadmin: {tokens_env: A, listen: 127.0.0.1:8080}\n",
                "has the webhook port too",
            ),
            (
                "admin: {tokens_env: A, token: x}\n",
                "unknown key `token` in admin",
            ),
            (
                "retention: {events: 10s}\n",
                "retention.events must be at least a minute",
            ),
            (
                "retention: {events: 1d, bodies: 2d}\n",
                "retention.bodies must be at least a minute (60s) and at most retention.events (86400s)",
            ),
            (
                "retention: {bodies: 5s}\n",
                "retention.bodies must be at least a minute",
            ),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        let c = parse("admin: {tokens_env: ADMIN}\n").expect("parses");
        let unset = c.unset_variables(&hookflow_protocol::Environment::fixed(0, vec![]));
        assert_eq!(
            unset,
            vec!["admin: tokens_env names ADMIN, which is not set"]
        );
        let short = hookflow_protocol::Environment::fixed(
            0,
            vec![("ADMIN".into(), "long-enough-token-123, short".into())],
        );
        assert!(c.unusable_secrets(&short)[0]
            .contains("every token in ADMIN must be at least 16 bytes"));
        assert_eq!(admin_tokens(" a , ,b,"), vec!["a", "b"]);
    }

    #[test]
    fn problems_name_file_and_line() {
        let e = RelayConfig::parse("listen: 1\nbogus: 2\n", "relay.yml", &Overrides::default())
            .unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(
            e.to_string()
                .starts_with("relay.yml:2: unknown key `bogus`"),
            "{e}"
        );
        let e = RelayConfig::parse(
            "endpoints:\n  - slug: x\n    repo: nope\n    token_env: T\n",
            "r.yml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("endpoint `x`: \"nope\" is not a repository"),
            "{e}"
        );
        let e = RelayConfig::parse("endpoints:\n  - {slug: x, repo: a/b, token_env: T, verify: {preset: nope, secret_env: S}}\n", "r.yml", &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("unknown preset"), "{e}");
        let e = RelayConfig::parse("listen: here\n", "r.yml", &Overrides::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.yml:1: listen address \"here\" is not HOST:PORT such as 0.0.0.0:8080"
        );
    }

    #[test]
    fn body_retention_is_kept_only_when_shorter_than_the_events() {
        let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default()).expect(t);
        let c = parse("retention: {events: 7d, bodies: 1d}\n");
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.body_retention, Some(Duration::from_secs(86_400)));
        assert_eq!(parse("retention: {bodies: 7d}\n").body_retention, None);
        assert_eq!(parse("").body_retention, None);
    }
}
