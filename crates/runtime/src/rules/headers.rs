//! A trigger's `headers:`: request headers that must be present and match a regular expression,
//! e.g. `x-github-event: ^(push|pull_request)$`. Names are case-insensitive.

use regex::Regex;
use serde_json::{Map, Value};

/// A `headers:` entry that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderRuleError {
    /// The pattern is not text.
    #[error("the pattern for header `{0}` must be a string (a regular expression)")]
    NotAString(String),
    /// The pattern is not a regular expression.
    #[error("the pattern for header `{name}` does not compile: {message}")]
    Pattern {
        /// The header.
        name: String,
        /// What the regex parser said.
        message: String,
    },
}

/// Why a request's headers do not satisfy a rule (a reason to skip, not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderMismatch {
    /// The header is absent.
    #[error("header `{0}` is missing")]
    Missing(String),
    /// No value of the header matches.
    #[error("header `{name}` does not match /{pattern}/")]
    NoMatch {
        /// The header.
        name: String,
        /// The pattern.
        pattern: String,
    },
}

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
    pub fn compile(name: &str, pattern: &Value) -> Result<Self, HeaderRuleError> {
        let text = match pattern {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(HeaderRuleError::NotAString(name.to_string())),
        };
        let pattern = Regex::new(&text).map_err(|e| HeaderRuleError::Pattern {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(HeaderRule {
            name: name.to_ascii_lowercase(),
            pattern,
        })
    }

    /// `Err` with the reason when the headers do not satisfy the rule. Values are not quoted.
    pub fn check(&self, headers: &Map<String, Value>) -> Result<(), HeaderMismatch> {
        match headers.get(&self.name) {
            None => Err(HeaderMismatch::Missing(self.name.clone())),
            Some(Value::String(v)) if self.pattern.is_match(v) => Ok(()),
            Some(Value::Array(vs))
                if vs
                    .iter()
                    .any(|v| v.as_str().is_some_and(|s| self.pattern.is_match(s))) =>
            {
                Ok(())
            }
            Some(_) => Err(HeaderMismatch::NoMatch {
                name: self.name.clone(),
                pattern: self.pattern.as_str().to_string(),
            }),
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
        assert!(rule.check(&h).unwrap_err().to_string().contains("missing"));
        h.insert("x-github-event".into(), json!("issues"));
        assert!(rule
            .check(&h)
            .unwrap_err()
            .to_string()
            .contains("does not match"));
        h.insert("x-github-event".into(), json!("push"));
        assert_eq!(rule.check(&h), Ok(()));
        assert!(HeaderRule::compile("x", &json!("("))
            .unwrap_err()
            .to_string()
            .contains("does not compile"));
    }
}
