//! `config.filter`: the MongoDB-style query actionsflow evaluates with mingo over the output item
//! (`{request_id, body, headers, method, query, params, …}`).
//!
//! Supported: implicit equality, dotted paths into objects and arrays (an array matches when any
//! element does, as in MongoDB), `$eq $ne $gt $gte $lt $lte $in $nin $exists $regex` (with
//! `$options` `i m s x`), `$not $size $all $elemMatch`, and `$and $or $nor`. Comparison is
//! type-aware: a number never equals a string. Queries are compiled when the workflow is read,
//! so an unknown operator or a bad regex is a configuration error, not a run-time surprise.

use crate::body::Need;
use std::cmp::Ordering;

use regex::Regex;
use serde_json::{Map, Value};

/// A filter that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`config.filter{at}`: {message}")]
pub struct FilterError {
    /// Where in the filter (`.body.action.$regex`), empty for the top.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter(Query);

#[derive(Debug, Clone)]
enum Query {
    All(Vec<Query>),
    And(Vec<Query>),
    Or(Vec<Query>),
    Nor(Vec<Query>),
    /// A field's path, its conditions, and the condition as written (for messages).
    Field(Vec<String>, Vec<Op>, Value),
}

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Regex(Regex),
    Not(Vec<Op>),
    Size(usize),
    All(Vec<Value>),
    ElemMatch(ElemMatch),
}

#[derive(Debug, Clone)]
enum ElemMatch {
    Ops(Vec<Op>),
    Query(Box<Query>),
}

impl Filter {
    /// Compiles a filter given as JSON (converted from the workflow's YAML).
    pub fn compile(value: &Value) -> Result<Self, FilterError> {
        match value {
            Value::Object(map) => Ok(Filter(compile_query(map, "")?)),
            _ => Err(err(
                "",
                "must be a mapping of field paths to conditions, e.g. `{body.action: opened}`",
            )),
        }
    }

    /// Whether the item passes.
    pub fn matches(&self, item: &Value) -> bool {
        eval_query(&self.0, item)
    }

    /// Why the item does not pass: the first clause that fails, with the value it found
    /// (`` `body.type` is "customer.created"; the filter wants {"$in":[…]} ``). `None` when it
    /// passes.
    pub fn explain(&self, item: &Value) -> Option<String> {
        explain_query(&self.0, item)
    }

    /// Adds the parts of the request's body this filter reads to `need`.
    pub fn add_body_need(&self, need: &mut Need) {
        fn walk(q: &Query, need: &mut Need) {
            match q {
                Query::All(parts) | Query::And(parts) | Query::Or(parts) | Query::Nor(parts) => {
                    parts.iter().for_each(|p| walk(p, need));
                }
                Query::Field(path, _, _) => {
                    if let Some(("body", rest)) = path.split_first().map(|(f, r)| (f.as_str(), r)) {
                        need.add_path(rest);
                    }
                }
            }
        }
        walk(&self.0, need);
    }
}

