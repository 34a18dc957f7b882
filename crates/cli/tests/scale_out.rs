//! Relay processes on one PostgreSQL under load and faults: several relays deliver every
//! webhook exactly once; a relay killed with SIGKILL loses nothing; a database outage answers
//! 503 and acknowledges nothing it did not commit; a relay frozen past its lease cannot record
//! over the relay that took its delivery over.

use crate::support;
use crate::support::cli::bin;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookflow_relay::store::postgres::scratch::ScratchDb;
use support::fake_github::{Answer, FakeGithub};
use support::load::{load_run, spawn_relay_on, LoadPlan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relay_processes_deliver_20k_webhooks_exactly_once() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let report = load_run(LoadPlan {
        bin: bin(),
        relays: 3,
        store: Some(db.url.clone()),
        extra_delivery: String::new(),
        requests: 20_000,
        concurrency: 48,
        kill_after: None,
    })
    .await;
    println!("{report:?}");
    assert_eq!(report.acknowledged, 20_000, "{report:?}");
    assert_eq!(report.missing, 0, "{report:?}");
    assert_eq!(report.delivered_unique, 20_000, "{report:?}");
    assert_eq!(report.duplicates, 0, "nothing failed: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_under_load_loses_nothing_its_peer_and_its_restart_deliver_all() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    // A short lease, so the killed relay's claims are handed over within seconds.
    let report = load_run(LoadPlan {
        bin: bin(),
        relays: 2,
        store: Some(db.url.clone()),
        extra_delivery: "  timeout: 2s\n  lease: 4s\n".into(),
        requests: 50_000,
        concurrency: 48,
        kill_after: Some(20_000),
    })
    .await;
    println!("{report:?}");
    assert_eq!(report.acknowledged, 50_000, "senders retry: {report:?}");
    assert_eq!(
        report.missing, 0,
        "an acknowledged event was lost: {report:?}"
    );
    // Only deliveries in flight at the kill (32 slots) may arrive twice.
    assert!(report.duplicates <= 32, "{report:?}");
}

/// Makes the test's database unreachable for `hold`: new sessions refused, open ones ended.
async fn refuse_sessions(db: &ScratchDb, hold: Duration) {
    let admin = db.admin_client().await.expect("admin session");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            db.name
        ))
        .await
        .expect("refuse sessions");
    let until = Instant::now() + hold;
    while Instant::now() < until {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db.name],
            )
            .await
            .expect("end sessions");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
        .await
        .expect("allow sessions");
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, its own port), so that
/// it can be restarted without disturbing the tests that share the machine's server.
struct PrivateServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PrivateServer {
    /// `None` (outside CI) when PostgreSQL's programs are not installed.
    fn start() -> Option<PrivateServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("initdb").is_file())
        });
        let Some(bin) = bin else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "PostgreSQL's programs (initdb, pg_ctl) are missing; scripts/ensure-postgres installs them"
            );
            eprintln!("skipped: no initdb under /usr/lib/postgresql");
            return None;
        };
        // The server refuses to run as root: it runs as the postgres user then.
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id");
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().expect("tempdir");
        if as_postgres {
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivateServer {
            dir,
            bin,
            port,
            as_postgres,
        };
        let data = server.dir.path().join("data");
        server.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        server.pg_ctl(&["start"]);
        Some(server)
    }

    /// One of PostgreSQL's programs, as the user the server runs as.
    fn command(&self, program: &str) -> std::process::Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().expect("runs");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl(&self, action: &[&str]) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec![
            "-D",
            data.to_str().expect("utf-8 path"),
            "-l",
            log.to_str().expect("utf-8 path"),
            "-o",
            &options,
            "-w",
            "-m",
            "fast",
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "stop"])
            .output();
    }
}

