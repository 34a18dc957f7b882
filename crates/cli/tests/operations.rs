//! Running the relay as an operator does: the binary, real signals, dead letters handled from
//! the command line while it runs, metrics, limits against bad clients, a bad data directory,
//! configuration reload ([`reload`]), the event log's retention under load ([`retention`]).

mod reload;
mod retention;
use crate::support;
use crate::support::cli::bin;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hookflow_relay::store::sqlite::SqliteStore;
use hookflow_relay::store::{
    ClaimRef, Destination, Event, NewEvent, Payload, Recorded, Store, TokenSource,
};
use serde_json::Value;
use support::fake_github::{Answer, FakeGithub};
use support::load::{read_address, spawn_relay};

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .output()
        .expect("runs")
}

fn post(addr: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn dead_letter_store(dir: &Path, n: usize) {
    let mut s = SqliteStore::open(dir).expect("opens");
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            event: Event {
                id: format!("01DEAD{i:08}"),
                received_at: 1_000 + i as i64,
                source: "compat".into(),
                event_type: "webhook".into(),
                payload: Payload::Dispatch(
                    br#"{"event_type":"webhook","client_payload":{}}"#.to_vec(),
                ),
            },
            destinations: vec![Destination::Repo {
                repo: "octo/hooks".into(),
                token: TokenSource::Inline("ghp_x".into()),
            }],
            dedupe_key: None,
        })
        .collect();
    s.insert(&events, 2_000).expect("insert");
    let claimed = s.claim(i64::MAX - 1, n, 60_000).expect("claim");
    let dead: Vec<(ClaimRef, Recorded)> = claimed
        .iter()
        .map(|d| {
            (
                d.into(),
                Recorded::Dead {
                    error: "GitHub answered 404".into(),
                    status: Some(404),
                    tried: None,
                },
            )
        })
        .collect();
    s.record(&dead, 2_000).expect("record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged_while_the_relay_runs() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::not_found());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut relay, addr) = spawn_relay(&bin(), &data, &gh.url()).await;
    for _ in 0..3 {
        assert_eq!(
            post(&addr, "/octo/hooks/a/webhook?__token=ghp_x", "{}"),
            200
        );
    }
    gh.wait_for(3, Duration::from_secs(10)).await;
    let data_arg = data.to_str().expect("utf-8");
    let mut letters: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let out = cli(&[
            "relay",
            "dead-letters",
            "list",
            "--json",
            "--data",
            data_arg,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        letters = serde_json::from_slice::<Value>(&out.stdout)
            .expect("JSON")
            .as_array()
            .cloned()
            .unwrap_or_default();
        if letters.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(letters.len(), 3);
    assert!(letters[0]["last_error"]
        .as_str()
        .expect("error")
        .contains("404"));
    assert_eq!(letters[0]["attempts"], 1);
    let table = cli(&["relay", "dead-letters", "list", "--data", data_arg]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("3 dead letter(s)"));

    // Replay one by its delivery id while the relay runs: it is delivered once.
    gh.set_default(Answer::Accept);
    let first = letters[0]["event_id"].as_str().expect("id").to_string();
    let delivery = letters[0]["id"].as_str().expect("id").to_string();
    let out = cli(&[
        "relay",
        "dead-letters",
        "replay",
        &delivery,
        "--data",
        data_arg,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = Instant::now();
    while gh.delivered_ids().get(&first).copied().unwrap_or(0) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "replayed letter not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = cli(&[
        "relay",
        "dead-letters",
        "replay",
        "01NOTANID",
        "--data",
        data_arg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    // Purge the rest.
    let out = cli(&[
        "relay",
        "dead-letters",
        "purge",
        "--older-than",
        "1h",
        "--data",
        data_arg,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 dead letter(s) deleted"));
    // Without --all or --older-than nothing is deleted: the command says what it needs.
    let out = cli(&["relay", "dead-letters", "purge", "--data", data_arg]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--older-than") && stderr.contains("--all"),
        "{stderr}"
    );
    let out = cli(&[
        "relay",
        "dead-letters",
        "purge",
        "--all",
        "--data",
        data_arg,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 dead letter(s) deleted"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gh.delivered_ids().values().sum::<usize>(),
        1,
        "nothing delivered twice"
    );
    relay.start_kill().expect("kill");
}

#[test]
fn sigkill_during_a_replay_leaves_every_letter_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    dead_letter_store(dir.path(), 20_000);
    let mut child = std::process::Command::new(bin())
        .args(["relay", "dead-letters", "replay", "--all", "--data"])
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(15));
    let _ = child.kill();
    let _ = child.wait();
    let mut s = SqliteStore::open(dir.path()).expect("opens after the kill");
    let c = s.counts().expect("counts");
    assert_eq!(c.pending + c.dead, 20_000, "{c:?}");
    assert!(
        c.pending == 0 || c.dead == 0,
        "a replay is all or nothing: {c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_report_what_happened() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut relay, addr) = spawn_relay(&bin(), &dir.path().join("data"), &gh.url()).await;
    assert_eq!(
        post(&addr, "/octo/hooks/a/webhook?__token=ghp_x", "{}"),
        200
    );
    assert_eq!(post(&addr, "/octo/hooks/a/webhook", "{}"), 401);
    gh.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::new();
    let text = support::relay::get_text(&format!("http://{addr}/metrics")).await;
    for line in [
        "hookflow_received_total 2",
        "hookflow_stored_total 1",
        "hookflow_delivered_total 1",
        "hookflow_rejected_total{reason=\"auth\"} 1",
        "hookflow_queue_depth{state=\"pending\"} 0",
        "hookflow_request_duration_seconds_count 2",
        "hookflow_delivery_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    for probe in ["healthz", "readyz"] {
        let status = client
            .get(format!("http://{addr}/{probe}"))
            .send()
            .await
            .expect(probe)
            .status();
        assert_eq!(status.as_u16(), 200, "{probe}");
    }
    relay.start_kill().expect("kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_and_header_floods_are_cut_off() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("relay.yml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\nlimits:\n  header_timeout: 1s\n  body_timeout: 1s\n  max_headers: 50\n",
            dir.path().join("data").display(),
            gh.url()
        ),
    )
    .expect("write");
    let mut child = tokio::process::Command::new(bin())
        .args(["relay", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let addr = read_address(stderr).await;

    // Headers one byte a second: the connection is closed after the header timeout.
    let a = addr.clone();
    let started = Instant::now();
    let closed_after = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&a).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = s.write_all(b"POST /octo/hooks/a/webhook HTTP/1.1\r\nHo");
        for b in b"st: x\r\nX-Slow: 1" {
            std::thread::sleep(Duration::from_millis(400));
            if s.write_all(&[*b]).is_err() {
                break;
            }
        }
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        started.elapsed()
    })
    .await
    .expect("slow client");
    assert!(
        closed_after < Duration::from_secs(4),
        "slow headers held the connection {closed_after:?}"
    );

    // A body one byte a second: 408.
    let a = addr.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&a).expect("connect");
        s.write_all(b"POST /octo/hooks/a/webhook?__token=t HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{").expect("write");
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(400));
            if s.write_all(b" ").is_err() {
                break;
            }
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("slow body");
    assert!(status.starts_with("HTTP/1.1 408"), "{status}");

    // Too many headers: 431.
    let mut req = String::from("POST /octo/hooks/a/webhook?__token=t HTTP/1.1\r\nHost: x\r\n");
    for i in 0..80 {
        req.push_str(&format!("X-Flood-{i}: {i}\r\n"));
    }
    req.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let a = addr.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&a).expect("connect");
        s.write_all(req.as_bytes()).expect("write");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("flood");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        gh.dispatches().is_empty(),
        "nothing from bad clients was stored"
    );
    let _ = child.start_kill();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_restart_resumes() {
    use tokio::io::AsyncBufReadExt;
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::server_error());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("relay.yml");
    std::fs::write(
        &config,
        "delivery:\n  initial_backoff: 100ms\n  max_backoff: 200ms\n  max_attempts: 1000\n",
    )
    .expect("write");
    let mut child = tokio::process::Command::new(bin())
        .args([
            "relay",
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["--api-url", &gh.url()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("relay exited early");
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().to_string();
        }
        log.push(line);
    };
    for _ in 0..5 {
        assert_eq!(
            post(
                &addr,
                "/octo/hooks/a/webhook?__token=ghp_secrettoken",
                "{\"secret_body\":1}"
            ),
            200
        );
    }
    // A request whose body is still arriving when the signal comes is finished and stored.
    let a = addr.clone();
    let in_flight = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&a).expect("connect");
        s.write_all(b"POST /octo/hooks/a/webhook?__token=ghp_secrettoken HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"late\"").expect("write");
        std::thread::sleep(Duration::from_millis(700));
        s.write_all(b": 1}").expect("write the rest");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    });
    gh.wait_for(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    let answer = in_flight.join().expect("in-flight request");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the request in flight was finished: {answer}"
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits in time")
        .expect("status");
    assert!(status.success(), "{status:?}");
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("\"event_id\""),
        "lifecycle lines carry the event id: {log}"
    );
    assert!(
        !log.contains("ghp_secrettoken") && !log.contains("secret_body"),
        "no token or body in logs: {log}"
    );
    for line in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).expect("every log line is JSON");
    }

    // Restart with GitHub back: all six arrive.
    gh.set_default(Answer::Accept);
    let (mut again, _) = spawn_relay(&bin(), &data, &gh.url()).await;
    let start = Instant::now();
    while gh.delivered_ids().len() < 6 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "delivered {}",
            gh.delivered_ids().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    again.start_kill().expect("kill");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_forces_exit() {
    let gh = FakeGithub::start().await;
    gh.set_default(Answer::Hang);
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr) = spawn_relay(&bin(), &dir.path().join("data"), &gh.url()).await;
    assert_eq!(post(&addr, "/octo/hooks/a/webhook?__token=t", "{}"), 200);
    gh.wait_for(1, Duration::from_secs(10)).await;
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("a second signal does not wait for the hung delivery")
        .expect("status");
    assert_eq!(status.code(), Some(130));
}

