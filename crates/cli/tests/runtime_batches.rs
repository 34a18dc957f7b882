//! `hookflow run` on a batched dispatch (`client_payload.batch`): every event is matched and
//! verified on its own, one bad event (forged, malformed, oversized) is refused alone, and the
//! outputs (`batch_size`, `events`, the first matched event's single-event outputs) fit GitHub
//! Actions. Real files, the real binary.

use crate::support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};
use support::cli::{hookflow, read_outputs, root, write};

const SECRET: &str = "hookflow-example-secret";

fn examples() -> PathBuf {
    root().join("examples/workflows")
}

/// A run of `event` with `$GITHUB_OUTPUT` and the step summary in `dir`.
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    outputs: std::collections::BTreeMap<String, String>,
    summary: String,
}

impl Run {
    fn events(&self) -> Vec<Value> {
        serde_json::from_str(&self.outputs["events"]).expect("events is a JSON array")
    }
}

fn run_in(dir: &Path, workflows: &Path, event: &Path, extra: &[&str]) -> Run {
    let outputs = dir.join("outputs.txt");
    let summary = dir.join("summary.md");
    let _ = std::fs::remove_file(&outputs);
    let _ = std::fs::remove_file(&summary);
    let out = hookflow()
        .arg("run")
        .arg("--event")
        .arg(event)
        .arg("--workflows")
        .arg(workflows)
        .args(extra)
        .env("GITHUB_OUTPUT", &outputs)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("RUNNER_TEMP", dir)
        .env("GITHUB_ACTIONS", "true")
        .env("EXAMPLE_WEBHOOK_SECRET", SECRET)
        .env("HOOKFLOW_NOW", "1764000000")
        .output()
        .expect("hookflow runs");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
        outputs: if outputs.exists() {
            read_outputs(&outputs)
        } else {
            Default::default()
        },
        summary: std::fs::read_to_string(&summary).unwrap_or_default(),
    }
}

/// A dispatch carrying `elements` as a batch.
fn batch_event(dir: &Path, elements: Vec<Value>) -> PathBuf {
    let n = elements.len();
    let event = json!({
        "action": "webhook",
        "client_payload": {"batch": elements, "batch_id": "01TESTBATCH", "batch_size": n},
    });
    write(dir, "event.json", &event.to_string())
}

fn element(id: &str, path: &str, headers: Value, body: &str) -> Value {
    json!({"event_type": "webhook", "id": id, "path": path, "method": "POST",
           "headers": headers, "body": body, "received_at": "2026-11-29T08:00:00.000Z",
           "source": "test"})
}

/// A workflow that takes anything below `/notes/webhook`, with a masked output.
fn notes_workflows(dir: &Path) -> PathBuf {
    let workflows = dir.join("workflows");
    write(
        &workflows,
        "notes.yml",
        "on:\n  webhook:\n    outputs:\n      note: $.body.note\n      secret:\n        path: $.body.secret\n        mask: true\n",
    );
    workflows
}

#[test]
fn the_shipped_batch_fixture_verifies_each_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fixture = root().join("fixtures/events/batch-github-and-stripe.json");
    let run = run_in(tmp.path(), &examples(), &fixture, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.outputs["batch_size"], "3");
    assert_eq!(run.outputs["batch_id"], "01JDBATCHFIXTURE0000000000");
    // The single-event outputs describe the first matched event.
    assert_eq!(run.outputs["matched"], "true");
    assert_eq!(run.outputs["workflow"], "github.yml");
    assert_eq!(run.outputs["verified"], "true");
    let events = run.events();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events
            .iter()
            .map(|e| e["index"].clone())
            .collect::<Vec<_>>(),
        [json!(0), json!(1), json!(2)]
    );
    assert_eq!(events[0]["verified"], true);
    assert_eq!(events[0]["outputs"]["event"], "push");
    assert_eq!(events[1]["matched"], false);
    assert!(events[1]["refusal"]
        .as_str()
        .expect("refusal")
        .contains("x-hub-signature-256"));
    assert_eq!(events[2]["workflow"], "stripe.yml");
    assert_eq!(events[2]["verified"], true);
    assert_eq!(events[2]["outputs"]["amount"], 4200);
    assert_eq!(events[2]["body"]["data"]["object"]["id"], "in_1QAbCd");
    // Every element has the same fields, matched or not.
    let keys = |e: &Value| {
        e.as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&events[0]), keys(&events[1]));
    // The refused event is named in the log, as a notice, and in the summary.
    assert!(
        run.stderr
            .contains("::notice::batch[1] (event 01JDBATCH00000000000000001) refused"),
        "{}",
        run.stderr
    );
    assert!(run
        .stderr
        .contains("batch of 3 events: 2 matched, 1 refused"));
    assert!(run
        .summary
        .contains("Batch of 3 events: 2 matched, 1 refused."));
    assert!(
        run.summary.contains(
            "| 2 | 01JDBATCH00000000000000002 | true | true | stripe.yml trigger webhook |"
        ),
        "{}",
        run.summary
    );
}

