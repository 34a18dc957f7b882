//! Configuration reload on a running relay process: `SIGHUP` under `wrk` load swaps endpoints
//! without a failed request or a dropped connection on the endpoints that stay, the removed one
//! answers 404, a broken file is refused and the running configuration stays, and every
//! acknowledged webhook is delivered. `POST /api/reload` reports what changed, what waits for a
//! restart, and why a file is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::bin;
use crate::support;
use crate::support::fake_github::FakeGithub;
use crate::support::load::RelayProcess;
use serde_json::Value;
use tokio::process::Command;

pub(crate) const ADMIN_TOKEN: &str = "admin-token-for-reload-tests";

pub(crate) use crate::support::relay::free_port;

/// The relay's configuration with these endpoints (each to `octo/<slug>`) and `extra` YAML.
pub(crate) fn config(admin_port: u16, slugs: &[&str], extra: &str) -> String {
    let mut text = format!(
        "admin:\n  listen: 127.0.0.1:{admin_port}\n  tokens_env: ADMIN_TOKENS\n\
         delivery:\n  rate_limit_per_minute: 0\n  concurrency: 32\n\
         limits:\n  max_requests_per_client: 0\n  compat_requests_per_minute: 0\n{extra}endpoints:\n"
    );
    for slug in slugs {
        text.push_str(&format!(
            "  - slug: {slug}\n    repo: octo/{slug}\n    token_env: GH_TOKEN\n"
        ));
    }
    text
}

