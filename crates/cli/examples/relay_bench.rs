//! Load tools for the relay, used by `scripts/bench-relay`:
//!
//! - `relay_bench fake-github [ADDR]`: a fake GitHub dispatches API that accepts everything and
//!   serves counts at `GET /_stats` (try the relay locally without a token: point
//!   `hookflow relay --api-url` at it).
//! - `relay_bench crash HOOKFLOW_BIN REQUESTS CONCURRENCY KILL_AFTER`: send REQUESTS webhooks,
//!   `kill -9` the relay after KILL_AFTER acknowledgements, restart it, and count deliveries.
//! - `relay_bench batching SECONDS`: how many webhooks one repository takes at the default
//!   dispatch rate limit (80 a minute), batching off and on (`max_events: 100`), under a steady
//!   stream of 200 a second; and the delivery latency of a lone event, off and on.
//! - `relay_bench event-log EVENTS [POSTGRES_ADMIN_URL]`: the event log's list queries over a
//!   store of EVENTS events (SQLite, or a scratch PostgreSQL database), each filter timed.
//! - `relay_bench seed-log DIR EVENTS DAYS`: a SQLite store in DIR holding EVENTS delivered
//!   events at least DAYS days old, for the retention under load (`scripts/bench-retention`).

use hookflow_testkit as support;

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fake-github") => {
            let addr = args.get(1).map_or("127.0.0.1:0", String::as_str);
            let gh = support::fake_github::FakeGithub::start_on(addr).await;
            println!("fake GitHub listening on {}", gh.url());
            let _ = tokio::signal::ctrl_c().await;
        }
        Some("crash") if args.len() == 5 => {
            let num = |i: usize| {
                args[i]
                    .parse::<usize>()
                    .unwrap_or_else(|_| panic!("argument {i} must be a number"))
            };
            let report =
                support::load::crash_run(PathBuf::from(&args[1]), num(2), num(3), num(4)).await;
            println!(
                "crash test: {} requests, {} acknowledged, {} delivered, {} acknowledged but missing, {} delivered twice, {} failed attempts retried, {:.1} s",
                report.requests,
                report.acknowledged,
                report.delivered_unique,
                report.missing,
                report.duplicates,
                report.failed_attempts,
                report.seconds
            );
            if report.missing > 0 {
                std::process::exit(1);
            }
        }
        Some("batching") if args.len() == 2 => {
            let seconds = args[1]
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("SECONDS must be a number"));
            batching(seconds).await;
        }
        Some("seed-log") if args.len() == 4 => {
            let n = args[2]
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("EVENTS must be a number"));
            let days = args[3]
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("DAYS must be a number"));
            seed_log(std::path::Path::new(&args[1]), n, days);
        }
        Some("event-log") if args.len() >= 2 => {
            let n = args[1]
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("EVENTS must be a number"));
            event_log(n, args.get(2).map(String::as_str)).await;
        }
        _ => {
            eprintln!("usage: relay_bench fake-github [ADDR] | relay_bench crash HOOKFLOW_BIN REQUESTS CONCURRENCY KILL_AFTER | relay_bench batching SECONDS | relay_bench event-log EVENTS [POSTGRES_ADMIN_URL] | relay_bench seed-log DIR EVENTS DAYS");
            std::process::exit(2);
        }
    }
}

/// A relay with the default dispatch rate limit, its endpoint `load` batching or not.
async fn batching_relay(
    dir: &std::path::Path,
    gh: &support::fake_github::FakeGithub,
    batching: &str,
) -> hookflow_relay::Running {
    let text = format!(
        "listen: 127.0.0.1:0\ndata: {}\napi_url: {}\nendpoints:\n  - slug: load\n    repo: acme/busy\n    token_env: BUSY_TOKEN\n    batching: {batching}\n",
        dir.display(),
        gh.url()
    );
    let config = hookflow_relay::config::RelayConfig::parse(
        &text,
        "bench.yml",
        &hookflow_relay::config::Overrides::default(),
    )
    .expect("config");
    let env =
        hookflow_protocol::Environment::with_vars(vec![("BUSY_TOKEN".into(), "ghp_bench".into())]);
    hookflow_relay::start(config, env)
        .await
        .expect("relay starts")
}