#[test]
fn a_batch_of_forgeries_fails_the_step() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let forged = json!({"x-github-event": "push", "content-type": "application/json",
                        "x-hub-signature-256": format!("sha256={}", "0".repeat(64))});
    let event = batch_event(
        tmp.path(),
        vec![
            element("e0", "/github/webhook", forged.clone(), r#"{"ref":"a"}"#),
            element("e1", "/github/webhook", forged, r#"{"ref":"b"}"#),
        ],
    );
    let run = run_in(tmp.path(), &examples(), &event, &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("hookflow: refused: batch[0] (event e0): github.yml trigger `webhook`: github signature check failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("batch[1] (event e1)"), "{}", run.stderr);
    assert_eq!(run.outputs["matched"], "false");
    assert_eq!(run.outputs["batch_size"], "2");
    assert!(run.events().iter().all(|e| e["refusal"].is_string()));
}

#[test]
fn a_malformed_event_is_refused_alone_and_named_by_its_json_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let workflows = notes_workflows(tmp.path());
    let ok = element(
        "ok",
        "/notes/webhook",
        json!({"content-type": "application/json"}),
        r#"{"note":"fine"}"#,
    );
    let mut bad_encoding = element("enc", "/notes/webhook", json!({}), "AAAA");
    bad_encoding["body_encoding"] = json!("rot13");
    let mut bad_base64 = element("b64", "/notes/webhook", json!({}), "!!!not base64");
    bad_base64["body_encoding"] = json!("base64");
    let event = batch_event(
        tmp.path(),
        vec![
            json!(42),
            element(
                "hdr",
                "/notes/webhook",
                json!(["not", "an", "object"]),
                "{}",
            ),
            bad_encoding,
            bad_base64,
            ok,
        ],
    );
    let run = run_in(tmp.path(), &workflows, &event, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events = run.events();
    let refusal = |i: usize| events[i]["refusal"].as_str().expect("refused").to_string();
    assert!(
        refusal(0).contains("`$.client_payload.batch[0]` must be an event object, found a number"),
        "{}",
        refusal(0)
    );
    assert!(
        refusal(1).contains("`$.client_payload.batch[1].headers` must be an object"),
        "{}",
        refusal(1)
    );
    assert!(
        refusal(2).contains("`$.client_payload.batch[2].body_encoding` is \"rot13\""),
        "{}",
        refusal(2)
    );
    assert!(
        refusal(3).contains("in `$.client_payload.batch[3]`") && refusal(3).contains("base64"),
        "{}",
        refusal(3)
    );
    assert_eq!(events[4]["matched"], true);
    assert_eq!(events[4]["outputs"]["note"], "fine");
    assert_eq!(run.outputs["note"], "fine");
    assert_eq!(events[0]["id"], Value::Null);
    assert_eq!(events[1]["id"], "hdr");
}

#[test]
fn a_batch_that_is_not_a_list_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let event = write(
        tmp.path(),
        "event.json",
        r#"{"action":"webhook","client_payload":{"batch":{"path":"/x"}}}"#,
    );
    let run = run_in(tmp.path(), &examples(), &event, &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr
            .contains("`$.client_payload.batch` must be a list of event objects, found an object"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_empty_batch_matches_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let event = batch_event(tmp.path(), Vec::new());
    let run = run_in(tmp.path(), &examples(), &event, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("no match: the batch carries no events"),
        "{}",
        run.stderr
    );
    assert_eq!(run.outputs["batch_size"], "0");
    assert_eq!(run.outputs["events"], "[]");
}

/// Gzip bombs spread over a batch: the body limit bounds all its events together.
#[test]
fn the_body_limit_covers_the_whole_batch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let workflows = notes_workflows(tmp.path());
    let zeros = {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'0'; 600 * 1024]).expect("gzip");
        base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
    };
    let bomb = |id: &str| {
        let mut e = element(
            id,
            "/notes/webhook",
            json!({"content-type": "text/plain"}),
            &zeros,
        );
        e["body_encoding"] = json!("gzip+base64");
        e
    };
    let event = batch_event(tmp.path(), vec![bomb("a"), bomb("b"), bomb("c")]);
    let run = run_in(
        tmp.path(),
        &workflows,
        &event,
        &["--max-body-bytes", "1048576"],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    let events = run.events();
    assert_eq!(events[0]["matched"], true);
    for e in &events[1..] {
        let refusal = e["refusal"].as_str().expect("refused");
        assert!(
            refusal.contains("larger than what is left of the batch's 1048576-byte body limit"),
            "{refusal}"
        );
    }
}

/// Masked values never reach `events` (GitHub drops a job output holding one): `***` in their
/// place, the exact body in a file; every event's secrets are masked in the log.
#[test]
fn secrets_of_every_event_are_masked_and_kept_out_of_events() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let workflows = notes_workflows(tmp.path());
    let event = batch_event(
        tmp.path(),
        vec![
            element(
                "a",
                "/notes/webhook",
                json!({"content-type": "application/json", "authorization": "Bearer first-credential"}),
                r#"{"note":"one","secret":"first-masked-value"}"#,
            ),
            element(
                "b",
                "/notes/webhook",
                json!({"content-type": "application/json", "x-api-key": "second-credential"}),
                r#"{"note":"two","secret":"second-masked-value"}"#,
            ),
        ],
    );
    let run = run_in(tmp.path(), &workflows, &event, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    for secret in [
        "Bearer first-credential",
        "second-credential",
        "first-masked-value",
        "second-masked-value",
    ] {
        assert!(
            run.stdout.contains(&format!("::add-mask::{secret}\n")),
            "{secret} masked: {}",
            run.stdout
        );
        assert!(
            !run.outputs["events"].contains(secret),
            "{secret} kept out of events"
        );
        assert!(!run.summary.contains(secret));
    }
    let events = run.events();
    assert_eq!(
        events[1]["outputs"],
        json!({"note": "two", "secret": "***"})
    );
    assert_eq!(
        events[1]["headers"],
        json!({"content-type": "application/json"})
    );
    // The body held a masked value: `***` in `events`, the exact body in its file.
    assert_eq!(events[0]["body"], json!({"note": "one", "secret": "***"}));
    assert_eq!(events[0]["body_redacted"], true);
    let file = events[0]["body_file"].as_str().expect("a body file");
    assert_eq!(
        std::fs::read_to_string(file).expect("body file"),
        r#"{"note":"one","secret":"first-masked-value"}"#
    );

    // --json prints them as *** unless asked.
    let out = hookflow()
        .args(["run", "--json", "--event"])
        .arg(&event)
        .arg("--workflows")
        .arg(&workflows)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("second-masked-value") && !text.contains("first-credential"),
        "{text}"
    );
}

/// `events` stays under GitHub's 1 MB job-output limit: bodies past the budget are left out
/// and written to their own `body_file`.
#[test]
fn large_bodies_go_to_files_and_events_stays_small() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let workflows = notes_workflows(tmp.path());
    let bodies: Vec<String> = (0..4)
        .map(|i| format!("{i}{}", "x".repeat(200 * 1024)))
        .collect();
    let event = batch_event(
        tmp.path(),
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                element(
                    &format!("e{i}"),
                    "/notes/webhook",
                    json!({"content-type": "text/plain"}),
                    b,
                )
            })
            .collect(),
    );
    let run = run_in(tmp.path(), &workflows, &event, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.outputs["events"].len() < 600 * 1024,
        "{}",
        run.outputs["events"].len()
    );
    let events = run.events();
    for (i, e) in events.iter().enumerate() {
        if i < 2 {
            assert_eq!(e["body"], bodies[i].as_str());
            assert_eq!(e["body_omitted"], false);
            assert_eq!(e["body_file"], Value::Null);
        } else {
            assert_eq!(e["body"], Value::Null);
            assert_eq!(e["body_omitted"], true);
            let file = e["body_file"].as_str().expect("a body file");
            assert!(Path::new(file).starts_with(tmp.path()), "under RUNNER_TEMP");
            assert_eq!(std::fs::read_to_string(file).expect("body file"), bodies[i]);
        }
    }
}

#[test]
fn a_single_dispatch_is_a_batch_of_one_and_other_events_of_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let single = root().join("fixtures/events/stripe-invoice-paid.json");
    let run = run_in(tmp.path(), &examples(), &single, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.outputs["batch_size"], "1");
    assert_eq!(run.outputs["batch_id"], "");
    let events = run.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["request_id"], run.outputs["request_id"].as_str());
    assert_eq!(events[0]["outputs"]["invoice"], "in_1QAbCd");

    let push = write(tmp.path(), "push.json", r#"{"ref":"refs/heads/main"}"#);
    let out = tmp.path().join("push-outputs.txt");
    hookflow()
        .args(["run", "--event-name", "push", "--event"])
        .arg(&push)
        .arg("--workflows")
        .arg(examples())
        .env("GITHUB_OUTPUT", &out)
        .assert()
        .success();
    let outputs = read_outputs(&out);
    assert_eq!(outputs["batch_size"], "0");
    assert_eq!(outputs["events"], "[]");
}
