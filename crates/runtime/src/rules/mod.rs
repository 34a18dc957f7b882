//! Trigger rules: what decides whether a request that reached a trigger runs the workflow, and
//! what it hands on (DESIGN §3, hookflow extensions).
//!
//! | rule | option | module |
//! |---|---|---|
//! | required headers | `headers:` | [`headers`] |
//! | signature | `verify:` | [`hookflow_protocol::signature`] |
//! | MongoDB-style query | `config.filter` | [`filter`] |
//! | extra outputs | `outputs:` | [`outputs`] |
//!
//! Rules are compiled when the workflow file is read ([`Rules::parse`]) and applied in that
//! order to a request ([`Rules::apply`]).

pub mod filter;
pub mod headers;
pub mod outputs;

use crate::body::Need;
use hookflow_protocol::options::{problem, OptionProblem};
use hookflow_protocol::signature::{self as verify, parse_verify, VerifyRule};
use hookflow_protocol::Environment;
use serde_json::{Map, Value};

use filter::Filter;
use headers::HeaderRule;
use outputs::OutputRule;

/// The largest text a trigger's own output may hold (GitHub Actions' limit on an output).
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// The length of the text an output holds (a string as it is, other values as compact JSON),
/// counted without writing it out.
fn output_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    match value {
        Value::String(s) => s.len(),
        other => {
            let mut n = Count(0);
            let _ = serde_json::to_writer(&mut n, other);
            n.0
        }
    }
}

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
    ) -> (Rules, Vec<OptionProblem>) {
        let mut rules = Rules::default();
        let mut problems = Vec::new();

        match options.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, pattern) in map {
                    match HeaderRule::compile(name, pattern) {
                        Ok(r) => rules.headers.push(r),
                        Err(e) => problems.push(problem(&["headers", name], e.to_string())),
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

    /// The parts of the request's body the filter and the outputs read.
    pub fn body_need(&self) -> Need {
        let mut need = Need::nothing();
        if let Some(f) = &self.filter {
            f.add_body_need(&mut need);
        }
        for o in &self.outputs {
            o.add_body_need(&mut need);
        }
        need
    }

    /// Applies the rules to a request: `item` is the output item, `body` the exact body bytes.
    /// A verified signature sets the item's `verified` to `true` before the filter and the
    /// outputs see it.
    pub fn apply(&self, item: &mut Value, body: &[u8], env: &Environment) -> Verdict {
        let empty = Map::new();
        let headers = item
            .get("headers")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        for rule in &self.headers {
            if let Err(reason) = rule.check(headers) {
                return Verdict::Skip(reason.to_string());
            }
        }
        let mut verified = false;
        if let Some(v) = &self.verify {
            let Some(secret) = env.var(&v.secret_env) else {
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
                env.now(),
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
        if verified {
            if let Some(fields) = item.as_object_mut() {
                fields.insert("verified".into(), Value::Bool(true));
            }
        }
        let item = &*item;
        if let Some(f) = &self.filter {
            if let Some(why) = f.explain(item) {
                return Verdict::Skip(format!("the request does not pass config.filter: {why}"));
            }
        }
        let mut outputs = Map::new();
        let mut masked = Vec::new();
        for rule in &self.outputs {
            match rule.evaluate(item) {
                Ok(value) if output_len(&value) > MAX_OUTPUT_BYTES => {
                    return Verdict::Refuse(format!(
                        "output `{}` ({}) is {} bytes; GitHub Actions outputs hold at most 1 MB: select a smaller part of the request, or read the whole body from the `body_file` output",
                        rule.name,
                        rule.path,
                        output_len(&value)
                    ));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookflow_protocol::signature::{Custom, Scheme};
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
            r.apply(&mut item.clone(), body, &env),
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
            matches!(r.apply(&mut item.clone(), body, &wrong), Verdict::Refuse(m) if m.contains("does not match"))
        );
        let unset = Environment::fixed(0, vec![]);
        assert!(
            matches!(r.apply(&mut item.clone(), body, &unset), Verdict::Setup(m) if m.contains("SECRET, which is not set"))
        );
        assert!(
            matches!(
                r.apply(
                    &mut item.clone(),
                    br#"{"action":"closed","number":7}"#,
                    &env
                ),
                Verdict::Refuse(_)
            ),
            "changed bytes fail the signature"
        );
        let mut other = item.clone();
        other["body"]["action"] = json!("closed");
        assert!(
            matches!(r.apply(&mut other.clone(), body, &env), Verdict::Skip(m) if m.contains("config.filter")),
            "a signed request the filter rejects is skipped"
        );
    }

    #[test]
    fn filters_and_outputs_see_a_verified_signature() {
        let body = br#"{"action":"opened"}"#;
        let signed = verify::sign(&Scheme::Github, body, b"s3cret", 0, "").expect("signs");
        let mut item = json!({
            "headers": {"x-hub-signature-256": signed[0].1},
            "body": {"action": "opened"},
            "verified": false
        });
        let r = rules(json!({
            "verify": {"preset": "github", "secret_env": "SECRET"},
            "config": {"filter": {"verified": true}},
            "outputs": {"checked": "$.verified"}
        }));
        let env = Environment::fixed(0, vec![("SECRET".into(), "s3cret".into())]);
        match r.apply(&mut item, body, &env) {
            Verdict::Pass { outputs, .. } => assert_eq!(outputs["checked"], json!(true)),
            other => panic!("a signed request passes `verified: true`: {other:?}"),
        }
        let unsigned = rules(json!({"config": {"filter": {"verified": true}}}));
        let mut item = json!({"headers": {}, "verified": false});
        assert!(matches!(
            unsigned.apply(&mut item, b"", &env),
            Verdict::Skip(_)
        ));
    }

    #[test]
    fn optional_verification_skips() {
        let r =
            rules(json!({"verify": {"preset": "github", "secret_env": "S", "required": false}}));
        let env = Environment::fixed(0, vec![("S".into(), "x".into())]);
        assert!(
            matches!(r.apply(&mut json!({"headers": {}}), b"", &env), Verdict::Skip(m) if m.contains("missing"))
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
    }
}
