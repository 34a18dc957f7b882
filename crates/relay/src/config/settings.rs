use super::destinations::DestinationConfig;
use super::destinations::EndpointAuth;
use super::destinations::Target;
use super::error::ConfigError;
use super::overrides::Overrides;
use super::repo_pattern::RepoPattern;
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::signature::VerifyRule;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