/// What happens to the database while webhooks arrive.
enum Outage<'a> {
    /// The relay's database refuses sessions and its sessions are ended, for a while.
    Database(&'a ScratchDb),
    /// The server restarts (`pg_ctl restart -m fast`), twice.
    Restart(&'a PrivateServer),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_acknowledges_only_what_was_committed_and_recovers() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    outage_under_load(&db.url, Outage::Database(&db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_under_load_answers_503_and_loses_nothing() {
    let Some(server) = PrivateServer::start() else {
        return;
    };
    outage_under_load(&server.url(), Outage::Restart(&server)).await;
}

/// Sends webhooks from 16 senders to one relay on `url` while `outage` happens: every answer is
/// 200 or 503, `/readyz` fails during it, the relay takes webhooks again after it, and every
/// acknowledged webhook reaches GitHub.
async fn outage_under_load(url: &str, outage: Outage<'_>) {
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = spawn_relay_on(&bin(), dir.path(), &gh.url(), Some(url), "").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    // (status, event id, whether the outage was on when the request was sent)
    let answers = Arc::new(Mutex::new(Vec::<(u16, Option<String>, bool)>::new()));
    let down = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..16 {
        let (client, stop, answers, down) =
            (client.clone(), stop.clone(), answers.clone(), down.clone());
        let url = format!(
            "http://{}/octo/hooks/ci/webhook?__token=ghp_outage",
            relay.addr
        );
        senders.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let during = down.load(Ordering::SeqCst);
                let resp = client
                    .post(&url)
                    .body(format!("{{\"sender\":{s},\"n\":{n}}}"))
                    .send()
                    .await
                    .expect("the relay answers, database or not");
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let id = body["event_id"].as_str().map(str::to_string);
                answers.lock().expect("answers").push((status, id, during));
                if status != 200 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let ready = |client: reqwest::Client, addr: String| async move {
        client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ready(client.clone(), relay.addr.clone()).await, 200);
    let before = answers.lock().expect("answers").len();

    down.store(true, Ordering::SeqCst);
    let readiness_during = match outage {
        Outage::Database(db) => {
            let probe = async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                ready(client.clone(), relay.addr.clone()).await
            };
            tokio::join!(refuse_sessions(db, Duration::from_secs(4)), probe).1
        }
        Outage::Restart(server) => {
            // Stopped long enough for /readyz to see it, then started; then a quick restart.
            let pg_ctl = |action| tokio::task::block_in_place(|| server.pg_ctl(&[action]));
            pg_ctl("stop");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let during = ready(client.clone(), relay.addr.clone()).await;
            pg_ctl("start");
            tokio::time::sleep(Duration::from_secs(1)).await;
            pg_ctl("restart");
            during
        }
    };
    down.store(false, Ordering::SeqCst);
    assert_eq!(
        readiness_during, 503,
        "/readyz fails while the database is down"
    );

    // Recovery: within a few seconds the relay takes webhooks again.
    let back = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let recent_ok = answers
            .lock()
            .expect("answers")
            .iter()
            .rev()
            .take(16)
            .filter(|a| a.0 == 200 && !a.2)
            .count();
        if recent_ok >= 16 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "the relay took no webhooks after the database came back"
        );
    }
    assert_eq!(ready(client.clone(), relay.addr.clone()).await, 200);
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.await.expect("sender");
    }

    let answers = answers.lock().expect("answers").clone();
    let refused = answers.iter().filter(|a| a.0 == 503).count();
    assert!(
        refused > 0,
        "requests during the outage were refused with 503"
    );
    let odd: Vec<_> = answers
        .iter()
        .filter(|a| a.0 != 200 && a.0 != 503)
        .collect();
    assert!(odd.is_empty(), "only 200 or 503: {odd:?}");
    assert!(before > 0, "webhooks were taken before the outage");
    // Every acknowledged webhook was committed: each reaches GitHub.
    let acked: Vec<String> = answers
        .iter()
        .filter(|a| a.0 == 200)
        .map(|a| a.1.clone().expect("an acknowledgement names its event"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = gh.delivered_ids();
        let missing: Vec<&String> = acked.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged webhooks never reached GitHub, e.g. {}",
            missing.len(),
            acked.len(),
            missing[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} answers: {} acknowledged, {refused} refused with 503",
        answers.len(),
        acked.len()
    );
}

/// The delivery row of the only event: (state, attempts, last_error).
async fn the_delivery(db: &ScratchDb) -> Option<(String, i32, Option<String>)> {
    let c = db.client().await.expect("session");
    c.query_opt(
        "SELECT state, attempts, last_error FROM hookflow.deliveries",
        &[],
    )
    .await
    .expect("query")
    .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_past_its_lease_cannot_record_over_the_relay_that_took_over() {
    let Some(db) = ScratchDb::for_tests().await else {
        return;
    };
    let gh = FakeGithub::start().await;
    // A's dispatch is answered late; B's attempt fails and is retried an hour later.
    gh.script(vec![
        Answer::AcceptAfter(Duration::from_millis(1500)),
        Answer::server_error(),
    ]);
    let settings = "  timeout: 2s\n  lease: 3s\n  initial_backoff: 1h\n";
    let (da, db_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = spawn_relay_on(&bin(), da.path(), &gh.url(), Some(&db.url), settings).await;
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/octo/hooks/ci/webhook?__token=ghp_frozen",
            a.addr
        ))
        .body("{}")
        .send()
        .await
        .expect("posted");
    assert_eq!(resp.status(), 200);
    // A has sent its dispatch: freeze it before the answer comes.
    let start = Instant::now();
    while gh.dispatches().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "A never dispatched"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.signal("STOP");
    assert_eq!(
        the_delivery(&db).await.map(|d| d.0).as_deref(),
        Some("inflight")
    );

    // B starts; once A's lease runs out it claims the delivery, GitHub fails it, and B records
    // a retry.
    let b = spawn_relay_on(&bin(), db_dir.path(), &gh.url(), Some(&db.url), settings).await;
    let start = Instant::now();
    let after_b = loop {
        let d = the_delivery(&db)
            .await
            .expect("the delivery is still there");
        if d.0 == "pending" && d.1 == 1 {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "B did not take the delivery over: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(gh.dispatches().len(), 2, "B dispatched once");
    assert!(
        after_b.2.as_deref().unwrap_or_default().contains("500"),
        "{after_b:?}"
    );

    // A wakes and finishes its dispatch: its result is refused, B's stands.
    a.signal("CONT");
    let start = Instant::now();
    while !a.logged("lease ran out") {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "A never tried to record: {:?}",
            a.log.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(the_delivery(&db).await, Some(after_b));
    drop(b);
}