fn explain_query(q: &Query, doc: &Value) -> Option<String> {
    if eval_query(q, doc) {
        return None;
    }
    Some(match q {
        Query::All(parts) | Query::And(parts) => {
            return parts.iter().find_map(|p| explain_query(p, doc));
        }
        Query::Or(parts) => format!("none of the {} `$or` queries matches", parts.len()),
        Query::Nor(_) => "one of the `$nor` queries matches".to_string(),
        Query::Field(path, _, want) => {
            let values = resolve(doc, path);
            let found = match values.as_slice() {
                [] => "absent".to_string(),
                [one] => short_json(one),
                many => format!(
                    "[{}]",
                    many.iter()
                        .map(|v| short_json(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            format!(
                "`{}` is {found}; the filter wants {}",
                path.join("."),
                short_json(want)
            )
        }
    })
}

/// Compact JSON, cut to 80 characters.
fn short_json(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 80 {
        text
    } else {
        format!("{}…", text.chars().take(80).collect::<String>())
    }
}

fn err(at: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        at: at.to_string(),
        message: message.into(),
    }
}

fn compile_query(map: &Map<String, Value>, at: &str) -> Result<Query, FilterError> {
    let mut parts = Vec::new();
    for (key, value) in map {
        let here = format!("{at}.{key}");
        let part = match key.as_str() {
            "$and" | "$or" | "$nor" => {
                let Value::Array(items) = value else {
                    return Err(err(&here, format!("`{key}` takes a list of queries")));
                };
                if items.is_empty() {
                    return Err(err(&here, format!("`{key}` needs at least one query")));
                }
                let mut subs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(m) = item else {
                        return Err(err(&format!("{here}[{i}]"), "each query must be a mapping"));
                    };
                    subs.push(compile_query(m, &format!("{here}[{i}]"))?);
                }
                match key.as_str() {
                    "$and" => Query::And(subs),
                    "$or" => Query::Or(subs),
                    _ => Query::Nor(subs),
                }
            }
            k if k.starts_with('$') => {
                return Err(err(
                    &here,
                    format!("unknown operator `{k}`; top-level operators are $and, $or, $nor"),
                ))
            }
            k => {
                let path = k.split('.').map(str::to_string).collect();
                Query::Field(path, compile_condition(value, &here)?, value.clone())
            }
        };
        parts.push(part);
    }
    Ok(Query::All(parts))
}

fn is_operator_doc(value: &Value) -> bool {
    matches!(value, Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')))
}

fn compile_condition(value: &Value, at: &str) -> Result<Vec<Op>, FilterError> {
    if !is_operator_doc(value) {
        if let Value::Object(m) = value {
            if let Some(k) = m.keys().find(|k| k.starts_with('$')) {
                return Err(err(
                    at,
                    format!("`{k}` cannot be mixed with plain fields; use one or the other"),
                ));
            }
        }
        return Ok(vec![Op::Eq(value.clone())]);
    }
    let Value::Object(map) = value else {
        return Ok(Vec::new());
    };
    let options = match map.get("$options") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(err(
                &format!("{at}.$options"),
                "must be a string of flags such as \"i\"",
            ))
        }
    };
    let mut ops = Vec::new();
    for (op, arg) in map {
        let here = format!("{at}.{op}");
        let list = |arg: &Value| -> Result<Vec<Value>, FilterError> {
            match arg {
                Value::Array(items) => Ok(items.clone()),
                _ => Err(err(&here, format!("`{op}` takes a list"))),
            }
        };
        ops.push(match op.as_str() {
            "$eq" => Op::Eq(arg.clone()),
            "$ne" => Op::Ne(arg.clone()),
            "$gt" => Op::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Op::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Op::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Op::Cmp(Ordering::Less, true, arg.clone()),
            "$in" => Op::In(list(arg)?),
            "$nin" => Op::Nin(list(arg)?),
            "$all" => Op::All(list(arg)?),
            "$exists" => Op::Exists(crate::js::truthy(arg)),
            "$size" => match arg.as_u64() {
                Some(n) => Op::Size(n as usize),
                None => return Err(err(&here, "`$size` takes a non-negative whole number")),
            },
            "$regex" => Op::Regex(compile_regex(arg, options, &here)?),
            "$options" => {
                if !map.contains_key("$regex") {
                    return Err(err(&here, "`$options` goes with `$regex`"));
                }
                continue;
            }
            "$not" => match arg {
                Value::String(_) => Op::Not(vec![Op::Regex(compile_regex(arg, "", &here)?)]),
                a if is_operator_doc(a) => Op::Not(compile_condition(a, &here)?),
                _ => return Err(err(&here, "`$not` takes an operator mapping such as `{$eq: 1}` or a regex")),
            },
            "$elemMatch" => match arg {
                a if is_operator_doc(a) => Op::ElemMatch(ElemMatch::Ops(compile_condition(a, &here)?)),
                Value::Object(m) => Op::ElemMatch(ElemMatch::Query(Box::new(compile_query(m, &here)?))),
                _ => return Err(err(&here, "`$elemMatch` takes a query mapping")),
            },
            other => {
                return Err(err(
                    &here,
                    format!("unknown operator `{other}`; supported: $eq $ne $gt $gte $lt $lte $in $nin $exists $regex $options $not $size $all $elemMatch"),
                ))
            }
        });
    }
    Ok(ops)
}

fn compile_regex(pattern: &Value, options: &str, at: &str) -> Result<Regex, FilterError> {
    let Value::String(p) = pattern else {
        return Err(err(at, "`$regex` takes a string pattern"));
    };
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' | 'm' | 's' | 'x' => flags.push(c),
            other => {
                return Err(err(
                    at,
                    format!("unknown regex option `{other}`; use i, m, s or x"),
                ))
            }
        }
    }
    let source = if flags.is_empty() {
        p.clone()
    } else {
        format!("(?{flags}){p}")
    };
    Regex::new(&source).map_err(|e| err(at, format!("regex does not compile: {e}")))
}

