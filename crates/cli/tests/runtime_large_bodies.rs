//! Real GitHub webhooks through `hookflow run` and `hookflow replay`, from the smallest to a
//! large `push`: each is matched, its signature verified over the exact bytes, and its fields
//! read, and a large body costs the runner at most four times its size plus 16 MiB.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::cli::{hookflow, write};
use support::examples;

const SECRET: &str = "It's a Secret to Everybody";

fn signature(body: &[u8]) -> String {
    support::cli::github_signature(SECRET, body)
}

/// A dispatch carrying `body` as GitHub sends it, signed, with the body as text.
fn github_event(event: &str, body: &[u8]) -> Value {
    json!({"action": "webhook", "client_payload": {
        "path": "/github/webhook",
        "method": "POST",
        "headers": {
            "content-type": "application/json",
            "x-github-event": event,
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "x-hub-signature-256": signature(body),
        },
        "body": String::from_utf8(body.to_vec()).expect("GitHub sends UTF-8"),
    }})
}

fn workflows(dir: &Path, trigger: &str) -> PathBuf {
    let wf = dir.join("wf");
    write(&wf, "github.yml", &format!("on:\n  webhook:\n{trigger}"));
    wf
}

#[test]
fn every_real_github_webhook_is_matched_verified_and_read() {
    let all = examples::all();
    if all.is_empty() {
        return;
    }
    assert!(all.len() >= 250, "the examples folder holds {}", all.len());
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = workflows(
        tmp.path(),
        "    verify:\n      preset: github\n      secret_env: WEBHOOK_SECRET\n    outputs:\n      action: $.body.action\n      sender: $.body.sender.login\n      repository: $.body.repository.full_name\n",
    );
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (i, (name, bytes)) in all.iter().enumerate() {
        let event = name.split('/').next().expect("folder");
        let file = tmp.path().join(format!("event-{i}.json"));
        fs::write(&file, github_event(event, bytes).to_string()).expect("write");
        files.push(file);
        let body: Value = serde_json::from_slice(bytes).expect("examples are JSON");
        expected.push((name.clone(), body));
    }
    let out = hookflow()
        .arg("replay")
        .args(&files)
        .arg("--workflows")
        .arg(&wf)
        .env("WEBHOOK_SECRET", SECRET)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("a JSON array");
    assert_eq!(results.len(), expected.len());
    let text = |v: Option<&Value>| match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    for (result, (name, body)) in results.iter().zip(&expected) {
        let outputs = &result["outputs"];
        assert_eq!(result["matched"], json!(true), "{name}: {result}");
        assert_eq!(outputs["verified"], json!(true), "{name}");
        assert_eq!(&outputs["body"], body, "{name}: the body, as sent");
        assert_eq!(
            text(outputs.get("action")),
            text(body.get("action")),
            "{name}"
        );
        assert_eq!(
            text(outputs.get("sender")),
            text(body.pointer("/sender/login")),
            "{name}"
        );
        assert_eq!(
            text(outputs.get("repository")),
            text(body.pointer("/repository/full_name")),
            "{name}"
        );
    }
}

/// A `push` of about `size` bytes: a real push payload whose commits are repeated.
fn large_push(size: usize) -> Option<Vec<u8>> {
    let dir = examples::dir()?;
    let mut push: Value = serde_json::from_slice(
        &fs::read(dir.join("push/with-new-branch.payload.json")).expect("read"),
    )
    .expect("JSON");
    let commit = push["commits"][0].clone();
    assert!(commit.is_object(), "the example has a commit");
    let one = commit.to_string().len() + 1;
    let commits: Vec<Value> = (0..size / one)
        .map(|i| {
            let mut c = commit.clone();
            c["id"] = json!(format!("{:040x}", i * 7919));
            c["message"] = json!(format!("Change {i}: update the deployment scripts"));
            c
        })
        .collect();
    push["commits"] = Value::Array(commits);
    // Pretty-printed, as some senders do: the `body` output is still compact JSON.
    Some(serde_json::to_vec_pretty(&push).expect("JSON"))
}

