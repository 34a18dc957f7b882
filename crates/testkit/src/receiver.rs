//! A plain HTTP destination for relay tests: a real HTTP server on 127.0.0.1 that records every
//! request (headers and exact body) and answers the statuses it is told.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The path and query.
    pub path: String,
    /// Lowercase header names with their values.
    pub headers: Vec<(String, String)>,
    /// The exact body.
    pub body: Vec<u8>,
    /// The status answered.
    pub status: u16,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<u16>,
    received: Vec<Received>,
}

/// A running receiver.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    addr: std::net::SocketAddr,
}

impl Receiver {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let addr = crate::fake_github::serve(app, "127.0.0.1:0").await;
        Receiver { inner, addr }
    }

    /// The URL of `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers these statuses first, in order, then 204.
    pub fn script(&self, statuses: &[u16]) {
        self.inner
            .lock()
            .expect("lock")
            .script
            .extend(statuses.iter().copied());
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").received.clone()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let mut i = inner.lock().expect("lock");
    let status = i.script.pop_front().unwrap_or(204);
    i.received.push(Received {
        path: uri.to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT)
}