fn eval_query(q: &Query, doc: &Value) -> bool {
    match q {
        Query::All(parts) | Query::And(parts) => parts.iter().all(|p| eval_query(p, doc)),
        Query::Or(parts) => parts.iter().any(|p| eval_query(p, doc)),
        Query::Nor(parts) => !parts.iter().any(|p| eval_query(p, doc)),
        Query::Field(path, ops, _) => {
            let values = resolve(doc, path);
            ops.iter().all(|op| eval_op(op, &values))
        }
    }
}

/// The values a dotted path reaches; arrays on the way fan out to their elements (MongoDB).
fn resolve<'a>(doc: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return vec![doc];
    };
    match doc {
        Value::Object(map) => map.get(first).map_or_else(Vec::new, |v| resolve(v, rest)),
        Value::Array(items) => {
            let mut out = Vec::new();
            if let Ok(i) = first.parse::<usize>() {
                if let Some(v) = items.get(i) {
                    out.extend(resolve(v, rest));
                }
            }
            for item in items.iter().filter(|i| i.is_object()) {
                out.extend(resolve(item, path));
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A field's values as compared by equality-like operators: each value, and the elements of each
/// array value.
fn candidates<'a>(values: &[&'a Value]) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in values {
        out.push(*v);
        if let Value::Array(items) = v {
            out.extend(items.iter());
        }
    }
    out
}

