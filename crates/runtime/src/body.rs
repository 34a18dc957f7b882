//! Large JSON bodies, parsed only as far as a trigger's rules look into them.
//!
//! A parsed `serde_json::Value` takes five to seven times the bytes of its JSON text, so a 25 MB
//! webhook (GitHub's own limit) parsed whole would take 150 MB or more of the runner's memory.
//! Most triggers read a handful of fields (`body.ref`, `$.body.pull_request.number`, the `id`
//! that names a request), so a body over [`LARGE_BODY_BYTES`] is parsed in one pass that keeps
//! only what the trigger's rules can reach ([`Need`]) and skips the rest, within a memory
//! [`budget`]. The `body` output is then the body's compact JSON written straight from its text
//! ([`compact`]), without a parsed copy.
//!
//! The projection keeps a superset of what the rules read, so a filter or an output evaluated on
//! it gives what it gives on the whole body.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Bodies at least this long are parsed in part; smaller ones are parsed whole.
pub const LARGE_BODY_BYTES: usize = 1024 * 1024;

/// The parts of a JSON value some rules read: everything below (`all`), or the named members,
/// plus what every member or element needs (`any`, from a `*` or a slice).
#[derive(Debug, Clone, Default)]
pub struct Need {
    all: bool,
    named: BTreeMap<String, Need>,
    any: Option<Box<Need>>,
    /// What each element of an array here needs, worked out once.
    elements: OnceCell<Box<Need>>,
}

impl PartialEq for Need {
    fn eq(&self, other: &Self) -> bool {
        self.all == other.all && self.named == other.named && self.any == other.any
    }
}

impl Need {
    /// Nothing below this point (containers are kept empty, scalars as they are).
    pub fn nothing() -> Need {
        Need::default()
    }

    /// Everything below this point.
    pub fn everything() -> Need {
        Need {
            all: true,
            ..Need::default()
        }
    }

    /// Whether everything is needed.
    pub fn is_everything(&self) -> bool {
        self.all
    }

    /// Adds a path of member names that ends in a value needed whole (`["ref"]` for `body.ref`).
    pub fn add_path<S: AsRef<str>>(&mut self, path: &[S]) {
        let mut node = self;
        for name in path {
            if node.all {
                return;
            }
            node.elements = OnceCell::new();
            node = node.named.entry(name.as_ref().to_string()).or_default();
        }
        *node = Need::everything();
    }

    /// The need under member `name` (`None`: not needed).
    pub fn member(&self, name: &str) -> Option<Cow<'_, Need>> {
        if self.all {
            return Some(Cow::Borrowed(self));
        }
        match (self.named.get(name), self.any.as_deref()) {
            (Some(n), None) | (None, Some(n)) => Some(Cow::Borrowed(n)),
            (Some(n), Some(a)) => Some(Cow::Owned(n.clone().union(a.clone()))),
            (None, None) => None,
        }
    }

    /// The need of every element of an array here: a JSONPath index (`[0]`) or `*` reads
    /// elements, and a MongoDB path (`commits.id`) reaches into each element of `commits`, so an
    /// element gets the names here, plus what the indexes and `*` need.
    fn element(&self) -> &Need {
        if self.all {
            return self;
        }
        self.elements.get_or_init(|| {
            let (indexes, names): (Vec<_>, Vec<_>) = self
                .named
                .iter()
                .partition(|(k, _)| k.parse::<i64>().is_ok());
            let mut e = Need {
                named: names
                    .into_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ..Need::default()
            };
            for (_, n) in indexes {
                e = e.union(n.clone());
            }
            if let Some(a) = &self.any {
                e = e.union((**a).clone());
            }
            Box::new(e)
        })
    }

    /// Sets what every member or element needs (a `*` selector) to `need`, joined with any
    /// earlier such need, and returns it for the rest of the path.
    pub fn any_mut(&mut self) -> &mut Need {
        self.elements = OnceCell::new();
        self.any.get_or_insert_with(Box::default)
    }

    /// The member `name`, added when missing, for the rest of a path.
    pub fn named_mut(&mut self, name: &str) -> &mut Need {
        self.elements = OnceCell::new();
        self.named.entry(name.to_string()).or_default()
    }

    /// Marks everything below as needed.
    pub fn set_everything(&mut self) {
        *self = Need::everything();
    }

    /// Both needs.
    pub fn union(mut self, other: Need) -> Need {
        if self.all || other.all {
            return Need::everything();
        }
        for (k, v) in other.named {
            let slot = self.named.remove(&k).unwrap_or_default();
            self.named.insert(k, slot.union(v));
        }
        self.any = match (self.any.take(), other.any) {
            (Some(a), Some(b)) => Some(Box::new(a.union(*b))),
            (a, b) => a.or(b),
        };
        self.elements = OnceCell::new();
        self
    }
}

