//! A trigger's `outputs:`: extra step outputs taken from the decoded request with JSONPath
//! (RFC 9535, via `jsonpath-rust`), e.g. `number: $.body.pull_request.number`.
//!
//! The shape of an output follows the path, not the data: a path that names one value (only names
//! and indexes, RFC 9535's "singular query": `$.body.pull_request.number`) gives that value, or
//! an empty string when it is absent; a path that can select several (`[*]`, `..`, slices,
//! filters, unions) always gives a JSON list, even of one or none, so `fromJSON` always sees the
//! same type. Finding nothing is an error when the output is `required`. Names must be valid output
//! names and must not reuse a built-in one.

use crate::body::Need;
use hookflow_protocol::jsonpath::Query;
use serde_json::Value;

/// One configured output.
#[derive(Debug, Clone)]
pub struct OutputRule {
    /// The output name.
    pub name: String,
    /// The JSONPath as written.
    pub path: String,
    query: Query,
    /// Whether the path can select several values (then the output is always a list).
    pub many: bool,
    /// Whether finding nothing is an error.
    pub required: bool,
    /// Whether the value is a secret to mask in logs.
    pub mask: bool,
}

/// A required output that found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("required output `{name}`: JSONPath {path} found nothing in the request")]
pub struct MissingOutput {
    /// The output.
    pub name: String,
    /// Its JSONPath.
    pub path: String,
}

/// An `outputs:` entry that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputRuleError {
    /// Not a step output name.
    #[error("`{0}` is not a valid output name; use letters, digits, `_` and `-`, starting with a letter or `_`")]
    InvalidName(String),
    /// A built-in output's name.
    #[error("`{0}` is a built-in output; choose another name")]
    BuiltIn(String),
    /// A key an output does not take.
    #[error("unknown key `{0}`; an output takes `path`, `required` and `mask`")]
    UnknownKey(String),
    /// `required` or `mask` is not a boolean.
    #[error("`{0}` must be true or false")]
    NotABool(String),
    /// No `path`.
    #[error("needs `path`, a JSONPath such as `$.body.id`")]
    NoPath,
    /// Neither a string nor a mapping.
    #[error("must be a JSONPath string such as `$.body.id`, or `{{path, required, mask}}`")]
    Shape,
    /// The JSONPath does not parse.
    #[error("JSONPath {path} does not parse: {message}")]
    JsonPath {
        /// The path as written.
        path: String,
        /// What the parser said.
        message: String,
    },
}

/// Whether `name` can be a step output name (letters, digits, `_` and `-`, not starting with a digit or `-`).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl OutputRule {
    /// Compiles one entry: a JSONPath string, or `{path, required, mask}`. `reserved` are the
    /// built-in output names.
    pub fn compile(name: &str, spec: &Value, reserved: &[&str]) -> Result<Self, OutputRuleError> {
        if !valid_name(name) {
            return Err(OutputRuleError::InvalidName(name.to_string()));
        }
        if reserved.contains(&name) {
            return Err(OutputRuleError::BuiltIn(name.to_string()));
        }
        let (path, required, mask) = match spec {
            Value::String(p) => (p.clone(), false, false),
            Value::Object(m) => {
                for key in m.keys() {
                    if !["path", "required", "mask"].contains(&key.as_str()) {
                        return Err(OutputRuleError::UnknownKey(key.clone()));
                    }
                }
                let flag = |k: &str| match m.get(k) {
                    None | Some(Value::Null) => Ok(false),
                    Some(Value::Bool(b)) => Ok(*b),
                    Some(_) => Err(OutputRuleError::NotABool(k.to_string())),
                };
                let Some(Value::String(p)) = m.get("path") else {
                    return Err(OutputRuleError::NoPath);
                };
                (p.clone(), flag("required")?, flag("mask")?)
            }
            _ => return Err(OutputRuleError::Shape),
        };
        let query = Query::parse(&path).map_err(|e| OutputRuleError::JsonPath {
            path: e.path,
            message: e.message,
        })?;
        Ok(OutputRule {
            name: name.to_string(),
            path,
            many: query.many(),
            query,
            required,
            mask,
        })
    }

    /// Adds the parts of the request's body this output reads to `need`.
    pub fn add_body_need(&self, need: &mut Need) {
        let mut item = Need::nothing();
        add_path_need(&mut item, self.query.segments());
        if let Some(body) = item.member("body") {
            *need = std::mem::take(need).union(body.into_owned());
        }
    }

    /// Evaluates over the request item.
    pub fn evaluate(&self, item: &Value) -> Result<Value, MissingOutput> {
        match self.query.select(item) {
            Some(Value::Array(found)) if self.many && found.is_empty() && self.required => {
                Err(self.missing())
            }
            Some(v) => Ok(v),
            None if self.required => Err(self.missing()),
            None => Ok(Value::String(String::new())),
        }
    }

    fn missing(&self) -> MissingOutput {
        MissingOutput {
            name: self.name.clone(),
            path: self.path.clone(),
        }
    }
}

