//! What a stranger who controls a webhook can make `hookflow run` do in a runner, through the
//! binary: request text must never become a workflow command, secrets must never print in
//! clear, and a sender must not choose what the runner masks.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::cli::hookflow;

fn workflows(dir: &Path) -> PathBuf {
    let wf = dir.join("wf");
    fs::create_dir_all(&wf).expect("mkdir");
    fs::write(
        wf.join("deploy.yml"),
        "on:\n  webhook:\n    outputs:\n      key:\n        path: $.body.key\n        mask: true\n",
    )
    .expect("write");
    wf
}

fn event(dir: &Path, event: Value) -> PathBuf {
    let path = dir.join("event.json");
    fs::write(&path, event.to_string()).expect("write");
    path
}

/// Every line both streams printed.
fn lines(out: &std::process::Output) -> Vec<String> {
    let mut all: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    all.extend(
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(str::to_string),
    );
    all
}

#[test]
fn request_text_never_starts_a_workflow_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = workflows(tmp.path());
    let attacks = [
        // A path that reaches no trigger: the no-match reason quotes it.
        json!({"action": "webhook", "client_payload": {"path": "/nowhere\n::error::pwned\n::add-mask::webhook", "body": "{}"}}),
        json!({"action": "webhook", "client_payload": {"path": "/deploy/webhook%0A::error::x\r::warning::y", "body": "{}"}}),
        // An event type with a line break: quoted in the reason too.
        json!({"action": "deploy\n::error::pwned", "client_payload": {"path": "/deploy/webhook"}}),
        // A foreign payload of another type: its notice quotes the problem.
        json!({"action": "x\n::stop-commands::t", "client_payload": {"headers": "\n::error::h"}}),
    ];
    for attack in attacks {
        let ev = event(tmp.path(), attack.clone());
        for actions in ["true", "false"] {
            let out = hookflow()
                .args(["run", "--workflows"])
                .arg(&wf)
                .arg("--event")
                .arg(&ev)
                .env("GITHUB_EVENT_NAME", "repository_dispatch")
                .env("GITHUB_ACTIONS", actions)
                .env("GITHUB_OUTPUT", tmp.path().join("out"))
                .output()
                .expect("runs");
            for line in lines(&out) {
                assert!(
                    !line.starts_with("::") || line.starts_with("::notice::"),
                    "{attack} made a workflow command: {line:?}"
                );
                assert!(!line.contains('\r'), "{attack}: raw CR in {line:?}");
            }
        }
    }
}

#[test]
fn json_output_hides_secrets_and_masks_come_first_in_actions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = workflows(tmp.path());
    let ev = event(
        tmp.path(),
        json!({"action": "webhook", "client_payload": {
            "path": "/deploy/webhook",
            "headers": {"Authorization": "Bearer ghp_shouldnotleak1", "x-a-token": "true"},
            "body": "{\"key\":\"sk_live_0123456789\"}"
        }}),
    );
    let run = |extra: &[&str], actions: &str| {
        hookflow()
            .args(["run", "--json", "--workflows"])
            .arg(&wf)
            .arg("--event")
            .arg(&ev)
            .args(extra)
            .env("GITHUB_EVENT_NAME", "repository_dispatch")
            .env("GITHUB_ACTIONS", actions)
            .output()
            .expect("runs")
    };
    let out = run(&[], "true");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("ghp_shouldnotleak1"), "{stdout}");
    assert!(!stdout.contains("sk_live_0123456789"), "{stdout}");
    let result: Value = serde_json::from_str(&stdout).expect("stdout stays one JSON object");
    assert_eq!(result["outputs"]["headers"]["authorization"], "***");
    assert_eq!(result["outputs"]["key"], "***");
    assert_eq!(
        result["outputs"]["headers"]["x-a-token"], "true",
        "not a credential"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first: Vec<&str> = stderr.lines().take(2).collect();
    assert_eq!(
        first,
        [
            "::add-mask::Bearer ghp_shouldnotleak1",
            "::add-mask::sk_live_0123456789"
        ],
        "masks before anything else: {stderr}"
    );
    assert!(
        !stderr.contains("::add-mask::true"),
        "a sender cannot make the runner mask `true`: {stderr}"
    );

    // Outside Actions no mask commands; --show-secrets prints them in clear when asked.
    let out = run(&["--show-secrets"], "false");
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(result["outputs"]["key"], "sk_live_0123456789");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("::add-mask::"));
}

