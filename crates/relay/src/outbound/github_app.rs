//! Authentication as a GitHub App: the relay holds the app's private key and mints short-lived
//! installation tokens, each narrowed to one repository and `contents: write`. Nothing it stores
//! is a credential; tokens live in memory only.
//!
//! - A JWT (RS256, issuer = app id, issued 60 s in the past for clock drift, valid 9 minutes)
//!   authenticates the app.
//! - `GET /repos/{owner}/{repo}/installation` finds the installation (cached).
//! - `POST /app/installations/{id}/access_tokens` with `repositories: [repo]` and
//!   `permissions: {contents: write}` mints the token, cached until 5 minutes before its
//!   `expires_at`. Concurrent deliveries to one repository share one request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::Clock;

/// A token is renewed this long before GitHub says it expires.
const RENEW_BEFORE_MS: i64 = 5 * 60 * 1000;
/// The JWT is dated this far back, for clocks that run ahead of GitHub's.
const JWT_BACKDATE_S: i64 = 60;
/// And valid this long (GitHub allows at most 10 minutes).
const JWT_LIFETIME_S: i64 = 9 * 60;

/// Why the app's key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read.
    #[error("cannot read the GitHub App's private key {path}: {cause}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The variable is not set.
    #[error("the GitHub App's private key variable {0} is not set")]
    Unset(String),
    /// Not an RSA private key in PEM.
    #[error("the GitHub App's private key from {from} is not an RSA private key in PEM (PKCS#1 \"BEGIN RSA PRIVATE KEY\" or PKCS#8 \"BEGIN PRIVATE KEY\"): {cause}; download a new key from the app's settings page")]
    Malformed {
        /// Where it came from.
        from: String,
        /// What the parser said.
        cause: String,
    },
}

/// The app's identity: its id and private key (never printed).
#[derive(Clone)]
pub struct AppKey {
    app_id: u64,
    key: Arc<jsonwebtoken::EncodingKey>,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl AppKey {
    /// The key from PEM text; `from` names its source in errors.
    pub fn from_pem(app_id: u64, pem: &str, from: &str) -> Result<AppKey, KeyError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            KeyError::Malformed {
                from: from.to_string(),
                cause: e.to_string(),
            }
        })?;
        // The parser accepts some malformed keys that only signing finds out.
        let probe = AppKey {
            app_id,
            key: Arc::new(key),
        };
        probe.jwt(0).map_err(|cause| KeyError::Malformed {
            from: from.to_string(),
            cause,
        })?;
        Ok(probe)
    }

    /// The key from a file.
    pub fn from_file(app_id: u64, path: &std::path::Path) -> Result<AppKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|cause| KeyError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_pem(app_id, &pem, &path.display().to_string())
    }

    /// The app id.
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    /// A JWT for the app at `now_ms`.
    pub fn jwt(&self, now_ms: i64) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims {
            iat: i64,
            exp: i64,
            iss: String,
        }
        let now = now_ms.div_euclid(1000);
        let claims = Claims {
            iat: now - JWT_BACKDATE_S,
            exp: now + JWT_LIFETIME_S,
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.key,
        )
        .map_err(|e| e.to_string())
    }
}

/// Why no installation token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The app is not installed where the repository is (404 on the installation).
    #[error("the GitHub App is not installed on {owner} (or has no access to {owner}/{repo}); install it on the repository in the app's settings")]
    NotInstalled {
        /// The owner.
        owner: String,
        /// The repository.
        repo: String,
    },
    /// The installation lacks a permission (403/422 on the token).
    #[error("the GitHub App cannot get a token for {repo} with contents: write ({message}); give the app the repository permission \"Contents: Read and write\" and accept it on the installation")]
    Permission {
        /// `owner/name`.
        repo: String,
        /// GitHub's message.
        message: String,
    },
    /// GitHub refused the app's JWT: a wrong app id or key.
    #[error("GitHub refused the app's credentials ({status}: {message}); check github_app.app_id and that the private key belongs to that app")]
    Credentials {
        /// HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// Worth trying again later (network, 5xx, rate limit).
    #[error("cannot reach GitHub for an app token: {0}")]
    Transient(String),
}

#[derive(Clone)]
struct Token {
    value: String,
    expires_ms: i64,
}

