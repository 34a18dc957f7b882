//! Webhook signatures: checking a sender's signature over the exact body bytes, and computing
//! one (`hookflow sign`). The same computation serves both directions, so what `sign` prints is
//! what `verify` accepts.
//!
//! Presets follow each provider's documentation: GitHub (`X-Hub-Signature-256`, legacy
//! `X-Hub-Signature`), Dispatch (`X-Dispatch-Signature`), Stripe (`Stripe-Signature`), Slack
//! (`X-Slack-Signature`), Shopify (`X-Shopify-Hmac-Sha256`), Standard Webhooks (`webhook-*`),
//! GitLab (`X-Gitlab-Token`); and a custom HMAC header. Secrets never appear in messages, and
//! every comparison is constant-time.

use std::fmt;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};

use crate::options::{problem, OptionProblem};

/// Default allowed clock difference for timestamped schemes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A signature scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex>` (or legacy `X-Hub-Signature: sha1=<hex>`).
    Github,
    /// `X-Dispatch-Signature: sha256=<hex>`.
    Dispatch,
    /// `Stripe-Signature: t=<ts>,v1=<hex>` over `{t}.{body}`.
    Stripe,
    /// `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack,
    /// `X-Shopify-Hmac-Sha256: <base64>`.
    Shopify,
    /// `webhook-signature: v1,<base64>` over `{id}.{timestamp}.{body}`, secret `whsec_<base64>`.
    StandardWebhooks,
    /// `X-Gitlab-Token` equals the secret.
    GitlabToken,
    /// A custom HMAC header.
    Custom(Custom),
}

/// A custom HMAC signature header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Custom {
    /// Header name, lowercase.
    pub header: String,
    /// HMAC hash.
    pub algorithm: Algorithm,
    /// How the MAC is written.
    pub encoding: Encoding,
    /// Text before the MAC (`sha256=`), may be empty.
    pub prefix: String,
}

/// HMAC hash functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a MAC is written in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lowercase or uppercase hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// Every preset with its name: the one list the names come from.
const PRESET_SCHEMES: [(&str, Scheme); 7] = [
    ("github", Scheme::Github),
    ("dispatch", Scheme::Dispatch),
    ("stripe", Scheme::Stripe),
    ("slack", Scheme::Slack),
    ("shopify", Scheme::Shopify),
    ("standard-webhooks", Scheme::StandardWebhooks),
    ("gitlab-token", Scheme::GitlabToken),
];

/// The headers that carry a preset's signature (or its signed timestamp): a body that is not
/// the sender's exact bytes (a destination's transform) cannot keep them.
pub const SIGNATURE_HEADERS: [&str; 12] = [
    "x-hub-signature-256",
    "x-hub-signature",
    "x-dispatch-signature",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "webhook-signature",
    "webhook-timestamp",
    "svix-signature",
    "svix-timestamp",
    "x-gitlab-token",
];

/// The preset names, for messages and `--help`.
pub const PRESETS: [&str; 7] = {
    let mut names = [""; 7];
    let mut i = 0;
    while i < PRESET_SCHEMES.len() {
        names[i] = PRESET_SCHEMES[i].0;
        i += 1;
    }
    names
};

impl Scheme {
    /// A preset by name.
    pub fn preset(name: &str) -> Option<Scheme> {
        PRESET_SCHEMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone())
    }

    /// The preset's name; `None` for a custom scheme.
    pub fn preset_name(&self) -> Option<&'static str> {
        PRESET_SCHEMES
            .iter()
            .find(|(_, s)| s == self)
            .map(|(n, _)| *n)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.preset_name()) {
            (Scheme::Custom(c), _) => write!(f, "custom {}", c.header),
            (_, Some(name)) => f.write_str(name),
            (_, None) => f.write_str("custom"),
        }
    }
}

