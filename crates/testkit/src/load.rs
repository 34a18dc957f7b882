//! A crash test under load: send webhooks to the relay binary, `kill -9` it part way, restart it
//! on the same data directory, and count what GitHub (the fake) received.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::fake_github::FakeGithub;

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

/// The settings every load test starts with: no rate limits, 32 deliveries in flight.
const LOAD_CONFIG: &str = "delivery:\n  rate_limit_per_minute: 0\n  concurrency: 32\nlimits:\n  compat_requests_per_minute: 0\n  max_requests_per_client: 0\n";

/// A `hookflow relay` process.
pub struct RelayProcess {
    pub child: Child,
    /// `host:port` it listens on.
    pub addr: String,
    /// Its stderr lines so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Runs `command` (a `hookflow relay …`), its stderr kept, and waits until it listens.
    pub async fn start(mut command: Command) -> RelayProcess {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("relay binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = read_address_into(child.stderr.take().expect("stderr"), log.clone()).await;
        RelayProcess { child, addr, log }
    }

    /// Whether a line of its log contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| l.contains(text))
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }
}

/// Starts `hookflow relay` on `data` (and `store`, when given) with the load settings plus
/// `extra` YAML (`delivery:` keys go in `extra_delivery`, which joins the `delivery:` block).
pub async fn spawn_relay_on(
    bin: &Path,
    data: &Path,
    api_url: &str,
    store: Option<&str>,
    extra_delivery: &str,
) -> RelayProcess {
    let config = data.with_extension("yml");
    let mut text = LOAD_CONFIG.replace("delivery:\n", &format!("delivery:\n{extra_delivery}"));
    if let Some(store) = store {
        text.push_str(&format!("store: {store}\n"));
    }
    std::fs::write(&config, text).expect("write config");
    let mut command = Command::new(bin);
    command
        .arg("relay")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--api-url", api_url])
        .env("HOOKFLOW_LOG", "warn");
    RelayProcess::start(command).await
}

/// Starts `hookflow relay` and returns it with the address it printed.
pub async fn spawn_relay(bin: &Path, data: &Path, api_url: &str) -> (Child, String) {
    let r = spawn_relay_on(bin, data, api_url, None, "").await;
    (r.child, r.addr)
}

/// Reads the relay's stderr until it prints its address, then keeps draining it in the
/// background so the relay never blocks on a full pipe.
pub async fn read_address(stderr: tokio::process::ChildStderr) -> String {
    read_address_into(stderr, Arc::default()).await
}

/// As [`read_address`], keeping every line in `log`.
async fn read_address_into(
    stderr: tokio::process::ChildStderr,
    log: Arc<Mutex<Vec<String>>>,
) -> String {
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("relay printed its address in time")
            .expect("read stderr")
            .expect("relay exited before listening");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .map(|a| a.trim().to_string());
        log.lock().expect("log").push(line);
        if let Some(a) = addr {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().expect("log").push(line);
                }
            });
            return a;
        }
    }
}

/// A load run: `requests` webhooks from `concurrency` senders spread over `relays` relay
/// processes on one store.
pub struct LoadPlan {
    pub bin: PathBuf,
    /// Relay processes (more than one needs a shared `store`).
    pub relays: usize,
    /// The store URL all relays share; `None`: SQLite in the data folder.
    pub store: Option<String>,
    /// More `delivery:` keys (YAML lines indented two spaces).
    pub extra_delivery: String,
    pub requests: usize,
    pub concurrency: usize,
    /// `kill -9` relay 0 after this many acknowledgements, then restart it on its data folder.
    pub kill_after: Option<usize>,
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
    load_run(LoadPlan {
        bin,
        relays: 1,
        store: None,
        extra_delivery: String::new(),
        requests,
        concurrency,
        kill_after: Some(kill_after),
    })
    .await
}

/// Runs `plan`: senders retry until acknowledged, trying the next relay when one does not
/// answer (as a load balancer would); then waits until GitHub has every acknowledged event.
pub async fn load_run(plan: LoadPlan) -> CrashReport {
    let LoadPlan {
        bin,
        relays,
        store,
        extra_delivery,
        requests,
        concurrency,
        kill_after,
    } = plan;
    let start = Instant::now();
    let gh = FakeGithub::start().await;
    let dirs: Vec<tempfile::TempDir> = (0..relays)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut procs = Vec::new();
    for d in &dirs {
        procs.push(
            spawn_relay_on(&bin, d.path(), &gh.url(), store.as_deref(), &extra_delivery).await,
        );
    }
    let addrs = Arc::new(RwLock::new(
        procs.iter().map(|p| p.addr.clone()).collect::<Vec<_>>(),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::with_capacity(requests)));
    let failures = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (addrs, next, acked, failures, client) = (
            addrs.clone(),
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
                for attempt in 0.. {
                    let url = {
                        let addrs = addrs.read().expect("addrs");
                        format!(
                            "http://{}/octo/hooks/load/webhook?__token=ghp_load",
                            addrs[(n + attempt) % addrs.len()]
                        )
                    };
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

    // Kill relay 0 part way through, then bring it back on the same data directory.
    if let Some(kill_after) = kill_after {
        while acked.lock().expect("lock").len() < kill_after {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut first = procs.remove(0);
        first.child.start_kill().expect("SIGKILL");
        let _ = first.child.wait().await;
        let again = spawn_relay_on(
            &bin,
            dirs[0].path(),
            &gh.url(),
            store.as_deref(),
            &extra_delivery,
        )
        .await;
        addrs.write().expect("addrs")[0] = again.addr.clone();
        procs.insert(0, again);
    }
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
            drop(procs);
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
