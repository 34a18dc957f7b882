use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) data: Option<PathBuf>,
    pub(super) store: Option<String>,
    pub(super) api_url: Option<String>,
    pub(super) compat_route: Option<bool>,
    #[serde(default)]
    pub(super) compat_repos: Vec<String>,
    pub(super) limits: Option<RawLimits>,
    pub(super) github_app: Option<RawGithubApp>,
    pub(super) public_url: Option<String>,
    pub(super) body_ref: Option<RawBodyRef>,
    pub(super) retention: Option<RawRetention>,
    pub(super) admin: Option<RawAdmin>,
    pub(super) shutdown_timeout: Option<Value>,
    pub(super) delivery: Option<RawDelivery>,
    #[serde(default)]
    pub(super) endpoints: Vec<RawEndpoint>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_body_bytes: Option<usize>,
    pub(super) max_headers: Option<usize>,
    pub(super) max_header_bytes: Option<usize>,
    pub(super) header_timeout: Option<Value>,
    pub(super) body_timeout: Option<Value>,
    pub(super) max_concurrent_requests: Option<usize>,
    pub(super) max_requests_per_client: Option<usize>,
    pub(super) compat_requests_per_minute: Option<u32>,
    pub(super) max_connections: Option<usize>,
    pub(super) idle_timeout: Option<Value>,
    pub(super) max_store_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub(super) listen: Option<String>,
    pub(super) tokens_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    pub(super) events: Option<Value>,
    pub(super) bodies: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBodyRef {
    pub(super) secret_env: Option<String>,
    pub(super) retention: Option<Value>,
    pub(super) concurrency: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub(super) rate_limit_per_minute: Option<u32>,
    pub(super) concurrency: Option<usize>,
    pub(super) max_attempts: Option<u32>,
    pub(super) initial_backoff: Option<Value>,
    pub(super) max_backoff: Option<Value>,
    pub(super) timeout: Option<Value>,
    pub(super) lease: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGithubApp {
    pub(super) app_id: u64,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) private_key_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub(super) slug: String,
    pub(super) repo: Option<String>,
    pub(super) destinations: Option<Value>,
    pub(super) token_env: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) event_type: Option<String>,
    pub(super) event_type_path: Option<String>,
    pub(super) path: Option<String>,
    pub(super) verify: Option<Value>,
    pub(super) api_keys_env: Option<String>,
    pub(super) batching: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatching {
    pub(super) mode: Option<String>,
    pub(super) max_events: Option<usize>,
    pub(super) max_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDestination {
    pub(super) repo: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) url: Option<String>,
    pub(super) secret_env: Option<String>,
    #[serde(default)]
    pub(super) headers: std::collections::BTreeMap<String, String>,
    pub(super) header_prefix: Option<String>,
    #[serde(default)]
    pub(super) event_types: Vec<String>,
    #[serde(default)]
    pub(super) transform: std::collections::BTreeMap<String, String>,
    pub(super) batching: Option<Value>,
}