impl Algorithm {
    /// By name: `sha1`, `sha256`, `sha512`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sha1" => Some(Algorithm::Sha1),
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl Encoding {
    /// By name: `hex`, `base64`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }
}

/// Why a signature was not accepted. Messages name headers, never secrets or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature header is absent.
    #[error("header `{0}` is missing: the request is not signed")]
    MissingHeader(String),
    /// The header is present but unreadable.
    #[error("header `{header}` is malformed: {why}")]
    Malformed {
        /// The header.
        header: String,
        /// What is wrong.
        why: String,
    },
    /// The signature does not match the body.
    #[error("the signature in `{header}` does not match the body (wrong secret, or the body was changed on the way){hint}")]
    Mismatch {
        /// The header.
        header: String,
        /// A note when the body looks re-serialised by a relay.
        hint: String,
    },
    /// The timestamp is outside the tolerance.
    #[error("the timestamp in `{header}` is {age} s away from now, more than the {tolerance} s tolerance (a replayed or delayed request, or a clock problem)")]
    Stale {
        /// The header.
        header: String,
        /// Seconds between the timestamp and now.
        age: i64,
        /// The allowed difference.
        tolerance: i64,
    },
    /// The secret cannot be used.
    #[error("the secret is unusable: {0}")]
    BadSecret(String),
}

type HmacSha1 = Hmac<sha1::Sha1>;
type HmacSha256 = Hmac<sha2::Sha256>;
type HmacSha512 = Hmac<sha2::Sha512>;

/// HMAC of the concatenated parts.
pub fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC accepts keys of any length; were that ever to fail, an empty MAC matches nothing.
        let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<HmacSha1>(key, parts),
        Algorithm::Sha256 => run::<HmacSha256>(key, parts),
        Algorithm::Sha512 => run::<HmacSha512>(key, parts),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn header<'a>(headers: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| match v {
        Value::String(s) => Some(s.as_str()),
        Value::Array(items) => items.first().and_then(Value::as_str),
        _ => None,
    })
}

fn required<'a>(headers: &'a Map<String, Value>, name: &str) -> Result<&'a str, VerifyError> {
    header(headers, name).ok_or_else(|| VerifyError::MissingHeader(name.to_string()))
}

/// Constant-time comparison of a computed MAC with one written in a header.
fn mac_matches(expected: &[u8], written: &str, encoding: Encoding) -> bool {
    let decoded = match encoding {
        Encoding::Hex => hex::decode(written.trim()),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(written.trim())
            .map_err(|_| hex::FromHexError::InvalidStringLength),
    };
    match decoded {
        Ok(bytes) => !expected.is_empty() && crate::credentials::same(expected, &bytes),
        Err(_) => false,
    }
}

fn check_age(header_name: &str, ts: &str, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    let t: i64 = ts.trim().parse().map_err(|_| VerifyError::Malformed {
        header: header_name.to_string(),
        why: "the timestamp is not a whole number of seconds".into(),
    })?;
    let age = (now - t).abs();
    if age > tolerance {
        return Err(VerifyError::Stale {
            header: header_name.to_string(),
            age,
            tolerance,
        });
    }
    Ok(())
}

/// The key of a Standard Webhooks secret: base64 after an optional `whsec_`.
fn standard_webhooks_key(secret: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let text =
        std::str::from_utf8(secret).map_err(|_| VerifyError::BadSecret("it is not text".into()))?;
    let encoded = text.trim().strip_prefix("whsec_").unwrap_or(text.trim());
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            VerifyError::BadSecret(
                "a Standard Webhooks secret is `whsec_` followed by base64".into(),
            )
        })
}

/// A note for a mismatch when `content-length` says the relay changed the body.
fn reserialised_hint(headers: &Map<String, Value>, body: &[u8]) -> String {
    match header(headers, "content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) if n != body.len() => format!(
            "; the body is {} bytes but the sender's content-length was {n}: a relay re-serialised it \
             (the actionsflow relay does this to JSON), so no signature over the original bytes can match. \
             Forward through a relay that keeps the exact bytes, such as `hookflow relay`",
            body.len()
        ),
        _ => String::new(),
    }
}

