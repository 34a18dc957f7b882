//! The GitHub "create a repository dispatch event" API (DESIGN §2): one client for
//! `hookflow dispatch` and the relay's delivery workers.
//!
//! `POST {api}/repos/{owner}/{repo}/dispatches` with `{"event_type", "client_payload"}`.
//! GitHub's limits are checked before sending, and every answer is mapped to an outcome the
//! caller can act on: delivered, retry later (with GitHub's wait when it gives one), or failed
//! for good with GitHub's own message.

use std::time::Duration;

use serde_json::Value;

/// GitHub's limit on `event_type`, in characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 100;
/// GitHub's limit on `client_payload` top-level properties.
pub const MAX_PAYLOAD_PROPERTIES: usize = 10;
/// The whole JSON request must be under this many bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The default API base.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// A repository as `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repo {
    /// The owner (user or organisation).
    pub owner: String,
    /// The repository name.
    pub name: String,
}

impl Repo {
    /// Parses `owner/name`.
    pub fn parse(s: &str) -> Result<Repo, String> {
        let valid = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        match s.split_once('/') {
            Some((o, n)) if valid(o) && valid(n) => Ok(Repo {
                owner: o.to_string(),
                name: n.to_string(),
            }),
            _ => Err(format!(
                "{s:?} is not a repository; expected OWNER/REPO such as octo-org/hooks"
            )),
        }
    }
}

impl std::fmt::Display for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A dispatch GitHub would refuse, found before sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// `event_type` is empty or too long.
    #[error("event_type must be 1 to {MAX_EVENT_TYPE_CHARS} characters, got {0}")]
    EventType(usize),
    /// `client_payload` is not an object.
    #[error("client_payload must be a JSON object")]
    NotObject,
    /// Too many top-level properties.
    #[error("client_payload has {0} top-level properties; GitHub accepts at most {MAX_PAYLOAD_PROPERTIES}")]
    TooManyProperties(usize),
    /// The request is too large.
    #[error("the dispatch request is {0} bytes; GitHub accepts under {MAX_REQUEST_BYTES}")]
    TooLarge(usize),
}

/// The JSON request body of a dispatch.
pub fn dispatch_body(event_type: &str, client_payload: &Value) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"event_type": event_type, "client_payload": client_payload}),
    )
    .unwrap_or_default()
}

/// Checks GitHub's limits; returns the request body on success.
pub fn check_limits(event_type: &str, client_payload: &Value) -> Result<Vec<u8>, LimitError> {
    let chars = event_type.chars().count();
    if chars == 0 || chars > MAX_EVENT_TYPE_CHARS {
        return Err(LimitError::EventType(chars));
    }
    let Value::Object(map) = client_payload else {
        return Err(LimitError::NotObject);
    };
    if map.len() > MAX_PAYLOAD_PROPERTIES {
        return Err(LimitError::TooManyProperties(map.len()));
    }
    let body = dispatch_body(event_type, client_payload);
    if body.len() >= MAX_REQUEST_BYTES {
        return Err(LimitError::TooLarge(body.len()));
    }
    Ok(body)
}

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
    },
    /// Will not succeed as it is: 401, 403 (not rate limit), 404, 422, other 4xx.
    Failed {
        /// HTTP status.
        status: u16,
        /// What it means and what to do, with GitHub's message.
        reason: String,
    },
}

/// A GitHub API client for dispatches.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api: String,
}

impl Client {
    /// A client for `api_url` (GitHub, GitHub Enterprise Server's `https://HOST/api/v3`, or a
    /// test server), with a per-request timeout.
    pub fn new(api_url: &str, timeout: Duration) -> Result<Client, String> {
        let api = api_url.trim_end_matches('/').to_string();
        url::Url::parse(&api).map_err(|e| format!("API URL {api_url:?} is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookflow/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, api })
    }

    /// The API base.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Sends a prepared dispatch request body (from [`check_limits`]).
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
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                return Outcome::Retry {
                    reason: format!("request to {} {what}: {}", self.api, without_url(&e)),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        classify(status, &headers, &text, repo)
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
    use serde_json::json;

    fn repo() -> Repo {
        Repo::parse("octo/hooks").expect("repo")
    }

    #[test]
    fn limits() {
        assert!(check_limits("webhook", &json!({"a": 1})).is_ok());
        assert_eq!(check_limits("", &json!({})), Err(LimitError::EventType(0)));
        assert_eq!(
            check_limits(&"x".repeat(101), &json!({})),
            Err(LimitError::EventType(101))
        );
        let eleven: serde_json::Map<String, Value> =
            (0..11).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(
            check_limits("w", &Value::Object(eleven)),
            Err(LimitError::TooManyProperties(11))
        );
        assert!(matches!(
            check_limits("w", &json!({"b": "x".repeat(70_000)})),
            Err(LimitError::TooLarge(_))
        ));
        assert_eq!(check_limits("w", &json!([])), Err(LimitError::NotObject));
    }

    #[test]
    fn repo_names() {
        assert_eq!(repo().to_string(), "octo/hooks");
        assert!(Repo::parse("octo").is_err());
        assert!(Repo::parse("octo/../x").is_err());
        assert!(Repo::parse("a/b/c").is_err());
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
                after: Some(Duration::from_secs(7))
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
