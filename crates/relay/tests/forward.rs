//! HTTP destinations against a receiver on 127.0.0.1: exact bytes, event headers, the Standard
//! Webhooks signature (the specification's own example, and the project's `verify`), and how
//! answers map to outcomes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hookflow_protocol::signature::{verify, Scheme};
use hookflow_relay::outbound::forward::{DestinationError, Forwarder, HttpDestination, Message};
use hookflow_relay::outbound::github::Outcome;
use serde_json::{Map, Value};

/// The Standard Webhooks specification's example secret.
const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A request as the receiver saw it.
type Received = (HeaderMap, Vec<u8>);

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(seen): State<Seen>,
    axum::extract::Path(answer): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    seen.requests
        .lock()
        .expect("lock")
        .push((headers, body.to_vec()));
    match answer.as_str() {
        "ok" => StatusCode::NO_CONTENT.into_response(),
        "gone" => (StatusCode::NOT_FOUND, "no such hook").into_response(),
        "busy" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            "slow down",
        )
            .into_response(),
        "broken" => (StatusCode::BAD_GATEWAY, "upstream down").into_response(),
        "moved" => (
            StatusCode::FOUND,
            [("location", "https://elsewhere.example/hook")],
            "",
        )
            .into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::NO_CONTENT.into_response()
        }
        "endless" => {
            // An error answer whose body never ends.
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 64 * 1024]))
            });
            (
                StatusCode::BAD_REQUEST,
                axum::body::Body::from_stream(chunks),
            )
                .into_response()
        }
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn receiver() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/{answer}", post(receive))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

fn message<'a>(body: &'a [u8]) -> Message<'a> {
    Message {
        event_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        endpoint: "stripe",
        event_type: "invoice.paid",
        content_type: Some("application/json"),
        body,
        now_s: 1_614_265_330,
    }
}

fn as_map(headers: &HeaderMap) -> Map<String, Value> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(v.to_str().unwrap_or_default().to_string()),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_exact_bytes_go_out_named_and_signed_as_the_specification_says() {
    let (addr, seen) = receiver().await;
    let to = HttpDestination::new(
        &format!("http://{addr}/ok"),
        Some(SPEC_SECRET.into()),
        &[("X-Team".into(), "billing".into())],
        None,
    )
    .expect("destination");
    let body = br#"{"test": 2432232314}"#;
    let forwarder = Forwarder::new(Duration::from_secs(2)).expect("client");
    assert_eq!(
        forwarder.send(&to, &message(body)).await,
        Outcome::Delivered
    );
    let (headers, got) = seen.requests.lock().expect("lock")[0].clone();
    assert_eq!(got, body, "byte for byte");
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("x-hookflow-event-id"), "msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert_eq!(h("x-hookflow-endpoint"), "stripe");
    assert_eq!(h("x-hookflow-event-type"), "invoice.paid");
    assert_eq!(h("x-team"), "billing");
    // The specification's published example, byte for byte.
    assert_eq!(h("webhook-id"), "msg_p5jXN8AQM9LWM0D4loKWxJek");
    assert_eq!(h("webhook-timestamp"), "1614265330");
    assert_eq!(
        h("webhook-signature"),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    // And the project's own verify preset accepts it.
    assert_eq!(
        verify(
            &Scheme::StandardWebhooks,
            &as_map(&headers),
            &got,
            SPEC_SECRET.as_bytes(),
            1_614_265_330,
            300
        ),
        Ok(())
    );
}

#[tokio::test]
async fn answers_map_to_delivered_retry_or_dead() {
    let (addr, seen) = receiver().await;
    let forwarder = Forwarder::new(Duration::from_millis(500)).expect("client");
    let to = |path: &str| {
        HttpDestination::new(
            &format!("http://{addr}/{path}"),
            None,
            &[],
            Some("X-Relay-"),
        )
        .expect("destination")
    };
    let body = b"plain text, not JSON";
    let send = |path: &'static str| {
        let (forwarder, to) = (forwarder.clone(), to(path));
        async move { forwarder.send(&to, &message(body)).await }
    };
    assert!(
        matches!(send("gone").await, Outcome::Failed { status: 404, reason } if reason.contains("no such hook"))
    );
    assert!(
        matches!(send("busy").await, Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
    );
    assert!(matches!(
        send("broken").await,
        Outcome::Retry { after: None, .. }
    ));
    assert!(
        matches!(send("moved").await, Outcome::Failed { status: 302, reason } if reason.contains("redirects are not followed") && reason.contains("https://elsewhere.example/hook"))
    );
    assert!(
        matches!(send("slow").await, Outcome::Retry { reason, .. } if reason.contains("timed out"))
    );
    let unsigned = seen.requests.lock().expect("lock")[0].0.clone();
    assert!(
        unsigned.get("webhook-signature").is_none(),
        "no secret, no signature"
    );
    assert_eq!(
        unsigned
            .get("x-relay-event-id")
            .and_then(|v| v.to_str().ok()),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
        "the configured prefix"
    );
    // An answer without end: the start is read, the rest left, the attempt over at once.
    // (A patient client: without the cap it would read until its timeout.)
    let patient = Forwarder::new(Duration::from_secs(30)).expect("client");
    let started = std::time::Instant::now();
    assert!(
        matches!(patient.send(&to("endless"), &message(body)).await, Outcome::Failed { status: 400, reason } if reason.len() < 400)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Nobody listening: worth a retry.
    let closed = HttpDestination::new("http://127.0.0.1:9/x", None, &[], None).expect("dest");
    assert!(matches!(
        forwarder.send(&closed, &message(body)).await,
        Outcome::Retry { reason, .. } if reason.contains("could not connect")
    ));
}

#[test]
fn destinations_that_cannot_work_are_refused() {
    assert_eq!(
        HttpDestination::new("ftp://files.example/x", None, &[], None).err(),
        Some(DestinationError::Url("ftp://files.example/x".into()))
    );
    assert!(HttpDestination::new("not a url", None, &[], None).is_err());
    assert_eq!(
        HttpDestination::new("https://h.example/x", Some("whsec_!!!".into()), &[], None).err(),
        Some(DestinationError::Secret)
    );
    assert_eq!(
        HttpDestination::new(
            "https://h.example/x",
            None,
            &[("Bad Header".into(), "v".into())],
            None
        )
        .err(),
        Some(DestinationError::Header("Bad Header".into()))
    );
    let d = HttpDestination::new("https://h.example/x", Some(SPEC_SECRET.into()), &[], None)
        .expect("ok");
    assert!(
        !format!("{d:?}").contains("whsec"),
        "the secret is never printed"
    );
}