/// Starts `hookflow relay --config <file>` and waits until it listens.
pub(crate) async fn relay(file: &Path, data: &Path, api_url: &str) -> RelayProcess {
    let mut command = Command::new(bin());
    command
        .arg("relay")
        .arg("--config")
        .arg(file)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--api-url", api_url])
        .env("GH_TOKEN", "ghp_reloadtesttoken0000000000000000000000")
        .env("ADMIN_TOKENS", ADMIN_TOKEN)
        .env("HOOKFLOW_LOG", "warn,hookflow_relay::reload=info");
    RelayProcess::start(command).await
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> u16 {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .expect("the relay answers")
}

/// Waits until `url` answers `status` to a POST, or panics after `timeout`; returns how many
/// were acknowledged (202) before.
async fn until_answers(client: &reqwest::Client, url: &str, status: u16, timeout: Duration) -> u64 {
    let start = Instant::now();
    let mut acknowledged = 0;
    loop {
        let got = post(client, url, "{}").await;
        if got == status {
            return acknowledged;
        }
        acknowledged += u64::from(got == 202);
        assert!(
            start.elapsed() < timeout,
            "{url} still answers {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A counter of `/metrics`, summed over its label sets that contain `labels`.
async fn metric(client: &reqwest::Client, addr: &str, name: &str, labels: &str) -> u64 {
    let text = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The relay's reload counters: applied, refused.
async fn reloads(client: &reqwest::Client, addr: &str) -> (u64, u64) {
    let count = |result: &'static str| async move {
        let labels = format!("result=\"{result}\"");
        metric(client, addr, "hookflow_config_reloads_total", &labels).await
    };
    (count("ok").await, count("failed").await)
}

/// `wrk` on this machine: `None` (said plainly) where it is not installed, except in CI, which
/// installs it.
fn wrk() -> Option<&'static str> {
    let here = std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok();
    if !here {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "wrk is not installed; .ci/run installs it"
        );
        eprintln!("SKIPPED: wrk is not installed (apt-get install wrk)");
        return None;
    }
    Some("wrk")
}

/// What one `wrk` run printed: requests completed, and whether any answer was not 2xx or any
/// connection failed.
struct WrkRun {
    requests: u64,
    output: String,
}

impl WrkRun {
    fn clean(&self) -> bool {
        !self.output.contains("Non-2xx") && !self.output.contains("Socket errors")
    }
}

fn run_wrk(url: String, script: PathBuf, seconds: u64) -> std::thread::JoinHandle<WrkRun> {
    std::thread::spawn(move || {
        let out = std::process::Command::new("wrk")
            .args(["-t1", "-c4", &format!("-d{seconds}s"), "-s"])
            .arg(&script)
            .arg(&url)
            .output()
            .expect("wrk runs");
        let output = String::from_utf8_lossy(&out.stdout).into_owned();
        let requests = output
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("wrk printed a request count: {output}"));
        WrkRun { requests, output }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_endpoints_under_wrk_load_and_loses_nothing() {
    let Some(_) = wrk() else { return };
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.yml");
    let admin = free_port();
    std::fs::write(&file, config(admin, &["a", "b", "c"], "")).expect("write");
    let relay = relay(&file, &dir.path().join("data"), &gh.url()).await;
    let client = reqwest::Client::new();
    let hooks = |slug: &str| format!("http://{}/hooks/{slug}", relay.addr);
    assert_eq!(post(&client, &hooks("c"), "{}").await, 202);

    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = '{\"n\": 1}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )
    .expect("write script");
    let load_a = run_wrk(hooks("a"), script.clone(), 4);
    let load_b = run_wrk(hooks("b"), script, 4);
    tokio::time::sleep(Duration::from_millis(800)).await;

    // 1. `c` goes, `d` comes, under load.
    std::fs::write(&file, config(admin, &["a", "b", "d"], "")).expect("write");
    relay.signal("HUP");
    let to_c = 1 + until_answers(&client, &hooks("c"), 404, Duration::from_secs(5)).await;
    assert_eq!(post(&client, &hooks("d"), "{}").await, 202);

    // 2. A broken file: refused, and the running configuration stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::write(&file, "endpoints:\n  - slug: a\n    repo: [not, a, repo\n").expect("write");
    relay.signal("HUP");
    let start = Instant::now();
    while !relay.logged("configuration reload refused") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the refusal is logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post(&client, &hooks("d"), "{}").await, 202);
    assert_eq!(post(&client, &hooks("c"), "{}").await, 404);

    // 3. Fewer deliveries in flight and a smaller body limit, still under load.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let smaller = "limits:\n  max_requests_per_client: 0\n  compat_requests_per_minute: 0\n  max_body_bytes: 1000\n";
    let text = config(admin, &["a", "b", "d"], "")
        .replace("concurrency: 32", "concurrency: 4")
        .replace(
            "limits:\n  max_requests_per_client: 0\n  compat_requests_per_minute: 0\n",
            smaller,
        );
    std::fs::write(&file, text).expect("write");
    relay.signal("HUP");
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(2000));
    let start = Instant::now();
    let mut to_d = 2;
    loop {
        match post(&client, &hooks("d"), &big).await {
            413 => break,
            202 => to_d += 1,
            other => panic!("/hooks/d answered {other}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new body limit applies"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (a, b) = (load_a.join().expect("wrk a"), load_b.join().expect("wrk b"));
    println!("wrk /hooks/a:\n{}\nwrk /hooks/b:\n{}", a.output, b.output);
    assert!(
        a.clean(),
        "no failed request or connection on /hooks/a:\n{}",
        a.output
    );
    assert!(
        b.clean(),
        "no failed request or connection on /hooks/b:\n{}",
        b.output
    );
    assert!(a.requests > 100 && b.requests > 100, "the load ran");

    // Every event the relay acknowledged reaches GitHub, once: the queue drains, each event
    // arrives one time, and each endpoint's events number at least what it acknowledged. (A
    // request wrk abandoned when it stopped may have been stored without its answer being
    // read, so "at least".)
    let start = Instant::now();
    loop {
        let health: Value = client
            .get(format!("http://127.0.0.1:{admin}/api/health"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        if health["pending"] == 0 && health["inflight"] == 0 && health["dead"] == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the queue drains: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered = gh.delivered();
    let ids = gh.delivered_ids();
    assert_eq!(ids.len(), delivered.len(), "each event arrives once");
    assert_eq!(ids.len(), gh.dispatches().len(), "no dispatch failed");
    let stored = metric(&client, &relay.addr, "hookflow_stored_total", "").await;
    assert!(
        stored <= ids.len() as u64,
        "stored {stored}, delivered {}",
        ids.len()
    );
    let to = |repo: &str| delivered.iter().filter(|d| d.repo == repo).count() as u64;
    assert!(
        to("octo/a") >= a.requests,
        "{} of {}",
        to("octo/a"),
        a.requests
    );
    assert!(
        to("octo/b") >= b.requests,
        "{} of {}",
        to("octo/b"),
        b.requests
    );
    assert_eq!(to("octo/c"), to_c, "what c acknowledged before it went");
    assert_eq!(to("octo/d"), to_d, "what d acknowledged");

    assert_eq!(reloads(&client, &relay.addr).await, (2, 1));
    assert!(
        relay.logged("endpoint `c`: removed"),
        "the reload says what changed"
    );
    assert!(relay.logged("delivery.concurrency: 32 → 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_reports_changes_restarts_and_refusals() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.yml");
    let admin = free_port();
    std::fs::write(&file, config(admin, &["a"], "")).expect("write");
    let relay = relay(&file, &dir.path().join("data"), &gh.url()).await;
    let client = reqwest::Client::new();
    let reload = || {
        client
            .post(format!("http://127.0.0.1:{admin}/api/reload"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let json = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.expect("json"))
    };

    // Without a token: refused, nothing read.
    let r = client
        .post(format!("http://127.0.0.1:{admin}/api/reload"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 401);

    // Nothing changed.
    let (status, body) = json(reload().await.expect("answer")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], serde_json::json!([]));

    // An endpoint added, the retention changed, and the shutdown timeout (which waits for a
    // restart).
    let text = config(admin, &["a", "b"], "retention:\n  events: 2h\n") + "shutdown_timeout: 3s\n";
    std::fs::write(&file, text).expect("write");
    let (status, body) = json(reload().await.expect("answer")).await;
    assert_eq!(status, 200, "{body}");
    let changed = body["changed"].to_string();
    assert!(changed.contains("endpoint `b`: added"), "{body}");
    assert!(changed.contains("retention.events"), "{body}");
    let restart = body["restart_needed"].to_string();
    assert!(restart.contains("shutdown_timeout changed"), "{body}");
    assert_eq!(
        post(&client, &format!("http://{}/hooks/b", relay.addr), "{}").await,
        202,
        "b is served at once, on the address the relay started with"
    );

    // YAML that does not parse: the report names the file and line.
    std::fs::write(&file, "endpoints:\n  - slug: c\n    repo: [oops\n").expect("write");
    let (status, body) = json(reload().await.expect("answer")).await;
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("relay.yml:"), "{message}");
    assert!(
        message.contains("the running configuration stays"),
        "{message}"
    );

    // A value that is wrong: the same report `--check-config` gives.
    std::fs::write(
        &file,
        config(admin, &["a"], "").replace("concurrency: 32", "concurrency: lots"),
    )
    .expect("write");
    let (status, body) = json(reload().await.expect("answer")).await;
    assert_eq!(status, 422, "{body}");
    let check = support::cli::hookflow()
        .args(["relay", "--check-config", "--config"])
        .arg(&file)
        .output()
        .expect("check-config runs");
    let report = String::from_utf8_lossy(&check.stderr);
    let message = body["message"].as_str().expect("message");
    let first = message.split("; the running").next().expect("report");
    assert!(
        report.contains(first),
        "check-config says {report:?}; reload said {message:?}"
    );

    // A variable the new endpoint names is unset in the relay: refused.
    std::fs::write(
        &file,
        config(admin, &["a"], "")
            + "  - slug: z\n    repo: octo/z\n    token_env: NOT_SET_ANYWHERE\n",
    )
    .expect("write");
    let (status, body) = json(reload().await.expect("answer")).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("NOT_SET_ANYWHERE"),
        "{body}"
    );

    // After three refusals, the relay still runs the last good configuration: a and b.
    for slug in ["a", "b"] {
        assert_eq!(
            post(
                &client,
                &format!("http://{}/hooks/{slug}", relay.addr),
                "{}"
            )
            .await,
            202
        );
    }
    assert_eq!(
        post(&client, &format!("http://{}/hooks/z", relay.addr), "{}").await,
        404
    );
    assert_eq!(
        reloads(&client, &relay.addr).await,
        (2, 3),
        "two applied, three refused"
    );
    gh.wait_for(3, Duration::from_secs(20)).await;
}
