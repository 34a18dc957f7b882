//! A crash test under load: send webhooks to the relay binary, `kill -9` it part way, restart it
//! on the same data directory, and count what GitHub (the fake) received.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::fake_github::FakeGithub;

/// What a crash run found.
#[derive(Debug)]
pub struct CrashReport {
    pub requests: usize,
    pub acknowledged: usize,
    pub delivered_unique: usize,
    pub missing: usize,
    pub duplicates: usize,
    pub failed_attempts: usize,
    pub seconds: f64,
}

/// Starts `hookflow relay` and returns it with the address it printed.
pub async fn spawn_relay(bin: &Path, data: &Path, api_url: &str) -> (Child, String) {
    // A load test measures the relay, not GitHub's rate limits, from one address.
    let config = data.with_extension("yml");
    std::fs::write(
        &config,
        "delivery:\n  rate_limit_per_minute: 0\n  concurrency: 32\nlimits:\n  compat_requests_per_minute: 0\n  max_requests_per_client: 0\n",
    )
    .expect("write config");
    let mut child = Command::new(bin)
        .arg("relay")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--api-url", api_url])
        .env("HOOKFLOW_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("relay binary starts");
    let addr = read_address(child.stderr.take().expect("stderr")).await;
    (child, addr)
}

/// Reads the relay's stderr until it prints its address, then keeps draining it in the
/// background so the relay never blocks on a full pipe.
pub async fn read_address(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("relay printed its address in time")
            .expect("read stderr")
            .expect("relay exited before listening");
        if let Some(a) = line.split("listening on http://").nth(1) {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return a.trim().to_string();
        }
    }
}

/// Sends `requests` webhooks with `concurrency` senders that retry until acknowledged (as real
/// senders do), kills the relay with SIGKILL after `kill_after` acknowledgements, restarts it,
/// and waits until GitHub has every acknowledged event.
pub async fn crash_run(
    bin: PathBuf,
    requests: usize,
    concurrency: usize,
    kill_after: usize,
) -> CrashReport {
    let start = Instant::now();
    let gh = FakeGithub::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let (child, addr) = spawn_relay(&bin, data.path(), &gh.url()).await;
    let addr = Arc::new(RwLock::new(addr));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::with_capacity(requests)));
    let failures = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (addr, next, acked, failures, client) = (
            addr.clone(),
            next.clone(),
            acked.clone(),
            failures.clone(),
            client.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= requests {
                    break;
                }
                loop {
                    let url = format!(
                        "http://{}/octo/hooks/load/webhook?__token=ghp_load",
                        addr.read().expect("addr")
                    );
                    let sent = client.post(url).body(format!("{{\"n\":{n}}}")).send().await;
                    if let Ok(resp) = sent {
                        if resp.status().is_success() {
                            if let Ok(v) = resp.bytes().await.map(|b| {
                                serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default()
                            }) {
                                if let Some(id) = v["event_id"].as_str() {
                                    acked.lock().expect("lock").push(id.to_string());
                                    break;
                                }
                            }
                        }
                    }
                    failures.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }

    // Kill the relay part way through, then bring it back on the same data directory.
    let mut child = child;
    while acked.lock().expect("lock").len() < kill_after {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let (restarted, new_addr) = spawn_relay(&bin, data.path(), &gh.url()).await;
    *addr.write().expect("addr") = new_addr;
    for s in senders {
        s.await.expect("sender");
    }

    let acked: Vec<String> = acked.lock().expect("lock").clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = gh.delivered_ids();
        let missing = acked.iter().filter(|id| !got.contains_key(*id)).count();
        if missing == 0 || Instant::now() > deadline {
            let duplicates = got.values().map(|c| c - 1).sum();
            drop(restarted);
            return CrashReport {
                requests,
                acknowledged: acked.len(),
                delivered_unique: got.len(),
                missing,
                duplicates,
                failed_attempts: failures.load(Ordering::SeqCst),
                seconds: start.elapsed().as_secs_f64(),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
