//! Trigger rules: what decides whether a request that reached a trigger runs the workflow, and
//! what it hands on (DESIGN §3, hookflow extensions).
//!
//! | rule | option | module |
//! |---|---|---|
//! | required headers | `headers:` | [`headers`] |
//! | signature | `verify:` | [`verify`] |
//! | MongoDB-style query | `config.filter` | [`filter`] |
//! | extra outputs | `outputs:` | [`outputs`] |
//!
//! Rules are compiled when the workflow file is read ([`Rules::parse`]) and applied in that
//! order to a request ([`Rules::apply`]).

pub mod filter;
pub mod headers;
pub mod outputs;
pub mod verify;

use serde_json::{Map, Value};

use filter::Filter;
use headers::HeaderRule;
use outputs::OutputRule;
use verify::{Algorithm, Custom, Encoding, Scheme, DEFAULT_TOLERANCE_SECS};

/// The compiled rules of one webhook trigger.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `headers:`.
    pub headers: Vec<HeaderRule>,
    /// `verify:`.
    pub verify: Option<VerifyRule>,
    /// `config.filter`.
    pub filter: Option<Filter>,
    /// `outputs:`.
    pub outputs: Vec<OutputRule>,
}

/// A trigger's `verify:` option.
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

/// A problem in a rule's configuration: the option keys below the trigger, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// Keys below the trigger (`["verify", "preset"]`), for locating the line.
    pub keys: Vec<String>,
    /// What is wrong and what to do.
    pub message: String,
}

fn problem(keys: &[&str], message: impl Into<String>) -> RuleProblem {
    RuleProblem {
        keys: keys.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

/// Reads an environment variable.
type VarLookup = Box<dyn Fn(&str) -> Option<String>>;

/// What the process environment gives the rules: the time and the secrets.
pub struct Environment {
    /// Unix seconds.
    pub now: i64,
    lookup: VarLookup,
}

impl Environment {
    /// The real clock (or `HOOKFLOW_NOW`, Unix seconds or RFC 3339, for replaying old signed
    /// fixtures) and the process environment.
    pub fn from_process() -> Result<Self, String> {
        let now = match std::env::var("HOOKFLOW_NOW") {
            Ok(text) => parse_time(&text).ok_or_else(|| {
                format!("HOOKFLOW_NOW is {text:?}; expected Unix seconds or an RFC 3339 time such as 2026-01-31T12:00:00Z")
            })?,
            Err(_) => chrono::Utc::now().timestamp(),
        };
        Ok(Environment {
            now,
            lookup: Box::new(|name| std::env::var(name).ok()),
        })
    }

    /// A fixed time and set of variables (tests, embedding).
    pub fn fixed(now: i64, vars: Vec<(String, String)>) -> Self {
        Environment {
            now,
            lookup: Box::new(move |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            }),
        }
    }

    /// An environment variable.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }
}

/// Unix seconds or RFC 3339.
pub fn parse_time(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.timestamp())
    })
}

/// The outcome of applying the rules to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The request passes: whether a signature was verified, the extra outputs, and the values
    /// to mask.
    Pass {
        /// A signature was checked and valid.
        verified: bool,
        /// `outputs:` values, in order.
        outputs: Map<String, Value>,
        /// Values to mask in logs.
        masked: Vec<String>,
    },
    /// The request does not match (headers, filter); not an error.
    Skip(String),
    /// The request is refused: a required signature failed or a required output is missing.
    Refuse(String),
    /// The environment is incomplete (a secret variable is unset): a setup error.
    Setup(String),
}