/// Checks a request's signature. `now` is Unix seconds; `tolerance` applies to timestamped schemes.
pub fn verify(
    scheme: &Scheme,
    headers: &Map<String, Value>,
    body: &[u8],
    secret: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::BadSecret("it is empty".into()));
    }
    let mismatch = |h: &str| VerifyError::Mismatch {
        header: h.to_string(),
        hint: reserialised_hint(headers, body),
    };
    let prefixed = |h: &str, prefix: &str, alg: Algorithm| -> Result<(), VerifyError> {
        let v = required(headers, h)?;
        let Some(mac) = v.trim().strip_prefix(prefix) else {
            return Err(VerifyError::Malformed {
                header: h.into(),
                why: format!("expected `{prefix}<hex>`"),
            });
        };
        if mac_matches(&hmac(alg, secret, &[body]), mac, Encoding::Hex) {
            Ok(())
        } else {
            Err(mismatch(h))
        }
    };
    match scheme {
        Scheme::Github => {
            if header(headers, "x-hub-signature-256").is_some()
                || header(headers, "x-hub-signature").is_none()
            {
                prefixed("x-hub-signature-256", "sha256=", Algorithm::Sha256)
            } else {
                prefixed("x-hub-signature", "sha1=", Algorithm::Sha1)
            }
        }
        Scheme::Dispatch => prefixed("x-dispatch-signature", "sha256=", Algorithm::Sha256),
        Scheme::Stripe => {
            let h = "stripe-signature";
            let v = required(headers, h)?;
            let mut ts = None;
            let mut sigs = Vec::new();
            for part in v.split(',') {
                match part.trim().split_once('=') {
                    Some(("t", t)) => ts = Some(t),
                    Some(("v1", s)) => sigs.push(s),
                    _ => {}
                }
            }
            let malformed = |why: &str| VerifyError::Malformed {
                header: h.into(),
                why: why.into(),
            };
            let ts = ts.ok_or_else(|| malformed("no `t=` timestamp"))?;
            if sigs.is_empty() {
                return Err(malformed("no `v1=` signature"));
            }
            let expected = hmac(Algorithm::Sha256, secret, &[ts.as_bytes(), b".", body]);
            // Check every v1 signature; no early exit, so timing does not tell which matched.
            let ok = sigs.iter().fold(false, |acc, s| {
                acc | mac_matches(&expected, s, Encoding::Hex)
            });
            if !ok {
                return Err(mismatch(h));
            }
            check_age(h, ts, now, tolerance)
        }
        Scheme::Slack => {
            let ts = required(headers, "x-slack-request-timestamp")?;
            let v = required(headers, "x-slack-signature")?;
            let Some(mac) = v.trim().strip_prefix("v0=") else {
                return Err(VerifyError::Malformed {
                    header: "x-slack-signature".into(),
                    why: "expected `v0=<hex>`".into(),
                });
            };
            let expected = hmac(
                Algorithm::Sha256,
                secret,
                &[b"v0:", ts.trim().as_bytes(), b":", body],
            );
            if !mac_matches(&expected, mac, Encoding::Hex) {
                return Err(mismatch("x-slack-signature"));
            }
            check_age("x-slack-request-timestamp", ts, now, tolerance)
        }
        Scheme::Shopify => {
            let h = "x-shopify-hmac-sha256";
            let v = required(headers, h)?;
            if mac_matches(
                &hmac(Algorithm::Sha256, secret, &[body]),
                v,
                Encoding::Base64,
            ) {
                Ok(())
            } else {
                Err(mismatch(h))
            }
        }
        Scheme::StandardWebhooks => {
            let name = |suffix: &str| {
                let standard = format!("webhook-{suffix}");
                if header(headers, &standard).is_some() {
                    standard
                } else if header(headers, &format!("svix-{suffix}")).is_some() {
                    format!("svix-{suffix}")
                } else {
                    standard
                }
            };
            let (id_h, ts_h, sig_h) = (name("id"), name("timestamp"), name("signature"));
            let id = required(headers, &id_h)?;
            let ts = required(headers, &ts_h)?;
            let sigs = required(headers, &sig_h)?;
            let key = standard_webhooks_key(secret)?;
            let expected = hmac(
                Algorithm::Sha256,
                &key,
                &[id.trim().as_bytes(), b".", ts.trim().as_bytes(), b".", body],
            );
            let mut any_v1 = false;
            let mut ok = false;
            for entry in sigs.split_whitespace() {
                if let Some(sig) = entry.strip_prefix("v1,") {
                    any_v1 = true;
                    ok |= mac_matches(&expected, sig, Encoding::Base64);
                }
            }
            if !any_v1 {
                return Err(VerifyError::Malformed {
                    header: sig_h,
                    why: "no `v1,<base64>` signature".into(),
                });
            }
            if !ok {
                return Err(mismatch(&sig_h));
            }
            check_age(&ts_h, ts, now, tolerance)
        }
        Scheme::GitlabToken => {
            let h = "x-gitlab-token";
            let v = required(headers, h)?;
            if crate::credentials::same(secret, v.as_bytes()) {
                Ok(())
            } else {
                Err(VerifyError::Mismatch {
                    header: h.into(),
                    hint: String::new(),
                })
            }
        }
        Scheme::Custom(c) => {
            let v = required(headers, &c.header)?;
            let Some(mac) = v.trim().strip_prefix(c.prefix.as_str()) else {
                return Err(VerifyError::Malformed {
                    header: c.header.clone(),
                    why: format!("expected the prefix `{}`", c.prefix),
                });
            };
            if mac_matches(&hmac(c.algorithm, secret, &[body]), mac, c.encoding) {
                Ok(())
            } else {
                Err(mismatch(&c.header))
            }
        }
    }
}

