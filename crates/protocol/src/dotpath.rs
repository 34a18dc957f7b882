//! Dot paths into JSON, in lodash's `get` syntax (`a.b[0].c`, `a["b.c"]`, `a.0`): how
//! actionsflow's `deduplicationKey` and the relay's `event_type_path` name a value in a body.
//!
//! Not JSONPath (RFC 9535): trigger `outputs:` use that, through jsonpath-rust.

use serde_json::Value;

/// lodash's `get` path syntax: `a.b[0].c`, `a["b.c"]`, `a.0`.
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for segment in path_segments(path) {
        current = match current {
            Value::Object(map) => map.get(&segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The member names and indexes of a lodash path (`a.b[0]` gives `a`, `b`, `0`).
pub fn path_segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            '[' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                let quote = match chars.peek() {
                    Some(q @ ('"' | '\'')) => {
                        let q = *q;
                        chars.next();
                        Some(q)
                    }
                    _ => None,
                };
                let mut inner = String::new();
                while let Some(c) = chars.next() {
                    if Some(c) == quote && chars.peek() == Some(&']') {
                        chars.next();
                        break;
                    }
                    if quote.is_none() && c == ']' {
                        break;
                    }
                    inner.push(c);
                }
                out.push(inner);
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lodash_paths() {
        let v = json!({"a": {"b": [{"c": 1}], "d.e": 2}});
        assert_eq!(lookup(&v, "a.b[0].c"), Some(&json!(1)));
        assert_eq!(lookup(&v, "a.b.0.c"), Some(&json!(1)));
        assert_eq!(lookup(&v, "a[\"d.e\"]"), Some(&json!(2)));
        assert_eq!(lookup(&v, "a['b'][0]"), Some(&json!({"c": 1})));
        assert_eq!(lookup(&v, "a.x"), None);
    }
}