fn equals(values: &[&Value], target: &Value) -> bool {
    if values.is_empty() {
        // {field: null} matches a missing field, as in MongoDB.
        return target.is_null();
    }
    candidates(values).iter().any(|v| json_eq(v, target))
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eval_op(op: &Op, values: &[&Value]) -> bool {
    match op {
        Op::Eq(t) => equals(values, t),
        Op::Ne(t) => !equals(values, t),
        Op::Cmp(dir, or_equal, t) => candidates(values).iter().any(|v| match compare(v, t) {
            Some(Ordering::Equal) => *or_equal,
            Some(o) => o == *dir,
            None => false,
        }),
        Op::In(list) => list.iter().any(|t| equals(values, t)),
        Op::Nin(list) => !list.iter().any(|t| equals(values, t)),
        Op::Exists(want) => values.is_empty() != *want,
        Op::Regex(re) => candidates(values)
            .iter()
            .any(|v| v.as_str().is_some_and(|s| re.is_match(s))),
        Op::Not(ops) => !ops.iter().all(|o| eval_op(o, values)),
        Op::Size(n) => values
            .iter()
            .any(|v| v.as_array().is_some_and(|a| a.len() == *n)),
        Op::All(list) => values.iter().any(|v| match v {
            Value::Array(items) => list.iter().all(|t| items.iter().any(|i| json_eq(i, t))),
            single => list.len() == 1 && json_eq(single, &list[0]),
        }),
        Op::ElemMatch(m) => values.iter().any(|v| {
            v.as_array().is_some_and(|items| {
                items.iter().any(|item| match m {
                    ElemMatch::Ops(ops) => ops.iter().all(|o| eval_op(o, &[item])),
                    ElemMatch::Query(q) => item.is_object() && eval_query(q, item),
                })
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Value {
        json!({
            "method": "post",
            "headers": {"x-github-event": "pull_request"},
            "body": {
                "action": "opened",
                "number": 42,
                "labels": [{"name": "bug"}, {"name": "urgent"}],
                "tags": ["a", "b"],
                "pull_request": {"draft": false, "title": "Fix the Parser"},
                "count": "42"
            }
        })
    }

    fn check(filter: Value) -> bool {
        Filter::compile(&filter).expect("compiles").matches(&item())
    }

    #[test]
    fn equality_and_paths() {
        assert!(check(json!({"body.action": "opened"})));
        assert!(!check(json!({"body.action": "closed"})));
        assert!(check(
            json!({"headers.x-github-event": "pull_request", "method": "post"})
        ));
        assert!(
            check(json!({"body.labels.name": "urgent"})),
            "array of objects fans out"
        );
        assert!(check(json!({"body.labels.0.name": "bug"})), "numeric index");
        assert!(check(json!({"body.tags": "b"})), "array contains");
        assert!(check(json!({"body.tags": ["a", "b"]})), "whole array");
        assert!(check(json!({"body.missing": null})), "null matches missing");
        assert!(check(
            json!({"body.pull_request": {"draft": false, "title": "Fix the Parser"}})
        ));
    }

    #[test]
    fn types_are_never_coerced() {
        assert!(!check(json!({"body.number": "42"})));
        assert!(!check(json!({"body.count": 42})));
        assert!(check(json!({"body.number": 42.0})));
        assert!(
            !check(json!({"body.count": {"$gt": 10}})),
            "string vs number never compares"
        );
    }

    #[test]
    fn operators() {
        assert!(check(json!({"body.number": {"$gt": 41, "$lte": 42}})));
        assert!(!check(json!({"body.number": {"$lt": 42}})));
        assert!(check(json!({"body.number": {"$gte": 42}})));
        assert!(check(
            json!({"body.action": {"$in": ["opened", "reopened"]}})
        ));
        assert!(check(json!({"body.action": {"$nin": ["closed"]}})));
        assert!(check(json!({"body.action": {"$ne": "closed"}})));
        assert!(check(
            json!({"body.labels": {"$exists": true}, "body.nope": {"$exists": false}})
        ));
        assert!(check(
            json!({"body.pull_request.title": {"$regex": "^fix", "$options": "i"}})
        ));
        assert!(!check(
            json!({"body.pull_request.title": {"$regex": "^fix"}})
        ));
        assert!(check(json!({"body.action": {"$not": {"$eq": "closed"}}})));
        assert!(check(json!({"body.action": {"$not": "^clo"}})));
        assert!(check(json!({"body.tags": {"$size": 2}})));
        assert!(check(json!({"body.tags": {"$all": ["b", "a"]}})));
        assert!(!check(json!({"body.tags": {"$all": ["a", "c"]}})));
        assert!(check(
            json!({"body.labels": {"$elemMatch": {"name": "urgent"}}})
        ));
        assert!(check(json!({"body.tags": {"$elemMatch": {"$eq": "a"}}})));
        assert!(!check(
            json!({"body.labels": {"$elemMatch": {"name": "wontfix"}}})
        ));
    }

    #[test]
    fn logic() {
        assert!(check(
            json!({"$or": [{"body.action": "closed"}, {"body.number": 42}]})
        ));
        assert!(!check(
            json!({"$and": [{"body.action": "opened"}, {"body.number": 1}]})
        ));
        assert!(check(json!({"$nor": [{"body.action": "closed"}]})));
    }

    #[test]
    fn bad_filters_say_where() {
        let e = Filter::compile(&json!({"body.n": {"$near": 1}})).unwrap_err();
        assert_eq!(e.at, ".body.n.$near");
        assert!(e.message.contains("unknown operator `$near`"), "{e}");
        let e = Filter::compile(&json!({"$where": "x"})).unwrap_err();
        assert!(e.message.contains("unknown operator `$where`"), "{e}");
        let e = Filter::compile(&json!({"a": {"$regex": "("}})).unwrap_err();
        assert!(e.message.contains("regex does not compile"), "{e}");
        let e = Filter::compile(&json!({"a": {"$in": 3}})).unwrap_err();
        assert!(e.message.contains("takes a list"), "{e}");
        let e = Filter::compile(&json!({"$or": []})).unwrap_err();
        assert!(e.message.contains("at least one"), "{e}");
        let e = Filter::compile(&json!({"a": {"$regex": "x", "$options": "q"}})).unwrap_err();
        assert!(e.message.contains("unknown regex option"), "{e}");
    }

    #[test]
    fn explanations_name_the_clause_and_the_value_found() {
        let f = Filter::compile(
            &json!({"body.type": {"$in": ["invoice.paid"]}, "body.livemode": false}),
        )
        .expect("compiles");
        let item = json!({"body": {"type": "customer.created", "livemode": false}});
        assert_eq!(
            f.explain(&item).as_deref(),
            Some(r#"`body.type` is "customer.created"; the filter wants {"$in":["invoice.paid"]}"#)
        );
        let absent = json!({"body": {"livemode": false}});
        assert!(f.explain(&absent).expect("fails").contains("is absent"));
        let ok = json!({"body": {"type": "invoice.paid", "livemode": false}});
        assert_eq!(f.explain(&ok), None);
        let or = Filter::compile(&json!({"$or": [{"a": 1}, {"b": 2}]})).expect("compiles");
        assert_eq!(
            or.explain(&json!({})).as_deref(),
            Some("none of the 2 `$or` queries matches")
        );
    }
}
