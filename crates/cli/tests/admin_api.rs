//! The admin API over real HTTP on 127.0.0.1, on SQLite and on PostgreSQL: the event log's list
//! and filters, one event with its attempts, replays (one event, and by filter) that deliver to
//! the fake GitHub, the queue's health, the OpenAPI description, and the tokens that guard it.

use crate::support;

use std::time::Duration;

use hookflow_protocol::Environment;
use hookflow_relay::config::{Overrides, RelayConfig};
use hookflow_relay::Running;
use serde_json::{json, Value};
use support::fake_github::{Answer, FakeGithub};
use support::relay::{http, on_both_stores, settled};

const TOKEN_A: &str = "admin-token-aaaaaaaaaaaaaaaa";
const TOKEN_B: &str = "admin-token-bbbbbbbbbbbbbbbb";

async fn start(dir: &std::path::Path, gh: &FakeGithub, store: Option<&str>) -> Running {
    let text = format!(
        "listen: 127.0.0.1:0
data: {}
api_url: {}
{}admin:
  listen: 127.0.0.1:0
  tokens_env: ADMIN_TOKENS
delivery:
  initial_backoff: 50ms
  max_backoff: 200ms
  timeout: 2s
  rate_limit_per_minute: 0
endpoints:
  - slug: gh
    repo: octo/hooks
    token_env: GH_TOKEN
  - slug: broken
    repo: octo/dead
    token_env: GH_TOKEN
",
        dir.join("data").display(),
        gh.url(),
        store.map(|s| format!("store: {s}\n")).unwrap_or_default(),
    );
    let config = RelayConfig::parse(&text, "admin.yml", &Overrides::default()).expect("parses");
    let env = Environment::with_vars(vec![
        ("GH_TOKEN".into(), "ghp_admin_test".into()),
        ("ADMIN_TOKENS".into(), format!("{TOKEN_A}, {TOKEN_B}")),
    ]);
    hookflow_relay::start(config, env).await.expect("starts")
}