/// Adds what the JSONPath `segments` read below `node`: names and indexes name a member or an
/// element, `*` and slices reach every one, and a filter or `..` reads everything below.
fn add_path_need(node: &mut Need, segments: &[jsonpath_rust::parser::model::Segment]) {
    use jsonpath_rust::parser::model::{Segment, Selector};
    let Some((first, rest)) = segments.split_first() else {
        return node.set_everything();
    };
    if node.is_everything() {
        return;
    }
    let selectors: &[Selector] = match first {
        Segment::Selector(s) => std::slice::from_ref(s),
        Segment::Selectors(list) => list,
        Segment::Descendant(_) => return node.set_everything(),
    };
    for s in selectors {
        match s {
            Selector::Name(n) => add_path_need(node.named_mut(n), rest),
            Selector::Index(i) => add_path_need(node.named_mut(&i.to_string()), rest),
            Selector::Wildcard | Selector::Slice(..) => add_path_need(node.any_mut(), rest),
            Selector::Filter(_) => return node.set_everything(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(spec: Value) -> OutputRule {
        OutputRule::compile("out", &spec, &["body"]).expect("compiles")
    }

    #[test]
    fn one_many_none() {
        let item = json!({"body": {"pull_request": {"number": 42}, "labels": [{"n": "a"}, {"n": "b"}]},
                          "headers": {"x-github-event": "pull_request"}});
        assert_eq!(
            rule(json!("$.body.pull_request.number")).evaluate(&item),
            Ok(json!(42))
        );
        assert_eq!(
            rule(json!("$.headers['x-github-event']")).evaluate(&item),
            Ok(json!("pull_request"))
        );
        assert_eq!(
            rule(json!("$.body.labels[*].n")).evaluate(&item),
            Ok(json!(["a", "b"]))
        );
        // A path that can select several is a list whatever the data holds.
        let one = json!({"body": {"labels": [{"n": "a"}]}});
        assert_eq!(
            rule(json!("$.body.labels[*].n")).evaluate(&one),
            Ok(json!(["a"]))
        );
        let none = json!({"body": {"labels": []}});
        assert_eq!(
            rule(json!("$.body.labels[*].n")).evaluate(&none),
            Ok(json!([]))
        );
        assert_eq!(rule(json!("$..n")).evaluate(&one), Ok(json!(["a"])));
        assert_eq!(
            rule(json!("$.body.labels[0:1].n")).evaluate(&one),
            Ok(json!(["a"]))
        );
        assert_eq!(
            rule(json!("$.body.labels[0].n")).evaluate(&one),
            Ok(json!("a"))
        );
        assert_eq!(
            rule(json!("$['body']['labels'][0]['n']")).evaluate(&one),
            Ok(json!("a"))
        );
        assert_eq!(rule(json!("$.body.nope")).evaluate(&item), Ok(json!("")));
        let required = rule(json!({"path": "$.body.nope", "required": true}));
        assert!(required
            .evaluate(&item)
            .unwrap_err()
            .to_string()
            .contains("found nothing"));
        assert!(rule(json!({"path": "$.x", "mask": true})).mask);
    }

    #[test]
    fn bad_specs() {
        let e = OutputRule::compile("n", &json!("$.[oops"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not parse"), "{e}");
        let e = OutputRule::compile("body", &json!("$.a"), &["body"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("built-in"), "{e}");
        let e = OutputRule::compile("9lives", &json!("$.a"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a valid output name"), "{e}");
        let e = OutputRule::compile("n", &json!({"path": "$.a", "secret": true}), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key"), "{e}");
        assert!(
            valid_name("pr_number") && valid_name("_x-1") && !valid_name("a b") && !valid_name("")
        );
    }
}