/// Installation tokens of one app, minted on demand and cached per repository.
pub struct AppTokens {
    key: AppKey,
    http: reqwest::Client,
    api: String,
    clock: Arc<dyn Clock>,
    installations: Mutex<HashMap<String, u64>>,
    /// One slot per repository: a delivery that finds no fresh token takes the slot's lock and
    /// mints one; the others wait for it instead of minting their own.
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl AppTokens {
    /// Tokens of the app `key` from GitHub's API at `api` (`https://api.github.com`, or a GitHub
    /// Enterprise Server's `https://HOST/api/v3`).
    pub fn new(key: AppKey, http: reqwest::Client, api: &str, clock: Arc<dyn Clock>) -> Self {
        AppTokens {
            key,
            http,
            api: api.trim_end_matches('/').to_string(),
            clock,
            installations: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    fn slot(&self, repo: &Repo) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repo.to_string())
            .or_default()
            .clone()
    }

    /// A token for `repo`: the cached one while it has more than 5 minutes left, else a new one.
    pub async fn token(&self, repo: &Repo) -> Result<String, AppError> {
        let slot = self.slot(repo);
        let mut cached = slot.lock().await;
        if let Some(t) = cached.as_ref() {
            if t.expires_ms - RENEW_BEFORE_MS > self.clock.now_ms() {
                return Ok(t.value.clone());
            }
        }
        let fresh = self.mint(repo).await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets the token of `repo` (GitHub refused it: revoked, or the installation changed),
    /// unless it was already replaced by another than `refused`.
    pub async fn forget(&self, repo: &Repo, refused: &str) {
        let slot = self.slot(repo);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == refused) {
            *cached = None;
        }
        self.installations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&repo.to_string());
    }

    async fn mint(&self, repo: &Repo) -> Result<Token, AppError> {
        let jwt = self
            .key
            .jwt(self.clock.now_ms())
            .map_err(|e| AppError::Credentials {
                status: 0,
                message: e,
            })?;
        let installation = self.installation(repo, &jwt).await?;
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            self.api
        );
        let body = serde_json::json!({
            "repositories": [repo.name],
            "permissions": {"contents": "write"},
        });
        let request = self
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        let (status, answer) = self.call(request, &jwt).await?;
        match status {
            201 | 200 => {
                let value = answer["token"].as_str().unwrap_or_default().to_string();
                if !hookflow_protocol::credentials::is_token_text(&value) {
                    return Err(AppError::Transient(
                        "GitHub's answer held no usable token".into(),
                    ));
                }
                let expires_ms = answer["expires_at"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(self.clock.now_ms() + 10 * 60 * 1000, |t| {
                        t.timestamp_millis()
                    });
                Ok(Token { value, expires_ms })
            }
            401 => Err(credentials(status, &answer)),
            403 | 422 => Err(AppError::Permission {
                repo: repo.to_string(),
                message: message(&answer),
            }),
            404 => {
                // The installation went away since it was cached.
                self.installations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&repo.to_string());
                Err(AppError::NotInstalled {
                    owner: repo.owner.clone(),
                    repo: repo.name.clone(),
                })
            }
            _ => Err(AppError::Transient(format!(
                "{status} from {url}: {}",
                message(&answer)
            ))),
        }
    }

    async fn installation(&self, repo: &Repo, jwt: &str) -> Result<u64, AppError> {
        let key = repo.to_string();
        if let Some(id) = self
            .installations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(*id);
        }
        let url = format!(
            "{}/repos/{}/{}/installation",
            self.api, repo.owner, repo.name
        );
        let (status, answer) = self.call(self.http.get(&url), jwt).await?;
        match status {
            200 => {
                let id = answer["id"].as_u64().ok_or_else(|| {
                    AppError::Transient("GitHub's installation answer held no id".into())
                })?;
                self.installations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, id);
                Ok(id)
            }
            401 => Err(credentials(status, &answer)),
            404 => Err(AppError::NotInstalled {
                owner: repo.owner.clone(),
                repo: repo.name.clone(),
            }),
            _ => Err(AppError::Transient(format!(
                "{status} from {url}: {}",
                message(&answer)
            ))),
        }
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        jwt: &str,
    ) -> Result<(u16, serde_json::Value), AppError> {
        let answer = request
            .header("Accept", "application/vnd.github+json")
            .header("Authorization", format!("Bearer {jwt}"))
            .header("X-GitHub-Api-Version", "2022-11-28")
            .send()
            .await
            .map_err(|e| AppError::Transient(e.without_url().to_string()))?;
        let status = answer.status().as_u16();
        let body = answer
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}

fn message(answer: &serde_json::Value) -> String {
    answer["message"]
        .as_str()
        .unwrap_or("no message")
        .chars()
        .take(300)
        .collect()
}

fn credentials(status: u16, answer: &serde_json::Value) -> AppError {
    AppError::Credentials {
        status,
        message: message(answer),
    }
}