/// GETs `path` of the admin API with `token`; the status and the JSON answer.
async fn get(r: &Running, path: &str, token: Option<&str>) -> (u16, Value) {
    let addr = r.admin_addr.expect("the admin API listens");
    let mut req = http().get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(r: &Running, path: &str, body: Value) -> (u16, Value) {
    let addr = r.admin_addr.expect("the admin API listens");
    let resp = http()
        .post(format!("http://{addr}{path}"))
        .bearer_auth(TOKEN_A)
        .json(&body)
        .send()
        .await
        .expect("answered");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| e["id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the event's every delivery is in `status`.
async fn wait_status(r: &Running, id: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (_, e) = get(r, &format!("/api/events/{id}"), Some(TOKEN_A)).await;
        if e["status"] == status {
            return e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{id} never became {status}: {e}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn admin_story(store: Option<&str>) {
    let gh = FakeGithub::start().await;
    gh.script_for("octo/dead", vec![Answer::not_found()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, store).await;
    let public = format!("http://{}", r.addr);
    let mut sent = Vec::new();
    for (slug, delivery) in [
        ("gh", "d-1"),
        ("gh", "d-2"),
        ("broken", "d-3"),
        ("gh", "d-4"),
    ] {
        let resp = http()
            .post(format!("{public}/hooks/{slug}/push?ref=main"))
            .header("x-github-delivery", delivery)
            .header("x-github-event", "push")
            .header("content-type", "application/json")
            .header("authorization", "Bearer sender-secret")
            .body(json!({"delivery": delivery, "pad": "x".repeat(6000)}).to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 202);
        let answer: Value = resp.json().await.expect("json");
        sent.push(answer["event_id"].as_str().expect("id").to_string());
        // Distinct milliseconds, so the ids sort as they were sent.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    settled(&r).await;

    // Guarded: no token, a wrong one; either configured token works; never on the public port.
    let (status, answer) = get(&r, "/api/events", None).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["message"]
        .as_str()
        .unwrap_or_default()
        .contains("Bearer"));
    assert_eq!(
        get(&r, "/api/events", Some("admin-token-wrong-wrong"))
            .await
            .0,
        401
    );
    assert_eq!(get(&r, "/api/health", Some(TOKEN_B)).await.0, 200);
    let resp = http()
        .get(format!("{public}/api/events"))
        .send()
        .await
        .expect("answered");
    let text = resp.text().await.expect("text");
    assert!(
        !text.contains("\"events\""),
        "the webhook port has no admin API: {text}"
    );

    // The list, newest first, and its filters.
    let (status, page) = get(&r, "/api/events", Some(TOKEN_A)).await;
    assert_eq!(status, 200, "{page}");
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(ids(&page), newest_first);
    assert_eq!(page["next"], Value::Null);
    assert_eq!(page["events"][1]["status"], "dead");
    assert_eq!(page["events"][0]["status"], "delivered");
    assert_eq!(page["events"][0]["path"], "/gh/webhook/push?ref=main");
    for (query, want) in [
        ("status=dead", vec![sent[2].clone()]),
        ("repository=octo/dead", vec![sent[2].clone()]),
        ("source=broken", vec![sent[2].clone()]),
        ("delivery=d-2", vec![sent[1].clone()]),
        (
            "status=delivered&repository=octo/hooks",
            vec![sent[3].clone(), sent[1].clone(), sent[0].clone()],
        ),
        ("q=webhook/push", newest_first.clone()),
        ("q=nowhere", vec![]),
    ] {
        let (status, page) = get(&r, &format!("/api/events?{query}"), Some(TOKEN_A)).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), want, "{query}");
    }
    let (_, first) = get(&r, "/api/events?limit=3", Some(TOKEN_A)).await;
    assert_eq!(ids(&first).len(), 3);
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = get(
        &r,
        &format!("/api/events?limit=3&before={next}"),
        Some(TOKEN_A),
    )
    .await;
    assert_eq!(ids(&second), vec![sent[0].clone()]);
    assert_eq!(second["next"], Value::Null);
    for bad in ["status=lost", "since=yesterday", "limit=0", "colour=red"] {
        let (status, answer) = get(&r, &format!("/api/events?{bad}"), Some(TOKEN_A)).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }

    // The CLI: through the admin API, and on the store itself; the same JSON either way.
    let admin_url = format!("http://{}", r.admin_addr.expect("admin"));
    let offline: Vec<String> = match store {
        Some(url) => vec!["--store".into(), url.into()],
        None => vec![
            "--data".into(),
            dir.path().join("data").display().to_string(),
        ],
    };
    let online = vec!["--admin-url".to_string(), admin_url.clone()];
    for from in [&online, &offline] {
        let out = cli(&[
            &["relay", "events", "list", "--status", "dead", "--json"][..],
            &strs(from),
        ]
        .concat())
        .await;
        assert_eq!(out.0, 0, "{}", out.2);
        let page: Value = serde_json::from_str(&out.1).expect("JSON");
        assert_eq!(ids(&page), vec![sent[2].clone()], "{from:?}");
        let out = cli(&[&["relay", "events", "list"][..], &strs(from)].concat()).await;
        assert!(
            out.1.contains(&sent[2]) && out.1.contains("4 event(s)"),
            "{}",
            out.1
        );
        let out = cli(&[
            &["relay", "events", "show", sent[2].as_str()][..],
            &strs(from),
        ]
        .concat())
        .await;
        assert_eq!(out.0, 0, "{}", out.2);
        assert!(
            out.1.contains("repo:octo/dead: dead after 1 attempt(s)"),
            "{}",
            out.1
        );
        assert!(out.1.contains(" 404 "), "{}", out.1);
    }
    let out = cli_env(
        &[&["relay", "events", "list"][..], &strs(&online)].concat(),
        &[("HOOKFLOW_ADMIN_TOKEN", "admin-token-not-this-one")],
    )
    .await;
    assert_eq!(out.0, 2);
    assert!(out.2.contains("the admin API answered 401"), "{}", out.2);

    // One event whole: headers without credentials, a body preview, its attempt.
    let (status, dead) = get(&r, &format!("/api/events/{}", sent[2]), Some(TOKEN_A)).await;
    assert_eq!(status, 200, "{dead}");
    assert_eq!(dead["headers"]["x-github-delivery"], "d-3");
    assert!(
        dead["headers"].get("authorization").is_none(),
        "{}",
        dead["headers"]
    );
    assert_eq!(dead["body"]["truncated"], true);
    assert_eq!(dead["body"]["encoding"], "text");
    assert_eq!(dead["body"]["preview"].as_str().map(str::len), Some(4096));
    let tries = &dead["deliveries"][0]["tries"];
    assert_eq!(tries.as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(tries[0]["outcome"], "dead");
    assert_eq!(tries[0]["status"], 404);
    assert_eq!(tries[0]["chain"], 0);
    assert!(tries[0]["took_ms"].is_u64());
    assert_eq!(
        get(&r, "/api/events/01JNOSUCHEVENT00000000000", Some(TOKEN_A))
            .await
            .0,
        404
    );

    // Replay the dead letter: GitHub takes it now; its log shows both chains.
    let (status, answer) = post(&r, &format!("/api/events/{}/replay", sent[2]), json!({})).await;
    assert_eq!((status, &answer["replayed"]), (200, &json!(1)), "{answer}");
    let replayed = wait_status(&r, &sent[2], "delivered").await;
    let tries = replayed["deliveries"][0]["tries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        tries
            .iter()
            .map(|t| (t["chain"].clone(), t["outcome"].clone()))
            .collect::<Vec<_>>(),
        vec![(json!(0), json!("dead")), (json!(1), json!("delivered"))]
    );
    assert_eq!(replayed["deliveries"][0]["chain"], 1);
    assert_eq!(
        post(
            &r,
            "/api/events/01JNOSUCHEVENT00000000000/replay",
            json!({})
        )
        .await
        .0,
        404
    );

    // Replay by filter: at least one filter, at most `limit` events.
    assert_eq!(post(&r, "/api/replay", json!({})).await.0, 400);
    assert_eq!(post(&r, "/api/replay", json!([1])).await.0, 400);
    let before = gh.delivered().len();
    let (status, answer) = post(
        &r,
        "/api/replay",
        json!({"source": "gh", "status": "delivered", "limit": 2}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["events"], &answer["replayed"]),
        (&json!(2), &json!(2))
    );
    settled(&r).await;
    assert_eq!(
        gh.delivered().len(),
        before + 2,
        "the two newest of gh went again"
    );

    // A replay from the CLI, on the store: the relay picks it up.
    let before = gh.delivered().len();
    let out = cli(&[
        &["relay", "events", "replay", sent[0].as_str()][..],
        &strs(&offline),
    ]
    .concat())
    .await;
    assert_eq!(out.0, 0, "{}", out.2);
    assert!(out.2.contains("1 delivery(ies) queued again"), "{}", out.2);
    let started = std::time::Instant::now();
    while gh.delivered().len() < before + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the CLI's replay was delivered"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // Health and the description.
    let (status, h) = get(&r, "/api/health", Some(TOKEN_A)).await;
    assert_eq!(status, 200);
    assert_eq!((&h["pending"], &h["dead"]), (&json!(0), &json!(0)), "{h}");
    assert!(
        h["delivered_total"].as_u64().unwrap_or_default() >= 6,
        "{h}"
    );
    // The last hour per minute: this relay's deliveries are in the minute under way (or, if a
    // minute turned during the test, the one before).
    let minutes = |k: &str| -> Vec<u64> {
        h["last_hour"][k]
            .as_array()
            .expect("60 minutes")
            .iter()
            .map(|v| v.as_u64().expect("count"))
            .collect()
    };
    let (delivered, failed) = (minutes("delivered"), minutes("failed"));
    assert_eq!((delivered.len(), failed.len()), (60, 60), "{h}");
    assert_eq!(
        delivered.iter().sum::<u64>(),
        h["delivered_total"].as_u64().expect("total"),
        "{h}"
    );
    assert!(failed.iter().sum::<u64>() >= 1, "the 404s: {h}");
    assert!(delivered[..58].iter().all(|n| *n == 0), "{h}");
    let (status, spec) = get(&r, "/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/api/events"].is_object());
    r.stop().await;
}

/// A page's HTML, signed in with `session` (a `name=value` cookie).
async fn signed_in_page(client: &reqwest::Client, url: &str, session: &str) -> String {
    client
        .get(url)
        .header("cookie", session)
        .send()
        .await
        .expect("answered")
        .text()
        .await
        .expect("html")
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs the hookflow binary with the admin token; its exit code, stdout and stderr.
async fn cli(args: &[&str]) -> (i32, String, String) {
    cli_env(args, &[("HOOKFLOW_ADMIN_TOKEN", TOKEN_B)]).await
}

async fn cli_env(args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = support::cli::hookflow()
            .args(&args)
            .envs(vars)
            .env_remove("HOOKFLOW_ADMIN_URL")
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("joined")
}

on_both_stores!(admin_story: the_admin_api_on_sqlite, the_admin_api_on_postgres);

/// The admin page over real HTTP: sign-in, the list and an event rendered from the log with
/// hostile request text escaped, a strict CSP, and a replay from a same-origin form only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_signs_in_lists_shows_and_replays() {
    let gh = FakeGithub::start().await;
    gh.script_for("octo/dead", vec![Answer::not_found()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, None).await;
    let admin = format!("http://{}", r.admin_addr.expect("admin"));
    let resp = http()
        .post(format!(
            "http://{}/hooks/broken/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            r.addr
        ))
        .header("x-evil", "<img src=x onerror=alert(2)>")
        .body("<b>body</b>")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.expect("json")["event_id"]
        .as_str()
        .expect("id")
        .to_string();
    settled(&r).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Signed out: every page sends to the sign-in form.
    let resp = browser
        .get(format!("{admin}/"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/login");
    let resp = browser
        .get(format!("{admin}/"))
        .header("cookie", "hookflow_admin=99999999999.0000")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 303, "a forged session");
    let resp = browser
        .post(format!("{admin}/login"))
        .form(&[("token", "not-an-admin-token")])
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = browser
        .post(format!("{admin}/login"))
        .form(&[("token", TOKEN_A)])
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("pair").to_string();

    // The list: health, the event, hostile text escaped, a strict CSP, auto-refresh.
    let resp = browser
        .get(format!("{admin}/?status=dead"))
        .header("cookie", &session)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("style-src 'self'"),
        "{csp}"
    );
    let html = resp.text().await.expect("html");
    assert!(html.contains(&id), "{html}");
    assert!(html.contains("dead letters"));
    assert!(html.contains("http-equiv=\"refresh\""));
    // The last hour's chart: inline SVG, a red bar for the dead letter's failed attempt.
    assert!(html.contains("<svg role=\"img\""), "{html}");
    assert!(html.contains("<rect class=\"bad\""), "{html}");
    assert!(html.contains("failed, last hour"), "{html}");
    // The path is shown as it was received (percent-encoded), never decoded into markup.
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("/broken/webhook/%3Cscript%3E"), "{html}");
    let html = signed_in_page(&browser, &format!("{admin}/?refresh=off"), &session).await;
    assert!(!html.contains("http-equiv=\"refresh\""));

    // The event: its attempt and headers, escaped.
    let html = signed_in_page(&browser, &format!("{admin}/events/{id}"), &session).await;
    assert!(html.contains("404"), "{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
    assert!(html.contains("&lt;b&gt;body&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<img"), "{html}");

    // Replay: refused from another site's form, done from this one.
    let resp = browser
        .post(format!("{admin}/events/{id}/replay"))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 403);
    let resp = browser
        .post(format!("{admin}/events/{id}/replay"))
        .header("cookie", &session)
        .header("origin", &admin)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], format!("/events/{id}"));
    wait_status(&r, &id, "delivered").await;
    let css = browser
        .get(format!("{admin}/style.css"))
        .send()
        .await
        .expect("answered");
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    r.stop().await;
}

/// The admin page in a real browser (headless Chromium): signing in, a delivered and a dead
/// event listed, the dead one's attempts, and its replay button delivering it to the fake
/// GitHub. A screenshot goes to target/browser-screenshots/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_in_a_real_browser() {
    let Some(driver) = support::browser::driver() else {
        return;
    };
    let gh = FakeGithub::start().await;
    gh.script_for("octo/dead", vec![Answer::not_found()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let r = start(dir.path(), &gh, None).await;
    let mut ids = Vec::new();
    for slug in ["gh", "broken"] {
        let resp = http()
            .post(format!("http://{}/hooks/{slug}", r.addr))
            .header("content-type", "application/json")
            .body(format!(r#"{{"from": "{slug}"}}"#))
            .send()
            .await
            .expect("sent");
        ids.push(
            resp.json::<Value>().await.expect("json")["event_id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    settled(&r).await;
    let admin = format!("http://{}", r.admin_addr.expect("admin"));
    let browser = support::browser::Browser::start(&driver).await;
    browser.go(&format!("{admin}/?refresh=off")).await;
    assert!(
        browser.url().await.ends_with("/login"),
        "signed out: the sign-in page"
    );
    browser.type_into("input[name=token]", TOKEN_A).await;
    browser.click("form.login button").await;
    let html = browser
        .wait_for_text(&ids[1], Duration::from_secs(10))
        .await;
    assert!(html.contains(&ids[0]), "both events are listed");
    assert!(html.contains("badge delivered") && html.contains("badge dead"));
    let shot = browser.screenshot().await;
    let out = support::cli::root().join("target/browser-screenshots");
    std::fs::create_dir_all(&out).expect("screenshot folder");
    std::fs::write(out.join("admin-events.png"), &shot).expect("screenshot");
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");

    browser
        .click(&format!("a[href='/events/{}']", ids[1]))
        .await;
    let html = browser
        .wait_for_text("Replay", Duration::from_secs(10))
        .await;
    assert!(html.contains("404"), "the dead attempt: {html}");
    browser.click("form button").await;
    let html = browser
        .wait_for_text("chain 1 · delivered", Duration::from_secs(15))
        .await;
    assert!(html.contains("badge delivered"), "{html}");
    std::fs::write(out.join("admin-event.png"), browser.screenshot().await).expect("screenshot");
    assert!(
        gh.delivered()
            .iter()
            .any(|d| d.event_ids().contains(&ids[1])),
        "the replay reached GitHub"
    );
    drop(browser);
    r.stop().await;
}
