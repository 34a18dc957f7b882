use super::destinations::Batching;
use super::destinations::DestinationConfig;
use super::destinations::EndpointAuth;
use super::destinations::Target;
use super::overrides::*;
use super::settings::*;
use hookflow_protocol::dispatch::Repo;
use hookflow_protocol::dispatch::MAX_REQUEST_BYTES;
use std::time::Duration;

#[test]
fn defaults_without_a_file() {
    let c = RelayConfig::from_flags(&Overrides::default()).expect("defaults");
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert!(c.compat_route);
    assert_eq!(c.api_url, "https://api.github.com");
    assert_eq!(c.delivery.max_attempts, 7);
}

#[test]
fn reads_endpoints_and_overrides() {
    let text = "listen: 0.0.0.0:9000\ndelivery:\n  initial_backoff: 250ms\n  concurrency: 4\nendpoints:\n  - slug: gh\n    repo: octo/hooks\n    token_env: GH_TOKEN\n    event_type_path: action\n    verify: {preset: github, secret_env: GH_SECRET}\n";
    let o = Overrides {
        listen: Some("127.0.0.1:0".into()),
        ..Overrides::default()
    };
    let c = RelayConfig::parse(text, "relay.yml", &o).expect("parses");
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.delivery.initial_backoff, Duration::from_millis(250));
    assert_eq!(
        c.endpoints[0].event_type,
        EventTypeSource::BodyPath("action".into())
    );
    assert_eq!(c.endpoints[0].path, "/gh/webhook");
    assert!(c.endpoints[0].verify.is_some());
}

#[test]
fn compat_repos_allow_list() {
    let open = RelayConfig::from_flags(&Overrides::default()).expect("defaults");
    let repo = |s: &str| Repo::parse(s).expect("repo");
    assert!(open.compat_allows(&repo("any/thing")));
    let c = RelayConfig::parse(
        "compat_repos: [octo-org/*, me/hooks]\n",
        "r.yml",
        &Overrides::default(),
    )
    .expect("parses");
    assert!(c.compat_allows(&repo("Octo-Org/anything")));
    assert!(c.compat_allows(&repo("me/hooks")));
    assert!(!c.compat_allows(&repo("me/other")));
    assert!(!c.compat_allows(&repo("stranger/hooks")));
    let e = RelayConfig::parse("compat_repos: [octo]\n", "r.yml", &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("r.yml:1:"), "{e}");
    assert!(e.contains("neither OWNER/REPO nor OWNER/*"), "{e}");
}

