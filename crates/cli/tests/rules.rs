//! Trigger rules end to end through the binary: signatures, filters, outputs, masking, `sign`.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use predicates::prelude::*;
use serde_json::{json, Value};
use support::cli::{hookflow, write};

const SECRET: &str = "rules-test-secret";

/// Signs `body` with `hookflow sign` and returns the headers it printed, lowercased.
fn sign(args: &[&str], body: &str) -> Vec<(String, String)> {
    let out = hookflow()
        .arg("sign")
        .args(args)
        .args(["--secret-env", "SIGN_SECRET"])
        .env("SIGN_SECRET", SECRET)
        .write_stdin(body.to_string())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("Header: value");
            (k.to_lowercase(), v.to_string())
        })
        .collect()
}

fn event(dir: &Path, path: &str, headers: &[(String, String)], body: &str) -> PathBuf {
    let mut h = serde_json::Map::new();
    for (k, v) in headers {
        h.insert(k.clone(), json!(v));
    }
    h.insert("content-type".into(), json!("application/json"));
    let e = json!({"action": "webhook", "client_payload": {"path": path, "method": "POST", "headers": h, "body": body}});
    write(dir, "event.json", &e.to_string())
}

fn run_json(wf: &Path, event: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = hookflow();
    cmd.args(["run", "--json", "--workflows"])
        .arg(wf)
        .arg("--event")
        .arg(event);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("runs");
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        stdout,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const GITHUB_WF: &str = "on:\n  webhook:\n    verify:\n      preset: github\n      secret_env: HOOK_SECRET\n    outputs:\n      number: $.body.pull_request.number\n";

#[test]
fn signed_by_sign_is_verified_by_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "gh.yml", GITHUB_WF);
    let body = r#"{"action":"opened","pull_request":{"number":7}}"#;
    let headers = sign(&["--preset", "github"], body);
    let ev = event(tmp.path(), "/gh/webhook", &headers, body);
    let (code, out, _) = run_json(&wf, &ev, &[("HOOK_SECRET", SECRET)]);
    assert_eq!(code, 0);
    assert_eq!(out["matched"], json!(true));
    assert_eq!(out["outputs"]["verified"], json!(true));
    assert_eq!(out["outputs"]["number"], json!(7));
    assert_eq!(out["outputs"]["trigger_outputs"], json!({"number": 7}));
}

#[test]
fn wrong_secret_missing_and_malformed_signatures_refuse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "gh.yml", GITHUB_WF);
    let body = r#"{"secret_payload_marker":1}"#;
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            sign(&["--preset", "github"], body),
            "does not match the body",
        ),
        (vec![], "header `x-hub-signature-256` is missing"),
        (
            vec![("x-hub-signature-256".into(), "md5=00".into())],
            "is malformed",
        ),
    ];
    for (headers, expected) in cases {
        let ev = event(tmp.path(), "/gh/webhook", &headers, body);
        let (code, out, stderr) = run_json(&wf, &ev, &[("HOOK_SECRET", "a-different-secret")]);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(out["matched"], json!(false));
        assert_eq!(out["outputs"].get("verified"), None);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains("secret_payload_marker"),
            "the body never reaches the log: {stderr}"
        );
        assert!(
            !stderr.contains("a-different-secret"),
            "the secret never reaches the log"
        );
    }
}

#[test]
fn unset_secret_is_a_setup_error_with_the_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(&wf, "gh.yml", GITHUB_WF);
    let ev = event(tmp.path(), "/gh/webhook", &[], "{}");
    let (code, _, stderr) = run_json(&wf, &ev, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("gh.yml:5: verify.secret_env names HOOK_SECRET, which is not set"),
        "{stderr}"
    );
}

#[test]
fn stale_timestamps_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(
        &wf,
        "stripe.yml",
        "on:\n  webhook:\n    verify: {preset: stripe, secret_env: S, tolerance: 60}\n",
    );
    let body = r#"{"id":"evt_1"}"#;
    let headers = sign(&["--preset", "stripe", "--timestamp", "1700000000"], body);
    let ev = event(tmp.path(), "/stripe/webhook", &headers, body);
    let (code, out, _) = run_json(&wf, &ev, &[("S", SECRET), ("HOOKFLOW_NOW", "1700000030")]);
    assert_eq!((code, out["outputs"]["verified"].clone()), (0, json!(true)));
    let (code, _, stderr) = run_json(
        &wf,
        &ev,
        &[("S", SECRET), ("HOOKFLOW_NOW", "2023-11-14T22:15:00Z")],
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("more than the 60 s tolerance"), "{stderr}");
    let (code, _, stderr) = run_json(&wf, &ev, &[("S", SECRET), ("HOOKFLOW_NOW", "yesterday")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("HOOKFLOW_NOW is \"yesterday\""), "{stderr}");
}