#[test]
fn the_step_summary_renders_request_text_as_text() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = workflows(tmp.path());
    let ev = event(
        tmp.path(),
        json!({"action": "webhook", "client_payload": {
            "path": "/nowhere/<img src=https://evil.example/pixel>[x](https://evil.example)|a\n# b"
        }}),
    );
    let summary = tmp.path().join("summary.md");
    hookflow()
        .args(["run", "--workflows"])
        .arg(&wf)
        .arg("--event")
        .arg(&ev)
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .env("GITHUB_OUTPUT", tmp.path().join("out"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .assert()
        .success();
    let text = fs::read_to_string(&summary).expect("summary");
    for raw in ["<img", "](", "|a", "\n# b"] {
        assert!(!text.contains(raw), "{raw:?} left raw in {text}");
    }
    assert!(text.contains("&#60;img"), "{text}");
}

/// An event whose body is `[0,0,…,0]` of `bytes` bytes, gzip-compressed: a few KB on the wire.
fn zeros_bomb(dir: &Path, bytes: usize) -> PathBuf {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"[").expect("write");
    let chunk = "0,".repeat(4096);
    let mut written = 1;
    while written + chunk.len() + 2 <= bytes {
        gz.write_all(chunk.as_bytes()).expect("write");
        written += chunk.len();
    }
    gz.write_all(b"0]").expect("write");
    let packed = gz.finish().expect("gzip");
    event(
        dir,
        json!({"action": "webhook", "client_payload": {
            "path": "/deploy/webhook",
            "headers": {"content-type": "application/json"},
            "body": base64::engine::general_purpose::STANDARD.encode(packed),
            "body_encoding": "gzip+base64"
        }}),
    )
}

#[test]
fn a_gzip_bomb_is_capped_and_cannot_take_the_runners_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = workflows(tmp.path());
    let decoded = 30 * 1024 * 1024;
    let ev = zeros_bomb(tmp.path(), decoded);
    assert!(
        fs::metadata(&ev).expect("meta").len() < 200_000,
        "small on the wire"
    );

    // Over the cap: refused with the limit named, exit 2.
    let out = hookflow()
        .args([
            "run",
            "--json",
            "--max-body-bytes",
            "1048576",
            "--workflows",
        ])
        .arg(&wf)
        .arg("--event")
        .arg(&ev)
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("more than 1048576 bytes"), "{stderr}");

    // Under the default cap (32 MiB): peak RSS at most 4x the decoded body + 16 MiB.
    let out_file = tmp.path().join("out");
    let (peak, out) = support::cli::run_peak_rss(
        tmp.path(),
        &[
            "run".as_ref(),
            "--workflows".as_ref(),
            wf.as_ref(),
            "--event".as_ref(),
            ev.as_ref(),
        ],
        &[
            ("GITHUB_EVENT_NAME", "repository_dispatch".as_ref()),
            ("GITHUB_OUTPUT", out_file.as_ref()),
            ("RUNNER_TEMP", tmp.path().as_ref()),
        ],
    );
    assert!(out.status.success());
    let peak_kib = peak / 1024;
    let bound_kib = (4 * decoded as u64 + 16 * 1024 * 1024) / 1024;
    assert!(
        peak_kib <= bound_kib,
        "peak RSS {peak_kib} KiB over {bound_kib} KiB"
    );
    let outputs = fs::read_to_string(tmp.path().join("out")).expect("outputs");
    assert!(outputs.contains("body_file<<"), "the body went to a file");
}
