//! Helpers for tests of the relay: a configuration pointing at a fake GitHub, the relay's
//! environment, HTTP calls, and waits that end as soon as the condition holds.

use hookflow_relay::store::Store as _;
use std::path::Path;
use std::time::{Duration, Instant};

use hookflow_protocol::Environment;
use hookflow_relay::config::{Overrides, RelayConfig};
use hookflow_relay::{self as relay, Running};
use serde_json::Value;

use crate::fake_github::FakeGithub;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn config(data: &Path, github: &FakeGithub, extra: &str) -> RelayConfig {
    let text = format!(
        "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\ndelivery:\n  initial_backoff: 50ms\n  max_backoff: 400ms\n  timeout: 500ms\n  max_attempts: 4\n  rate_limit_per_minute: 0\n{extra}",
        data.display(),
        github.url()
    );
    RelayConfig::parse(&text, "test.yml", &Overrides::default()).expect("config parses")
}

/// The relay's clock and secrets: the system clock and the variables the endpoints name,
/// given to the relay rather than set in the process.
pub fn test_env() -> Environment {
    Environment::with_vars(vec![
        ("RELAY_TEST_TOKEN".into(), "ghp_endpointtoken".into()),
        ("RELAY_TEST_SECRET".into(), "endpoint-secret".into()),
        ("RELAY_TEST_KEYS".into(), "key-one, key-two".into()),
    ])
}

pub async fn start(data: &Path, github: &FakeGithub, extra: &str) -> Running {
    relay::start(config(data, github, extra), test_env())
        .await
        .expect("relay starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub fn url(r: &Running, path: &str) -> String {
    format!("http://{}{path}", r.addr)
}

/// POSTs `body` to the relay and returns the status and the JSON answer.
pub async fn post(r: &Running, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    json_of(
        http()
            .post(url(r, path))
            .body(body)
            .send()
            .await
            .expect("sent"),
    )
    .await
}

pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits until the store holds nothing pending or in flight: every event stored has been
/// delivered or dead-lettered, so no further dispatch can happen.
pub async fn settled(r: &Running) {
    let start = Instant::now();
    loop {
        let c = r.store.counts().await.expect("counts");
        if c.pending == 0 && c.inflight == 0 {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out waiting for the queue to drain: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn wait_until<F: Fn() -> bool>(what: &str, f: F) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port on 127.0.0.1 free a moment ago: for a relay that must know its own address before
/// it starts (`public_url`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The text of a GET (`/metrics` and the like).
pub async fn get_text(url: &str) -> String {
    http()
        .get(url)
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("text")
}

/// A throwaway PostgreSQL database for one test, or `None` (said on stderr) when no server is
/// there outside CI.
pub async fn scratch_db() -> Option<hookflow_relay::store::postgres::scratch::ScratchDb> {
    hookflow_relay::store::postgres::scratch::ScratchDb::for_tests().await
}

/// A test of `story` on SQLite and one on PostgreSQL.
#[doc(hidden)]
#[macro_export]
macro_rules! __on_both_stores {
    ($story:ident: $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $story(None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let Some(db) = $crate::relay::scratch_db().await else {
                return;
            };
            $story(Some(&db.url)).await;
        }
    };
}
pub use crate::__on_both_stores as on_both_stores;

/// Starts `hookflow relay` (the binary `bin`) on `config` with these environment variables
/// (logging warnings only); returns the child (killed when dropped) and its address.
pub async fn spawn_binary(
    bin: &str,
    config: &Path,
    vars: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(bin)
        .args(["relay", "--config"])
        .arg(config)
        .envs(vars.iter().copied())
        .env("HOOKFLOW_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("relay starts");
    let addr = crate::load::read_address(child.stderr.take().expect("stderr")).await;
    (child, addr)
}
