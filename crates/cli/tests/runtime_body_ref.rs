//! `hookflow run` on a dispatch whose body is kept by the relay (`client_payload.body_ref`): the
//! body is fetched over real HTTP on 127.0.0.1, checked against its size and SHA-256, and then
//! read exactly as an inline body, signatures included. A small real server plays the relay's
//! `GET /bodies/<id>` (URL signatures checked with the protocol's own code).

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use hookflow_protocol::body_ref::{check_url, Referrer};
use serde_json::{json, Value};
use support::cli::{github_signature, hookflow, root, run_step, write, StepRun};

const URL_SECRET: &[u8] = b"relay-url-secret";
const WEBHOOK_SECRET: &str = "hookflow-example-secret";

/// Bodies by event id; `tamper` serves other bytes than those stored.
#[derive(Default)]
struct Bodies {
    stored: HashMap<String, Vec<u8>>,
    tamper: bool,
}

type Shared = Arc<Mutex<Bodies>>;

async fn serve_body(
    State(bodies): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> axum::response::Response {
    let now = chrono::Utc::now().timestamp();
    if check_url(URL_SECRET, &id, query.as_deref().unwrap_or(""), now).is_err() {
        return (StatusCode::FORBIDDEN, "bad or expired signature").into_response();
    }
    let b = bodies.lock().expect("lock");
    match b.stored.get(&id) {
        None => (StatusCode::NOT_FOUND, "pruned").into_response(),
        Some(bytes) if b.tamper => {
            let mut other = bytes.clone();
            if let Some(first) = other.first_mut() {
                *first ^= 1;
            }
            other.into_response()
        }
        Some(bytes) => bytes.clone().into_response(),
    }
}

async fn start() -> (SocketAddr, Shared) {
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/bodies/{id}", axum::routing::get(serve_body))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

/// Stores `body` for event `id` and writes a dispatch naming it by reference.
fn event_with_ref(
    dir: &Path,
    addr: SocketAddr,
    shared: &Shared,
    id: &str,
    body: &[u8],
    expires: i64,
) -> PathBuf {
    shared
        .lock()
        .expect("lock")
        .stored
        .insert(id.to_string(), body.to_vec());
    let referrer = Referrer {
        public_url: format!("http://{addr}"),
        secret: URL_SECRET.to_vec(),
    };
    let r = referrer.reference(id, body, expires);
    let event = json!({"action": "webhook", "client_payload": {
        "path": "/github/webhook", "method": "POST",
        "headers": {"content-type": "application/json", "x-github-event": "push",
                    "x-hub-signature-256": github_signature(WEBHOOK_SECRET, body)},
        "body_ref": r.to_value(), "id": id}});
    write(dir, &format!("{id}.json"), &event.to_string())
}

async fn run(dir: &Path, event: &Path, hosts: &str) -> StepRun {
    let (dir, event, hosts) = (dir.to_path_buf(), event.to_path_buf(), hosts.to_string());
    tokio::task::spawn_blocking(move || {
        run_step(
            &event,
            &dir.join("outputs.txt"),
            &dir,
            WEBHOOK_SECRET,
            &hosts,
            &[],
        )
    })
    .await
    .expect("joined")
}

fn later() -> i64 {
    chrono::Utc::now().timestamp() + 3600
}

/// A signed 5 MB GitHub push by reference verifies over the exact bytes fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_by_reference_is_fetched_checked_and_verified() {
    let (addr, shared) = start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = support::examples::push_of_size(5 * 1024 * 1024);
    assert!(body.len() >= 5 * 1024 * 1024);
    let event = event_with_ref(tmp.path(), addr, &shared, "01JBIG", &body, later());
    let r = run(tmp.path(), &event, &addr.to_string()).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.outputs["matched"], "true");
    assert_eq!(
        r.outputs["verified"], "true",
        "the signature covers the fetched bytes"
    );
    assert_eq!(r.outputs["event"], "push");
    // Over 1 MiB: the body is in body_file, byte for byte the compact JSON of what was sent.
    let file = &r.outputs["body_file"];
    let written: Value =
        serde_json::from_slice(&std::fs::read(file).expect("body file")).expect("JSON");
    assert_eq!(
        written,
        serde_json::from_slice::<Value>(&body).expect("JSON")
    );
    // The download itself is not left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("body-ref"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_fail_the_step_naming_the_url_and_why() {
    let (addr, shared) = start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let body = support::examples::push_of_size(200 * 1024);
    let hosts = addr.to_string();
    let url = format!("http://{addr}/bodies/");

    // Changed on the way: the digest does not match.
    let event = event_with_ref(tmp.path(), addr, &shared, "01JTAMPER", &body, later());
    shared.lock().expect("lock").tamper = true;
    let r = run(tmp.path(), &event, &hosts).await;
    shared.lock().expect("lock").tamper = false;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "cannot fetch the body at {url}01JTAMPER: the SHA-256"
        )),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("sig="),
        "the signature is not printed: {}",
        r.stderr
    );

    // Expired: the relay answers 403.
    let event = event_with_ref(
        tmp.path(),
        addr,
        &shared,
        "01JOLD",
        &body,
        chrono::Utc::now().timestamp() - 1,
    );
    let r = run(tmp.path(), &event, &hosts).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("01JOLD: the relay refused the URL (403)"),
        "{}",
        r.stderr
    );

    // Forged: a URL for another event with this one's signature.
    let event = event_with_ref(tmp.path(), addr, &shared, "01JREAL", &body, later());
    let text = std::fs::read_to_string(&event)
        .expect("event")
        .replace("/bodies/01JREAL?", "/bodies/01JOTHER?");
    shared
        .lock()
        .expect("lock")
        .stored
        .insert("01JOTHER".into(), b"secret of another".to_vec());
    let forged = write(tmp.path(), "forged.json", &text);
    let r = run(tmp.path(), &forged, &hosts).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("01JOTHER: the relay refused the URL (403)"),
        "{}",
        r.stderr
    );

    // Pruned: 404.
    let event = event_with_ref(tmp.path(), addr, &shared, "01JGONE", &body, later());
    shared.lock().expect("lock").stored.remove("01JGONE");
    let r = run(tmp.path(), &event, &hosts).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("01JGONE: the relay no longer has this body (404)"),
        "{}",
        r.stderr
    );

    // A host that is not allowed over plain http is not contacted.
    let event = event_with_ref(tmp.path(), addr, &shared, "01JHOST", &body, later());
    let r = run(tmp.path(), &event, "").await;
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("only https URLs are fetched; allow"),
        "{}",
        r.stderr
    );

    // Over --max-body-bytes: refused before fetching.
    let event = event_with_ref(tmp.path(), addr, &shared, "01JLIMIT", &body, later());
    let out = hookflow()
        .args(["run", "--max-body-bytes", "1000", "--event"])
        .arg(&event)
        .arg("--workflows")
        .arg(root().join("examples/workflows"))
        .env("HOOKFLOW_BODY_HOSTS", &hosts)
        .env("EXAMPLE_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("over the 1000-byte limit"), "{stderr}");
}