#[test]
fn every_unknown_key_is_reported_with_its_line() {
    let text = "listen: 127.0.0.1:1\nlisen: x\nlimits:\n  max_body: 5\ndelivery:\n  retries: 3\nendpoints:\n  - slug: gh\n    repo: o/r\n    token_env: T\n    secret: x\n";
    let e = RelayConfig::parse(text, "r.yml", &Overrides::default()).unwrap_err();
    let all = e.to_string();
    for expected in [
        "r.yml:2: unknown key `lisen` in the relay configuration",
        "r.yml:4: unknown key `max_body` in limits",
        "r.yml:6: unknown key `retries` in delivery",
        "r.yml:11: unknown key `secret` in endpoint `gh`",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
}

#[test]
fn every_endpoint_problem_is_reported() {
    let text = "endpoints:\n  - {slug: a, repo: nope, token_env: T}\n  - {slug: b, repo: o/r, token_env: T, verify: {preset: x, secret_env: S}}\n  - {slug: c, repo: o/r, token_env: T}\n";
    let e = RelayConfig::parse(text, "r.yml", &Overrides::default()).unwrap_err();
    assert_eq!(e.more.len(), 1);
    let all = e.to_string();
    assert!(
        all.contains("endpoint `a`")
            && all.contains("endpoint `b`")
            && !all.contains("endpoint `c`"),
        "{all}"
    );
}

#[test]
fn batching_is_opt_in_per_endpoint_or_repository_destination() {
    let o = Overrides::default();
    let parse = |yaml: &str| RelayConfig::parse(yaml, "r.yml", &o);
    let batching_of = |c: &RelayConfig| -> Vec<Option<Batching>> {
        c.endpoints[0]
            .destinations
            .iter()
            .map(|d| d.batching)
            .collect()
    };
    let off = parse("endpoints:\n  - {slug: a, repo: o/r, token_env: T}\n").expect("parses");
    assert_eq!(batching_of(&off), [None], "off by default");
    let on =
        parse("endpoints:\n  - {slug: a, repo: o/r, token_env: T, batching: {mode: adaptive}}\n")
            .expect("parses");
    assert_eq!(
        batching_of(&on),
        [Some(Batching {
            max_events: 100,
            max_bytes: MAX_REQUEST_BYTES
        })]
    );
    let mixed = parse(
        "endpoints:
  - slug: a
    batching: {max_events: 20, max_bytes: 30000}
    destinations:
      - {repo: o/one, token_env: T}
      - {repo: o/two, token_env: T, batching: {mode: off}}
      - {repo: o/three, token_env: T, batching: {max_events: 5}}
      - {url: 'https://example.com/in'}
",
    )
    .expect("parses");
    let b = |max_events, max_bytes| {
        Some(Batching {
            max_events,
            max_bytes,
        })
    };
    assert_eq!(
        batching_of(&mixed),
        [b(20, 30000), None, b(5, MAX_REQUEST_BYTES), None],
        "the endpoint's for its repositories, unless one sets its own; never HTTP"
    );
    for (yaml, expected) in [
        (
            "{slug: a, repo: o/r, token_env: T, batching: {mode: fast}}",
            "mode \"fast\" is not known; use adaptive or off",
        ),
        (
            "{slug: a, repo: o/r, token_env: T, batching: {max_events: 0}}",
            "max_events must be 1 to 1000",
        ),
        (
            "{slug: a, repo: o/r, token_env: T, batching: {max_bytes: 100000}}",
            "max_bytes must be 1024 to 65536",
        ),
        (
            "{slug: a, repo: o/r, token_env: T, batching: {size: 3}}",
            "unknown field `size`",
        ),
        (
            "{slug: a, repo: o/r, token_env: T, batching: 5}",
            "batching must be a mapping",
        ),
        (
            "{slug: a, destinations: [{url: 'https://e.com/x', batching: {mode: adaptive}}]}",
            "batching: is for repository destinations",
        ),
        (
            "{slug: a, batching: {mode: adaptive}, destinations: [{url: 'https://e.com/x'}]}",
            "this endpoint has none",
        ),
    ] {
        let e = parse(&format!("endpoints:\n  - {yaml}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(expected) && e.starts_with("r.yml:2:"),
            "{expected:?} not in {e}"
        );
    }
}

#[test]
fn destinations_fan_out_and_every_one_is_checked() {
    let o = Overrides::default();
    let text = "endpoints:
  - slug: stripe
    event_type_path: type
    destinations:
      - repo: acme/billing
        token_env: BILLING
        event_types: ['invoice.*', 'customer.subscription.*']
      - repo: acme/analytics
        token_env: ANALYTICS
        transform: {id: $.id, kind: $.type}
      - url: https://in.example/hooks/stripe
        secret_env: WHSEC
        headers: {X-Team: billing}
        header_prefix: X-Relay-
";
    let c = RelayConfig::parse(text, "r.yml", &o).expect("parses");
    let d = &c.endpoints[0].destinations;
    let keys: Vec<String> = d.iter().map(DestinationConfig::key).collect();
    assert_eq!(
        keys,
        [
            "repo:acme/billing",
            "repo:acme/analytics",
            "http:https://in.example/hooks/stripe"
        ]
    );
    assert!(d[0].takes("invoice.paid") && !d[0].takes("charge.failed"));
    assert!(d[1].takes("charge.failed") && d[1].transform.is_some());
    assert_eq!(
        d[2].target,
        Target::Http {
            url: "https://in.example/hooks/stripe".into(),
            secret_env: Some("WHSEC".into()),
            headers: vec![("X-Team".into(), "billing".into())],
            header_prefix: Some("X-Relay-".into()),
        }
    );
    let env = hookflow_protocol::Environment::fixed(0, vec![]);
    assert_eq!(
        c.unset_variables(&env),
        [
            "endpoint `stripe`: token_env names BILLING, which is not set",
            "endpoint `stripe`: token_env names ANALYTICS, which is not set",
            "endpoint `stripe`: secret_env names WHSEC, which is not set",
        ]
    );
    let env = hookflow_protocol::Environment::fixed(0, vec![("WHSEC".into(), "plain".into())]);
    let bad = c.unusable_secrets(&env);
    assert!(bad[0].contains("not a Standard Webhooks secret"), "{bad:?}");

    let problem = |yaml: &str| {
        RelayConfig::parse(&format!("endpoints:\n  - slug: x\n{yaml}"), "r.yml", &o)
            .unwrap_err()
            .to_string()
    };
    for (yaml, says) in [
        (
            "    repo: a/b\n    token_env: T\n    destinations: [{url: https://h.example/}]\n",
            "not both",
        ),
        ("    token_env: T\n", "give where its events go"),
        ("    destinations: []\n", "at least one destination"),
        (
            "    token_env: T\n    destinations: [{url: https://h.example/}]\n",
            "on each repository destination",
        ),
        (
            "    destinations: [{url: https://h.example/, token_env: T}]\n",
            "an HTTP destination signs with secret_env",
        ),
        (
            "    destinations: [{repo: a/b, token_env: T, secret_env: S}]\n",
            "are for url: destinations",
        ),
        (
            "    destinations: [{repo: a/b, url: https://h.example/}]\n",
            "either repo: or url:",
        ),
        (
            "    destinations: [{token_env: T}]\n",
            "give repo: OWNER/NAME or url:",
        ),
        (
            "    destinations: [{url: ftp://h.example/}]\n",
            "not an http:// or https:// URL",
        ),
        (
            "    destinations: [{url: https://h.example/, headers: {\"bad name\": x}}]\n",
            "not a valid HTTP header",
        ),
        (
            "    destinations: [{repo: a/b, token_env: T}, {repo: a/b, token_env: U}]\n",
            "repo:a/b is listed twice",
        ),
        (
            "    destinations: [{repo: a/b, token_env: T, transform: {x: '$.['}}]\n",
            "transform field `x`",
        ),
        (
            "    destinations: [{repo: a/b, token_env: T, event_types: ['']}]\n",
            "empty pattern",
        ),
        ("    destinations: [{repo: nope}]\n", "destination 1"),
    ] {
        let e = problem(yaml);
        assert!(e.contains(says), "{yaml}: {e}");
        assert!(e.starts_with("r.yml:2: endpoint `x`"), "{yaml}: {e}");
    }
    let e = RelayConfig::parse(
        "endpoints:\n  - {slug: compat, repo: a/b, token_env: T}\n",
        "r.yml",
        &o,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`compat` is reserved"), "{e}");
    let e = problem("    destinations:\n      - url: https://h.example/\n        secret: S\n");
    assert!(
        e.contains("unknown key `secret` in a destination of endpoint `x`"),
        "{e}"
    );
    assert!(e.starts_with("r.yml:5:"), "{e}");
}

#[test]
fn endpoints_authenticate_with_a_token_or_the_app() {
    let o = Overrides::default();
    let app = "github_app:\n  app_id: 12345\n  private_key_file: /etc/hookflow/app.pem\n";
    let c = RelayConfig::parse(
        &format!("{app}endpoints:\n  - {{slug: a, repo: o/r}}\n  - {{slug: b, repo: o/r, auth: app}}\n  - {{slug: c, repo: o/r, token_env: T}}\n"),
        "r.yml",
        &o,
    )
    .expect("parses");
    let auths: Vec<&EndpointAuth> = c
        .endpoints
        .iter()
        .map(|e| match &e.destinations[0].target {
            Target::Repo { auth, .. } => auth,
            Target::Http { .. } => panic!("a repository"),
        })
        .collect();
    assert_eq!(
        auths,
        [
            &EndpointAuth::App,
            &EndpointAuth::App,
            &EndpointAuth::TokenEnv("T".into())
        ],
        "the app is the default when there is one"
    );
    assert_eq!(
        c.github_app,
        Some(GithubApp {
            app_id: 12345,
            private_key: KeySource::File("/etc/hookflow/app.pem".into())
        })
    );
    for (text, expected) in [
        (
            "endpoints:\n  - {slug: a, repo: o/r}\n",
            "r.yml:2: endpoint `a`: give the GitHub credential",
        ),
        (
            "endpoints:\n  - {slug: a, repo: o/r, auth: app}\n",
            "auth: app needs a github_app section",
        ),
        (
            "endpoints:\n  - {slug: a, repo: o/r, auth: magic, token_env: T}\n",
            "auth: magic is not known",
        ),
        (
            &format!("{app}endpoints:\n  - {{slug: a, repo: o/r, auth: app, token_env: T}}\n"),
            "either token_env or auth: app",
        ),
        (
            "github_app:\n  app_id: 1\n",
            "r.yml:1: github_app: give the app's private key",
        ),
        (
            "github_app:\n  app_id: 1\n  private_key_env: K\n  private_key_file: f\n",
            "not both",
        ),
        (
            "github_app:\n  app_id: 1\n  key: f\n",
            "unknown key `key` in github_app",
        ),
    ] {
        let e = RelayConfig::parse(text, "r.yml", &o).unwrap_err();
        assert!(e.to_string().contains(expected), "{expected:?} in {e}");
    }
}

#[test]
fn the_lease_defaults_from_the_timeout_and_must_outlast_it() {
    let o = Overrides::default();
    let c = RelayConfig::parse("delivery:\n  timeout: 10s\n", "r.yml", &o).expect("parses");
    assert_eq!(c.delivery.lease(), Duration::from_secs(80));
    let c =
        RelayConfig::parse("delivery:\n  timeout: 2s\n  lease: 5s\n", "r.yml", &o).expect("parses");
    assert_eq!(c.delivery.lease(), Duration::from_secs(5));
    let e =
        RelayConfig::parse("delivery:\n  timeout: 10s\n  lease: 10s\n", "r.yml", &o).unwrap_err();
    assert!(
        e.to_string().starts_with("r.yml:3: ")
            && e.to_string()
                .contains("must be longer than delivery.timeout"),
        "{e}"
    );
}

#[test]
fn bodies_by_reference_need_a_public_url_and_a_secret() {
    let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default());
    let c = parse("public_url: https://relay.example.com/hooks/\nbody_ref:\n  secret_env: K\n  retention: 2d\n")
        .expect("parses");
    assert_eq!(
        c.public_url.as_deref(),
        Some("https://relay.example.com/hooks")
    );
    let b = c.body_ref.expect("on");
    assert_eq!(b.retention, Duration::from_secs(2 * 86_400));
    assert_eq!(b.concurrency, BodyRefConfig::DEFAULT_CONCURRENCY);
    assert_eq!(c.limits.max_body_bytes, BODY_REF_MAX_BODY_BYTES);
    // An explicit limit stays; without body_ref the default stays 1 MiB.
    let c = parse("public_url: https://r.example\nbody_ref: {secret_env: K}\nlimits:\n  max_body_bytes: 5000000\n")
        .expect("parses");
    assert_eq!(c.limits.max_body_bytes, 5_000_000);
    assert_eq!(
        parse("").expect("parses").limits.max_body_bytes,
        1024 * 1024
    );
    for (text, want) in [
        (
            "body_ref: {secret_env: K}\n",
            "r.yml:1: body_ref needs public_url",
        ),
        (
            "public_url: https://r.example\nbody_ref: {retention: 1d}\n",
            "r.yml:2: body_ref needs secret_env",
        ),
        (
            "public_url: https://r.example\nbody_ref: {secret_env: K, retention: 5s}\n",
            "body_ref.retention must be at least a minute",
        ),
        (
            "public_url: ftp://r.example\n",
            "r.yml:1: public_url \"ftp://r.example\" must be an https:// URL",
        ),
        (
            "public_url: https://u:p@r.example\n",
            "must not hold credentials",
        ),
        (
            "public_url: https://r.example/?a=1\n",
            "must not have a query or fragment",
        ),
        ("public_url: relay\n", "is not a URL"),
        (
            "public_url: https://r.example\nbody_ref: {secret_env: K, ttl: 1d}\n",
            "unknown key `ttl` in body_ref",
        ),
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn the_admin_api_needs_tokens_and_a_port_of_its_own() {
    let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default());
    let c = parse("admin:\n  tokens_env: ADMIN\n").expect("parses");
    let a = c.admin.expect("on");
    assert_eq!(a.listen.to_string(), AdminConfig::DEFAULT_LISTEN);
    assert!(parse("").expect("parses").admin.is_none(), "off by default");
    for (text, want) in [
        (
            "admin:\n  listen: 127.0.0.1:9000\n",
            "admin needs tokens_env",
        ),
        (
            "admin: {tokens_env: A, listen: nowhere}\n",
            "admin.listen \"nowhere\" is not HOST:PORT",
        ),
        (
            "listen: 0.0.0.0:8080\nadmin: {tokens_env: A, listen: 127.0.0.1:8080}\n",
            "has the webhook port too",
        ),
        (
            "admin: {tokens_env: A, token: x}\n",
            "unknown key `token` in admin",
        ),
        (
            "retention: {events: 10s}\n",
            "retention.events must be at least a minute",
        ),
        (
            "retention: {events: 1d, bodies: 2d}\n",
            "retention.bodies must be at least a minute (60s) and at most retention.events (86400s)",
        ),
        (
            "retention: {bodies: 5s}\n",
            "retention.bodies must be at least a minute",
        ),
    ] {
        let e = parse(text).expect_err(text).to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
    let c = parse("admin: {tokens_env: ADMIN}\n").expect("parses");
    let unset = c.unset_variables(&hookflow_protocol::Environment::fixed(0, vec![]));
    assert_eq!(
        unset,
        vec!["admin: tokens_env names ADMIN, which is not set"]
    );
    let short = hookflow_protocol::Environment::fixed(
        0,
        vec![("ADMIN".into(), "long-enough-token-123, short".into())],
    );
    assert!(
        c.unusable_secrets(&short)[0].contains("every token in ADMIN must be at least 16 bytes")
    );
    assert_eq!(admin_tokens(" a , ,b,"), vec!["a", "b"]);
}

#[test]
fn problems_name_file_and_line() {
    let e = RelayConfig::parse("listen: 1\nbogus: 2\n", "relay.yml", &Overrides::default())
        .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(
        e.to_string()
            .starts_with("relay.yml:2: unknown key `bogus`"),
        "{e}"
    );
    let e = RelayConfig::parse(
        "endpoints:\n  - slug: x\n    repo: nope\n    token_env: T\n",
        "r.yml",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("endpoint `x`: \"nope\" is not a repository"),
        "{e}"
    );
    let e = RelayConfig::parse("endpoints:\n  - {slug: x, repo: a/b, token_env: T, verify: {preset: nope, secret_env: S}}\n", "r.yml", &Overrides::default()).unwrap_err();
    assert!(e.to_string().contains("unknown preset"), "{e}");
    let e = RelayConfig::parse("listen: here\n", "r.yml", &Overrides::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "r.yml:1: listen address \"here\" is not HOST:PORT such as 0.0.0.0:8080"
    );
}

#[test]
fn body_retention_is_kept_only_when_shorter_than_the_events() {
    let parse = |t: &str| RelayConfig::parse(t, "r.yml", &Overrides::default()).expect(t);
    let c = parse("retention: {events: 7d, bodies: 1d}\n");
    assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(c.body_retention, Some(Duration::from_secs(86_400)));
    assert_eq!(parse("retention: {bodies: 7d}\n").body_retention, None);
    assert_eq!(parse("").body_retention, None);
}