impl Rules {
    /// Compiles the rules from a trigger's options (as JSON). Collects every problem.
    pub fn parse(
        options: &Map<String, Value>,
        reserved_outputs: &[&str],
    ) -> (Rules, Vec<RuleProblem>) {
        let mut rules = Rules::default();
        let mut problems = Vec::new();

        match options.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, pattern) in map {
                    match HeaderRule::compile(name, pattern) {
                        Ok(r) => rules.headers.push(r),
                        Err(e) => problems.push(problem(&["headers", name], e)),
                    }
                }
            }
            Some(_) => problems.push(problem(
                &["headers"],
                "`headers` must map header names to regular expressions",
            )),
        }

        match options.get("verify") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => match parse_verify(map) {
                Ok(v) => rules.verify = Some(v),
                Err(p) => problems.push(p),
            },
            Some(_) => problems.push(problem(
                &["verify"],
                format!("`verify` must be a mapping such as `{{preset: github, secret_env: WEBHOOK_SECRET}}`; presets: {}", verify::PRESETS.join(", ")),
            )),
        }

        if let Some(f) = options.get("config").and_then(|c| c.get("filter")) {
            if !f.is_null() {
                match Filter::compile(f) {
                    Ok(f) => rules.filter = Some(f),
                    Err(e) => problems.push(problem(&["config", "filter"], e.to_string())),
                }
            }
        }

        match options.get("outputs") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, spec) in map {
                    match OutputRule::compile(name, spec, reserved_outputs) {
                        Ok(r) => rules.outputs.push(r),
                        Err(e) => problems
                            .push(problem(&["outputs", name], format!("output `{name}`: {e}"))),
                    }
                }
            }
            Some(_) => problems.push(problem(
                &["outputs"],
                "`outputs` must map output names to JSONPath expressions",
            )),
        }
        (rules, problems)
    }

    /// Applies the rules to a request: `item` is the output item, `body` the exact body bytes.
    pub fn apply(&self, item: &Value, body: &[u8], env: &Environment) -> Verdict {
        let empty = Map::new();
        let headers = item
            .get("headers")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for rule in &self.headers {
            if let Err(reason) = rule.check(headers) {
                return Verdict::Skip(reason);
            }
        }
        let mut verified = false;
        if let Some(v) = &self.verify {
            let Some(secret) = env.var(&v.secret_env).filter(|s| !s.is_empty()) else {
                return Verdict::Setup(format!(
                    "verify.secret_env names {var}, which is not set; pass the secret to the hookflow step, e.g. `env: {{{var}: ${{{{ secrets.{var} }}}}}}`",
                    var = v.secret_env
                ));
            };
            match verify::verify(
                &v.scheme,
                headers,
                body,
                secret.as_bytes(),
                env.now,
                v.tolerance,
            ) {
                Ok(()) => verified = true,
                Err(e) => {
                    let reason = format!("{} signature check failed: {e}", v.scheme);
                    return if v.required {
                        Verdict::Refuse(reason)
                    } else {
                        Verdict::Skip(reason)
                    };
                }
            }
        }
        if let Some(f) = &self.filter {
            if !f.matches(item) {
                return Verdict::Skip("the request does not pass config.filter".into());
            }
        }
        let mut outputs = Map::new();
        let mut masked = Vec::new();
        for rule in &self.outputs {
            match rule.evaluate(item) {
                Ok(value) => {
                    if rule.mask {
                        let text = match &value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        if !text.is_empty() {
                            masked.push(text);
                        }
                    }
                    outputs.insert(rule.name.clone(), value);
                }
                Err(e) => return Verdict::Refuse(e.to_string()),
            }
        }
        Verdict::Pass {
            verified,
            outputs,
            masked,
        }
    }
}

