//! `hookflow run`, `replay` and `validate` as a user runs them: the real binary, real files.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};
use support::cli::{root, write};

/// The secret and clock the shipped fixtures were signed with (scripts/gen-fixtures.py).
const EXAMPLE_SECRET: &str = "hookflow-example-secret";
const FIXTURE_TIME: i64 = 1_764_000_000;

fn fixture_env() -> hookflow_protocol::Environment {
    hookflow_protocol::Environment::fixed(
        FIXTURE_TIME,
        vec![("EXAMPLE_WEBHOOK_SECRET".into(), EXAMPLE_SECRET.into())],
    )
}

/// `hookflow` with the secret and clock the shipped fixtures were signed with.
fn hookflow() -> Command {
    let mut cmd = support::cli::hookflow();
    cmd.env("EXAMPLE_WEBHOOK_SECRET", EXAMPLE_SECRET)
        .env("HOOKFLOW_NOW", FIXTURE_TIME.to_string());
    cmd
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/events").join(name)
}

fn examples() -> PathBuf {
    root().join("examples/workflows")
}

/// `hookflow run --json` on an event file.
fn run_json(workflows: impl AsRef<Path>, event: impl AsRef<Path>) -> Command {
    let mut cmd = hookflow();
    cmd.args(["run", "--json", "--workflows"])
        .arg(workflows.as_ref())
        .arg("--event")
        .arg(event.as_ref());
    cmd
}

#[test]
fn every_fixture_matches_its_golden_file() {
    let mut count = 0;
    for entry in fs::read_dir(root().join("fixtures/events")).expect("fixtures") {
        let path = entry.expect("entry").path();
        let actual = hookflow_runtime::replay::replay_file(&path, &examples(), &fixture_env())
            .expect("fixture replays");
        let golden = root()
            .join("fixtures/expected")
            .join(path.file_name().expect("name"));
        let diff = hookflow_runtime::replay::compare_with_golden(&actual, &golden)
            .expect("golden readable");
        assert!(
            diff.is_none(),
            "{} differs:\n{}",
            path.display(),
            diff.unwrap_or_default()
        );
        count += 1;
    }
    assert!(count >= 15, "expected the shipped fixtures, found {count}");
}

#[test]
fn replay_expect_dir_passes_on_shipped_examples() {
    let fixtures: Vec<PathBuf> = fs::read_dir(root().join("fixtures/events"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    hookflow()
        .arg("replay")
        .args(&fixtures)
        .arg("--workflows")
        .arg(examples())
        .arg("--expect-dir")
        .arg(root().join("fixtures/expected"))
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "{} passed, 0 failed",
            fixtures.len()
        )));
}

#[test]
fn replay_expect_dir_lists_every_missing_golden() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let goldens = tmp.path().join("expected");
    fs::create_dir_all(&goldens).expect("mkdir");
    // One golden present, two missing.
    fs::copy(
        root().join("fixtures/expected/plain-text.json"),
        goldens.join("plain-text.json"),
    )
    .expect("copy");
    let out = hookflow()
        .arg("replay")
        .arg(fixture("plain-text.json"))
        .arg(fixture("github-push.json"))
        .arg(fixture("stripe-invoice-paid.json"))
        .arg("--workflows")
        .arg(examples())
        .arg("--expect-dir")
        .arg(&goldens)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for missing in ["github-push.json", "stripe-invoice-paid.json"] {
        assert!(
            stderr.contains(&format!("expected/{missing}")) && stderr.contains("--update"),
            "{missing} not listed: {stderr}"
        );
    }
    assert!(stderr.contains("1 passed, 2 failed"), "{stderr}");
}

#[test]
fn a_dispatch_request_captured_from_a_relay_runs_as_an_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let event = tmp.path().join("dispatch.json");
    // What GitHub's dispatches API receives: {event_type, client_payload}.
    fs::write(
        &event,
        r#"{"event_type":"webhook","client_payload":{"path":"/team/ci/deploy/webhook/production/api","method":"POST","headers":{},"body":"{}"}}"#,
    )
    .expect("write");
    let out = hookflow()
        .args(["run", "--json", "--workflows"])
        .arg(examples())
        .arg("--event")
        .arg(&event)
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["event_type"], "webhook");
    assert_eq!(result["workflow"], "team/ci/deploy.yml", "{result}");
}

