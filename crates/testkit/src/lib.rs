//! Test helpers shared by hookflow's integration tests (`crates/cli/tests`, `crates/relay/tests`),
//! written once: real servers on 127.0.0.1, never mocks.
//!
//! | module | what it gives |
//! |---|---|
//! | [`fake_github`] | a fake GitHub API (dispatches, installation tokens) that records and answers as told |
//! | [`receiver`] | a plain HTTP destination that records every request's exact bytes |
//! | [`relay`] | a relay started in this process or as a process, its configuration and environment, HTTP calls, waits, both stores |
//! | [`load`] | relay processes under load, killed and restarted (crash and scale-out runs) |
//! | [`seed`] | event logs made by SQL, fast |
//! | [`browser`] | headless Chromium through chromedriver |
//! | [`examples`] | the real GitHub webhook payloads beside the checkout |
//!
//! Helpers here may panic: a failed step of a test is a failed test.

pub mod browser;
pub mod examples;
pub mod fake_github;
pub mod load;
pub mod receiver;
pub mod relay;
pub mod seed;

use std::path::PathBuf;

/// The workspace's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` under `secret`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mac = hookflow_protocol::signature::hmac(
        hookflow_protocol::signature::Algorithm::Sha256,
        secret.as_bytes(),
        &[body],
    );
    format!("sha256={}", hex::encode(mac))
}

/// Bytes that do not compress (xorshift from `seed`).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