/// Reads a `verify:` mapping (shared with the relay's endpoint configuration).
pub fn parse_verify(map: &Map<String, Value>) -> Result<VerifyRule, RuleProblem> {
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
    let text = |key: &str| -> Result<Option<String>, RuleProblem> {
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
                format!(
                    "unknown preset `{p}`; presets: {}",
                    verify::PRESETS.join(", ")
                ),
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
                    verify::PRESETS.join(", ")
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
        Some(v) => parse_duration(v).ok_or_else(|| {
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

/// Seconds from `300`, `"300s"`, `"5m"`, `"1h"`.
pub fn parse_duration(v: &Value) -> Option<i64> {
    parse_duration_ms(v).map(|ms| ms / 1000)
}

/// Milliseconds from a number of seconds or `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"2d"`.
pub fn parse_duration_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .and_then(|n| n.checked_mul(1000)),
        Value::String(s) => {
            let s = s.trim();
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: i64 = digits.parse().ok()?;
            let factor = match unit.trim() {
                "ms" => 1,
                "" | "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            n.checked_mul(factor)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(options: Value) -> Rules {
        let (r, problems) = Rules::parse(options.as_object().expect("object"), &["body"]);
        assert!(problems.is_empty(), "{problems:?}");
        r
    }

    #[test]
    fn rules_apply_in_order() {
        let body = br#"{"action":"opened","number":7}"#;
        let signed = verify::sign(&Scheme::Github, body, b"s3cret", 0, "").expect("signs");
        let item = json!({
            "headers": {"x-github-event": "pull_request", "x-hub-signature-256": signed[0].1},
            "body": {"action": "opened", "number": 7}
        });
        let r = rules(json!({
            "headers": {"X-GitHub-Event": "^pull_request$"},
            "verify": {"preset": "github", "secret_env": "SECRET"},
            "config": {"filter": {"body.action": "opened"}},
            "outputs": {"number": "$.body.number", "token": {"path": "$.body.action", "mask": true}}
        }));
        let env = Environment::fixed(0, vec![("SECRET".into(), "s3cret".into())]);
        assert_eq!(
            r.apply(&item, body, &env),
            Verdict::Pass {
                verified: true,
                outputs: json!({"number": 7, "token": "opened"})
                    .as_object()
                    .expect("object")
                    .clone(),
                masked: vec!["opened".into()],
            }
        );
        let wrong = Environment::fixed(0, vec![("SECRET".into(), "nope".into())]);
        assert!(
            matches!(r.apply(&item, body, &wrong), Verdict::Refuse(m) if m.contains("does not match"))
        );
        let unset = Environment::fixed(0, vec![]);
        assert!(
            matches!(r.apply(&item, body, &unset), Verdict::Setup(m) if m.contains("SECRET, which is not set"))
        );
        assert!(
            matches!(
                r.apply(&item, br#"{"action":"closed","number":7}"#, &env),
                Verdict::Refuse(_)
            ),
            "changed bytes fail the signature"
        );
        let mut other = item.clone();
        other["body"]["action"] = json!("closed");
        assert!(
            matches!(r.apply(&other, body, &env), Verdict::Skip(m) if m.contains("config.filter")),
            "a signed request the filter rejects is skipped"
        );
    }

    #[test]
    fn optional_verification_skips() {
        let r =
            rules(json!({"verify": {"preset": "github", "secret_env": "S", "required": false}}));
        let env = Environment::fixed(0, vec![("S".into(), "x".into())]);
        assert!(
            matches!(r.apply(&json!({"headers": {}}), b"", &env), Verdict::Skip(m) if m.contains("missing"))
        );
    }

    #[test]
    fn config_problems_are_collected() {
        let options = json!({
            "headers": {"x": "("},
            "verify": {"preset": "nope", "secret_env": "S"},
            "config": {"filter": {"a": {"$bogus": 1}}},
            "outputs": {"body": "$.a", "ok": "$.b", "bad": "$["}
        });
        let (_, problems) = Rules::parse(options.as_object().expect("object"), &["body"]);
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{:?}: {}", p.keys, p.message))
            .collect();
        assert_eq!(problems.len(), 5, "{text:#?}");
        assert!(text[1].contains("unknown preset `nope`"));
        assert!(text[2].contains("unknown operator `$bogus`"));
    }

    #[test]
    fn verify_options() {
        let (_, p) = Rules::parse(
            json!({"verify": {"preset": "github"}})
                .as_object()
                .expect("o"),
            &[],
        );
        assert!(p[0].message.contains("secret_env` is required"));
        let r = rules(
            json!({"verify": {"header": "X-Sig", "algorithm": "sha512", "encoding": "base64", "prefix": "v=", "secret_env": "S", "tolerance": "10m"}}),
        );
        let v = r.verify.expect("verify");
        assert_eq!(v.tolerance, 600);
        assert!(matches!(v.scheme, Scheme::Custom(Custom { ref header, .. }) if header == "x-sig"));
        assert_eq!(parse_duration(&json!("1h")), Some(3600));
        assert_eq!(parse_duration(&json!("soon")), None);
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600));
    }
}