#[test]
fn every_preset_signs_and_verifies_through_the_binary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    let body = r#"{"hello":"world"}"#;
    // The presets DESIGN §3 names, every one signed by `sign` and accepted by `run`.
    assert_eq!(
        hookflow_protocol::signature::PRESETS,
        [
            "github",
            "dispatch",
            "stripe",
            "slack",
            "shopify",
            "standard-webhooks",
            "gitlab-token"
        ]
    );
    for preset in hookflow_protocol::signature::PRESETS {
        let secret = if preset == "standard-webhooks" {
            "whsec_cnVsZXMtdGVzdC1zZWNyZXQ="
        } else {
            SECRET
        };
        write(
            &wf,
            &format!("{preset}.yml"),
            &format!("on:\n  webhook:\n    verify: {{preset: {preset}, secret_env: S}}\n"),
        );
        let out = hookflow()
            .args([
                "sign",
                "--preset",
                preset,
                "--secret-env",
                "S",
                "--timestamp",
                "1700000000",
                "--id",
                "msg_1",
            ])
            .env("S", secret)
            .write_stdin(body)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let headers: Vec<(String, String)> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .filter_map(|l| {
                l.split_once(": ")
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let ev = event(tmp.path(), &format!("/{preset}/webhook"), &headers, body);
        let (code, out, stderr) =
            run_json(&wf, &ev, &[("S", secret), ("HOOKFLOW_NOW", "1700000010")]);
        assert_eq!(code, 0, "{preset}: {stderr}");
        assert_eq!(out["outputs"]["verified"], json!(true), "{preset}");
    }
}

#[test]
fn filters_outputs_and_masks_reach_the_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(
        &wf,
        "deploy.yml",
        "on:\n  webhook:\n    headers:\n      x-deploy-token: \".+\"\n    config:\n      filter:\n        body.env: {$in: [staging, production]}\n    outputs:\n      env: $.body.env\n      callback:\n        path: $.body.callback\n        mask: true\n      services: $.body.services[*]\n",
    );
    let body =
        r#"{"env":"production","callback":"https://cb.example/abc123","services":["api","web"]}"#;
    let headers = vec![
        ("X-Deploy-Token".to_string(), "tok-9f8e7d".to_string()),
        // webhook2github copies the token it used into the payload.
        (
            "Authorization".to_string(),
            "token ghp_relaytoken123".to_string(),
        ),
    ];
    let ev = event(tmp.path(), "/deploy/webhook", &headers, body);
    let out_file = tmp.path().join("out");
    let summary = tmp.path().join("summary");
    let assert = hookflow()
        .args(["run", "--workflows"])
        .arg(&wf)
        .arg("--event")
        .arg(&ev)
        .env("GITHUB_OUTPUT", &out_file)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        stdout.contains("::add-mask::https://cb.example/abc123"),
        "{stdout}"
    );
    assert!(
        stdout.contains("::add-mask::token ghp_relaytoken123"),
        "credential header masked: {stdout}"
    );
    assert!(
        !stdout.contains("::add-mask::tok-9f8e7d"),
        "a header the sender named `*-token` is not a credential the runner must hide: {stdout}"
    );
    let outputs = fs::read_to_string(&out_file).expect("outputs");
    assert!(outputs.contains("env<<") && outputs.contains("\nproduction\n"));
    assert!(outputs.contains("\n[\"api\",\"web\"]\n"), "{outputs}");
    let summary = fs::read_to_string(&summary).expect("summary");
    assert!(summary.contains("| `env` | production |"), "{summary}");
    assert!(summary.contains("| `callback` | *** |"), "{summary}");
    assert!(!summary.contains("abc123"), "{summary}");

    // Filtered out: matched=false, the reason in the JSON and the summary, exit 0.
    let ev = event(tmp.path(), "/deploy/webhook", &headers, r#"{"env":"dev"}"#);
    let (code, out, _) = run_json(&wf, &ev, &[]);
    assert_eq!(code, 0);
    assert_eq!(out["matched"], json!(false));
    assert!(out["reason"]
        .as_str()
        .expect("reason")
        .contains("config.filter"));
    // A required header missing.
    let ev = event(tmp.path(), "/deploy/webhook", &[], body);
    let (_, out, _) = run_json(&wf, &ev, &[]);
    assert!(out["reason"]
        .as_str()
        .expect("reason")
        .contains("header `x-deploy-token` is missing"));
}

#[test]
fn event_types_route_other_senders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(
        &wf,
        "deploys.yml",
        "on:\n  webhook:\n    event_types: [deploy, webhook]\n",
    );
    let ev = write(
        tmp.path(),
        "event.json",
        &json!({"action": "deploy", "client_payload": {"path": "/deploys/webhook", "body": {"ref": "main"}}}).to_string(),
    );
    let (code, out, _) = run_json(&wf, &ev, &[]);
    assert_eq!(code, 0);
    assert_eq!(out["matched"], json!(true));
    assert_eq!(out["event_type"], json!("deploy"));
}

#[test]
fn rule_config_errors_name_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wf = tmp.path().join("wf");
    write(
        &wf,
        "a.yml",
        "on:\n  webhook:\n    config:\n      filter:\n        body.x: {$near: 1}\n",
    );
    write(
        &wf,
        "b.yml",
        "on:\n  webhook:\n    outputs:\n      body: $.body\n      n: \"$.[\"\n",
    );
    write(
        &wf,
        "c.yml",
        "on:\n  webhook:\n    headers:\n      x-a: \"(\"\n    verify:\n      preset: github\n",
    );
    write(
        &wf,
        "d.yml",
        "on:\n  webhook:\n    verify:\n      preset: bitbucket\n      secret_env: S\n",
    );
    let assert = hookflow()
        .args(["validate", "--workflows"])
        .arg(&wf)
        .assert()
        .code(1);
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    for expected in [
        "a.yml:4: `config.filter.body.x.$near`: unknown operator `$near`",
        "b.yml:4: output `body`: `body` is a built-in output",
        "b.yml:5: output `n`: JSONPath $.[ does not parse",
        "c.yml:4: the pattern for header `x-a` does not compile",
        "c.yml:5: `verify.secret_env` is required",
        "d.yml:4: unknown preset `bitbucket`",
    ] {
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn sign_refuses_missing_secret_and_unknown_preset() {
    hookflow()
        .args([
            "sign",
            "--preset",
            "github",
            "--secret-env",
            "NOT_SET_ANYWHERE",
        ])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "NOT_SET_ANYWHERE, which is not set",
        ));
    hookflow()
        .args(["sign", "--preset", "bitbucket", "--secret-env", "S"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'bitbucket'"));
}