#[test]
fn an_event_built_like_a_curl_request_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = tmp.path().join("body.json");
    fs::write(&body, r#"{"ref":"main"}"#).expect("write");
    let out = hookflow()
        .args([
            "event",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-GitHub-Delivery: d-1",
            "-d",
        ])
        .arg(format!("@{}", body.display()))
        .arg("https://relay.example.com/team/ci/deploy/webhook/production/api?dry=1")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event_file = tmp.path().join("event.json");
    fs::write(&event_file, &out.stdout).expect("write");
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(event["action"], "webhook");
    assert_eq!(
        event["client_payload"]["body"], r#"{"ref":"main"}"#,
        "exact bytes"
    );
    let run = hookflow()
        .args(["run", "--json", "--workflows"])
        .arg(examples())
        .arg("--event")
        .arg(&event_file)
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .output()
        .expect("runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&run.stdout).expect("json");
    assert_eq!(result["workflow"], "team/ci/deploy.yml", "{result}");
    assert_eq!(result["outputs"]["query"]["dry"], "1");
    assert_eq!(result["outputs"]["delivery_id"], "d-1");
    assert_eq!(result["outputs"]["method"], "post");
    // A header without a colon is refused with what to write.
    let bad = hookflow()
        .args(["event", "-H", "oops", "/x/webhook"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("'Name: value'"));
}

#[test]
fn run_writes_outputs_and_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("output");
    let summary = tmp.path().join("summary.md");
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(examples())
        .env("GITHUB_EVENT_PATH", fixture("nested-workflow-params.json"))
        .env("GITHUB_EVENT_NAME", "repository_dispatch")
        .env("GITHUB_OUTPUT", &out)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .assert()
        .success()
        .stderr(predicate::str::contains("matched team/ci/deploy.yml"));
    let outputs = support::cli::read_outputs(&out);
    assert_eq!(outputs["matched"], "true");
    assert_eq!(outputs["workflow"], "team/ci/deploy.yml");
    assert_eq!(outputs["trigger"], "webhook");
    assert_eq!(outputs["event_type"], "webhook");
    assert_eq!(outputs["method"], "put");
    assert_eq!(
        outputs["params"],
        r#"{"environment":"production","service":"api gateway"}"#
    );
    assert_eq!(outputs["query"], r#"{"ref":"main"}"#);
    assert_eq!(outputs["search"], "?ref=main");
    assert_eq!(
        outputs["body"],
        r#"{"version":"1.4.2","requested_by":"mona"}"#
    );
    assert_eq!(outputs["verified"], "false");
    assert_eq!(
        outputs["matches"],
        r#"[{"workflow":"team/ci/deploy.yml","trigger":"webhook"}]"#
    );
    let summary = fs::read_to_string(&summary).expect("summary written");
    assert!(
        summary.contains("| `workflow` | team/ci/deploy.yml |"),
        "{summary}"
    );
}

#[test]
fn run_json_prints_one_object() {
    let assert = hookflow()
        .args(["run", "--json", "--event-name", "repository_dispatch"])
        .arg("--workflows")
        .arg(examples())
        .arg("--event")
        .arg(fixture("stripe-invoice-paid.json"))
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).expect("stdout is JSON");
    assert_eq!(v["matched"], json!(true));
    assert_eq!(v["workflow"], json!("stripe.yml"));
    assert_eq!(v["outputs"]["request_id"], json!("evt_1QAbCdEfGhIjKlMn"));
    assert_eq!(
        v["outputs"]["body"]["data"]["object"]["amount_paid"],
        json!(4200)
    );
}

#[test]
fn multi_line_values_survive_the_output_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "wf/notes.yml", "on:\n  webhook: {}\n");
    let event = tmp.path().join("event.json");
    let body = "line one\nline two\nghadelimiter_not_really\n";
    fs::write(
        &event,
        json!({"action": "webhook", "client_payload": {"path": "/notes/webhook", "body": body}})
            .to_string(),
    )
    .expect("write");
    let out = tmp.path().join("output");
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(tmp.path().join("wf"))
        .arg("--event")
        .arg(&event)
        .env("GITHUB_OUTPUT", &out)
        .assert()
        .success();
    let outputs = support::cli::read_outputs(&out);
    assert_eq!(outputs["body"], body);
}

#[test]
fn no_match_exits_zero_or_one_with_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("output");
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(examples())
        .arg("--event")
        .arg(fixture("inactive-trigger.json"))
        .env("GITHUB_OUTPUT", &out)
        .assert()
        .code(0)
        .stderr(predicate::str::contains("disabled (config.active: false)"));
    let outputs = support::cli::read_outputs(&out);
    assert_eq!(outputs["matched"], "false");
    assert_eq!(outputs["workflow"], "");
    hookflow()
        .args(["run", "--json", "--fail-on-no-match"])
        .arg("--workflows")
        .arg(examples())
        .arg("--event")
        .arg(fixture("other-event-type.json"))
        .assert()
        .code(1);
}

