//! JSONPath queries (RFC 9535, through `jsonpath-rust`), as both halves use them: a trigger's
//! `outputs:` in the runtime, and a destination's `transform:` in the relay.
//!
//! The shape of a result follows the path, not the data: a path that names one value (only
//! names and indexes, RFC 9535's "singular query": `$.pull_request.number`) selects at most one
//! value; a path that can select several (`[*]`, `..`, slices, filters, unions) is always a
//! list, even of one or none, so consumers always see the same type.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use serde_json::Value;

/// A JSONPath that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSONPath {path} does not parse: {message}")]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// What the parser said.
    pub message: String,
}

/// A parsed JSONPath.
#[derive(Debug, Clone)]
pub struct Query {
    path: String,
    query: JpQuery,
    many: bool,
}

impl Query {
    /// Parses `path` (`$.body.pull_request.number`).
    pub fn parse(path: &str) -> Result<Query, PathError> {
        let query = jsonpath_rust::parser::parse_json_path(path).map_err(|e| PathError {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(Query {
            path: path.to_string(),
            many: !is_singular(&query),
            query,
        })
    }

    /// The path as written.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether the path can select several values (its result is then always a list).
    pub fn many(&self) -> bool {
        self.many
    }

    /// The path's segments, for callers that work out what part of a document it reads.
    pub fn segments(&self) -> &[Segment] {
        &self.query.segments
    }

    /// Every value the path selects in `doc`, in document order.
    pub fn find(&self, doc: &Value) -> Vec<Value> {
        jsonpath_rust::query::js_path_process(&self.query, doc)
            .map(|refs| refs.into_iter().map(|r| r.val().clone()).collect())
            .unwrap_or_default()
    }

    /// The path's value in `doc` shaped by the path: a list for a path that can select
    /// several, else the one value, or `None` when it is absent.
    pub fn select(&self, doc: &Value) -> Option<Value> {
        let found = self.find(doc);
        if self.many {
            return Some(Value::Array(found));
        }
        found.into_iter().next()
    }
}

/// RFC 9535's singular query: only name and index selectors, one per segment, no descendants.
fn is_singular(query: &JpQuery) -> bool {
    let one = |s: &Selector| matches!(s, Selector::Name(_) | Selector::Index(_));
    query.segments.iter().all(|segment| match segment {
        Segment::Selector(s) => one(s),
        Segment::Selectors(list) => list.len() == 1 && one(&list[0]),
        Segment::Descendant(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_many_none() {
        let doc = json!({"a": {"n": 1}, "list": [{"n": "x"}, {"n": "y"}]});
        let q = |p: &str| Query::parse(p).expect("parses");
        assert_eq!(q("$.a.n").select(&doc), Some(json!(1)));
        assert!(!q("$.a.n").many());
        assert_eq!(q("$.nope").select(&doc), None);
        assert_eq!(q("$.list[*].n").select(&doc), Some(json!(["x", "y"])));
        assert_eq!(q("$.nope[*]").select(&doc), Some(json!([])));
        assert_eq!(q("$..n").find(&doc).len(), 3);
        let e = Query::parse("$.[oops").unwrap_err();
        assert!(e.to_string().contains("does not parse"), "{e}");
    }
}
