//! A trigger's `headers:`: request headers that must be present and match a regular expression,
//! e.g. `x-github-event: ^(push|pull_request)$`. Names are case-insensitive.

use regex::Regex;
use serde_json::{Map, Value};

/// One required header.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// Lowercase header name.
    pub name: String,
    /// The pattern its value must match (unanchored unless written with `^…$`).
    pub pattern: Regex,
}

impl HeaderRule {
    /// Compiles one entry.
    pub fn compile(name: &str, pattern: &Value) -> Result<Self, String> {
        let text = match pattern {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "the pattern for header `{name}` must be a string (a regular expression)"
                ))
            }
        };
        let pattern = Regex::new(&text)
            .map_err(|e| format!("the pattern for header `{name}` does not compile: {e}"))?;
        Ok(HeaderRule {
            name: name.to_ascii_lowercase(),
            pattern,
        })
    }

    /// `Err` with the reason when the headers do not satisfy the rule. Values are not quoted.
    pub fn check(&self, headers: &Map<String, Value>) -> Result<(), String> {
        match headers.get(&self.name) {
            None => Err(format!("header `{}` is missing", self.name)),
            Some(Value::String(v)) if self.pattern.is_match(v) => Ok(()),
            Some(Value::Array(vs))
                if vs
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| self.pattern.is_match(s))) =>
            {
                Ok(())
            }
            Some(_) => Err(format!(
                "header `{}` does not match /{}/",
                self.name,
                self.pattern.as_str()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn required_headers() {
        let rule = HeaderRule::compile("X-GitHub-Event", &json!("^(push|pull_request)$"))
            .expect("compiles");
        let mut h = Map::new();
        assert!(rule.check(&h).unwrap_err().contains("missing"));
        h.insert("x-github-event".into(), json!("issues"));
        assert!(rule.check(&h).unwrap_err().contains("does not match"));
        h.insert("x-github-event".into(), json!("push"));
        assert_eq!(rule.check(&h), Ok(()));
        assert!(HeaderRule::compile("x", &json!("("))
            .unwrap_err()
            .contains("does not compile"));
    }
}
