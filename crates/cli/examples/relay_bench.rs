//! Load tools for the relay, used by `scripts/bench-relay`:
//!
//! - `relay_bench fake-github [ADDR]`: a fake GitHub dispatches API that accepts everything and
//!   serves counts at `GET /_stats` (try the relay locally without a token: point
//!   `hookflow relay --api-url` at it).
//! - `relay_bench crash HOOKFLOW_BIN REQUESTS CONCURRENCY KILL_AFTER`: send REQUESTS webhooks,
//!   `kill -9` the relay after KILL_AFTER acknowledgements, restart it, and count deliveries.

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
        _ => {
            eprintln!("usage: relay_bench fake-github [ADDR] | relay_bench crash HOOKFLOW_BIN REQUESTS CONCURRENCY KILL_AFTER");
            std::process::exit(2);
        }
    }
}
