//! JavaScript semantics that actionsflow's rules rely on and hookflow must reproduce: which JSON
//! values count as true (`deduplicationKey` fallbacks, mingo's `$exists`).

use serde_json::Value;

/// JavaScript truthiness of a JSON value (actionsflow and mingo test values this way).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truthiness_follows_javascript() {
        for falsy in [json!(null), json!(false), json!(0), json!(0.0), json!("")] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for true_ in [json!(true), json!(1), json!("0"), json!([]), json!({})] {
            assert!(truthy(&true_), "{true_}");
        }
    }
}