/// The headers a sender adds to sign `body` with `scheme` (`hookflow sign`). `timestamp` is Unix
/// seconds; `id` is the Standard Webhooks message id.
pub fn sign(
    scheme: &Scheme,
    body: &[u8],
    secret: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<Vec<(String, String)>, VerifyError> {
    let hex_mac = |alg| hex::encode(hmac(alg, secret, &[body]));
    let ts = timestamp.to_string();
    Ok(match scheme {
        Scheme::Github => vec![
            (
                "X-Hub-Signature-256".into(),
                format!("sha256={}", hex_mac(Algorithm::Sha256)),
            ),
            (
                "X-Hub-Signature".into(),
                format!("sha1={}", hex_mac(Algorithm::Sha1)),
            ),
        ],
        Scheme::Dispatch => vec![(
            "X-Dispatch-Signature".into(),
            format!("sha256={}", hex_mac(Algorithm::Sha256)),
        )],
        Scheme::Stripe => {
            let mac = hex::encode(hmac(
                Algorithm::Sha256,
                secret,
                &[ts.as_bytes(), b".", body],
            ));
            vec![("Stripe-Signature".into(), format!("t={ts},v1={mac}"))]
        }
        Scheme::Slack => {
            let mac = hex::encode(hmac(
                Algorithm::Sha256,
                secret,
                &[b"v0:", ts.as_bytes(), b":", body],
            ));
            vec![
                ("X-Slack-Request-Timestamp".into(), ts),
                ("X-Slack-Signature".into(), format!("v0={mac}")),
            ]
        }
        Scheme::Shopify => vec![(
            "X-Shopify-Hmac-Sha256".into(),
            b64(&hmac(Algorithm::Sha256, secret, &[body])),
        )],
        Scheme::StandardWebhooks => {
            let key = standard_webhooks_key(secret)?;
            let mac = hmac(
                Algorithm::Sha256,
                &key,
                &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
            );
            vec![
                ("webhook-id".into(), id.to_string()),
                ("webhook-timestamp".into(), ts),
                ("webhook-signature".into(), format!("v1,{}", b64(&mac))),
            ]
        }
        Scheme::GitlabToken => vec![(
            "X-Gitlab-Token".into(),
            String::from_utf8_lossy(secret).into_owned(),
        )],
        Scheme::Custom(c) => {
            let mac = hmac(c.algorithm, secret, &[body]);
            let written = match c.encoding {
                Encoding::Hex => hex::encode(mac),
                Encoding::Base64 => b64(&mac),
            };
            vec![(c.header.clone(), format!("{}{written}", c.prefix))]
        }
    })
}

/// A `verify:` option: a trigger's or a relay endpoint's signature check.
#[derive(Debug, Clone)]
pub struct VerifyRule {
    /// The scheme.
    pub scheme: Scheme,
    /// The environment variable holding the secret.
    pub secret_env: String,
    /// Whether a failure fails the step (default true).
    pub required: bool,
    /// Allowed clock difference for timestamped schemes, in seconds.
    pub tolerance: i64,
}

/// Reads a `verify:` mapping (trigger files and the relay's endpoint configuration).
pub fn parse_verify(map: &Map<String, Value>) -> Result<VerifyRule, OptionProblem> {
    for key in map.keys() {
        if ![
            "preset",
            "secret_env",
            "required",
            "tolerance",
            "header",
            "algorithm",
            "encoding",
            "prefix",
        ]
        .contains(&key.as_str())
        {
            return Err(problem(
                &["verify", key],
                format!("unknown verify option `{key}`; use preset or header/algorithm/encoding/prefix, with secret_env, required, tolerance"),
            ));
        }
    }
    let text = |key: &str| -> Result<Option<String>, OptionProblem> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(problem(
                &["verify", key],
                format!("`verify.{key}` must be a string"),
            )),
        }
    };
    let scheme = match (text("preset")?, text("header")?) {
        (Some(_), Some(_)) => {
            return Err(problem(
                &["verify", "header"],
                "use either `preset` or a custom `header`, not both",
            ))
        }
        (Some(p), None) => Scheme::preset(&p).ok_or_else(|| {
            problem(
                &["verify", "preset"],
                format!("unknown preset `{p}`; presets: {}", PRESETS.join(", ")),
            )
        })?,
        (None, Some(header)) => {
            let algorithm = match text("algorithm")? {
                None => Algorithm::Sha256,
                Some(a) => Algorithm::parse(&a).ok_or_else(|| {
                    problem(
                        &["verify", "algorithm"],
                        format!("unknown algorithm `{a}`; use sha1, sha256 or sha512"),
                    )
                })?,
            };
            let encoding = match text("encoding")? {
                None => Encoding::Hex,
                Some(e) => Encoding::parse(&e).ok_or_else(|| {
                    problem(
                        &["verify", "encoding"],
                        format!("unknown encoding `{e}`; use hex or base64"),
                    )
                })?,
            };
            Scheme::Custom(Custom {
                header: header.to_ascii_lowercase(),
                algorithm,
                encoding,
                prefix: text("prefix")?.unwrap_or_default(),
            })
        }
        (None, None) => {
            return Err(problem(
                &["verify"],
                format!(
                    "`verify` needs a `preset` ({}) or a custom `header`",
                    PRESETS.join(", ")
                ),
            ))
        }
    };
    let secret_env = text("secret_env")?.filter(|s| !s.is_empty()).ok_or_else(|| {
        problem(
            &["verify"],
            "`verify.secret_env` is required: the name of the environment variable that holds the secret (secrets never go in the file)",
        )
    })?;
    let required = match map.get("required") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(problem(
                &["verify", "required"],
                "`verify.required` must be true or false",
            ))
        }
    };
    let tolerance = match map.get("tolerance") {
        None | Some(Value::Null) => DEFAULT_TOLERANCE_SECS,
        Some(v) => crate::options::parse_duration(v).ok_or_else(|| {
            problem(
                &["verify", "tolerance"],
                "`verify.tolerance` must be seconds (300) or a duration such as 5m",
            )
        })?,
    };
    Ok(VerifyRule {
        scheme,
        secret_env,
        required,
        tolerance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_lowercase(), json!(v)))
            .collect()
    }

    /// Signs with `sign`, lowercases the header names as the runtime does, and verifies.
    fn round_trip(scheme: &Scheme, secret: &[u8]) -> Map<String, Value> {
        let body = br#"{"hello":"world"}"#;
        let signed = sign(scheme, body, secret, 1_700_000_000, "msg_1").expect("signs");
        let h: Map<String, Value> = signed
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), Value::String(v)))
            .collect();
        assert_eq!(
            verify(scheme, &h, body, secret, 1_700_000_100, 300),
            Ok(()),
            "{scheme}"
        );
        if *scheme != Scheme::GitlabToken {
            // A shared token does not cover the body; every HMAC scheme does.
            assert!(verify(
                scheme,
                &h,
                b"{\"hello\":\"world!\"}",
                secret,
                1_700_000_100,
                300
            )
            .is_err());
        }
        assert!(verify(scheme, &h, body, b"other", 1_700_000_100, 300).is_err());
        h
    }

    #[test]
    fn github_docs_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let secret = b"It's a Secret to Everybody";
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            verify(&Scheme::Github, &h, b"Hello, World!", secret, 0, 300),
            Ok(())
        );
        let signed = sign(&Scheme::Github, b"Hello, World!", secret, 0, "").expect("signs");
        assert_eq!(
            signed[0].1,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn slack_docs_vector() {
        // From Slack's "Verifying requests from Slack" documentation.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(&[
            ("X-Slack-Request-Timestamp", "1531420618"),
            (
                "X-Slack-Signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ]);
        assert_eq!(
            verify(&Scheme::Slack, &h, body, secret, 1_531_420_618, 300),
            Ok(())
        );
        assert!(matches!(
            verify(&Scheme::Slack, &h, body, secret, 1_531_420_618 + 301, 300),
            Err(VerifyError::Stale { age: 301, .. })
        ));
    }

    #[test]
    fn standard_webhooks_spec_vector() {
        // The example from the Standard Webhooks specification's reference tests.
        let secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            verify(
                &Scheme::StandardWebhooks,
                &h,
                body,
                secret,
                1_614_265_330,
                300
            ),
            Ok(())
        );
        // several signatures, one of them valid
        let h2 = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,Zm9v v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(
            verify(
                &Scheme::StandardWebhooks,
                &h2,
                body,
                secret,
                1_614_265_330,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn vectors_computed_independently() {
        // Each expected value was computed with Python's hmac/hashlib/base64, not with this code.
        let h = headers(&[(
            "Stripe-Signature",
            "t=1700000000,v0=ffff,v1=0000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925",
        )]);
        let body = br#"{"id":"evt_1"}"#;
        assert_eq!(
            verify(&Scheme::Stripe, &h, body, b"whsec_test", 1_700_000_000, 300),
            Ok(())
        );
        assert!(matches!(
            verify(
                &Scheme::Stripe,
                &h,
                body,
                b"whsec_test",
                1_700_000_000 + 600,
                300
            ),
            Err(VerifyError::Stale { .. })
        ));
        let h = headers(&[(
            "X-Shopify-Hmac-Sha256",
            "jqbalbO3Z8mDmrF2/+wzM3KYvbgqzVBF969vgiIy80I=",
        )]);
        assert_eq!(
            verify(
                &Scheme::Shopify,
                &h,
                br#"{"id":820982911946154508}"#,
                b"shpss_secret",
                0,
                300
            ),
            Ok(())
        );
        let h = headers(&[(
            "X-Dispatch-Signature",
            "sha256=9cbaac5bb6da0b10424cdf05b5424a58ef31d3918a3a3edc7f224d4a7feb5e57",
        )]);
        assert_eq!(
            verify(
                &Scheme::Dispatch,
                &h,
                br#"{"event":"deploy"}"#,
                b"dispatch-secret",
                0,
                300
            ),
            Ok(())
        );
        // GitHub's legacy header, same docs payload, SHA-1.
        let h = headers(&[(
            "X-Hub-Signature",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
        )]);
        assert_eq!(
            verify(
                &Scheme::Github,
                &h,
                b"Hello, World!",
                b"It's a Secret to Everybody",
                0,
                300
            ),
            Ok(())
        );
        let custom = Scheme::Custom(Custom {
            header: "x-sig".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: String::new(),
        });
        let h = headers(&[(
            "x-sig",
            "n5F5f4zlOh4DeiHaSlG6FAtL0iF334I+3fLrZRwzk8Q4QWinztjqU8xtc/ruZKDuuMTrQg5n+TOlg991ClSpSw==",
        )]);
        assert_eq!(verify(&custom, &h, b"payload", b"k", 0, 300), Ok(()));
    }

    #[test]
    fn every_preset_round_trips() {
        for name in PRESETS {
            let scheme = Scheme::preset(name).expect("preset");
            let secret: &[u8] = if name == "standard-webhooks" {
                b"whsec_c2VjcmV0LWtleQ=="
            } else {
                b"s3cret"
            };
            round_trip(&scheme, secret);
        }
        let custom = Scheme::Custom(Custom {
            header: "x-signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "hmac ".into(),
        });
        let h = round_trip(&custom, b"k");
        assert!(h["x-signature"]
            .as_str()
            .expect("string")
            .starts_with("hmac "));
    }

    #[test]
    fn failures_are_specific() {
        let body = b"{}";
        assert_eq!(
            verify(&Scheme::Github, &Map::new(), body, b"s", 0, 300),
            Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
        );
        let h = headers(&[("X-Hub-Signature-256", "md5=abc")]);
        assert!(matches!(
            verify(&Scheme::Github, &h, body, b"s", 0, 300),
            Err(VerifyError::Malformed { .. })
        ));
        let h = headers(&[("Stripe-Signature", "v1=abc")]);
        assert!(verify(&Scheme::Stripe, &h, body, b"s", 0, 300)
            .unwrap_err()
            .to_string()
            .contains("no `t=`"));
        let h = headers(&[
            ("webhook-id", "a"),
            ("webhook-timestamp", "1"),
            ("webhook-signature", "v1,AAAA"),
        ]);
        assert!(matches!(
            verify(&Scheme::StandardWebhooks, &h, body, b"not base64!", 1, 300),
            Err(VerifyError::BadSecret(_))
        ));
        let h = headers(&[("X-Gitlab-Token", "nope")]);
        assert!(matches!(
            verify(&Scheme::GitlabToken, &h, body, b"s", 0, 300),
            Err(VerifyError::Mismatch { .. })
        ));
    }

    #[test]
    fn reserialised_bodies_are_explained() {
        let original = b"{ \"a\": 1 }";
        let signed = sign(&Scheme::Github, original, b"s", 0, "").expect("signs");
        let mut h: Map<String, Value> = signed
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), json!(v)))
            .collect();
        h.insert("content-length".into(), json!(original.len().to_string()));
        let err = verify(&Scheme::Github, &h, b"{\"a\":1}", b"s", 0, 300)
            .unwrap_err()
            .to_string();
        assert!(err.contains("re-serialised"), "{err}");
        assert!(!err.contains("sha256="), "no signature in messages: {err}");
    }

    #[test]
    fn preset_names_round_trip() {
        for name in PRESETS {
            let scheme = Scheme::preset(name).expect("a preset");
            assert_eq!(scheme.preset_name(), Some(name));
            assert_eq!(scheme.to_string(), name);
        }
        assert_eq!(Scheme::preset("nope"), None);
    }
}