#[test]
fn other_github_events_do_not_match() {
    hookflow()
        .args(["run", "--json", "--event-name", "push"])
        .arg("--workflows")
        .arg(examples())
        .arg("--event")
        .arg(fixture("github-push.json"))
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""matched":false"#))
        .stdout(predicate::str::contains("is not a repository_dispatch"));
}

#[test]
fn large_bodies_go_to_a_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "wf/big.yml", "on:\n  webhook: {}\n");
    let body = "x".repeat(1024 * 1024 + 10);
    let event = tmp.path().join("event.json");
    fs::write(
        &event,
        json!({"action": "webhook", "client_payload": {"path": "/big/webhook", "body": body}})
            .to_string(),
    )
    .expect("write");
    let out = tmp.path().join("output");
    let temp = tmp.path().join("runner-temp");
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(tmp.path().join("wf"))
        .arg("--event")
        .arg(&event)
        .env("GITHUB_OUTPUT", &out)
        .env("RUNNER_TEMP", &temp)
        .assert()
        .success();
    let outputs = support::cli::read_outputs(&out);
    assert_eq!(outputs["body"], "");
    let file = PathBuf::from(&outputs["body_file"]);
    assert!(file.starts_with(&temp), "{}", file.display());
    assert_eq!(fs::read_to_string(file).expect("body file"), body);
}

#[test]
fn run_reads_only_the_files_the_url_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "hook.yml", "on:\n  webhook: {}\n");
    write(&wf, "broken.yml", "on: [\n");
    write(&wf, "a/b/broken.yml", "::: not yaml :::\n  - [\n");
    let event = tmp.path().join("event.json");
    fs::write(
        &event,
        r#"{"action":"webhook","client_payload":{"path":"/hook/webhook"}}"#,
    )
    .expect("write");
    run_json(&wf, &event)
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""matched":true"#));
    // The same broken file is reported when the URL names it.
    fs::write(
        &event,
        r#"{"action":"webhook","client_payload":{"path":"/broken/webhook"}}"#,
    )
    .expect("write");
    run_json(&wf, &event).assert().code(2).stderr(
        predicate::str::contains("broken.yml:").and(predicate::str::contains("invalid YAML")),
    );
}

#[test]
fn paths_cannot_leave_the_workflows_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "outside.yml", "on:\n  webhook: {}\n");
    write(tmp.path(), "wf/inside.yml", "on:\n  webhook: {}\n");
    let event = tmp.path().join("event.json");
    for path in [
        "/../outside/webhook",
        "/./../outside/webhook",
        "/..%2Foutside/webhook",
        "//outside/webhook",
    ] {
        fs::write(
            &event,
            json!({"action": "webhook", "client_payload": {"path": path}}).to_string(),
        )
        .expect("write");
        run_json(tmp.path().join("wf"), &event)
            .assert()
            .success()
            .stdout(predicate::str::contains(r#""matched":false"#));
    }
}

#[test]
fn several_matching_triggers_are_all_listed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "a.yml", "on:\n  webhook: {}\n");
    write(&wf, "a/webhook/b.yml", "on:\n  webhook: {}\n");
    let event = tmp.path().join("event.json");
    fs::write(
        &event,
        r#"{"action":"webhook","client_payload":{"path":"/a/webhook/b/webhook"}}"#,
    )
    .expect("write");
    let assert = run_json(&wf, &event).assert().success();
    let v: Value = serde_json::from_slice(&assert.get_output().stdout).expect("JSON");
    assert_eq!(v["workflow"], json!("a/webhook/b.yml"));
    assert_eq!(
        v["matches"],
        json!([{"workflow": "a/webhook/b.yml", "trigger": "webhook"}, {"workflow": "a.yml", "trigger": "webhook"}])
    );
}

#[test]
fn trigger_base_must_end_at_a_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "wf/ci.yml", "on:\n  webhook: {}\n");
    let event = tmp.path().join("event.json");
    fs::write(
        &event,
        r#"{"action":"webhook","client_payload":{"path":"/ci/webhookx"}}"#,
    )
    .expect("write");
    run_json(tmp.path().join("wf"), &event)
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""matched":false"#));
}

