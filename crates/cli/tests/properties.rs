//! Property tests (the project's fuzzing, run in CI): random bytes and random JSON, seeded with
//! the attacks found so far, never make decoding, routing, rule compilers, filters or signature
//! checks panic, and never let request text become a runner command.

use std::path::Path;

use hookflow_protocol::signature::{self as verify, Scheme, PRESETS};
use hookflow_runtime::event::decode_event;
use hookflow_runtime::route::RoutePattern;
use hookflow_runtime::rules::filter::Filter;
use hookflow_runtime::rules::Rules;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("$eq"),
            Just("$in"),
            Just("$regex"),
            Just("$not"),
            Just("$elemMatch"),
            Just("$or"),
            Just("$size")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    ".{0,8}",
                    Just("$eq".to_string()),
                    Just("$and".to_string()),
                    Just("$regex".to_string()),
                    Just("$options".to_string()),
                    Just("$elemMatch".to_string()),
                    Just("path".to_string()),
                    Just("headers".to_string()),
                    Just("body".to_string()),
                    Just("body_encoding".to_string()),
                    Just("client_payload".to_string()),
                    Just("action".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_random_json_never_panics(v in json_value(), name in prop_oneof![Just(None), Just(Some("repository_dispatch")), Just(Some("push"))]) {
        let _ = decode_event(v, name, Path::new("event.json"));
    }

    #[test]
    fn decoding_random_payload_fields_never_panics(
        path in ".{0,40}", method in ".{0,8}", body in ".{0,200}", ct in prop_oneof![
            Just("application/json"), Just("application/x-www-form-urlencoded"), Just("text/plain"), Just("")
        ], encoding in prop_oneof![Just(None), Just(Some("base64")), Just(Some("gzip+base64"))]
    ) {
        let mut payload = serde_json::json!({"path": path, "method": method, "headers": {"Content-Type": ct}, "body": body});
        if let Some(e) = encoding { payload["body_encoding"] = Value::String(e.into()); }
        let _ = decode_event(serde_json::json!({"action": "webhook", "client_payload": payload}), None, Path::new("e.json"));
    }

    #[test]
    fn random_bytes_as_an_event_file_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("event.json");
        std::fs::write(&file, &bytes).expect("write");
        let _ = hookflow_runtime::load_event(&file, None);
    }

    #[test]
    fn patterns_compile_or_fail_cleanly(pattern in "[/:a-z(){}?*+\\\\.\\-0-9]{0,20}", path in "[/a-z0-9%.\\-]{0,30}") {
        if let Ok(p) = RoutePattern::compile(&pattern) {
            let _ = p.match_path(&path);
        }
    }

    #[test]
    fn random_filters_compile_or_fail_cleanly(filter in json_value(), item in json_value()) {
        if let Ok(f) = Filter::compile(&filter) {
            let _ = f.matches(&item);
        }
    }

    #[test]
    fn verification_of_random_input_never_panics(
        preset in prop::sample::select(PRESETS.to_vec()),
        values in prop::collection::vec(".{0,60}", 6),
        body in prop::collection::vec(any::<u8>(), 0..200),
        secret in prop::collection::vec(any::<u8>(), 0..40),
        now in any::<i64>(),
        tolerance in any::<i64>(),
    ) {
        let names = ["x-hub-signature-256", "stripe-signature", "x-slack-signature", "x-slack-request-timestamp",
                     "webhook-signature", "webhook-timestamp"];
        let mut headers = Map::new();
        for (n, v) in names.iter().zip(values) {
            headers.insert(n.to_string(), Value::String(v));
        }
        headers.insert("webhook-id".into(), Value::String("id".into()));
        let scheme = Scheme::preset(preset).expect("preset");
        // Random headers are never a valid signature (and an empty secret is always refused).
        prop_assert!(verify::verify(&scheme, &headers, &body, &secret, now, tolerance).is_err());
    }

    #[test]
    fn rule_compilers_take_any_options(options in json_value()) {
        if let Value::Object(map) = &options {
            let _ = Rules::parse(map, &["body"]);
        }
        let mut wrapped = Map::new();
        for key in ["headers", "verify", "outputs", "config"] {
            wrapped.insert(key.to_string(), options.clone());
        }
        let _ = Rules::parse(&wrapped, &["body"]);
    }

    /// The attacks found so far, mutated: line breaks, percent signs and command markers in every
    /// field of the payload never reach the runner as a line of their own.
    #[test]
    fn hostile_payloads_never_become_runner_commands(
        seed in prop::sample::select(vec![
            "\n::error::pwned", "\r\n::add-mask::webhook", "%0A::warning::x", "::stop-commands::t",
            "\n::set-output name=x::y", "<img src=x onerror=alert(1)>", "a\u{2028}b", "\u{0}",
        ]),
        prefix in "[a-z/]{0,8}",
        field in 0usize..4,
    ) {
        let text = format!("{prefix}{seed}");
        let mut payload = serde_json::json!({"path": "/deploy/webhook", "method": "POST", "headers": {}, "body": "{}"});
        match field {
            0 => payload["path"] = Value::String(format!("/{text}")),
            1 => payload["method"] = Value::String(text.clone()),
            2 => payload["headers"]["x-seed"] = Value::String(text.clone()),
            _ => payload["body"] = Value::String(text.clone()),
        }
        let event = serde_json::json!({"action": if field == 1 { text.clone() } else { "webhook".into() }, "client_payload": payload});
        if let Ok(e) = decode_event(event, Some("repository_dispatch"), Path::new("e.json")) {
            for line in [e.event_type.unwrap_or_default(), e.payload_notice.unwrap_or_default()] {
                let printed = hookflow_runtime::output::log_safe(&line);
                prop_assert!(!printed.contains('\n') && !printed.contains('\r'), "{printed:?}");
            }
        }
    }
}
