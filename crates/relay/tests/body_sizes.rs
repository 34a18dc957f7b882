//! Property: a body of any size from 0 to 25 MiB is dispatched the right way — as it is when
//! that fits GitHub's 64 KB, gzip-compressed when only that fits, by reference otherwise — and
//! comes back byte for byte: from the dispatch itself, or from the relay's store (a real SQLite
//! file) under the reference's id, with the reference's size and SHA-256.
//!
//! The expected way is worked out independently of the relay's encoder: the plain dispatch is
//! measured as JSON, and the compressed one with a full gzip for bodies up to 2 MiB; past that,
//! the bodies drawn are either noise (hex or bytes, whose entropy bounds what gzip can do) or
//! zeros (which gzip always fits).

use crate::support;

use std::io::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use hookflow_protocol::dispatch::MAX_REQUEST_BYTES;
use hookflow_protocol::payload::{ClientPayload, PayloadBody};
use hookflow_protocol::Environment;
use hookflow_relay::bodies::Bodies;
use hookflow_relay::config::{Overrides, RelayConfig};
use hookflow_relay::destinations::dispatch_body;
use hookflow_relay::metrics::Metrics;
use hookflow_relay::store::sqlite::{SqliteHandle, SqliteStore};
use hookflow_relay::store::{Event, Payload, Request, Store as _, StoreHandle};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sha2::Digest as _;
use support::noise;

const MIB: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Random bytes (not UTF-8): base64 inline, incompressible.
    Noise,
    /// Random hex digits: text of 4 bits per byte.
    Hex,
    /// Zeros: compress about a thousandfold.
    Zeros,
    /// JSON records, compressing about tenfold (2 MiB at most).
    Records,
}

fn body_of(kind: Kind, n: usize, seed: u64) -> Vec<u8> {
    match kind {
        Kind::Noise => noise(n, seed),
        Kind::Hex => noise(n, seed)
            .into_iter()
            .map(|b| b"0123456789abcdef"[(b & 15) as usize])
            .collect(),
        Kind::Zeros => vec![0; n],
        Kind::Records => {
            let mut out = Vec::with_capacity(n);
            let mut i = 0u64;
            while out.len() < n {
                let r = noise(4, seed ^ i);
                out.extend_from_slice(
                    format!("{{\"id\":{i},\"v\":{},\"t\":\"x{}\"}}\n", r[0], r[1] % 7).as_bytes(),
                );
                i += 1;
            }
            out.truncate(n);
            out
        }
    }
}

/// Sizes spread over every order of magnitude up to 25 MiB, and the edges around 64 KB.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0u32..=25).prop_flat_map(|bits| {
            let top = (1usize << bits).min(25 * MIB);
            (top / 2)..=top
        }),
        (MAX_REQUEST_BYTES - 2_000)..(MAX_REQUEST_BYTES + 2_000),
        Just(25 * MIB),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Noise),
        Just(Kind::Hex),
        Just(Kind::Zeros),
        Just(Kind::Records)
    ]
}

#[derive(Debug, PartialEq, Eq)]
enum Way {
    Plain,
    Gzip,
    Reference,
}

fn request(body: Vec<u8>) -> Request {
    let mut headers = Map::new();
    headers.insert("content-type".into(), "application/octet-stream".into());
    headers.insert("x-github-event".into(), "push".into());
    Request {
        method: "POST".into(),
        path: "/uploads/webhook".into(),
        headers,
        body,
    }
}

fn event(id: &str, request: Request) -> Event {
    Event {
        id: id.into(),
        received_at: 1_790_000_000_000,
        source: "uploads".into(),
        event_type: "webhook".into(),
        payload: Payload::Request(request),
    }
}

/// The size of a dispatch of `event` whose payload's `body` (and `body_encoding`) are given,
/// built by hand as GitHub receives it.
fn dispatch_len(e: &Event, body: Option<(&str, Option<&str>)>) -> usize {
    let Payload::Request(r) = &e.payload else {
        unreachable!("requests only")
    };
    let mut p = Map::new();
    p.insert("path".into(), r.path.clone().into());
    p.insert("method".into(), r.method.clone().into());
    p.insert("headers".into(), Value::Object(r.headers.clone()));
    if let Some((text, encoding)) = body {
        p.insert("body".into(), text.into());
        if let Some(enc) = encoding {
            p.insert("body_encoding".into(), enc.into());
        }
    }
    p.insert("id".into(), e.id.clone().into());
    p.insert("received_at".into(), "2026-09-21T13:46:40.000Z".into());
    p.insert("source".into(), e.source.clone().into());
    json!({"event_type": e.event_type, "client_payload": p})
        .to_string()
        .len()
}