#[test]
fn bad_input_is_one_clear_line_and_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(
        &wf,
        "badpath.yml",
        "on:\n  webhook:\n    path: /users/:id(\\d+\n",
    );
    write(
        &wf,
        "dup.yml",
        "on:\n  webhook:\n    method: POST\n    method: GET\n",
    );
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        (
            "{not json".into(),
            None,
            "event.json:1:2: event file is not valid JSON",
        ),
        (
            r#"{"action":"webhook","client_payload":{"headers":"x"}}"#.into(),
            None,
            "`$.client_payload.headers` must be an object",
        ),
        (
            r#"{"action":"webhook","client_payload":{"path":7}}"#.into(),
            None,
            "`$.client_payload.path` must be a string",
        ),
        (
            r#"{"action":"webhook","client_payload":{"body":"@@","body_encoding":"base64"}}"#
                .into(),
            None,
            "not valid base64",
        ),
        (
            r#"{"action":"webhook","client_payload":{"path":"/badpath/webhook"}}"#.into(),
            None,
            "badpath.yml:3: `path` does not compile: unbalanced",
        ),
        (
            r#"{"action":"webhook","client_payload":{"path":"/dup/webhook"}}"#.into(),
            None,
            "dup.yml:4: invalid YAML: on.webhook: duplicate entry with key \"method\"",
        ),
    ];
    for (text, _, expected) in cases {
        let event = tmp.path().join("event.json");
        fs::write(&event, &text).expect("write");
        let assert = run_json(&wf, &event).assert().code(2).stdout("");
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
        assert!(
            stderr.contains(expected),
            "for {text}: expected {expected:?} in {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn missing_event_path_is_explained() {
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(examples())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("GITHUB_EVENT_PATH is not set"));
    hookflow()
        .arg("run")
        .arg("--workflows")
        .arg(examples())
        .env("GITHUB_EVENT_PATH", "/nonexistent/event.json")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read event file /nonexistent/event.json",
        ));
    hookflow()
        .args(["run", "--workflows", "/nonexistent/workflows"])
        .arg("--event")
        .arg(fixture("plain-text.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "workflows directory /nonexistent/workflows does not exist",
        ));
}

#[test]
fn validate_catches_typos_and_keeps_warnings_of_broken_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    // A typo would have made the trigger accept any method: now an error with a suggestion.
    write(
        &wf,
        "typo.yml",
        "on:\n  webhook:\n    methd: POST\n    every: 5\n",
    );
    // A file with an error still shows its warnings.
    write(
        &wf,
        "both.yml",
        "on:\n  webhook:\n    path: \"/x/:\"\n  rss:\n    url: https://example.com/feed\n",
    );
    let assert = hookflow()
        .arg("validate")
        .arg("--workflows")
        .arg(&wf)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        stderr.contains("typo.yml:3: unknown webhook option `methd`; did you mean `method`?"),
        "{stderr}"
    );
    assert!(!stderr.contains("`every`"), "every is accepted: {stderr}");
    assert!(
        stderr.contains("error: ") && stderr.contains("both.yml:3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: ") && stderr.contains("both.yml:4"),
        "the broken file's warning is shown: {stderr}"
    );
    assert!(stderr.contains("2 problems, 1 warning"), "{stderr}");
}

#[test]
fn validate_reports_every_problem() {
    hookflow()
        .arg("validate")
        .arg("--workflows")
        .arg(examples())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "8 workflow files, 8 webhook triggers, 0 problems",
        ));

    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "ok.yml", "on:\n  webhook: {}\n");
    write(
        &wf,
        "a/bad.yml",
        "on:\n  webhook:\n    path: \"/x/:\"\n    method: 5\n",
    );
    write(&wf, "b.yaml", "on: [\n");
    write(
        &wf,
        "c.yml",
        "on:\n  webhook:\n    config:\n      filterScript: return true\n",
    );
    write(&wf, "d.yml", "name: no triggers\n");
    let assert = hookflow()
        .arg("validate")
        .arg("--workflows")
        .arg(&wf)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    for expected in [
        "a/bad.yml:3: `path` does not compile",
        "a/bad.yml:4: `method` must be a string or a list",
        "b.yaml:",
        "c.yml:4: `config.filterScript` is JavaScript",
        "d.yml: no `on:` section",
        "5 workflow files, 1 webhook trigger, 5 problems",
    ] {
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn replay_shows_a_diff_against_a_wrong_golden() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let golden = tmp.path().join("golden.json");
    let mut expected: Value = serde_json::from_str(
        &fs::read_to_string(root().join("fixtures/expected/plain-text.json")).expect("golden"),
    )
    .expect("json");
    expected["outputs"]["method"] = json!("get");
    fs::write(
        &golden,
        serde_json::to_string_pretty(&expected).expect("json"),
    )
    .expect("write");
    hookflow()
        .arg("replay")
        .arg(fixture("plain-text.json"))
        .arg("--workflows")
        .arg(examples())
        .arg("--expect")
        .arg(&golden)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("-    \"method\": \"get\",")
                .and(predicate::str::contains("+    \"method\": \"post\",")),
        );
}
