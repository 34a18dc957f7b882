use super::destinations::DestinationConfig;
use super::destinations::Target;
use super::endpoint::parse_auth;
use super::endpoint::parse_batching;
use super::endpoint::parse_destinations;
use super::error::combine;
use super::error::unreachable_error;
use super::error::ConfigError;
use super::overrides::Overrides;
use super::problems::endpoint_line;
use super::problems::type_problems;
use super::problems::unknown_keys;
use super::raw::RawConfig;
use super::repo_pattern::RepoPattern;
use super::settings::AdminConfig;
use super::settings::BodyRefConfig;
use super::settings::ConfigSource;
use super::settings::DeliveryConfig;
use super::settings::Endpoint;
use super::settings::EventTypeSource;
use super::settings::GithubApp;
use super::settings::KeySource;
use super::settings::Limits;
use super::settings::RelayConfig;
use super::settings::Setting;
use super::settings::StoreLocation;
use super::settings::BODY_REF_MAX_BODY_BYTES;
use super::settings::DEFAULT_RETENTION;
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::dispatch::MAX_EVENT_TYPE_CHARS;
use hookflow_protocol::dispatch::WEBHOOK_EVENT_TYPE;
use hookflow_protocol::options::locate;
use hookflow_protocol::options::parse_duration_ms;
use hookflow_protocol::signature::parse_verify;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

impl RelayConfig {
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
