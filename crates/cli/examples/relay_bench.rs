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

#[path = "../tests/support/mod.rs"]
mod support;

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
        _ => {
            eprintln!("usage: relay_bench fake-github [ADDR] | relay_bench crash HOOKFLOW_BIN REQUESTS CONCURRENCY KILL_AFTER | relay_bench batching SECONDS");
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