/// The memory a projection of a body of `len` bytes may take: its size again plus 16 MiB. With
/// the text itself, the compact `body` output, and what the allocator keeps after a projection
/// that stopped, a run stays within four times the body plus 16 MiB; a body of a few MiB can
/// still be parsed whole.
pub fn budget(len: usize) -> usize {
    len.saturating_add(16 * 1024 * 1024)
}

/// Why a projection stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectError {
    /// The text is not JSON.
    NotJson,
    /// What the rules need would take more memory than the budget.
    TooBig,
}

/// Parses the parts of the JSON `text` that `need` names, taking at most about `budget` bytes.
pub fn project(text: &str, need: &Need, budget: usize) -> Result<Value, ProjectError> {
    let used = Cell::new(0usize);
    let meter = Meter {
        used: &used,
        budget,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Projection { need, meter }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        if used.get() > budget {
            ProjectError::TooBig
        } else {
            let _ = e;
            ProjectError::NotJson
        }
    })
}

/// The compact JSON of `text` (what `JSON.stringify(JSON.parse(text))` gives), written to `out`
/// without parsing it into values. `None` when `text` is not JSON.
pub fn compact<W: std::io::Write>(text: &str, out: W) -> Option<()> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut ser = serde_json::Serializer::new(out);
    serde_transcode::transcode(&mut de, &mut ser).ok()?;
    de.end().ok()
}

/// Approximate bytes each kind of node takes, with the allocator's and the map's overheads.
const VALUE_BYTES: usize = std::mem::size_of::<Value>();
const HEAP_OVERHEAD: usize = 16;
const ENTRY_BYTES: usize = VALUE_BYTES + std::mem::size_of::<String>() + 24;

#[derive(Clone, Copy)]
struct Meter<'a> {
    used: &'a Cell<usize>,
    budget: usize,
}

impl Meter<'_> {
    fn take<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.budget {
            Err(E::custom("over the memory budget"))
        } else {
            Ok(())
        }
    }
}

struct Projection<'n, 'm> {
    need: &'n Need,
    meter: Meter<'m>,
}

