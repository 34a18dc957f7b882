//! The GitHub API client: `POST {api}/repos/{owner}/{repo}/dispatches` for `hookflow dispatch`
//! and the relay's delivery workers.
//!
//! Every answer is mapped to an outcome the caller can act on: delivered, retry later (with
//! GitHub's wait when it gives one), or failed for good with GitHub's own message. What a
//! dispatch may contain is [`hookflow_protocol::dispatch`]'s concern.

use std::time::Duration;

use hookflow_protocol::dispatch::Repo;
use serde_json::Value;

/// The default API base.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// What became of a dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 204: GitHub accepted it.
    Delivered,
    /// Worth trying again: a network error, 5xx, 429 or a rate-limit 403. `after` is GitHub's
    /// wait (`Retry-After`, `x-ratelimit-reset`) when it gave one.
    Retry {
        /// Why.
        reason: String,
        /// How long GitHub asked to wait.
        after: Option<Duration>,
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
    },
    /// Will not succeed as it is: 401, 403 (not rate limit), 404, 422, other 4xx.
    Failed {
        /// HTTP status.
        status: u16,
        /// What it means and what to do, with GitHub's message.
        reason: String,
    },
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API base is not a URL.
    #[error("API URL {0:?} is not a URL: {1}; pass the API base such as https://api.github.com or https://HOST/api/v3")]
    ApiUrl(String, url::ParseError),
    /// The TLS/HTTP stack could not start.
    #[error("cannot build the HTTP client: {0}")]
    Http(reqwest::Error),
}

/// A GitHub API client for dispatches.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    api: String,
    /// The relay's GitHub App, when it has one.
    app: Option<std::sync::Arc<crate::outbound::github_app::AppTokens>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.api)
            .field("app", &self.app.is_some())
            .finish()
    }
}

impl Client {
    /// A client for `api_url` (GitHub, GitHub Enterprise Server's `https://HOST/api/v3`, or a
    /// test server), with a per-request timeout.
    pub fn new(api_url: &str, timeout: Duration) -> Result<Client, ClientError> {
        let api = api_url.trim_end_matches('/').to_string();
        url::Url::parse(&api).map_err(|e| ClientError::ApiUrl(api_url.to_string(), e))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(ClientError::Http)?;
        Ok(Client {
            http,
            api,
            app: None,
        })
    }

    /// The same client, dispatching as the GitHub App `key` where an event says so.
    pub fn with_app(
        mut self,
        key: crate::outbound::github_app::AppKey,
        clock: std::sync::Arc<dyn hookflow_protocol::Clock>,
    ) -> Client {
        self.app = Some(std::sync::Arc::new(
            crate::outbound::github_app::AppTokens::new(key, self.http.clone(), &self.api, clock),
        ));
        self
    }

    /// The GitHub App's tokens, when the relay has an app.
    pub fn app(&self) -> Option<&crate::outbound::github_app::AppTokens> {
        self.app.as_deref()
    }

    /// The API base.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Sends a prepared dispatch request body (from [`hookflow_protocol::dispatch::check_limits`]).
    pub async fn dispatch(&self, repo: &Repo, token: &str, body: Vec<u8>) -> Outcome {
        let url = format!("{}/repos/{}/{}/dispatches", self.api, repo.owner, repo.name);
        let sent = self
            .http
            .post(&url)
            .header("Accept", "application/vnd.github+json")
            .header("Authorization", format!("Bearer {token}"))
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return network_failure(&self.api, &e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        classify(status, &headers, &text, repo)
    }
}

/// A request that got no answer (timeout, refused connection, reset): worth another attempt.
pub(crate) fn network_failure(target: &str, e: &reqwest::Error) -> Outcome {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    Outcome::Retry {
        reason: format!("request to {target} {what}: {}", without_url(e)),
        after: None,
        status: None,
    }
}

/// reqwest errors print the URL; the message is enough and shorter.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// GitHub's `message` (and validation errors) from an error body.
fn github_message(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let mut msg = v
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if let Some(errors) = v.get("errors").and_then(Value::as_array) {
                let details: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        e.get("message")
                            .and_then(Value::as_str)
                            .map_or_else(|| e.to_string(), str::to_string)
                    })
                    .collect();
                if !details.is_empty() {
                    msg = format!("{msg} ({})", details.join("; "));
                }
            }
            if msg.is_empty() {
                text.chars().take(300).collect()
            } else {
                msg
            }
        }
        Err(_) => text.chars().take(300).collect(),
    }
}