#[test]
fn a_bad_data_directory_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let db = data.join("events.db");
    std::fs::write(&db, vec![b'x'; 8192]).expect("write");
    let out = cli(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("left untouched"), "{stderr}");
    assert_eq!(std::fs::read(&db).expect("read"), vec![b'x'; 8192]);

    // A store locked by another process: refused with a message, not corrupted.
    let dir = tempfile::tempdir().expect("tempdir");
    dead_letter_store(dir.path(), 3);
    let holder = rusqlite::Connection::open(dir.path().join("events.db")).expect("open");
    holder.execute_batch("BEGIN EXCLUSIVE;").expect("lock");
    let out = cli(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    holder.execute_batch("ROLLBACK;").expect("unlock");
    drop(holder);
    let mut s = SqliteStore::open(dir.path()).expect("opens");
    assert_eq!(s.counts().expect("counts").dead, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_on_the_same_data_refuses_to_start() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut first, _) = spawn_relay(&bin(), &data, &gh.url()).await;
    let out = cli(&[
        "relay",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another hookflow relay is using"));
    first.start_kill().expect("kill");
}

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, "listen: 0.0.0.0:8080\nendpoints:\n  - {slug: gh, repo: octo/hooks, token_env: HOOKFLOW_TEST_UNSET_TOKEN}\n").expect("write");
    let out = cli(&[
        "relay",
        "--check-config",
        "--config",
        good.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: listen 0.0.0.0:8080"));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("HOOKFLOW_TEST_UNSET_TOKEN, which is not set"));

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "listen: 0.0.0.0:8080\nlimits:\n  max_body_bytes: lots\n",
    )
    .expect("write");
    let out = cli(&[
        "relay",
        "--check-config",
        "--config",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yml:3:"), "{stderr}");

    let two = dir.path().join("two.yml");
    std::fs::write(&two, "endpoints:\n  - {slug: a, repo: nope, token_env: T}\n  - {slug: b, repo: o/r, token_env: T, event_type: x, event_type_path: y}\n").expect("write");
    let out = cli(&[
        "relay",
        "--check-config",
        "--config",
        two.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("endpoint `a`") && stderr.contains("endpoint `b`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_one_repository_keep_under_its_rate_limit() {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\ndelivery:\n  rate_limit_per_minute: 120\n",
        dir.path().join("data").display(),
        gh.url()
    );
    let config = hookflow_relay::config::RelayConfig::parse(&text, "t.yml", &Default::default())
        .expect("config");
    let relay = hookflow_relay::start(
        config,
        hookflow_protocol::Environment::with_vars(Vec::new()),
    )
    .await
    .expect("starts");
    let addr = relay.addr.to_string();
    let posting = Instant::now();
    for _ in 0..125 {
        assert_eq!(post(&addr, "/octo/hooks/a/webhook?__token=t", "{}"), 200);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let early = gh.delivered().len();
    // The bucket refills at 2 a second from the first request on: on a loaded machine the
    // posting itself takes a while, and those refills count too.
    let refilled = (2.0 * posting.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (120..=120 + refilled).contains(&early),
        "a burst of one minute's worth, then 2 a second: {early} after {:?}",
        posting.elapsed()
    );
    let start = Instant::now();
    while gh.delivered().len() < 125 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the rest arrive as the bucket refills"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = relay.store.counts().await.expect("counts");
    assert_eq!(
        counts.dead, 0,
        "waiting for the rate limit spends no attempt"
    );
    relay.stop().await;
}

#[test]
fn shipped_deployment_files_are_valid() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let out = std::process::Command::new(bin())
        .args(["relay", "--check-config", "--config"])
        .arg(root.join("deploy/relay.yml"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(root.join("deploy/hookflow-relay.service")).expect("unit");
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=hookflow",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
    // Where systemd is installed, let it check the unit too (with this build's binary).
    if let Ok(check) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        if check.status.success() {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("hookflow-relay.service");
            std::fs::write(
                &path,
                unit.replace("/usr/local/bin/hookflow", bin().to_str().expect("utf-8")),
            )
            .expect("write");
            let out = std::process::Command::new("systemd-analyze")
                .arg("verify")
                .arg(&path)
                .output()
                .expect("runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !stderr.contains("hookflow-relay.service:"),
                "{stderr}"
            );
        }
    }
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("USER 65532")
            && dockerfile.contains("VOLUME [\"/data\"]")
            && dockerfile.matches("FROM ").count() == 2
    );
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("relay.log");
    let mut child = std::process::Command::new(bin())
        .args(["relay", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("HOOKFLOW_LOG", "info")
        .env_remove("HOOKFLOW_LOG_FORMAT")
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("starts");
    let started = std::time::Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("relay listening") || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("relay listening"), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes in a file: {text:?}");
}

#[test]
fn validate_cross_checks_a_relay_config_against_the_triggers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wf = dir.path().join("workflows");
    std::fs::create_dir_all(&wf).expect("mkdir");
    std::fs::write(wf.join("shop.yml"), "on:\n  webhook: {}\n").expect("write");
    std::fs::write(
        wf.join("billing.yml"),
        "on:\n  webhook:\n    event_types: [invoice.paid]\n",
    )
    .expect("write");
    let relay = dir.path().join("relay.yml");
    std::fs::write(
        &relay,
        "endpoints:\n  - slug: shop\n    repo: o/r\n    token_env: T\n    event_type_path: type\n  - slug: orders\n    repo: o/r\n    token_env: T\n    event_type: order.paid\n    path: /shop/webhook\n  - slug: billing\n    repo: o/r\n    token_env: T\n    event_type: invoice.paid\n  - slug: lost\n    repo: o/r\n    token_env: T\n",
    )
    .expect("write");
    let out = cli(&[
        "validate",
        "--workflows",
        wf.to_str().expect("utf-8"),
        "--relay-config",
        relay.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("relay.yml:2: endpoint `shop` takes its event type from the body"),
        "{stderr}"
    );
    assert!(
        stderr.contains("relay.yml:6: endpoint `orders` sends event type `order.paid`")
            && stderr.contains("add `event_types: [order.paid]`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("endpoint `billing`"),
        "billing is right: {stderr}"
    );
    assert!(
        stderr.contains(
            "endpoint `lost` dispatches path /lost/webhook, which reaches no webhook trigger"
        ),
        "{stderr}"
    );
}

#[test]
fn check_config_reports_every_type_error_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "listen: 0.0.0.0:8080\nlimits:\n  max_body_bytes: lots\n  max_headers: many\ndelivery:\n  concurrency: -3\ncompat_route: maybe\nendpoints:\n  - slug: a\n    repo: o/r\n    token_env: [T]\n  - slug: b\n    repo: o/r\nlisen: x\n",
    )
    .expect("write");
    let out = cli(&[
        "relay",
        "--check-config",
        "--config",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.yml:3: `limits.max_body_bytes`: invalid type",
        "bad.yml:4: `limits.max_headers`",
        "bad.yml:6: `delivery.concurrency`",
        "bad.yml:7: `compat_route`",
        "bad.yml:11: `endpoints.a.token_env`",
        "bad.yml:14: unknown key `lisen`",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
}

#[test]
fn check_config_says_where_each_effective_value_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relay.yml");
    std::fs::write(
        &file,
        "listen: 0.0.0.0:9000\napi_url: https://ghe.example.com/api/v3\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin())
        .args(["relay", "--check-config", "--config"])
        .arg(&file)
        .args(["--data", "/srv/hookflow"])
        .env("HOOKFLOW_LISTEN", "127.0.0.1:7000")
        .env_remove("GITHUB_API_URL")
        .env_remove("HOOKFLOW_DATA")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("listen   = 127.0.0.1:7000 (environment HOOKFLOW_LISTEN, overriding")
            && stdout.contains("relay.yml:1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("data     = /srv/hookflow (flag --data)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("api_url  = https://ghe.example.com/api/v3 (")
            && stdout.contains("relay.yml:2)"),
        "{stdout}"
    );
}

#[test]
fn the_store_is_migrated_by_command_or_at_start_and_never_under_no_migrate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    // --no-migrate refuses a store that needs migrating (here: none yet) and creates nothing.
    let out = cli(&[
        "relay",
        "--no-migrate",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data_arg,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("hookflow relay migrate"), "{stderr}");
    assert!(!data.join("events.db").exists());
    // The command migrates, and says so; a second run has nothing to do.
    let out = cli(&["relay", "migrate", "--data", data_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("went from schema 0 to"));
    let out = cli(&["relay", "migrate", "--data", data_arg]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to do"));
    // The operator's commands work on the migrated store without changing it.
    let out = cli(&["relay", "dead-letters", "list", "--data", data_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