/// Peak RSS in bytes of `hookflow run` on `event`, with its outputs file and stderr.
fn run_measured(dir: &Path, wf: &Path, event: &Path) -> (u64, String, String, bool) {
    let outputs = dir.join("outputs");
    let _ = fs::remove_file(&outputs);
    let (peak, out) = support::cli::run_peak_rss(
        dir,
        &[
            "run".as_ref(),
            "--workflows".as_ref(),
            wf.as_ref(),
            "--event".as_ref(),
            event.as_ref(),
        ],
        &[
            ("GITHUB_EVENT_NAME", "repository_dispatch".as_ref()),
            ("GITHUB_OUTPUT", outputs.as_ref()),
            ("RUNNER_TEMP", dir.as_ref()),
            ("WEBHOOK_SECRET", SECRET.as_ref()),
        ],
    );
    (
        peak,
        fs::read_to_string(&outputs).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// The value of `name` in a `$GITHUB_OUTPUT` file.
fn output(file: &str, name: &str) -> Option<String> {
    let mut lines = file.lines();
    while let Some(line) = lines.next() {
        if let Some(delim) = line.strip_prefix(&format!("{name}<<")) {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delim).collect();
            return Some(value.join("\n"));
        }
    }
    None
}

#[test]
fn a_large_signed_push_is_verified_and_read_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(body) = large_push(20 * 1024 * 1024) else {
        return;
    };
    let whole: Value = serde_json::from_slice(&body).expect("JSON");
    let event = tmp.path().join("event.json");
    fs::write(&event, github_event("push", &body).to_string()).expect("write");
    let bound = 4 * body.len() as u64 + 16 * 1024 * 1024;

    let wf = workflows(
        tmp.path(),
        "    verify:\n      preset: github\n      secret_env: WEBHOOK_SECRET\n    config:\n      filter:\n        body.ref: refs/heads/master\n        body.commits.author.name: { $exists: true }\n    outputs:\n      head: $.body.head_commit.id\n      pusher: $.body.pusher.name\n      first: $.body.commits[0].message\n      last: $.body.commits[-1:].id\n",
    );
    let (peak, outputs, stderr, ok) = run_measured(tmp.path(), &wf, &event);
    assert!(ok, "{stderr}");
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    assert_eq!(
        output(&outputs, "matched").as_deref(),
        Some("true"),
        "{stderr}"
    );
    assert_eq!(
        output(&outputs, "verified").as_deref(),
        Some("true"),
        "{stderr}"
    );
    let s = |p: &str| {
        whole
            .pointer(p)
            .and_then(Value::as_str)
            .expect(p)
            .to_string()
    };
    assert_eq!(output(&outputs, "head"), Some(s("/head_commit/id")));
    assert_eq!(output(&outputs, "pusher"), Some(s("/pusher/name")));
    assert_eq!(output(&outputs, "first"), Some(s("/commits/0/message")));
    let last = whole["commits"]
        .as_array()
        .and_then(|c| c.last())
        .expect("commits");
    assert_eq!(
        output(&outputs, "last"),
        Some(json!([last["id"]]).to_string())
    );
    // The body goes to a file, as compact JSON of the whole body.
    assert_eq!(output(&outputs, "body").as_deref(), Some(""));
    let file = output(&outputs, "body_file").expect("body_file");
    let spilled = fs::read_to_string(&file).expect("body file");
    assert_eq!(spilled, whole.to_string());

    // A filter the body does not pass says what it found, in the same bound.
    let wf = workflows(
        tmp.path(),
        "    config:\n      filter:\n        body.ref: refs/heads/release\n",
    );
    let (peak, outputs, stderr, ok) = run_measured(tmp.path(), &wf, &event);
    assert!(ok, "{stderr}");
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    assert_eq!(output(&outputs, "matched").as_deref(), Some("false"));
    assert!(
        stderr.contains("`body.ref` is \"refs/heads/master\""),
        "{stderr}"
    );
}

#[test]
fn rules_that_read_a_whole_large_body_see_text_and_outputs_stay_under_githubs_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(body) = large_push(12 * 1024 * 1024) else {
        return;
    };
    let event = tmp.path().join("event.json");
    fs::write(&event, github_event("push", &body).to_string()).expect("write");
    let bound = 4 * body.len() as u64 + 16 * 1024 * 1024;

    // A filter on the whole body: too large to parse whole in the budget, so the rules see
    // text, and a notice says why and what to do.
    let wf = workflows(
        tmp.path(),
        "    config:\n      filter:\n        body: { $regex: '\"commits\"' }\n",
    );
    let (peak, outputs, stderr, ok) = run_measured(tmp.path(), &wf, &event);
    assert!(ok, "{stderr}");
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    assert_eq!(output(&outputs, "matched").as_deref(), Some("true"));
    assert!(
        stderr.contains("too large to parse") && stderr.contains("point config.filter"),
        "{stderr}"
    );

    // An output of megabytes: refused with the limit named, not written.
    let wf = workflows(
        tmp.path(),
        "    outputs:\n      all: $.body.commits[*]['id','tree_id','url','timestamp']\n",
    );
    let (peak, outputs, stderr, ok) = run_measured(tmp.path(), &wf, &event);
    assert!(!ok);
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    assert!(
        stderr.contains("output `all` ($.body.commits[*]['id','tree_id','url','timestamp']) is")
            && stderr.contains("at most 1 MB")
            && stderr.contains("body_file"),
        "{stderr}"
    );
    assert_eq!(output(&outputs, "all"), None);
}