/// How long GitHub asks to wait: `Retry-After` (seconds or HTTP date), else
/// `x-ratelimit-reset` (Unix seconds) when the limit is exhausted.
pub fn wait_from_headers(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    if get("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = get("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok()) {
            let at = std::time::UNIX_EPOCH + Duration::from_secs(reset);
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    None
}

/// Maps an answer to an [`Outcome`].
pub fn classify(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    text: &str,
    repo: &Repo,
) -> Outcome {
    let msg = github_message(text);
    let wait = wait_from_headers(headers, std::time::SystemTime::now());
    let rate_limited = status == 429
        || (status == 403
            && (headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                == Some("0")
                || headers.contains_key("retry-after")
                || msg.to_ascii_lowercase().contains("rate limit")));
    match status {
        200..=299 => Outcome::Delivered,
        _ if rate_limited => Outcome::Retry {
            reason: format!("GitHub rate limit ({status}): {msg}"),
            after: wait,
            status: Some(status),
        },
        401 => Outcome::Failed {
            status,
            reason: format!("GitHub rejected the token (401: {msg}); check that it is valid and not expired"),
        },
        403 => Outcome::Failed {
            status,
            reason: format!(
                "the token may not dispatch to {repo} (403: {msg}); it needs the `repo` scope, or Contents: write for a fine-grained token"
            ),
        },
        404 => Outcome::Failed {
            status,
            reason: format!("repository {repo} not found, or the token has no access to it (404: {msg})"),
        },
        422 => Outcome::Failed {
            status,
            reason: format!("GitHub refused the dispatch as invalid (422: {msg})"),
        },
        408 | 500..=599 => Outcome::Retry {
            reason: format!("GitHub answered {status}: {msg}"),
            after: wait,
            status: Some(status),
        },
        _ => Outcome::Failed {
            status,
            reason: format!("GitHub answered {status}: {msg}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn repo() -> Repo {
        Repo::parse("octo/hooks").expect("repo")
    }

    #[test]
    fn answers_are_classified() {
        let none = HeaderMap::new();
        assert_eq!(classify(204, &none, "", &repo()), Outcome::Delivered);
        assert!(
            matches!(classify(401, &none, r#"{"message":"Bad credentials"}"#, &repo()),
            Outcome::Failed { status: 401, reason } if reason.contains("Bad credentials"))
        );
        assert!(
            matches!(classify(404, &none, r#"{"message":"Not Found"}"#, &repo()),
            Outcome::Failed { reason, .. } if reason.contains("octo/hooks not found"))
        );
        assert!(
            matches!(classify(422, &none, r#"{"message":"Invalid request.","errors":[{"message":"No subschema matched"}]}"#, &repo()),
            Outcome::Failed { reason, .. } if reason.contains("No subschema matched"))
        );
        assert!(matches!(
            classify(500, &none, "oops", &repo()),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(
                403,
                &none,
                r#"{"message":"Resource not accessible by integration"}"#,
                &repo()
            ),
            Outcome::Failed { status: 403, .. }
        ));
        let mut limited = HeaderMap::new();
        limited.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            classify(429, &limited, "{}", &repo()),
            Outcome::Retry {
                reason: "GitHub rate limit (429): {}".into(),
                after: Some(Duration::from_secs(7)),
                status: Some(429),
            }
        );
        let mut reset = HeaderMap::new();
        reset.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 60;
        reset.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&at.to_string()).expect("header"),
        );
        match classify(
            403,
            &reset,
            r#"{"message":"API rate limit exceeded"}"#,
            &repo(),
        ) {
            Outcome::Retry { after: Some(d), .. } => {
                assert!(d.as_secs() > 50 && d.as_secs() <= 60, "{d:?}")
            }
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