impl<'de> DeserializeSeed<'de> for Projection<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Projection<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.meter.take(v.len() + HEAP_OVERHEAD)?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.meter.take(v.len() + HEAP_OVERHEAD)?;
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let element = self.need.element();
        let mut items = Vec::new();
        loop {
            if items.len() == items.capacity() {
                // The vector doubles: count what it grows by.
                self.meter
                    .take::<A::Error>(items.capacity().max(4) * VALUE_BYTES)?;
            }
            let next = seq.next_element_seed(Projection {
                need: element,
                meter: self.meter,
            })?;
            match next {
                Some(v) => items.push(v),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.need.member(&key) {
                Some(need) => {
                    self.meter
                        .take::<A::Error>(ENTRY_BYTES + key.len() + HEAP_OVERHEAD)?;
                    let value = map.next_value_seed(Projection {
                        need: &need,
                        meter: self.meter,
                    })?;
                    out.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn need(paths: &[&[&str]]) -> Need {
        let mut n = Need::nothing();
        for p in paths {
            n.add_path(p);
        }
        n
    }

    const BIG: usize = usize::MAX;

    #[test]
    fn keeps_only_the_named_paths() {
        let text = r#"{"ref":"refs/heads/main","commits":[{"id":"a","message":"m1"},{"id":"b","message":"m2"}],"repository":{"full_name":"o/r","size":3}}"#;
        let v =
            project(text, &need(&[&["ref"], &["repository", "full_name"]]), BIG).expect("projects");
        assert_eq!(
            v,
            json!({"ref": "refs/heads/main", "repository": {"full_name": "o/r"}})
        );
        // A path into an array reaches every element (MongoDB's `commits.id`).
        let v = project(text, &need(&[&["commits", "id"]]), BIG).expect("projects");
        assert_eq!(v, json!({"commits": [{"id": "a"}, {"id": "b"}]}));
        // Everything, and nothing.
        let all = project(text, &Need::everything(), BIG).expect("projects");
        assert_eq!(all, serde_json::from_str::<Value>(text).expect("json"));
        assert_eq!(
            project(text, &Need::nothing(), BIG).expect("projects"),
            json!({})
        );
    }

    #[test]
    fn wildcards_reach_every_member() {
        let text = r#"{"a":{"x":{"id":1,"n":2},"y":{"id":3,"n":4}},"b":5}"#;
        let mut n = Need::nothing();
        n.named_mut("a").any_mut().add_path(&["id"]);
        assert_eq!(
            project(text, &n, BIG).expect("projects"),
            json!({"a": {"x": {"id": 1}, "y": {"id": 3}}})
        );
        // An index reads the elements.
        let text = r#"{"l":[{"id":1,"n":2},{"id":3,"n":4}]}"#;
        let mut n = Need::nothing();
        n.named_mut("l").named_mut("0").add_path(&["n"]);
        assert_eq!(
            project(text, &n, BIG).expect("projects"),
            json!({"l": [{"n": 2}, {"n": 4}]})
        );
    }

    #[test]
    fn a_budget_stops_a_projection_that_would_take_too_much() {
        let text = format!("[{}0]", "0,".repeat(100_000));
        assert_eq!(
            project(&text, &Need::everything(), 100_000),
            Err(ProjectError::TooBig)
        );
        assert!(project(&text, &Need::everything(), 100_000_000).is_ok());
        assert_eq!(
            project("{\"a\": ", &Need::everything(), BIG),
            Err(ProjectError::NotJson)
        );
        assert_eq!(
            project("{} x", &Need::everything(), BIG),
            Err(ProjectError::NotJson)
        );
    }

    #[test]
    fn compact_matches_parsing_and_printing() {
        let text =
            "{ \"a\" : [1, 2.5, -3, 1e3, \"\\u00e9\\n\"],\n \"b\": {\"c\": null, \"d\": true} }";
        let mut out = Vec::new();
        compact(text, &mut out).expect("json");
        let parsed: Value = serde_json::from_str(text).expect("json");
        assert_eq!(String::from_utf8(out).expect("utf8"), parsed.to_string());
        assert!(compact("{\"a\": ", Vec::new()).is_none());
    }

    /// JSON built from a few names that the rules below also use, so paths often hit.
    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..4).prop_map(|n| json!(n)),
            prop::sample::select(vec!["x", "y", ""]).prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (prop::sample::select(vec!["a", "b", "c", "0", "id"]), inner),
                    0..4
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    const OUTPUTS: [&str; 14] = [
        "$.body.a",
        "$.body.a.b",
        "$.body.a[0]",
        "$.body.a[0].b",
        "$.body.a[*].b",
        "$.body[0].a",
        "$.body.a[-1:]",
        "$.body..b",
        "$.body.*.c",
        "$.body['a','b'].c",
        "$.body.a[?@.b == 1]",
        "$.headers",
        "$.body",
        "$.*",
    ];

    fn filters() -> Vec<Value> {
        vec![
            json!({"body.a": 1}),
            json!({"body.a.b": {"$exists": true}}),
            json!({"body.a.b": {"$exists": false}}),
            json!({"body.a.0.b": "x"}),
            json!({"body.a.b": {"$in": [1, "x"]}}),
            json!({"$or": [{"body.c": null}, {"body.a.c.b": 2}]}),
            json!({"body.a": {"$size": 2}}),
            json!({"body.a": {"$elemMatch": {"b": 1}}}),
            json!({"body.id": {"$ne": "y"}, "body.a.id": {"$gt": 0}}),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(400))]
        /// The rules give the same answers on a projection as on the whole body.
        #[test]
        fn rules_see_the_same_in_a_projection(body in arb_json()) {
            let text = body.to_string();
            let whole = json!({"body": body, "headers": {"a": "h"}});
            for path in OUTPUTS {
                let rule = crate::rules::outputs::OutputRule::compile("o", &json!(path), &[])
                    .expect("compiles");
                let mut need = Need::nothing();
                rule.add_body_need(&mut need);
                let part = json!({"body": project(&text, &need, BIG).expect("projects"), "headers": {"a": "h"}});
                proptest::prop_assert_eq!(rule.evaluate(&whole), rule.evaluate(&part), "{} on {}", path, text);
            }
            for f in filters() {
                let filter = crate::rules::filter::Filter::compile(&f).expect("compiles");
                let mut need = Need::nothing();
                filter.add_body_need(&mut need);
                let part = json!({"body": project(&text, &need, BIG).expect("projects"), "headers": {"a": "h"}});
                proptest::prop_assert_eq!(filter.explain(&whole), filter.explain(&part), "{} on {}", f, text);
            }
        }
    }
}
