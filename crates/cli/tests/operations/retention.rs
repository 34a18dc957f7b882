//! The event log's retention on a running relay process: old delivered events are pruned while
//! webhooks keep arriving, every one of them answered at once and delivered.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::reload::{config, free_port, relay, ADMIN_TOKEN};
use crate::support::fake_github::FakeGithub;
use crate::support::seed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_events_are_pruned_while_webhooks_keep_arriving() {
    const OLD: usize = 10_000;
    const SENDERS: usize = 8;
    const EACH: usize = 60;
    let gh = FakeGithub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    seed::old_delivered(&data, OLD, 2);
    let file = dir.path().join("relay.yml");
    let admin = free_port();
    std::fs::write(&file, config(admin, &["a"], "retention:\n  events: 1d\n")).expect("write");
    let relay = relay(&file, &data, &gh.url()).await;
    let client = reqwest::Client::new();
    // How many events the admin API lists (a page of at most 500) with these filters.
    let listed = |filters: String| {
        let client = client.clone();
        async move {
            let page: Value = client
                .get(format!(
                    "http://127.0.0.1:{admin}/api/events?limit=500{filters}"
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            page["events"].as_array().map_or(0, Vec::len)
        }
    };
    let old_left = || {
        listed(format!(
            "&until={}",
            chrono::Utc::now().timestamp() - 86_400
        ))
    };
    assert!(old_left().await > 0, "the old events are there at start");

    // Webhooks while the pruning runs: every one answered 202, none waits long.
    let url = format!("http://{}/hooks/a", relay.addr);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let mut slowest = Duration::ZERO;
                for i in 0..EACH {
                    let started = Instant::now();
                    let status = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(format!("{{\"sender\": {s}, \"n\": {i}}}"))
                        .send()
                        .await
                        .expect("answered")
                        .status()
                        .as_u16();
                    assert_eq!(status, 202);
                    slowest = slowest.max(started.elapsed());
                }
                slowest
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for s in senders {
        slowest = slowest.max(s.await.expect("sender"));
    }
    // A bound that only a stalled store breaks (a debug build on a shared 2-core machine);
    // the latency figures come from scripts/bench-retention.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest answer {slowest:?}"
    );

    // Every webhook delivered once, and the old events all pruned.
    gh.wait_for(SENDERS * EACH, Duration::from_secs(60)).await;
    let ids = gh.delivered_ids();
    assert_eq!(ids.len(), SENDERS * EACH);
    assert!(ids.values().all(|n| *n == 1));
    let started = Instant::now();
    while old_left().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the old events are pruned"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The new events stay: younger than retention.events.
    assert_eq!(listed(String::new()).await, SENDERS * EACH);
}