/// Events per hour one repository takes, batching off and on, and a lone event's latency.
async fn batching(seconds: u64) {
    use std::time::{Duration, Instant};
    let client = reqwest::Client::new();
    for (name, batching) in [
        ("off", "{mode: off}"),
        ("on", "{mode: adaptive, max_events: 100}"),
    ] {
        // A lone event on a quiet lane, 20 times: from the request to GitHub's receipt.
        let gh = support::fake_github::FakeGithub::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = batching_relay(dir.path(), &gh, batching).await;
        let url = format!("http://{}/hooks/load", relay.addr);
        let mut lone = Vec::new();
        for n in 0..20 {
            let sent = Instant::now();
            let resp = client
                .post(&url)
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status().as_u16(), 202);
            gh.wait_for(n + 1, Duration::from_secs(10)).await;
            lone.push(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        lone.sort();
        relay.stop().await;
        // A steady stream of 200 a second for `seconds`.
        let gh = support::fake_github::FakeGithub::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let relay = batching_relay(dir.path(), &gh, batching).await;
        let url = format!("http://{}/hooks/load", relay.addr);
        let start = Instant::now();
        let mut sent = 0u64;
        let mut half = None;
        while start.elapsed() < Duration::from_secs(seconds) {
            let due = (start.elapsed().as_secs_f64() * 200.0) as u64;
            while sent < due {
                let c = client.clone();
                let u = url.clone();
                let body = format!("{{\"n\":{sent},\"type\":\"invoice.paid\"}}");
                tokio::spawn(async move {
                    let _ = c.post(&u).body(body).send().await;
                });
                sent += 1;
            }
            if half.is_none() && start.elapsed() >= Duration::from_secs(seconds / 2) {
                half = Some((Instant::now(), gh.delivered_ids().len()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered = gh.delivered_ids().len();
        let dispatches = gh.dispatches().len();
        let (half_at, half_delivered) = half.expect("half-way figures");
        // The second half: past the first minute's burst allowance when SECONDS >= 120.
        let rate = (delivered - half_delivered) as f64 / half_at.elapsed().as_secs_f64();
        println!(
            "batching {name}: {sent} sent in {seconds} s, {delivered} delivered in {dispatches} dispatches; second half {rate:.1} events/s = {:.0} events/hour; lone event p50 {:.1} ms, max {:.1} ms",
            rate * 3600.0,
            lone[lone.len() / 2].as_secs_f64() * 1000.0,
            lone[lone.len() - 1].as_secs_f64() * 1000.0,
        );
        relay.stop().await;
    }
}

/// The event log's list queries over `n` events: a store filled (by SQL, fast) with `n` events
/// over six days — three endpoints, one repository for all and a second for every tenth, one
/// in 500 dead, the newest 100 pending, an attempt for each delivery — then each filter's page
/// of 50 timed 20 times (median and worst).
async fn event_log(n: usize, postgres: Option<&str>) {
    use hookflow_relay::store::{DeliveryStatus, EventFilter, Store as _, StoreHandle};
    let now = chrono::Utc::now().timestamp_millis();
    let span = 6 * 86_400_000i64;
    let base = now - span;
    let at = |i: usize| base + (i as i64) * span / (n as i64);
    let ids: Vec<String> = (0..n)
        .map(|i| ulid::Ulid::from_parts(at(i) as u64, i as u128).to_string())
        .collect();
    let state = |i: usize| {
        if i + 100 >= n {
            "pending"
        } else if i.is_multiple_of(500) {
            "dead"
        } else {
            "delivered"
        }
    };
    let source = |i: usize| ["github", "stripe", "shop"][i % 3];
    let path = |i: usize| format!("/{}/webhook?ref=feature-{}", source(i), i % 1000);
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut _scratch = None;
    let store = match postgres {
        None => {
            support::seed::fill_sqlite_log(dir.path(), &ids, at, state, source, path);
            let store =
                hookflow_relay::store::sqlite::SqliteStore::open(dir.path()).expect("store");
            StoreHandle::Sqlite(
                hookflow_relay::store::sqlite::SqliteHandle::start(
                    store,
                    std::sync::Arc::new(hookflow_protocol::SystemClock),
                )
                .expect("thread"),
            )
        }
        Some(url) => {
            let db = hookflow_relay::store::postgres::scratch::ScratchDb::create(url)
                .await
                .expect("scratch database");
            let pg = hookflow_relay::store::postgres::PgStore::open(&db.location, true)
                .await
                .expect("store");
            let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
                .await
                .expect("connects");
            tokio::spawn(conn);
            for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
                let cid: Vec<&str> = chunk.iter().map(|&i| ids[i].as_str()).collect();
                let cat: Vec<f64> = chunk.iter().map(|&i| at(i) as f64).collect();
                let csrc: Vec<&str> = chunk.iter().map(|&i| source(i)).collect();
                let cpath: Vec<String> = chunk.iter().map(|&i| path(i)).collect();
                let ckey: Vec<String> = chunk.iter().map(|&i| format!("d-{i}")).collect();
                let cstate: Vec<&str> = chunk.iter().map(|&i| state(i)).collect();
                let csecond: Vec<bool> = chunk.iter().map(|&i| i % 10 == 0).collect();
                client
                    .execute(
                        "WITH e AS (
                             INSERT INTO hookflow.events (id, received_at, source, event_type, payload, body_bytes, payload_kind, method, path, headers, delivery_key)
                             SELECT i, to_timestamp(t / 1000), s, 'webhook', '\\x7b7d', 2, 'request', 'POST', p, '{}', k
                             FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[]) AS x(i, t, s, p, k)
                         ), d AS (
                             INSERT INTO hookflow.deliveries (event_id, destination, lane, token, state, attempts, next_at, updated_at)
                             SELECT i, dest, dest, 'env:T', st, 1, to_timestamp(t / 1000), to_timestamp(t / 1000)
                             FROM unnest($1::text[], $2::float8[], $6::text[], $7::bool[]) AS x(i, t, st, second),
                                  LATERAL (SELECT 'repo:octo/hooks' AS dest UNION ALL
                                           SELECT 'repo:octo/billing' WHERE second) AS ds
                             RETURNING id, event_id, state, updated_at
                         )
                         INSERT INTO hookflow.attempts (delivery_id, event_id, chain, at, took_ms, status, outcome)
                         SELECT id, event_id, 0, updated_at, 120, 204, state FROM d",
                        &[&cid, &cat, &csrc, &cpath, &ckey, &cstate, &csecond],
                    )
                    .await
                    .expect("fill");
            }
            client.batch_execute("ANALYZE hookflow.events; ANALYZE hookflow.deliveries; ANALYZE hookflow.attempts").await.expect("analyze");
            _scratch = Some(db);
            StoreHandle::Postgres(pg)
        }
    };
    println!(
        "{} events on {} filled in {:.1} s; a page of 50, 20 times each:",
        n,
        store.engine(),
        started.elapsed().as_secs_f64()
    );
    let mid = ids[n / 2].clone();
    let cases: Vec<(&str, EventFilter)> = vec![
        ("newest, no filter", EventFilter::default()),
        (
            "status=dead",
            EventFilter {
                status: Some(DeliveryStatus::Dead),
                ..Default::default()
            },
        ),
        (
            "status=pending",
            EventFilter {
                status: Some(DeliveryStatus::Pending),
                ..Default::default()
            },
        ),
        (
            "status=delivered",
            EventFilter {
                status: Some(DeliveryStatus::Delivered),
                ..Default::default()
            },
        ),
        (
            "repository=octo/billing",
            EventFilter {
                destination: Some("repo:octo/billing".into()),
                ..Default::default()
            },
        ),
        (
            "source=stripe",
            EventFilter {
                source: Some("stripe".into()),
                ..Default::default()
            },
        ),
        (
            "delivery=d-123456",
            EventFilter {
                delivery_key: Some(format!("d-{}", n / 8)),
                ..Default::default()
            },
        ),
        (
            "q=feature-7 (text in path)",
            EventFilter {
                path_contains: Some("feature-7".into()),
                ..Default::default()
            },
        ),
        (
            "a day in the middle",
            EventFilter {
                since: Some(base + 2 * 86_400_000),
                until: Some(base + 3 * 86_400_000),
                ..Default::default()
            },
        ),
        (
            "status=dead, page in the middle",
            EventFilter {
                status: Some(DeliveryStatus::Dead),
                before: Some(mid.clone()),
                ..Default::default()
            },
        ),
        (
            "source=shop, page in the middle",
            EventFilter {
                source: Some("shop".into()),
                before: Some(mid),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in cases {
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            found = store
                .list_events(filter.clone(), 50)
                .await
                .expect("lists")
                .len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "  {name:<34} {found:>3} events  median {:>7.2} ms  worst {:>7.2} ms",
            times[10].as_secs_f64() * 1e3,
            times[19].as_secs_f64() * 1e3
        );
    }
}

/// [`support::seed::old_delivered`], said.
fn seed_log(dir: &std::path::Path, n: usize, days: i64) {
    let started = std::time::Instant::now();
    support::seed::old_delivered(dir, n, days);
    println!(
        "{n} delivered events, {days} days old and older, in {} ({:.1} s)",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
}