/// The way a body must go, found without the relay's encoder.
fn expected_way(e: &Event, body: &[u8], kind: Kind) -> Way {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let plain = match std::str::from_utf8(body) {
        _ if body.is_empty() => dispatch_len(e, None),
        Ok(text) => dispatch_len(e, Some((text, None))),
        Err(_) => dispatch_len(e, Some((&b64(body), Some("base64")))),
    };
    if plain < MAX_REQUEST_BYTES {
        return Way::Plain;
    }
    let gzip_fits = match kind {
        _ if body.len() <= 2 * MIB => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(body).expect("gzip");
            let gz = enc.finish().expect("gzip");
            dispatch_len(e, Some((&b64(&gz), Some("gzip+base64")))) < MAX_REQUEST_BYTES
        }
        // Four bits of entropy a byte or more: gzip keeps at least half of 2 MiB.
        Kind::Noise | Kind::Hex => false,
        // 25 MiB of zeros gzip to about 25 KB.
        Kind::Zeros => true,
        Kind::Records => unreachable!("records are drawn up to 2 MiB"),
    };
    if gzip_fits {
        Way::Gzip
    } else {
        Way::Reference
    }
}

struct Relay {
    bodies: Bodies,
    store: StoreHandle,
    _dir: tempfile::TempDir,
}

fn relay() -> Relay {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "public_url: https://relay.example.com\nbody_ref:\n  secret_env: URL_SECRET\n";
    let config = RelayConfig::parse(text, "sizes.yml", &Overrides::default()).expect("parses");
    let env = Environment::with_vars(vec![("URL_SECRET".into(), "s".repeat(32))]);
    let sqlite = SqliteStore::open(dir.path()).expect("store");
    let store =
        StoreHandle::Sqlite(SqliteHandle::start(sqlite, env.clock()).expect("store thread"));
    let bodies = Bodies::of(&config, &env, store.clone(), Arc::new(Metrics::default()))
        .expect("body_ref is configured");
    Relay {
        bodies,
        store,
        _dir: dir,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_size_goes_the_right_way_and_round_trips(size in size(), kind in kind(), seed in any::<u64>()) {
        let size = match kind {
            Kind::Records => size.min(2 * MIB),
            _ => size,
        };
        let body = body_of(kind, size, seed);
        let e = event("01JPROPERTY000000000000000", request(body.clone()));
        let Payload::Request(r) = &e.payload else { unreachable!() };
        let relay = relay();
        let now = chrono::Utc::now().timestamp_millis();
        let d = dispatch_body(&e, r, Some(&relay.bodies), now).expect("every size up to 25 MiB goes");
        prop_assert!(d.body.len() < MAX_REQUEST_BYTES, "a dispatch of {} bytes", d.body.len());
        let sent: Value = serde_json::from_slice(&d.body).expect("JSON");
        let payload = sent["client_payload"].as_object().cloned().expect("an object");
        prop_assert!(payload.len() <= 10);
        let decoded = ClientPayload::decode(payload).expect("decodes");
        let way = match &decoded.body {
            PayloadBody::Ref(_) => Way::Reference,
            PayloadBody::Text { encoding, .. } if encoding.as_str() == Some("gzip+base64") => Way::Gzip,
            _ => Way::Plain,
        };
        prop_assert_eq!(&way, &expected_way(&e, &body, kind), "{:?} of {} bytes", kind, size);
        match decoded.body {
            PayloadBody::Ref(reference) => {
                let keep = d.keep.expect("a body by reference is kept");
                prop_assert_eq!(reference.size as usize, body.len());
                prop_assert_eq!(&reference.sha256, &hex::encode(sha2::Sha256::digest(&body)));
                prop_assert!(reference.url.starts_with("https://relay.example.com/bodies/01JPROPERTY"));
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                let stored = rt.block_on(async {
                    relay.bodies.keep(keep.clone(), r.body.clone()).await.expect("kept");
                    relay.store.body(keep.id.clone()).await.expect("read")
                });
                prop_assert!(stored.as_deref() == Some(&body[..]), "the kept bytes are the body");
            }
            other => {
                prop_assert!(d.keep.is_none());
                let back = other.unpack_limited(30 * MIB as u64).expect("unpacks").unwrap_or_default();
                prop_assert!(back == body, "inline bytes round-trip");
            }
        }
    }
}
